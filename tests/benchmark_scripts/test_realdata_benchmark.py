"""benchmarks/realdata.py on a tiny generated field13-like ImageFolder (train/val/test): rows, resume, and that tau
is chosen on validation only."""
import json

import cv2
import numpy as np
import pandas as pd
import pytest
import torch

from benchmarks import realdata
from leafdisease.deployment import inference
from leafdisease.evaluation import reports
from leafdisease.training import checkpoint as checkpoint_format


def write_image_folder(root, counts_by_split, image_size=36, seed=0):
    rng = np.random.default_rng(seed)
    for split, counts in counts_by_split.items():
        for class_index, count in enumerate(counts):
            folder = root / split / f"leaf_{class_index}"
            folder.mkdir(parents=True)
            colour = np.array([(class_index * 90) % 256, (class_index * 40) % 256, 200 - class_index * 60])
            for number in range(count):
                noise = rng.integers(0, 60, (image_size, image_size, 3))
                cv2.imwrite(str(folder / f"{split}_{number}.jpg"), np.clip(colour + noise, 0, 255).astype(np.uint8))
    return root


def test_rows_are_trained_scored_and_resumed(tmp_path, tiny_profile, capsys):
    source = write_image_folder(tmp_path / "field", {"train": [14, 6, 2], "val": [3, 3, 2], "test": [4, 4, 3]})
    rows = ["plain", "fixed", "fixed_tau", "crt"]
    argv = ["--source", str(source), "--data-dir", str(tmp_path / "cleaned"), "--out", str(tmp_path / "out"),
            "--rows", *rows, "--model", "test_efficientnet", "--no-pretrained", "--batch-size", "8", "--workers", "0"]
    realdata.main(argv)
    runs = pd.read_csv(tmp_path / "out" / "realdata_screen.csv")
    assert list(runs["row"]) == rows and runs["test_balanced_acc"].between(0, 1).all()
    report = (tmp_path / "out" / "realdata_screen.md").read_text()
    assert all(f"| {row} |" in report for row in rows) and "python benchmarks/realdata.py" in report
    assert (tmp_path / "out" / "realdata_screen.png").stat().st_size > 0

    run_folder = tmp_path / "out" / "runs" / "screen"
    crt = torch.load(run_folder / "crt_seed0" / "crt" / "best.pth", weights_only=True)
    assert crt["stage"] == "head" and crt["args"]["sampler"] == "inverse" and crt["args"]["class_weights"] == "none"
    assert crt["parent"]["path"].endswith("crt_seed0/full/best.pth")
    # Every row spends the same budget: 4 epochs in one stage, 1 + 3, or 1 + 2 + 1 with cRT.
    epochs = {stage: len(torch.load(run_folder / "crt_seed0" / stage / "best.pth", weights_only=True)["history"])
              for stage in ("head", "full", "crt")}
    assert epochs == {"head": 1, "full": 2, "crt": 1}

    # fixed_tau evaluates fixed's runs: tau picked on val scores alone, then applied to test.
    fixed_tau = json.loads((run_folder / "fixed_seed0" / "fixed_tau_result.json").read_text())
    checkpoint = checkpoint_format.load(run_folder / "fixed_seed0" / "full" / "best.pth")
    scored = torch.load(run_folder / "fixed_seed0" / "full" / "scores.pt", weights_only=True)
    search = inference.search_tau(scored["val"]["scores"], scored["val"]["targets"].numpy(), checkpoint["train_counts"],
                                  realdata.TAU_GRID, 100, 20)
    assert fixed_tau["tau"] == search.tau
    test_metrics, _, _ = reports.score_metrics(scored["test"]["scores"], scored["test"]["targets"].numpy(),
                                                  checkpoint, search.tau)
    assert fixed_tau["test_balanced_acc"] == pytest.approx(test_metrics["balanced_acc"])
    assert len(scored["test"]["targets"]) == 11 and len(scored["val"]["targets"]) == 8

    # A second call trains nothing and reports the same numbers.
    capsys.readouterr()
    realdata.main(argv)
    assert "== [" not in capsys.readouterr().out
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "out" / "realdata_screen.csv"), runs)


def test_seed_shaped_counts_follow_the_seed_profile_and_fit_the_photos():
    counts = realdata.seed_shaped_counts([200, 120, 300, 60, 30, 7, 14, 80, 20, 10, 45, 5, 4])
    # The largest class is capped at 300; the three smallest get the seed's 2, 1 and 1 photos.
    assert counts[2] == 300 and sorted(counts)[:3] == [1, 1, 2]
    assert (counts <= [200, 120, 300, 60, 30, 7, 14, 80, 20, 10, 45, 5, 4]).all()
    assert list(counts) == [148, 105, 300, 59, 30, 2, 14, 73, 20, 10, 45, 1, 1]


def test_seed_shaped_variant_trains_on_the_subsample_and_reports_the_tiny_classes(tmp_path, tiny_profile):
    source = write_image_folder(tmp_path / "field", {"train": [20, 12, 8, 4, 3], "val": [2, 2, 2, 2, 1],
                                                     "test": [3, 3, 3, 2, 2]})
    argv = ["--source", str(source), "--variant", "seed-shaped", "--out", str(tmp_path / "out"),
            "--data-dir", str(tmp_path / "cleaned"), "--rows", "sampler_unweighted", "--model", "test_efficientnet",
            "--no-pretrained", "--batch-size", "8", "--workers", "0"]
    realdata.main(argv)
    kept = {folder.name: len(list(folder.iterdir()))
            for folder in (tmp_path / "out" / "sources" / "field_seed_shaped" / "train").iterdir()}
    assert sorted(kept.values()) == [1, 1, 2, 12, 20]
    classes = pd.read_csv(tmp_path / "cleaned" / "metadata" / "classes.csv")
    assert sorted(classes["train_count"]) == [1, 1, 2, 12, 20]
    runs = pd.read_csv(tmp_path / "out" / "realdata_screen_seed_shaped.csv")
    assert runs["test_tiny_acc"].between(0, 1).all() and runs["test_prior_acc"].between(0, 1).all()
    result = json.loads((tmp_path / "out" / "runs" / "screen_seed_shaped" / "sampler_unweighted_seed0"
                         / "sampler_unweighted_result.json").read_text())
    tiny = [name for name, count in zip(classes["name"], classes["train_count"]) if count <= 2]
    assert result["test_tiny_acc"] == pytest.approx(np.mean([result["test_recall"][name] for name in tiny]))
    report = (tmp_path / "out" / "realdata_screen_seed_shaped.md").read_text()
    assert "Seed-shaped train split" in report and "leaf_0 20/20" in report


def test_rows_chosen_by_another_metric_train_select_and_calibrate_by_it(tmp_path, tiny_profile):
    """--select-metric prior_acc (a user judged on plain accuracy over a field like training): every stage picks
    best.pth by it, post-hoc tau is searched by it, and the runs and reports get their own names beside the
    default's."""
    source = write_image_folder(tmp_path / "field", {"train": [14, 6, 2], "val": [3, 3, 2], "test": [4, 4, 3]})
    argv = ["--source", str(source), "--data-dir", str(tmp_path / "cleaned"), "--out", str(tmp_path / "out"),
            "--rows", "fixed", "fixed_tau", "--model", "test_efficientnet", "--no-pretrained", "--batch-size", "8",
            "--workers", "0", "--select-metric", "prior_acc"]
    realdata.main(argv)
    run_folder = tmp_path / "out" / "runs" / "screen_select_prior_acc" / "fixed_seed0"
    for stage in ("head", "full"):
        assert torch.load(run_folder / stage / "best.pth", weights_only=True)["args"]["select_metric"] == "prior_acc"
    checkpoint = checkpoint_format.load(run_folder / "full" / "best.pth")
    scored = torch.load(run_folder / "full" / "scores.pt", weights_only=True)
    search = inference.search_tau(scored["val"]["scores"], scored["val"]["targets"].numpy(), checkpoint["train_counts"],
                                  realdata.TAU_GRID, 100, 20, metric="prior_acc")
    assert json.loads((run_folder / "fixed_tau_result.json").read_text())["tau"] == search.tau
    report = (tmp_path / "out" / "realdata_screen_select_prior_acc.md").read_text()
    assert "| row | seeds done | val acc. at train prior |" in report
    assert "validation acc. at train prior (`--select-metric prior_acc`)" in report
    assert not (tmp_path / "out" / "realdata_screen.md").exists()
