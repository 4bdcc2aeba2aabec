"""Issue 6: a run survives SIGKILL at any moment, refuses foreign checkpoints, and survives a full disk."""
import errno
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

import atomic_io
import train

ROOT = Path(__file__).resolve().parent.parent
TINY = ["--model", "test_efficientnet", "--no-pretrained", "--img-size", "32", "--batch-size", "8", "--workers", "0"]


def train_command(data_dir, output, epochs, *extra):
    return [sys.executable, str(ROOT / "train.py"), "--data-dir", str(data_dir), "--output", str(output),
            "--epochs", str(epochs), "--resume", "auto", *TINY, *extra]


def test_sigkill_at_random_moments_then_resume_gives_every_epoch_once(tiny_cleaned, tmp_path):
    output = tmp_path / "killed"
    command = train_command(tiny_cleaned, output, 4, "--save-every-steps", "1")
    rng = random.Random(1234)
    kills = 0
    # Kill delays spread over start-up (imports, model), mid-epoch, evaluation and checkpoint writes; then
    # one run left to finish. Each kill is checked to have landed before the run could end by itself.
    for delay in [rng.uniform(1.0, 9.0) for _ in range(4)] + [None]:
        process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            process.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGKILL)
            process.wait()
            kills += 1
            continue
        assert process.returncode == 0, process.stderr.read().decode()[-2000:]
    assert kills >= 2, "kills did not land; make the run longer"
    history = pd.read_csv(output / "history.csv")
    assert history["epoch"].tolist() == [1, 2, 3, 4]
    last = torch.load(output / "last.pth", weights_only=True)
    best = torch.load(output / "best.pth", weights_only=True)
    assert [row["epoch"] for row in last["history"]] == [1, 2, 3, 4]
    assert [row["epoch"] for row in best["history"]] == [1, 2, 3, 4]
    assert best["epoch"] == best["best_epoch"] == last["best_epoch"]
    assert not list(output.glob(".*tmp*")), "temporary files left behind"


def test_rerun_of_a_finished_run_trains_nothing(tiny_cleaned, tmp_path):
    output = tmp_path / "done"
    subprocess.run(train_command(tiny_cleaned, output, 1), cwd=ROOT, check=True, capture_output=True)
    before = (output / "last.pth").stat().st_mtime_ns
    result = subprocess.run(train_command(tiny_cleaned, output, 1), cwd=ROOT, check=True, capture_output=True, text=True)
    assert "already done" in result.stdout
    assert (output / "last.pth").stat().st_mtime_ns == before


def test_disk_full_is_a_clear_error_and_keeps_the_previous_checkpoint(tiny_cleaned, tmp_path, monkeypatch, capsys):
    output = tmp_path / "full"
    train.run(train.parse_args(["--data-dir", str(tiny_cleaned), "--output", str(output), "--epochs", "1", *TINY]))
    previous = (output / "last.pth").read_bytes()

    def no_space(obj, path):
        Path(path).write_bytes(b"partial")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(torch, "save", no_space)
    with pytest.raises(SystemExit) as exit_info:
        train.main(["--data-dir", str(tiny_cleaned), "--output", str(output), "--epochs", "2", "--resume", "auto", *TINY])
    assert exit_info.value.code == 2
    message = capsys.readouterr().err.strip().splitlines()[-1]
    assert message.startswith("error:") and "No space left on device" in message
    assert (output / "last.pth").read_bytes() == previous
    assert not list(output.glob(".*tmp*"))


def test_unwritable_output_is_a_clear_error(tmp_path):
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("a file where a directory should be")
    with pytest.raises(train.UserError, match="cannot write here"):
        atomic_io.write_text(blocker / "x.csv", "a")
