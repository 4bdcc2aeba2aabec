"""benchmarks/resolution.py on a tiny generated field13-like ImageFolder: rows of (model, size), each run scored at
its size and 1.25x with and without TTA, CPU minutes recorded, reports written; a second call trains nothing, a
third with another seed adds to the reports."""
import json

import pandas as pd
import pytest
from test_realdata_benchmark import write_image_folder

from benchmarks import resolution


def test_rows_are_trained_scored_four_ways_and_resumed(tmp_path, tiny_profile, capsys):
    source = write_image_folder(tmp_path / "field", {"train": [14, 6, 2], "val": [3, 3, 2], "test": [4, 4, 3]})
    argv = ["--source", str(source), "--data-dir", str(tmp_path / "cleaned"), "--out", str(tmp_path / "out"),
            "--rows", "test_efficientnet@32", "test_efficientnet@40", "--no-pretrained", "--batch-size", "8",
            "--workers", "0"]
    resolution.main(argv)
    runs = pd.read_csv(tmp_path / "out" / "resolution.csv")
    assert len(runs) == 2 * len(resolution.SCORINGS)
    assert sorted(runs["eval_px"].unique()) == [32, 40, 50]  # 40 px scored at 1.25x: 50 px
    first = runs.loc[runs["row"] == "test_efficientnet@32"]
    assert list(first["eval_px"]) == [32, 32, 40, 40] and list(first["tta"]) == [False, True, False, True]
    assert first["tau"].nunique() == 1  # calibrated once, at the training size
    assert runs["test_balanced_acc"].between(0, 1).all() and (runs["cpu_minutes"] > 0).all()
    # Both stages of the shared recipe, at the row's size: 1 head epoch, then 2 full epochs from its best.pth.
    full = json.loads((tmp_path / "out" / "runs" / "resolution" / "test_efficientnet_40_seed0" / "full" /
                       "ablation_run.json").read_text())
    assert full["cpu_seconds"] > 0 and "--img-size" in full["settings"] and "--sampler" in full["settings"]
    report = (tmp_path / "out" / "resolution.md").read_text()
    assert "python benchmarks/resolution.py" in report and "| test_efficientnet@40 | test px + TTA |" in report
    assert "--init-from" in report and "CPU min" in report
    assert (tmp_path / "out" / "resolution.png").stat().st_size > 0

    capsys.readouterr()
    resolution.main(argv)  # a second call trains and scores nothing
    assert "== [" not in capsys.readouterr().out
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "out" / "resolution.csv"), runs)

    # More seeds for one row (the study's second step) add to the reports: the other row stays in them.
    resolution.main([*argv[:argv.index("--rows")], "--rows", "test_efficientnet@32", "--seeds", "1",
                     *argv[argv.index("--no-pretrained"):]])
    runs = pd.read_csv(tmp_path / "out" / "resolution.csv")
    assert runs.groupby("row")["seed"].nunique().to_dict() == {"test_efficientnet@32": 2, "test_efficientnet@40": 1}
    report = (tmp_path / "out" / "resolution.md").read_text()
    assert "| test_efficientnet@32 | train px | 32 | 2 |" in report and "| test_efficientnet@40 | train px | 40 | 1 |" in report


def test_a_malformed_row_is_a_one_line_error(capsys):
    with pytest.raises(SystemExit):
        resolution.main(["--rows", "lite0-128"])
    assert "--rows lite0-128: expected MODEL@SIZE" in capsys.readouterr().err
