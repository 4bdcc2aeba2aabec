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

import train
from leafdisease.training import engine
from leafdisease.utils import atomic_io
from tiny_run import TINY_ARGS

ROOT = Path(__file__).resolve().parents[2]


def train_command(data_dir, output, epochs, *extra):
    return [sys.executable, str(ROOT / "train.py"), "--data-dir", str(data_dir), "--output", str(output),
            "--epochs", str(epochs), "--resume", "auto", *TINY_ARGS, *extra]


def saved_position(output):
    """(global step, finished epochs) of output/last.pth, or None before the first save."""
    try:
        last = torch.load(output / "last.pth", weights_only=True)
    except (FileNotFoundError, RuntimeError, EOFError):
        return None
    assert [row["epoch"] for row in last["history"]] == list(range(1, last["epoch"] + 1)), "an epoch lost or repeated"
    return last["global_step"], last["epoch"]


def test_sigkill_at_three_random_points_every_resume_continues(tiny_cleaned, tmp_path):
    """Kill -9 three times at random training steps (plus a random fraction of a second, so a kill can land in
    a step, the evaluation or a checkpoint write); every restart with --resume auto continues from where the
    previous one was killed, and the run ends with every epoch once and exactly epochs x steps updates."""
    output, epochs, steps_per_epoch = tmp_path / "killed", 6, 41 // 8
    command = train_command(tiny_cleaned, output, epochs, "--save-every-steps", "1")
    rng = random.Random(1234)
    targets = sorted(rng.sample(range(1, epochs * steps_per_epoch - 6), 3))
    previous = (0, 0)
    for target in targets:
        process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 300
        while (position := saved_position(output)) is None or position[0] < target:
            assert process.poll() is None, f"ended before step {target}: {process.stderr.read().decode()[-2000:]}"
            assert time.monotonic() < deadline, "no progress"
            time.sleep(0.05)
        time.sleep(rng.uniform(0.0, 0.3))
        process.send_signal(signal.SIGKILL)
        process.wait()
        assert process.returncode == -signal.SIGKILL, "the kill landed after the run had ended"
        position = saved_position(output)
        assert position >= previous, f"the resume went back from {previous} to {position}"
        previous = position
    finished = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert finished.returncode == 0, finished.stderr[-2000:]
    assert f"resuming from {output / 'last.pth'} at epoch {previous[1] + 1}" in finished.stdout
    history = pd.read_csv(output / "history.csv")
    assert history["epoch"].tolist() == list(range(1, epochs + 1))
    last = torch.load(output / "last.pth", weights_only=True)
    best = torch.load(output / "best.pth", weights_only=True)
    assert last["global_step"] == epochs * steps_per_epoch, "a step was skipped or trained twice"
    assert [row["epoch"] for row in best["history"]] == list(range(1, epochs + 1))
    assert best["epoch"] == best["best_epoch"] == last["best_epoch"]
    assert not list(output.glob(".*tmp*")), "temporary files left behind"
    assert "\r" not in finished.stdout + finished.stderr, "progress bars in a log are plain lines"
    assert f"epoch {epochs}/{epochs}: 100%" in finished.stdout and f"validation {epochs}/{epochs}: 100%" in finished.stdout


def test_resumed_epoch_images_per_second_counts_only_timed_steps(tiny_cleaned, tmp_path, monkeypatch):
    """An epoch interrupted after 2 of its 5 steps and resumed: its images/s is its images over all the seconds
    spent on them, including the first session's (here inflated to 1000 s), not over the resumed part only."""
    output = tmp_path / "interrupted"
    argv = ["--data-dir", str(tiny_cleaned), "--output", str(output), "--epochs", "2", *TINY_ARGS]
    real_build_loss = engine.build_criterion
    calls = {"count": 0}

    class InterruptedInEpoch2(torch.nn.Module):
        def __init__(self, criterion):
            super().__init__()
            self.criterion = criterion

        def forward(self, logits, targets):
            calls["count"] += 1
            if calls["count"] == 5 + 3:  # epoch 1 is 5 steps; the 3rd step of epoch 2
                raise KeyboardInterrupt
            return self.criterion(logits, targets)

    def interrupt_in_epoch_2(*args, **kwargs):
        return InterruptedInEpoch2(real_build_loss(*args, **kwargs))

    monkeypatch.setattr(engine, "build_criterion", interrupt_in_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        train.run(train.parse_args(argv))
    last = torch.load(output / "last.pth", weights_only=True)
    assert last["epoch_in_progress"] == 2 and last["epoch_progress"]["steps"] == 2
    assert last["epoch_progress"]["seconds"] > 0, "the interrupted session's time is saved with its images"
    last["epoch_progress"]["seconds"] += 1000.0
    torch.save(last, output / "last.pth")
    monkeypatch.setattr(engine, "build_criterion", real_build_loss)
    train.run(train.parse_args([*argv, "--resume", "auto"]))
    row = pd.read_csv(output / "history.csv").iloc[1]
    assert row["epoch_seconds"] > 1000
    assert row["train_images_per_s"] == pytest.approx(5 * 8 / row["epoch_seconds"])


def test_rerun_of_a_finished_run_trains_nothing(tiny_cleaned, tmp_path):
    output = tmp_path / "done"
    subprocess.run(train_command(tiny_cleaned, output, 1), cwd=ROOT, check=True, capture_output=True)
    before = (output / "last.pth").stat().st_mtime_ns
    result = subprocess.run(train_command(tiny_cleaned, output, 1), cwd=ROOT, check=True, capture_output=True, text=True)
    assert "already done" in result.stdout
    assert (output / "last.pth").stat().st_mtime_ns == before


def test_disk_full_is_a_clear_error_and_keeps_the_previous_checkpoint(tiny_cleaned, tmp_path, monkeypatch, capsys):
    output = tmp_path / "full"
    real_save, saved = torch.save, {}

    def no_space_after_epoch_1(obj, path):
        if "previous" not in saved and obj.get("epoch") != 2:  # epoch 1's last.pth and best.pth still fit
            return real_save(obj, path)
        saved.setdefault("previous", (output / "last.pth").read_bytes())
        Path(path).write_bytes(b"partial")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(torch, "save", no_space_after_epoch_1)
    with pytest.raises(SystemExit) as exit_info:
        train.main(["--data-dir", str(tiny_cleaned), "--output", str(output), "--epochs", "2", *TINY_ARGS])
    previous = saved["previous"]
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
