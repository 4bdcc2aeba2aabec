"""Issue 14: benchmarks/gpu_check.sh in its quick CPU mode: every part runs and is reported, and a part that
fails or runs out of time is recorded while the others still run."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PARTS = ("environment", "demo-data", "cuda-tests", "train-demo", "speed", "torchrun")


def run_check(work, **settings):
    env = dict(os.environ, PYTHON=sys.executable, GPU_CHECK_CPU="1", GPU_CHECK_WORK=str(work), OMP_NUM_THREADS="1",
               **settings)
    result = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh")], env=env, capture_output=True,
                            text=True, timeout=600)
    return result, (work / "gpu_check.md").read_text()


def section(report, part):
    match = re.search(rf"^## {part}: (.*?)$(.*?)(?=^## |\Z)", report, re.M | re.S)
    assert match, f"no section for {part}"
    return match.group(1), match.group(2)


@pytest.fixture(scope="module")
def cpu_check(tmp_path_factory):
    work = tmp_path_factory.mktemp("gpu_check")
    return work, *run_check(work)


def test_cpu_mode_runs_every_part_and_reports_it(cpu_check):
    work, result, report = cpu_check
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert report.startswith("# GPU check, quick CPU mode (tests the script; these are not GPU figures)")
    assert "every part ok" in report and "- Command (from the repository root): `GPU_CHECK_CPU=1 bash" in report
    for part in PARTS:
        verdict, _ = section(report, part)
        assert verdict == "ok", part
    assert "torch " in section(report, "environment")[1]
    # Without a GPU the CUDA tests are collected and skip (their CPU-only neighbours run with the suite).
    assert re.search(r"tests/training/test_cuda.py: \d+ skipped, 3 deselected", section(report, "cuda-tests")[1])
    training = section(report, "train-demo")[1]
    assert "== stage 1/2" in training and training.count("epoch 1/1 |") == 2
    speed = section(report, "speed")[1]
    assert "full stage training | random tensors in memory" in speed and "| evaluation | DataLoader" in speed
    assert "Whole loop / model-only" in speed
    assert "distributed: gloo, 1 process(es)" in section(report, "torchrun")[1]
    # Without GPU_CHECK_REPORT the CPU mode writes into its work folder, never into benchmarks/reports/gpu.md.
    assert (work / "gpu_check.md").exists()


def test_a_part_out_of_time_is_recorded_and_the_rest_still_run(cpu_check):
    work = cpu_check[0]  # reuses its demo data
    result, report = run_check(work, GPU_CHECK_PARTS="train-demo torchrun", GPU_CHECK_LIMIT_TRAIN_DEMO="2")
    assert result.returncode == 1
    verdict, body = section(report, "train-demo")
    assert verdict == "TIMED OUT at its 2 s limit" and "Last lines of its output" in body
    assert section(report, "torchrun")[0] == "ok"
    assert "SOME PARTS FAILED" in report and "speed" not in re.findall(r"^## (\S+):", report, re.M)


def test_unknown_part_is_a_one_line_error(tmp_path):
    result = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh")],
                            env=dict(os.environ, PYTHON=sys.executable, GPU_CHECK_CPU="1",
                                     GPU_CHECK_WORK=str(tmp_path), GPU_CHECK_PARTS="speed tests"),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("error: GPU_CHECK_PARTS: unknown part 'tests'")
