"""Smoke runs of the benchmark scripts: each finishes on a tiny budget and writes its tables.

Benchmarks are not tests; these only check the scripts still run end to end and produce their reports.
"""
import re

import pandas as pd
import pytest

from benchmarks import ablation, report, speed

TINY_MODEL = ["--model", "test_efficientnet", "--batch-size", "8", "--workers", "0"]


def table_rows(markdown, first_cell):
    return [line for line in markdown.splitlines() if line.startswith(f"| {first_cell}")]


def test_ablation_writes_one_row_per_requested_row(tiny_cleaned, tmp_path, capsys):
    rows = ["baseline", "two_stage", "fixed"]
    argv = ["--data-dir", str(tiny_cleaned), "--out", str(tmp_path), "--rows", *rows, "--epochs", "2",
            "--img-size", "40", "--baseline-img-size", "32", "--no-pretrained", *TINY_MODEL]
    ablation.main(argv)
    report = (tmp_path / "ablation.md").read_text()
    for row in rows:
        [line] = table_rows(report, f"{row} |")
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        # accuracy, balanced accuracy, macro-F1, then many/medium/few-shot: no class has > 100 images here
        assert all(re.fullmatch(r"\d+\.\d", cell) for cell in cells[1:4] + cells[5:7]) and cells[4] == "–", line
        assert re.fullmatch(r"\d+ / 2", cells[7]), line  # best epoch of the 2-epoch budget
    assert "python benchmarks/ablation.py" in report and "nproc" in report
    assert (tmp_path / "ablation.png").stat().st_size > 0
    # Two-stage rows split the budget: 1 head epoch + 1 full epoch.
    assert (tmp_path / "runs" / "fixed_seed0" / "head" / "best.pth").exists()

    # A second call trains nothing: every run is already complete.
    capsys.readouterr()
    ablation.main(argv)
    assert "0 stages to train" in capsys.readouterr().out
    # Another budget in the same --out would mix old and new results: refused before anything trains.
    with pytest.raises(SystemExit):
        ablation.main([*argv, "--baseline-img-size", "40"])
    assert "baseline_seed0/full: was trained with other settings" in capsys.readouterr().err


def test_ablation_names_the_missing_dataset(tmp_path, capsys):
    with pytest.raises(SystemExit):
        ablation.main(["--data-dir", str(tmp_path / "nothing"), "--out", str(tmp_path)])
    assert "python analyze_data.py" in capsys.readouterr().err


def test_speed_writes_its_tables(tiny_cleaned, tmp_path):
    speed.main(["--data-dir", str(tiny_cleaned), "--out", str(tmp_path), "--model", "test_efficientnet",
                "--img-size", "32", "--batch-size", "4", "--steps", "2", "--workers", "1", "--pipeline-workers", "0",
                "1", "--pipeline-seconds", "0.1", "--photos", "2", "--photo-size", "120x80", "--max-side", "40",
                "--device", "cpu"])
    report = (tmp_path / "speed.md").read_text()
    assert len(table_rows(report, "0 |")) == 1 and len(table_rows(report, "1 |")) == 1  # pipeline per worker count
    for measurement in ("full stage training", "head stage training", "evaluation"):
        assert len(table_rows(report, measurement)) == 2, measurement  # in memory and through the loader
    assert len(re.findall(r"\| (met|MISSED) \|", report)) == 3
    assert "Peak resident memory" in report and "nproc" in report


def test_the_report_says_when_each_group_of_runs_ended_and_which_rows_have_no_record():
    runs = pd.DataFrame({"training": ["plain", "plain", "outlier_exposure", "outlier_exposure", "outlier_exposure"],
                         "finished_at": [None, None, "2026-12-07T11:10", "2026-12-07T11:37", None],
                         "load_average": [None, None, 1.42, 2.31, None]})
    line = report.runs_ended_line(runs, "training")
    assert line == ("- When the runs ended (local time): plain: 2 row(s) of an earlier report without a record; "
                    "outlier exposure: 2026-12-07 11:10 to 2026-12-07 11:37, load average 1.4-2.3 as each ended "
                    "(1 row(s) of an earlier report without a record).")
    stamp = report.run_end_stamp()
    assert pd.Timestamp(stamp["finished_at"]) <= pd.Timestamp.now() and stamp["load_average"] >= 0
