"""Issue 3: the whole shell chain (demo preparation, stage 1, stage 2; the baseline) on a tiny demo with a
tiny timm test model, and a re-run that resumes instead of starting over. Issue 11: every path it is given
(DATA_DIR, DEMO_DIR, OUT_ROOT, PRETRAINED_FILE) contains spaces."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import timm
import torch

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tiny_env(tmp_path_factory):
    work = tmp_path_factory.mktemp("chain") / "a folder with spaces"
    return dict(os.environ, PYTHON=sys.executable, DATA_DIR=str(work / "clean data"), DEMO_DIR=str(work / "demo data"),
                DEMO_SCALE="0.004", DEMO_IMAGE_SIZE="40", OUT_ROOT=str(work / "check points"),
                MODEL="test_efficientnet", PRETRAINED="0", IMG_SIZE="32", BATCH_SIZE="16", STAGE1_EPOCHS="1",
                STAGE2_EPOCHS="2", WARMUP_EPOCHS="1", EPOCHS="1", EXTRA_ARGS="--workers 0", OMP_NUM_THREADS="1")


def run_script(name, env):
    result = subprocess.run(["bash", str(ROOT / name)], env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return result.stdout


def test_train_fixed_chains_stage1_into_stage2_on_the_demo(tiny_env, tmp_path):
    import cv2
    import numpy as np
    outliers = tmp_path / "not leaves"  # OUTLIER_DIR reaches both stages (a path with a space)
    outliers.mkdir()
    for index in range(3):
        cv2.imwrite(str(outliers / f"noise {index}.png"), np.random.default_rng(index).integers(0, 256, (40, 40, 3),
                                                                                                np.uint8))
    tiny_env = dict(tiny_env, OUTLIER_DIR=str(outliers))
    output = run_script("train_fixed.sh", tiny_env)
    lines = output.splitlines()
    assert "generating the built-in synthetic demo" in lines[0]  # says so up front
    assert output.index("DEMO MODE") < output.index("== stage 1/2")
    checkpoints = Path(tiny_env["OUT_ROOT"])
    stage1 = torch.load(checkpoints / "task1_stage1" / "best.pth", weights_only=True)
    stage2 = torch.load(checkpoints / "task1_stage2" / "best.pth", weights_only=True)
    assert stage1["stage"] == "head" and stage2["stage"] == "full"
    assert stage2["parent"]["path"].endswith("task1_stage1/best.pth")
    assert stage2["num_classes"] == 61 and stage2["img_size"] == 32
    assert stage2["args"]["class_weights"] == "sqrt" and stage2["args"]["augment"] == "strong"
    assert stage1["args"]["sampler"] == stage2["args"]["sampler"] == "sqrt"  # the recipes' choice on field13
    assert stage1["args"]["outlier_dir"] == stage2["args"]["outlier_dir"] == [str(outliers)]
    assert pd.read_csv(checkpoints / "task1_stage2" / "history.csv")["epoch"].tolist() == [1, 2]
    assert (checkpoints / "task1_stage2" / "training_curves.png").stat().st_size > 0
    assert (Path(tiny_env["DATA_DIR"]) / "metadata" / "class_weights_sqrt.csv").exists()
    # Step 3 calibrated stage 2's best.pth and printed before/after.
    assert output.index("== stage 2/2") < output.index("== calibration") < output.index("before: tau 0")
    assert "logit_adjust_tau" in stage2 and (checkpoints / "task1_stage2" / "tau_calibration.png").exists()

    rerun = run_script("train_fixed.sh", tiny_env)
    assert rerun.count("already done") == 2  # a finished chain is not trained again
    assert "generating the built-in synthetic demo" not in rerun


def test_train_baseline_runs_the_seeds_before_recipe(tiny_env, tmp_path):
    weights = tmp_path / "pre trained" / "test efficientnet.pth"
    weights.parent.mkdir()
    torch.save(timm.create_model("test_efficientnet").state_dict(), weights)
    env = dict(tiny_env, PRETRAINED="1", PRETRAINED_FILE=str(weights), EXTRA_ARGS="--workers 0  --seed 3",
               SELECT_METRIC="acc")
    run_script("train_baseline.sh", env)
    baseline = torch.load(Path(tiny_env["OUT_ROOT"]) / "baseline" / "best.pth", weights_only=True)
    assert baseline["select_metric"] == "acc"  # SELECT_METRIC reaches train.py
    assert baseline["args"]["pretrained_file"] == str(weights) and baseline["args"]["seed"] == 3
    assert baseline["stage"] == "full" and baseline["parent"] is None
    assert baseline["args"]["class_weights"] == "inverse" and baseline["args"]["augment"] == "weak"
    assert baseline["args"]["lr"] == pytest.approx(1e-4) and baseline["args"]["warmup_epochs"] == 0


def test_data_source_text_list_with_val_list_is_cleaned_by_the_shared_preparation(tmp_path):
    """DATA_FORMAT and VAL_LIST reach analyze_data.py (--format, --val-list) from the scripts' shared step."""
    import cv2
    import numpy as np
    source = tmp_path / "my photos"
    source.mkdir()
    for index in range(6):
        cv2.imwrite(str(source / f"leaf {index}.png"), np.full((10, 10, 3), index * 40, np.uint8))
    (source / "train.txt").write_text("".join(f"leaf {i}.png {label}\n" for i, label in
                                              enumerate(["rust", "rust", "blight", "blight"])))
    (source / "val.txt").write_text("leaf 4.png rust\nleaf 5.png blight\n")
    env = dict(os.environ, PYTHON=sys.executable, DATA_SOURCE=str(source / "train.txt"), DATA_FORMAT="list",
               VAL_LIST=str(source / "val.txt"), DATA_DIR=str(tmp_path / "clean data"))
    result = subprocess.run(["bash", "-c", "set -euo pipefail; source scripts/common.sh; prepare_data; echo $PROFILE"],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert result.stdout.strip().endswith("real")
    classes = pd.read_csv(tmp_path / "clean data" / "metadata" / "classes.csv")
    assert classes[["name", "train_count", "val_count"]].values.tolist() == [["blight", 2, 1], ["rust", 2, 1]]


def prepare(env):
    result = subprocess.run(["bash", "-c", "set -euo pipefail; source scripts/common.sh; prepare_data"],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return result.stdout


def test_large_photos_are_cached_at_the_size_training_needs_unless_max_side_says_otherwise(tmp_path):
    """Issue 23: photos far larger than training's crops are cached smaller when cleaning (MAX_SIDE unset: auto),
    sized for IMG_SIZE; MAX_SIDE=off keeps the originals."""
    import cv2
    import numpy as np
    rng = np.random.default_rng(0)
    for name in ("rust/a.jpg", "rust/b.jpg", "blight/c.jpg", "blight/d.jpg"):
        (tmp_path / "photos" / name).parent.mkdir(parents=True, exist_ok=True)
        assert cv2.imwrite(str(tmp_path / "photos" / name), cv2.resize(rng.integers(0, 256, (6, 8, 3), np.uint8), (400, 300)))
    env = dict(os.environ, PYTHON=sys.executable, DATA_SOURCE=str(tmp_path / "photos"), IMG_SIZE="64")

    def summary(data_dir):
        return json.loads((tmp_path / data_dir / "metadata" / "summary.json").read_text())

    # 64 px training needs a 91 px short side; the photos' 300 px is more than twice that: cached at half size.
    output = prepare(dict(env, DATA_DIR=str(tmp_path / "auto")))
    assert "--max-side auto: 4 of 4 images are at least twice the short side of 91 px" in output
    assert summary("auto")["image_sizes"] == {"median_short_side": 150, "median_long_side": 200}
    assert summary("auto")["totals"]["reencoded"] == 4

    output = prepare(dict(env, DATA_DIR=str(tmp_path / "off"), MAX_SIDE="off"))
    assert "--max-side auto:" not in output and "clean again with --max-side auto --img-size 64." in output
    assert summary("off")["image_sizes"] == {"median_short_side": 300, "median_long_side": 400}

    # At the recipes' 192 px (IMG_SIZE unset) the same photos are not large: the originals are read.
    output = prepare(dict(env, DATA_DIR=str(tmp_path / "default"), IMG_SIZE=""))
    assert "no image is at least twice the short side of 272 px that training at 192 px needs" in output
    assert summary("default")["totals"]["reencoded"] == 0


def test_the_baseline_script_caches_for_the_resolution_it_trains_at(tmp_path):
    """Issue 34: train.py refuses a cache made for a smaller model, so train_baseline.sh (recipes/baseline.yaml's
    224 px) cleans for its own recipe when IMG_SIZE is unset, not for the fixed recipes' 192 px. The commands the
    preparation runs, through a stand-in PYTHON that records them."""
    recorder = tmp_path / "python"
    recorder.write_text(f"#!/bin/sh\necho \"$@\" >> '{tmp_path / 'calls.txt'}'\n")
    recorder.chmod(0o755)
    env = dict(os.environ, PYTHON=str(recorder), DATA_SOURCE=str(tmp_path / "photos"), DATA_DIR=str(tmp_path / "c"))
    env.pop("IMG_SIZE", None)
    for script, recipe in (("train_baseline.sh", "baseline"), ("train_fixed.sh", "fixed_stage2")):
        (tmp_path / "calls.txt").unlink(missing_ok=True)
        line = next(line for line in (ROOT / script).read_text().splitlines() if line.startswith("prepare_data"))
        result = subprocess.run(["bash", "-c", f"set -euo pipefail; source scripts/common.sh; {line}"], cwd=ROOT,
                                env=env, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        cleaning = (tmp_path / "calls.txt").read_text().splitlines()[0]
        assert cleaning.startswith("analyze_data.py") and f"--max-side auto --recipe {recipe}" in cleaning


def test_analyze_data_sizes_the_cache_for_a_recipe(tmp_path, capsys):
    import cv2
    import numpy as np

    import analyze_data
    rng = np.random.default_rng(0)
    for name in ("rust/a.jpg", "rust/b.jpg", "blight/c.jpg", "blight/d.jpg"):
        (tmp_path / "photos" / name).parent.mkdir(parents=True, exist_ok=True)
        assert cv2.imwrite(str(tmp_path / "photos" / name), cv2.resize(rng.integers(0, 256, (6, 8, 3), np.uint8),
                                                                      (800, 700)))
    analyze_data.main(["--source", str(tmp_path / "photos"), "--out", str(tmp_path / "c"), "--max-side", "auto",
                       "--recipe", "baseline", "--workers", "1"])
    assert "the short side of 317 px that training at 224 px needs" in capsys.readouterr().out
    assert json.loads((tmp_path / "c" / "metadata" / "summary.json").read_text())["cache"]["short_side"] == 317
    assert analyze_data.default_img_size(None, "baseline") == 224
    assert analyze_data.default_img_size(str(ROOT / "data" / "nowhere"), "fixed_stage1") == 192
