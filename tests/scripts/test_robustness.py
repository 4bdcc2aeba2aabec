"""Issue 11: writes survive power loss (fsync), logs stay readable (no carriage-return bars), and a killed
cleaning leaves nothing behind for long."""
import io
import os
import subprocess
import sys

from test_bad_input import image_folder

from leafdisease.data import cleaning
from leafdisease.utils import atomic_io, progress


def test_atomic_write_fsyncs_the_file_before_the_rename_and_the_folder_after(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def recording_fsync(fd):
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def recording_replace(source, target):
        events.append(("rename", str(target)))
        real_replace(source, target)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    monkeypatch.setattr(os, "replace", recording_replace)
    atomic_io.write_text(tmp_path / "report.csv", "a,b\n")
    assert [kind for kind, _ in events] == ["fsync", "rename", "fsync"]
    assert events[0][1].startswith(str(tmp_path / ".report.")) and events[0][1].endswith(".tmp.csv")
    assert events[1][1] == str(tmp_path / "report.csv") and events[2][1] == str(tmp_path)
    assert (tmp_path / "report.csv").read_text() == "a,b\n"


def test_progress_in_a_log_is_plain_lines_every_few_seconds(monkeypatch):
    clock = {"now": 0.0}
    monkeypatch.setattr(progress.time, "monotonic", lambda: clock["now"])
    log = io.StringIO()
    bar = progress.bar(total=100, desc="epoch 1/3", file=log, leave=False)
    for step in range(100):
        clock["now"] += 1.0  # 100 steps of one second: a line every LOG_SECONDS and one at the end
        bar.update(1)
        bar.set_postfix(loss=f"{1 / (step + 1):.3f}", refresh=True)
    bar.close()
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue() and log.getvalue().endswith("\n")
    assert len(lines) == 100 // progress.LOG_SECONDS + 1
    assert lines[-1].startswith("epoch 1/3: 100% 100/100") and "loss=0.010" in lines[-1]


def test_progress_on_a_terminal_is_tqdm(monkeypatch):
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    bar = progress.bar(total=3, file=Terminal())
    assert not isinstance(bar, progress.LogLines)
    bar.close()


def test_cleaning_removes_staging_folders_a_killed_cleaning_left(tmp_path, capsys):
    source = image_folder(tmp_path / "source", {"a": 3, "b": 3})
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    abandoned = tmp_path / f".cleaned.staging-{dead.stdout.strip()}-x1y2"
    (abandoned / "images").mkdir(parents=True)
    running = tmp_path / f".cleaned.staging-{os.getpid()}-live"  # a cleaning still running: left alone
    running.mkdir()
    cleaning.clean_dataset(source, tmp_path / "cleaned", workers=1, progress=False)
    assert not abandoned.exists() and running.exists()
    assert f"removed {abandoned}" in capsys.readouterr().out
    assert (tmp_path / "cleaned" / "metadata" / "summary.json").is_file()
