"""benchmarks/realdata.py on a tiny generated field13-like ImageFolder (train/val/test): rows, resume, and that tau
is chosen on validation only."""
import json

import cv2
import numpy as np
import pandas as pd
import pytest
import torch

import checkpoint as checkpoint_format
import evaluation
import inference
from benchmarks import realdata


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


@pytest.fixture()
def tiny_profile(monkeypatch):
    monkeypatch.setitem(realdata.PROFILES, "screen", realdata.Profile(
        img_size=32, baseline_img_size=32, epochs=4, head_epochs=1, warmup_epochs=0, crt_epochs=1))


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
    test_metrics, _, _ = evaluation.score_metrics(scored["test"]["scores"], scored["test"]["targets"].numpy(),
                                                  checkpoint, search.tau)
    assert fixed_tau["test_balanced_acc"] == pytest.approx(test_metrics["balanced_acc"])
    assert len(scored["test"]["targets"]) == 11 and len(scored["val"]["targets"]) == 8

    # A second call trains nothing and reports the same numbers.
    capsys.readouterr()
    realdata.main(argv)
    assert "== [" not in capsys.readouterr().out
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "out" / "realdata_screen.csv"), runs)
