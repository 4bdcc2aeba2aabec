import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from leafdisease.data.demo_data import (  # noqa: E402
    CLASS_NAMES,
    FULL_TRAIN_COUNTS,
    TRAIN_ANNOTATIONS,
    TRAIN_DIR,
    VAL_ANNOTATIONS,
    VAL_DIR,
    demo_train_counts,
    demo_val_counts,
    generate_demo,
    render_leaf,
)
from leafdisease.data.demo_data import writer as demo_writer  # noqa: E402
from leafdisease.utils.errors import UserError  # noqa: E402

TINY = dict(scale=0.002, image_size=48, seed=3)

EXPECTED_NAMES = """Apple_healthy Apple_scab_general Apple_scab_serious Apple_frogeye_spot Apple_cedar_rust_general
Apple_cedar_rust_serious Cherry_healthy Cherry_powdery_mildew_general Cherry_powdery_mildew_serious
Corn_healthy Corn_gray_leaf_spot_general Corn_gray_leaf_spot_serious Corn_rust_general
Corn_rust_serious Corn_leaf_spot_general Corn_leaf_spot_serious Corn_dwarf_mosaic Grape_healthy
Grape_black_rot_general Grape_black_rot_serious Grape_black_measles_general
Grape_black_measles_serious Grape_leaf_blight_general Grape_leaf_blight_serious Citrus_healthy
Citrus_greening_general Citrus_greening_serious Peach_healthy Peach_bacterial_spot_general
Peach_bacterial_spot_serious Pepper_healthy Pepper_scab_general Pepper_scab_serious Potato_healthy
Potato_early_blight_general Potato_early_blight_serious Potato_late_blight_general
Potato_late_blight_serious Strawberry_healthy Strawberry_scorch_general Strawberry_scorch_serious
Tomato_healthy Tomato_powdery_mildew_general Tomato_powdery_mildew_serious
Tomato_bacterial_spot_general Tomato_bacterial_spot_serious Tomato_early_blight_general
Tomato_early_blight_serious Tomato_late_blight_general Tomato_late_blight_serious
Tomato_leaf_mold_general Tomato_leaf_mold_serious Tomato_target_spot_general
Tomato_target_spot_serious Tomato_septoria_leaf_spot_general Tomato_septoria_leaf_spot_serious
Tomato_spider_mite_general Tomato_spider_mite_serious Tomato_yellow_leaf_curl_general
Tomato_yellow_leaf_curl_serious Tomato_mosaic_virus""".split()


def test_class_names_follow_ai_challenger_order():
    assert CLASS_NAMES == tuple(EXPECTED_NAMES)
    assert len(CLASS_NAMES) == 61


def test_full_counts_have_the_ai_challenger_shape():
    counts = np.array(FULL_TRAIN_COUNTS)
    assert len(counts) == 61 and counts.dtype.kind == "i"
    assert counts.sum() == pytest.approx(31718, abs=50)
    assert counts.argmax() == 59 and counts[59] == 2445 and (counts == 2445).sum() == 1
    assert (counts[44], counts[45], counts[53], counts[52], counts[5]) == (1, 1, 22, 43, 40)
    head = counts > 1000
    assert head.sum() == 9 and head[59]
    assert counts[head].sum() / counts.sum() == pytest.approx(0.422, abs=0.005)
    others = np.delete(counts, [59, 44, 45, 53, 52, 5] + list(np.flatnonzero(head)))
    assert others.min() >= 50 and others.max() <= 1000
    assert len(set(others)) > len(others) // 2


def test_demo_counts_scale_down_and_validation_holds_every_class():
    train = demo_train_counts()
    assert 1800 <= sum(train) <= 2200
    assert min(train) == 1 and train[59] == max(train)
    val = demo_val_counts(train)
    assert all(4 <= count <= 30 for count in val)
    assert demo_val_counts([1, 100, 1000]) == (4, 15, 30)
    assert demo_train_counts(0.5)[44] == 1


@pytest.mark.parametrize("class_id", [0, 11, 17, 38, 47, 59])
def test_render_is_deterministic_for_a_seed(class_id):
    first = render_leaf(class_id, np.random.default_rng(5), 64)
    again = render_leaf(class_id, np.random.default_rng(5), 64)
    other = render_leaf(class_id, np.random.default_rng(6), 64)
    assert first.shape == (64, 64, 3) and first.dtype == np.uint8
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)


def test_every_class_renders_at_a_small_size():
    for class_id in range(len(CLASS_NAMES)):
        image = render_leaf(class_id, np.random.default_rng(class_id), 40)
        assert image.shape == (40, 40, 3) and image.dtype == np.uint8
        assert image.std() > 5  # a picture, not a flat fill


def test_disease_changes_the_leaf():
    """Healthy and serious classes of one crop differ on average in colour, not only by noise."""
    healthy = np.mean([render_leaf(41, np.random.default_rng(i), 48).mean(axis=(0, 1)) for i in range(8)], axis=0)
    curled = np.mean([render_leaf(59, np.random.default_rng(i), 48).mean(axis=(0, 1)) for i in range(8)], axis=0)
    assert np.abs(healthy - curled).max() > 5


def _read_split(root, folder, annotations):
    entries = json.loads((root / folder / annotations).read_text())
    assert isinstance(entries, list) and entries
    for entry in entries:
        assert set(entry) == {"image_id", "disease_class"}
        assert isinstance(entry["disease_class"], int) and 0 <= entry["disease_class"] < 61
        assert (root / folder / "images" / entry["image_id"]).is_file()
    return entries


def test_generate_demo_writes_the_ai_challenger_layout(tmp_path):
    root = generate_demo(tmp_path / "demo", workers=2, **TINY)
    assert root == tmp_path / "demo"
    train = _read_split(root, TRAIN_DIR, TRAIN_ANNOTATIONS)
    val = _read_split(root, VAL_DIR, VAL_ANNOTATIONS)
    train_counts = np.bincount([e["disease_class"] for e in train], minlength=61)
    assert train_counts.tolist() == list(demo_train_counts(0.002))
    assert set(e["disease_class"] for e in val) == set(range(61))
    assert len(list((root / TRAIN_DIR / "images").iterdir())) == len(train)
    names = pd.read_csv(root / "class_names.csv")
    assert names.columns.tolist() == ["id", "name"]
    assert names["id"].tolist() == list(range(61)) and tuple(names["name"]) == CLASS_NAMES
    image = cv2.imread(str(root / TRAIN_DIR / "images" / train[0]["image_id"]))
    assert image.shape == (48, 48, 3)
    assert train[0]["image_id"] == "demo_train_00_00000.jpg"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo"]  # no temporary folders left behind


def _file_bytes(root):
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_files_are_byte_identical_whatever_the_worker_count(tmp_path):
    serial = _file_bytes(generate_demo(tmp_path / "serial", workers=1, **TINY))
    parallel = _file_bytes(generate_demo(tmp_path / "parallel", workers=2, **TINY))
    assert serial == parallel
    other_seed = _file_bytes(generate_demo(tmp_path / "other", workers=2, **{**TINY, "seed": 4}))
    assert other_seed.keys() == serial.keys()
    jpgs = [name for name in serial if name.endswith(".jpg")]
    assert all(other_seed[name] != serial[name] for name in jpgs)


def test_second_call_reuses_a_complete_demo(tmp_path, monkeypatch):
    root = generate_demo(tmp_path / "demo", workers=2, **TINY)
    before = _file_bytes(root)

    def must_not_render(*args):
        raise AssertionError("a complete demo was regenerated")

    monkeypatch.setattr(demo_writer, "_write_image", must_not_render)
    assert generate_demo(tmp_path / "demo", workers=1, **TINY) == root
    assert _file_bytes(root) == before


def test_changed_parameters_or_missing_images_regenerate(tmp_path):
    root = generate_demo(tmp_path / "demo", workers=2, **TINY)
    info = json.loads((root / "demo_info.json").read_text())
    generate_demo(root, workers=2, **{**TINY, "image_size": 40})
    assert json.loads((root / "demo_info.json").read_text())["image_size"] == 40 != info["image_size"]
    victim = next((root / VAL_DIR / "images").iterdir())
    victim.unlink()
    generate_demo(root, workers=2, **{**TINY, "image_size": 40})
    assert victim.is_file()


def test_interrupted_run_is_not_taken_for_a_demo(tmp_path, capsys):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    partial = tmp_path / f".demo.staging-{dead.stdout.strip()}-x1y2"  # what a killed generation leaves
    (partial / TRAIN_DIR / "images").mkdir(parents=True)
    (partial / "demo_info.json").write_text("{}")
    running = tmp_path / f".demo.staging-{os.getpid()}-live"  # a generation still running: left alone
    running.mkdir()
    root = generate_demo(tmp_path / "demo", workers=2, **TINY)
    assert (root / "demo_info.json").is_file() and not partial.exists() and running.exists()
    assert f"removed {partial}, left by an interrupted demo generation" in capsys.readouterr().out


def test_refuses_to_replace_a_folder_that_is_not_a_demo(tmp_path):
    precious = tmp_path / "mine" / "photo.jpg"
    precious.parent.mkdir()
    precious.write_bytes(b"not a demo")
    with pytest.raises(UserError, match="mine"):
        generate_demo(precious.parent, workers=1, **TINY)
    assert precious.read_bytes() == b"not a demo"


@pytest.mark.parametrize(
    "bad", [dict(scale=0), dict(scale=float("nan")), dict(image_size=8), dict(seed=-1), dict(workers=0)]
)
def test_bad_parameters_raise_user_errors(tmp_path, bad):
    with pytest.raises(UserError):
        generate_demo(tmp_path / "demo", **{**TINY, **bad})
