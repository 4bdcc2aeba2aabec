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
from sources import AICHALLENGER_SPLITS

SCRIPT = Path(__file__).resolve().parent.parent / "analyze_data.py"
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
    assert result.stderr.strip().splitlines() == ["error: no/such/dataset: no such file or directory"]
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
