"""Issue 6, bad input end to end: each broken dataset gives a one-line error or a rejected.csv row, never a
traceback, and every accepted image is still trained on."""
import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pandas as pd
import pytest

import analyze_data

ROOT = Path(__file__).resolve().parents[2]
TRAIN_DIR, TRAIN_JSON = "AgriculturalDisease_trainingset", "AgriculturalDisease_train_annotations.json"
VAL_DIR, VAL_JSON = "AgriculturalDisease_validationset", "AgriculturalDisease_validation_annotations.json"


def make_aichallenger(root, train_per_class=4, val_per_class=2, classes=(0, 1, 2)):
    """A small valid AI Challenger layout; returns {split: list of annotation entries}."""
    rng = np.random.default_rng(7)
    entries = {}
    for split, folder, per_class in (("train", TRAIN_DIR, train_per_class), ("val", VAL_DIR, val_per_class)):
        images = root / folder / "images"
        images.mkdir(parents=True)
        entries[split] = []
        for class_id in classes:
            for index in range(per_class):
                name = f"{split}_{class_id}_{index}.jpg"
                pixels = rng.integers(0, 255, (36, 36, 3)).astype(np.uint8)
                cv2.imwrite(str(images / name), pixels)
                entries[split].append({"image_id": name, "disease_class": class_id})
    write_annotations(root, entries)
    return entries


def write_annotations(root, entries):
    (root / TRAIN_DIR / TRAIN_JSON).write_text(json.dumps(entries["train"]))
    (root / VAL_DIR / VAL_JSON).write_text(json.dumps(entries["val"]))


def run(script, *args, cwd=ROOT):
    return subprocess.run([sys.executable, str(ROOT / script), *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=300)


def assert_one_line_error(result, *fragments):
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def images_dir(root):
    return root / TRAIN_DIR / "images"


# Each case: how to break a valid dataset, then the fragments its one-line error must contain.
FATAL_CASES = {
    "json_not_a_list": (lambda root, e: (root / TRAIN_DIR / TRAIN_JSON).write_text('{"image_id": "x"}'),
                        [TRAIN_JSON, "list"]),
    "label_out_of_range": (lambda root, e: (e["train"][1].update(disease_class=61), write_annotations(root, e)),
                           [TRAIN_JSON, "entry 1", "61"]),
    "label_negative": (lambda root, e: (e["train"][2].update(disease_class=-1), write_annotations(root, e)),
                       [TRAIN_JSON, "entry 2", "-1"]),
    "label_not_a_number": (lambda root, e: (e["train"][3].update(disease_class="rust"), write_annotations(root, e)),
                           [TRAIN_JSON, "entry 3", "rust"]),
    "empty_dataset": (lambda root, e: write_annotations(root, {"train": [], "val": e["val"]}),
                      [TRAIN_JSON, "no entries"]),
    "class_in_val_that_train_lacks": (
        lambda root, e: write_annotations(root, {"train": [x for x in e["train"] if x["disease_class"] != 2],
                                                 "val": e["val"]}),
        ["2"]),
}


@pytest.mark.parametrize("case", sorted(FATAL_CASES))
def test_fatal_defects_give_one_line_error_and_write_nothing(tmp_path, case, capsys):
    source = tmp_path / "source"
    entries = make_aichallenger(source)
    breaker, fragments = FATAL_CASES[case]
    breaker(source, entries)
    # In-process for speed; the subprocess tests below check the real exit path once.
    with pytest.raises(SystemExit) as exit_info:
        analyze_data.main(["--source", str(source), "--out", str(tmp_path / "cleaned"), "--workers", "1"])
    captured = capsys.readouterr()
    assert_one_line_error(SimpleNamespace(returncode=exit_info.value.code, stdout=captured.out,
                                          stderr=captured.err), *fragments)
    assert not (tmp_path / "cleaned" / "metadata").exists()


def test_bad_files_are_rejected_with_reasons_and_the_rest_is_trained_on(tmp_path):
    source = tmp_path / "source"
    entries = make_aichallenger(source)
    images = images_dir(source)
    (images / "train_0_0.jpg").write_bytes(b"")                                            # zero-byte
    good_bytes = (images / "train_0_1.jpg").read_bytes()
    (images / "train_0_1.jpg").write_bytes(good_bytes[: len(good_bytes) // 2])             # truncated
    (images / "train_1_0.jpg").write_text("this is not an image")                          # non-image
    (images / "train_1_1.jpg").unlink()                                                    # missing
    (images / "train_2_0.jpg").write_bytes((images / "train_2_1.jpg").read_bytes())        # duplicate
    repeated = dict(entries["train"][-1])
    entries["train"].append(repeated)                                                      # listed twice
    write_annotations(source, entries)
    cleaned = tmp_path / "cleaned"
    result = run("analyze_data.py", "--source", source, "--out", cleaned)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    rejected = pd.read_csv(cleaned / "metadata" / "rejected.csv")
    reasons = dict(zip(rejected["path"].map(lambda p: Path(p).name), rejected["reason"]))
    assert reasons["train_0_0.jpg"] == "empty_file"
    assert reasons["train_0_1.jpg"] == "truncated"
    assert reasons["train_1_0.jpg"] == "not_image"
    assert reasons["train_1_1.jpg"] == "missing_file"
    assert {reasons.get("train_2_0.jpg"), reasons.get("train_2_1.jpg")} & {"duplicate"}
    assert reasons[repeated["image_id"]] == "duplicate_entry"  # the official JSON's repeats: kept once

    train_table = pd.read_csv(cleaned / "metadata" / "train.csv")
    accepted = len(entries["train"]) - 6
    assert len(train_table) == accepted
    output = tmp_path / "run"
    result = run("train.py", "--data-dir", cleaned, "--output", output, "--model", "test_efficientnet",
                 "--no-pretrained", "--img-size", "32", "--batch-size", str(accepted), "--epochs", "1",
                 "--workers", "0", "--stage", "head")
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"data: {accepted} train / {len(entries['val'])} val images" in result.stdout
    history = pd.read_csv(output / "history.csv")
    assert history["train_images_per_s"].iloc[0] > 0
    # one batch holding every accepted image: each was decoded and trained on once
    assert int(round(history["epoch_seconds"].iloc[0] * history["train_images_per_s"].iloc[0])) == accepted


def test_missing_source_and_unknown_layout(tmp_path):
    assert_one_line_error(run("analyze_data.py", "--source", tmp_path / "nope", "--out", tmp_path / "c"), "nope")
    (tmp_path / "weird").mkdir()
    (tmp_path / "weird" / "notes.txt").write_text("hello")
    assert_one_line_error(run("analyze_data.py", "--source", tmp_path / "weird", "--out", tmp_path / "c"), "weird")
