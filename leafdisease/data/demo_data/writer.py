"""Write the demo dataset in the AI Challenger 2018 layout: images rendered in parallel into a staging folder that
is swapped in when complete, their annotations, class_names.csv and demo_info.json (the parameters, so an
unchanged demo is reused)."""
import json
import math
import os
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from leafdisease.data.demo_data.counts import (
    CLASS_NAMES,
    DEFAULT_SCALE,
    NUM_CLASSES,
    demo_train_counts,
    demo_val_counts,
)
from leafdisease.data.demo_data.photo import DEFAULT_IMAGE_SIZE, MIN_IMAGE_SIZE, RENDER_VERSION, render_leaf
from leafdisease.data.staged_output import map_parallel, remove_abandoned, staged_folder
from leafdisease.utils import runtime
from leafdisease.utils.atomic_io import write_csv, write_json
from leafdisease.utils.errors import UserError

TRAIN_DIR = "AgriculturalDisease_trainingset"
VAL_DIR = "AgriculturalDisease_validationset"
TRAIN_ANNOTATIONS = "AgriculturalDisease_train_annotations.json"
VAL_ANNOTATIONS = "AgriculturalDisease_validation_annotations.json"
CLASS_NAMES_FILE = "class_names.csv"
INFO_FILE = "demo_info.json"

_SPLITS = (("train", 0, TRAIN_DIR, TRAIN_ANNOTATIONS), ("val", 1, VAL_DIR, VAL_ANNOTATIONS))


def is_demo_folder(path):
    """True when `path` (a folder, or None) holds a demo written by generate_demo: it marks it with INFO_FILE."""
    return bool(path) and (Path(path) / INFO_FILE).is_file()


def _image_rng(seed, split_code, class_id, index):
    return np.random.default_rng([seed, split_code, class_id, index])


def image_file_name(split, class_id, index):
    return f"demo_{split}_{class_id:02d}_{index:05d}.jpg"


def _write_image(task):
    path, seed, split_code, class_id, index, image_size = task
    rng = _image_rng(seed, split_code, class_id, index)
    rgb = render_leaf(class_id, rng, image_size)
    quality = int(rng.integers(82, 96))
    _, data = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    try:  # a plain write: the whole folder is renamed into place when complete, which is the atomic step
        Path(path).write_bytes(data.tobytes())
    except OSError as error:
        raise UserError(f"{path}: cannot write demo image ({error.strerror})") from None


def _check_parameters(scale, image_size, seed, workers):
    if not isinstance(scale, (int, float)) or not math.isfinite(scale) or scale <= 0:
        raise UserError(f"demo scale: must be a positive number, got {scale!r}")
    if not isinstance(image_size, int) or image_size < MIN_IMAGE_SIZE:
        raise UserError(f"demo image size: must be an integer >= {MIN_IMAGE_SIZE}, got {image_size!r}")
    if not isinstance(seed, int) or seed < 0:
        raise UserError(f"demo seed: must be a non-negative integer, got {seed!r}")
    if workers is not None and (not isinstance(workers, int) or workers < 1):
        raise UserError(f"demo workers: must be a positive integer, got {workers!r}")


def _demo_info(scale, image_size, seed):
    train_counts = demo_train_counts(scale)
    return {
        # The module's name before it became the demo_data package: kept, so demos already written are reused.
        "generator": "demo_data.py",
        "render_version": RENDER_VERSION,
        "scale": scale,
        "image_size": image_size,
        "seed": seed,
        "train_counts": list(train_counts),
        "val_counts": list(demo_val_counts(train_counts)),
    }


def _is_complete(root, info):
    """True when `root` holds a finished demo with exactly these parameters and all its images."""
    try:
        recorded = json.loads((root / INFO_FILE).read_text())
    except (OSError, ValueError):
        return False
    if recorded != info:
        return False
    for split, _, folder, annotations in _SPLITS:
        if not (root / folder / annotations).is_file():
            return False
        expected = sum(info[f"{split}_counts"])
        try:
            found = sum(1 for entry in os.scandir(root / folder / "images") if entry.name.endswith(".jpg"))
        except OSError:
            return False
        if found != expected:
            return False
    return True


def generate_demo(out_root, scale=DEFAULT_SCALE, image_size=DEFAULT_IMAGE_SIZE, seed=0, workers=None):
    """Write the demo dataset to `out_root` in the AI Challenger 2018 layout and return its path.

    A complete demo already there with the same parameters is reused. Otherwise the demo is generated into a
    staging folder beside it and renamed into place at the end (staged_output), so an interrupted run never looks
    complete; a previous demo (a folder with demo_info.json) is replaced, any other non-empty folder is refused.
    """
    _check_parameters(scale, image_size, seed, workers)
    out_root = Path(out_root)
    info = _demo_info(scale, image_size, seed)
    if _is_complete(out_root, info):
        remove_abandoned(out_root, "demo generation")
        return out_root
    if out_root.exists() and not out_root.is_dir():
        raise UserError(f"{out_root}: exists and is not a folder; cannot write the demo dataset there")
    if out_root.is_dir() and any(out_root.iterdir()) and not (out_root / INFO_FILE).exists():
        raise UserError(
            f"{out_root}: folder is not empty and holds no {INFO_FILE}, so it is not a demo written by "
            "demo_data; remove it or choose another folder"
        )

    with staged_folder(out_root, "demo generation") as staging:
        tasks = []
        for split, split_code, folder, annotations in _SPLITS:
            images = staging / folder / "images"
            try:
                images.mkdir(parents=True)
            except OSError as error:
                raise UserError(f"{images}: cannot create the demo folder ({error.strerror})") from None
            for class_id, count in enumerate(info[f"{split}_counts"]):
                for index in range(count):
                    path = images / image_file_name(split, class_id, index)
                    tasks.append((str(path), seed, split_code, class_id, index, image_size))
        map_parallel(_write_image, tasks, workers or runtime.available_cores(), "generating demo images")

        for split, _, folder, annotations in _SPLITS:
            entries = [
                {"image_id": image_file_name(split, class_id, index), "disease_class": class_id}
                for class_id, count in enumerate(info[f"{split}_counts"])
                for index in range(count)
            ]
            write_json(staging / folder / annotations, entries)
        write_csv(staging / CLASS_NAMES_FILE, pd.DataFrame({"id": range(NUM_CLASSES), "name": CLASS_NAMES}))
        write_json(staging / INFO_FILE, info)
    return out_root
