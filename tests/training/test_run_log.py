"""train.py's train.log (a copy of the console) and --log tensorboard."""
import io
import sys

import pandas as pd
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import train
from leafdisease.training import run_log
from tiny_run import TINY_ARGS


@pytest.fixture(scope="module")
def logged_run(tiny_cleaned, tmp_path_factory):
    output = tmp_path_factory.mktemp("run_log") / "full"
    captured = io.StringIO()
    stdout = sys.stdout
    sys.stdout = captured
    try:
        train.main(["--data-dir", str(tiny_cleaned), "--output", str(output), *TINY_ARGS, "--epochs", "3",
                    "--lr", "1e-2", "--warmup-epochs", "0", "--log", "tensorboard"])
    finally:
        sys.stdout = stdout
    return output, captured.getvalue()


def test_train_log_is_a_copy_of_the_console(logged_run):
    output, console = logged_run
    log = (output / run_log.LOG_FILE).read_text()
    assert console.strip() and console in log
    assert sum(line.startswith("epoch ") and "| train loss" in line for line in log.splitlines()) == 3
    assert "done: best" in log
    # Progress in a log is plain lines (issue 11): at least the end of each training and validation pass.
    assert "epoch 3/3: 100%" in log and "validation 3/3: 100%" in log and "\r" not in log


def test_tensorboard_has_every_history_column_and_the_figures(logged_run):
    output, _ = logged_run
    events = EventAccumulator(str(output / run_log.TENSORBOARD_DIR), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    history = pd.read_csv(output / "history.csv")
    numeric = [column for column in history.columns if column != "epoch" and pd.api.types.is_numeric_dtype(history[column])]
    assert "val_balanced_acc" in numeric and "lr" in numeric and "train_loss" in numeric
    assert set(events.Tags()["scalars"]) == {run_log._tag(column) for column in numeric}
    for column in numeric:
        logged = events.Scalars(run_log._tag(column))
        assert [event.step for event in logged] == history["epoch"].tolist()
        assert [event.value for event in logged] == pytest.approx(history[column].tolist(), rel=1e-6, nan_ok=True)
    assert "curves" in events.Tags()["images"] and "confusion_matrix" in events.Tags()["images"]
    assert [event.step for event in events.Images("curves")] == [1, 2, 3]


def test_missing_tensorboard_is_a_one_line_error(tiny_cleaned, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    with pytest.raises(SystemExit) as exit_info:
        train.main(["--data-dir", str(tiny_cleaned), "--output", str(tmp_path / "run"), *TINY_ARGS,
                    "--log", "tensorboard"])
    error = capsys.readouterr().err.strip()
    assert exit_info.value.code != 0 and "\n" not in error
    assert "tensorboard package is not installed" in error and "pip install tensorboard" in error


def test_a_failed_run_logs_its_error(tiny_cleaned, tmp_path, capsys, monkeypatch):
    output = tmp_path / "run"

    def failing_reports(context, state):
        raise train.UserError("reports failed after epoch 1")

    monkeypatch.setattr(train, "write_history_and_curves", failing_reports)
    with pytest.raises(SystemExit):
        train.main(["--data-dir", str(tiny_cleaned), "--output", str(output), *TINY_ARGS, "--epochs", "2"])
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error == "error: reports failed after epoch 1" and error in (output / run_log.LOG_FILE).read_text()


def test_a_run_refused_before_any_work_leaves_no_log(tmp_path, capsys):
    """Issue 11: bad input writes nothing, not even train.log."""
    with pytest.raises(SystemExit):
        train.main(["--data-dir", str(tmp_path / "missing"), "--output", str(tmp_path / "run"), *TINY_ARGS])
    assert capsys.readouterr().err.startswith("error: ")
    assert not (tmp_path / "run").exists()


def test_progress_bar_updates_stay_off_the_log(tmp_path):
    console = io.StringIO()
    stdout = sys.stdout
    sys.stdout = console
    try:
        with run_log.console_copy(tmp_path / "x.log"):
            print("kept line")
            sys.stdout.write("\rprogress 50%")
    finally:
        sys.stdout = stdout
    assert console.getvalue() == "kept line\n\rprogress 50%"
    assert (tmp_path / "x.log").read_text() == "kept line\n"
