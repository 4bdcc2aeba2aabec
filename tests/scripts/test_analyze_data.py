"""analyze_data.py end to end: tiny demo -> data/cleaned + three figures; bad input -> one line, exit 2."""
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from PIL import Image

import analyze_data
from leafdisease.data import demo_data
from leafdisease.data.sources import AICHALLENGER_SPLITS

SCRIPT = Path(__file__).resolve().parents[2] / "analyze_data.py"
TINY_DEMO = ["--demo-scale", "0.002", "--demo-image-size", "48", "--workers", "2"]
FIGURES = ("class_distribution.png", "class_weights_comparison.png", "augmentation_examples.png")


def run_script(args, cwd):
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def test_visualize_without_source_builds_the_demo_then_reuses_it(tmp_path, monkeypatch, capsys):
    first = run_script(["--visualize", *TINY_DEMO], tmp_path)
    assert first.returncode == 0, first.stderr
    assert "generating the built-in synthetic demo" in first.stdout
    assert "Imbalance ratio" in first.stdout and "sqrt" in first.stdout and "effective" in first.stdout

    metadata = tmp_path / "data" / "cleaned" / "metadata"
    for name in ("train.csv", "val.csv", "classes.csv", "rejected.csv", "summary.json", "class_weights_inverse.csv",
                 "class_weights_sqrt.csv", "class_weights_effective.csv"):
        assert (metadata / name).stat().st_size > 0, name
    classes = pd.read_csv(metadata / "classes.csv")
    assert len(classes) == 61 and (classes["train_count"] > 0).all() and (classes["val_count"] > 0).all()
    assert json.loads((metadata / "summary.json").read_text())["format"] == "aichallenger"
    for name in FIGURES:
        with Image.open(tmp_path / "demo_plots" / name) as figure:
            figure.verify()
            assert figure.format == "PNG" and figure.width > 600

    monkeypatch.chdir(tmp_path)
    analyze_data.main([])
    assert "Using the cleaned dataset in data/cleaned" in capsys.readouterr().out


def test_missing_source_is_one_line_on_stderr(tmp_path):
    result = run_script(["--source", "no/such/dataset"], tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == ["error: --source no/such/dataset: no such file or folder"]
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "data").exists()


def test_malformed_annotation_names_file_and_entry(tmp_path, monkeypatch, capsys):
    folder, annotations = AICHALLENGER_SPLITS["train"]
    (tmp_path / "src" / folder / "images").mkdir(parents=True)
    (tmp_path / "src" / folder / annotations).write_text(json.dumps([{"image_id": "a.jpg", "disease_class": "x"}]))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exited:
        analyze_data.main(["--source", "src", "--visualize"])
    assert exited.value.code == 2
    stderr = capsys.readouterr().err
    assert stderr.count("\n") == 1 and "Traceback" not in stderr
    assert f"{annotations}: entry 0 (image_id 'a.jpg'): disease_class 'x' is not an integer" in stderr
    assert not (tmp_path / "data").exists() and not (tmp_path / "demo_plots").exists()


def test_source_csv_with_named_columns(tmp_path, monkeypatch, capsys):
    for index in range(4):
        cv2.imwrite(str(tmp_path / f"leaf{index}.png"), np.full((10, 10, 3), index * 40, np.uint8))
    (tmp_path / "table.csv").write_text("picture,disease\nleaf0.png,rust\nleaf1.png,rust\nleaf2.png,blight\n"
                                        "leaf3.png,rust\n")
    monkeypatch.chdir(tmp_path)
    analyze_data.main(["--source", "table.csv", "--path-column", "picture", "--label-column", "disease",
                       "--out", "cleaned", "--workers", "1"])
    out = capsys.readouterr().out
    assert "Cleaned 4 listed images" in out
    classes = pd.read_csv(tmp_path / "cleaned" / "metadata" / "classes.csv")
    assert classes[["name", "train_count", "val_count"]].values.tolist() == [["blight", 1, 0], ["rust", 2, 1]]


def test_source_aichallenger_lists_get_official_names_and_missing_files_are_rejected(tmp_path, monkeypatch, capsys):
    train_folder, _ = AICHALLENGER_SPLITS["train"]
    val_folder, _ = AICHALLENGER_SPLITS["val"]
    images = {f"{train_folder}/images/{name}": (index * 25, label) for index, (name, label) in enumerate(
        [("a 1.jpg", 0), ("b.jpg", 0), ("c.jpg", 60), ("d.jpg", 60)])}
    images[f"{val_folder}/images/e.jpg"] = (200, 0)
    images[f"{val_folder}/images/f.jpg"] = (225, 60)
    for relative, (value, _) in images.items():
        (tmp_path / "src" / relative).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(tmp_path / "src" / relative), np.full((10, 10, 3), value, np.uint8))
    (tmp_path / "src" / train_folder / "train_list.txt").write_text(
        "images\\a 1.jpg 0\r\nimages\\b.jpg 0\r\nimages\\c.jpg 60\r\n"
        f"{train_folder}\\images\\d.jpg 60\r\nimages\\lost.jpg 60\r\n\r\n")
    (tmp_path / "src" / val_folder / "ttest_list.txt").write_text("images/e.jpg 0\nimages/f.jpg 60\n")
    monkeypatch.chdir(tmp_path)
    analyze_data.main(["--source", "src", "--out", "cleaned", "--workers", "1"])
    assert "(aichallenger-list)" in capsys.readouterr().out
    classes = pd.read_csv(tmp_path / "cleaned" / "metadata" / "classes.csv")
    assert classes[["id", "name", "train_count", "val_count"]].values.tolist() == [
        [0, "Apple_healthy", 2, 1], [60, "Tomato_mosaic_virus", 2, 1]]
    rejected = pd.read_csv(tmp_path / "cleaned" / "metadata" / "rejected.csv")
    assert rejected[["reason", "label", "split"]].values.tolist() == [["missing_file", 60, "train"]]
    assert rejected["path"].iloc[0].endswith(f"{train_folder}/images/lost.jpg")


def test_source_text_list_with_val_list(tmp_path, monkeypatch, capsys):
    for index in range(6):
        cv2.imwrite(str(tmp_path / f"leaf{index}.png"), np.full((10, 10, 3), index * 40, np.uint8))
    (tmp_path / "train.txt").write_text("leaf0.png rust\nleaf1.png rust\nleaf2.png blight\nleaf3.png blight\n")
    (tmp_path / "val.txt").write_text("leaf4.png rust\nleaf5.png blight\n")
    monkeypatch.chdir(tmp_path)
    analyze_data.main(["--source", "train.txt", "--format", "list", "--out", "cleaned", "--workers", "1"])
    assert "Cleaned 4 listed images" in capsys.readouterr().out
    analyze_data.main(["--source", "train.txt", "--val-list", "val.txt", "--out", "cleaned", "--workers", "1"])
    assert "Cleaned 6 listed images" in capsys.readouterr().out  # a new val list is a new source, not a reuse
    classes = pd.read_csv(tmp_path / "cleaned" / "metadata" / "classes.csv")
    assert classes[["name", "train_count", "val_count"]].values.tolist() == [["blight", 2, 1], ["rust", 2, 1]]


def test_val_list_needs_a_list_source(tmp_path):
    result = run_script(["--val-list", "val.txt"], tmp_path)
    assert result.returncode == 2 and "--val-list goes with --source" in result.stderr
    (tmp_path / "src" / "class_a").mkdir(parents=True)
    cv2.imwrite(str(tmp_path / "src" / "class_a" / "x.png"), np.zeros((8, 8, 3), np.uint8))
    result = run_script(["--source", "src", "--val-list", "val.txt"], tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        "error: --val-list val.txt: only for --format list, and src is read as imagefolder"]


def test_photos_far_larger_than_training_needs_get_a_max_side_advice(tmp_path, monkeypatch, capsys):
    """Issue 14: raw camera photos make decoding the loader's bottleneck; the report says so and names --max-side
    auto, which caches them at the size training reads them (issue 23: at train.py's default 192 px, whose smallest
    crop needs a 272 px short side, 1500 x 1000 photos are read at half size). An explicit --max-side still works."""
    rng = np.random.default_rng(0)
    for name in ("rust/a.jpg", "rust/b.jpg", "blight/c.jpg", "blight/d.jpg"):
        (tmp_path / "photos" / name).parent.mkdir(parents=True, exist_ok=True)
        smooth = cv2.resize(rng.integers(0, 256, (8, 12, 3), dtype=np.uint8), (1500, 1000))
        assert cv2.imwrite(str(tmp_path / "photos" / name), smooth)
    monkeypatch.chdir(tmp_path)
    analyze_data.main(["--source", "photos", "--out", "cleaned", "--workers", "1", "--val-fraction", "0.5"])
    summary = json.loads((tmp_path / "cleaned" / "metadata" / "summary.json").read_text())
    assert summary["image_sizes"] == {"median_short_side": 1000, "median_long_side": 1500}
    assert "clean again with --max-side auto." in capsys.readouterr().out

    analyze_data.main(["--source", "photos", "--out", "cached", "--workers", "1", "--val-fraction", "0.5",
                       "--max-side", "auto"])
    summary = json.loads((tmp_path / "cached" / "metadata" / "summary.json").read_text())
    assert summary["image_sizes"] == {"median_short_side": 500, "median_long_side": 750}
    assert summary["cache"] == {"short_side": 272, "reduced": 4, "images": 4}
    output = capsys.readouterr().out
    assert "4 of 4 images are at least twice the short side of 272 px" in output
    assert "clean again with --max-side" not in output

    analyze_data.main(["--source", "photos", "--out", "capped", "--workers", "1", "--val-fraction", "0.5",
                       "--max-side", "680"])
    summary = json.loads((tmp_path / "capped" / "metadata" / "summary.json").read_text())
    assert summary["image_sizes"] == {"median_short_side": 453, "median_long_side": 680}
    assert "--max-side" not in capsys.readouterr().out


def test_image_size_advice_only_for_images_at_least_twice_the_needed_side(capsys):
    analyze_data.print_image_size_advice({"image_sizes": {"median_short_side": 905, "median_long_side": 1200}}, 320)
    analyze_data.print_image_size_advice({}, 320)  # cleaned before sizes were recorded
    assert capsys.readouterr().out == ""
    analyze_data.print_image_size_advice({"image_sizes": {"median_short_side": 512, "median_long_side": 512}}, 128)
    advice = capsys.readouterr().out
    assert "short side of 182 px" in advice and "--max-side auto --img-size 128." in advice


def test_image_size_advice_for_photos_smaller_than_the_training_size(capsys):
    analyze_data.print_image_size_advice({"image_sizes": {"median_short_side": 256, "median_long_side": 256}}, 320)
    advice = capsys.readouterr().out
    assert "short side (256 px) is below the 320 px training size" in advice
    assert "1.6x the compute per image" in advice and "--img-size 256 (IMG_SIZE for train_fixed.sh)" in advice
    analyze_data.print_image_size_advice({"image_sizes": {"median_short_side": 256, "median_long_side": 256}}, 256)
    assert capsys.readouterr().out == ""
    # Issue 34: never a size train.py refuses (photos of 24 px: train.py takes 32 and up).
    analyze_data.print_image_size_advice({"image_sizes": {"median_short_side": 24, "median_long_side": 24}}, 192)
    advice = capsys.readouterr().out
    assert "--img-size 24" not in advice and "the smallest size train.py takes is --img-size 32" in advice


def test_advice_and_cache_are_sized_for_the_resolution_the_data_is_trained_at(tmp_path):
    """The shell scripts train the built-in demo at its profile's size, anything else at the recipes'."""
    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / demo_data.INFO_FILE).write_text("{}")
    assert analyze_data.default_img_size(str(tmp_path / "demo")) == analyze_data.DEMO_IMG_SIZE == 128
    assert analyze_data.default_img_size(str(tmp_path)) == analyze_data.TRAINING_IMG_SIZE
    assert analyze_data.default_img_size(None) == analyze_data.TRAINING_IMG_SIZE
