"""Running benchmark rows as train.py stages: resumable, recorded, and summarised over seeds.

Each stage is train.py's command line, `train.py ARGS` (run_train_script): the benchmarks use the script's
command-line contract (arguments in, exit status and run folder out), never its internals. Its directory holds RUN_RECORD (the train.py arguments that decide its result, and wall and CPU
seconds accumulated over invocations), so re-running a benchmark skips finished stages, continues interrupted ones
(train.py --resume auto) and refuses a directory trained with other settings.
"""
import gc
import json
import math
import resource
import runpy
import sys
import time
from pathlib import Path

import numpy as np

from leafdisease.training import checkpoint as checkpoint_format
from leafdisease.training import run_log
from leafdisease.utils.atomic_io import write_json
from leafdisease.utils.errors import EXIT_INTERRUPTED, EXIT_TRAINING_DIVERGED, UserError

RUN_RECORD = "ablation_run.json"
TRAIN_SCRIPT = Path(__file__).resolve().parent.parent / "train.py"


def settings_key(argv):
    """The arguments that decide a run's result (not how many loader processes it used)."""
    kept, skip_next = [], False
    for part in argv:
        if skip_next:
            skip_next = False
        elif part == "--workers":
            skip_next = True
        else:
            kept.append(part)
    return kept


def load_record(stage_dir, argv):
    """The stage's record from an earlier invocation (None if it never started); refuses a run directory made
    with other settings, so a changed budget never silently mixes with old results."""
    record_path = stage_dir / RUN_RECORD
    record = json.loads(record_path.read_text()) if record_path.exists() else None
    if record is not None and record["settings"] != settings_key(argv):
        raise UserError(f"{stage_dir}: was trained with other settings ({' '.join(record['settings'])}); "
                        f"delete it or use another --out")
    if record is None and (stage_dir / "last.pth").exists():
        raise UserError(f"{stage_dir}: holds a run this script did not start; delete it or use another --out")
    return record


def run_stage(stage_dir, argv):
    """Train (or resume, or skip a finished) stage with `train.py ARGV`; returns its record: wall and CPU seconds
    accumulated over invocations (cpu_seconds: this process and its loader workers, see cpu_seconds()), and the
    divergence message if the loss diverged.

    A stage whose loss diverges is a result (the seed's inverse weights can do that), recorded instead of
    stopping the benchmark: train.py exits with EXIT_TRAINING_DIVERGED, and its message is the last error line of
    the run's train.log. Any other failure stops the benchmark (train.py has printed its one-line error).
    """
    record_path = stage_dir / RUN_RECORD
    record = load_record(stage_dir, argv) or {"settings": settings_key(argv), "wall_seconds": 0.0, "diverged": None}
    record["diverged"] = None
    record.setdefault("cpu_seconds", 0.0)  # records written before CPU time was kept start from 0
    write_json(record_path, record)
    started, started_cpu = time.perf_counter(), cpu_seconds()
    try:
        status = run_train_script(argv)
    finally:
        record["wall_seconds"] += time.perf_counter() - started
        record["cpu_seconds"] += cpu_seconds() - started_cpu
        write_json(record_path, record)
    if status == EXIT_TRAINING_DIVERGED:
        record["diverged"] = last_error(stage_dir)
        write_json(record_path, record)
        print(f"{stage_dir}: diverged: {record['diverged']}", flush=True)
    elif status == EXIT_INTERRUPTED:
        raise KeyboardInterrupt  # train.py saved last.pth; the benchmark stops as it would have
    elif status != 0:
        raise UserError(f"{stage_dir}: `python train.py {' '.join(argv)}` stopped with exit status {status} "
                        f"(its error is printed above)")
    return record


def run_stages(stages):
    """Train (or resume, or skip when finished) each (stage directory, train.py arguments) in order, stopping at a
    diverged one; the run's record: wall and CPU seconds summed over its stages, and the divergence message."""
    records = []
    for stage_dir, argv in stages:
        records.append(load_record(stage_dir, argv) if is_complete(stage_dir, argv) else run_stage(stage_dir, argv))
        if records[-1]["diverged"]:
            break
    return {"wall_seconds": sum(record["wall_seconds"] for record in records),
            "cpu_seconds": sum(record.get("cpu_seconds", float("nan")) for record in records),
            "diverged": next((record["diverged"] for record in records if record["diverged"]), None)}


def cpu_seconds():
    """CPU seconds used so far by this process (train.py runs in it) and by its finished children (the loader
    workers, counted once their DataLoader has shut them down and waited for them: collected first)."""
    gc.collect()
    return sum(usage.ru_utime + usage.ru_stime for usage in (resource.getrusage(resource.RUSAGE_SELF),
                                                             resource.getrusage(resource.RUSAGE_CHILDREN)))


def run_train_script(argv):
    """`python train.py ARGV`, run in this process; returns its exit status.

    It runs the script as its own __main__ (runpy), the way the interpreter does, so only its command-line
    contract is used. Not a subprocess because each one re-imports torch, timm and albumentations: ~6 s per stage,
    which added ~115 s to the two benchmark smoke tests (11 stages) on the shared 2-core machine, while a real
    benchmark's stage takes minutes either way.
    """
    saved_argv = sys.argv
    sys.argv = [str(TRAIN_SCRIPT), *argv]
    try:
        runpy.run_path(str(TRAIN_SCRIPT), run_name="__main__")
    except SystemExit as stop:
        return stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
    finally:
        sys.argv = saved_argv
    return 0


def last_error(stage_dir):
    """The one-line error a run ended with, as its train.log recorded it."""
    log_path = stage_dir / run_log.LOG_FILE
    lines = log_path.read_text(errors="replace").splitlines() if log_path.exists() else []
    errors = [line.removeprefix("error: ") for line in lines if line.startswith("error: ")]
    return errors[-1] if errors else f"train.py exited with status {EXIT_TRAINING_DIVERGED} (see {log_path})"


def option_value(argv, option):
    """The value given to `option` in a train.py argument list (the benchmarks always give the options they read)."""
    return argv[len(argv) - 1 - argv[::-1].index(option) + 1]


def is_complete(stage_dir, argv):
    last = stage_dir / "last.pth"
    if not last.exists():
        return False
    checkpoint = checkpoint_format.load(last, need="progress")
    return checkpoint["epoch"] >= int(option_value(argv, "--epochs")) and not checkpoint.get("epoch_in_progress")


def mean_and_spread(values):
    values = np.asarray([value for value in values if value is not None and not math.isnan(value)], dtype=float)
    if values.size == 0:
        return float("nan"), float("nan")
    return float(values.mean()), float(values.std(ddof=1)) if values.size > 1 else float("nan")


def mean_and_standard_error(values):
    """The mean of paired differences and its standard error (nan with fewer than two; nan values left out, as
    mean_and_spread leaves them)."""
    values = np.asarray(values, dtype=float)
    values = values[~np.isnan(values)]
    mean, spread = mean_and_spread(values)
    return mean, spread / math.sqrt(max(values.size, 1))


def format_percent(values, several_seeds):
    mean, spread = mean_and_spread(values)
    if math.isnan(mean):
        return "–"
    return f"{100 * mean:.1f} ± {100 * spread:.1f}" if several_seeds and not math.isnan(spread) else f"{100 * mean:.1f}"


def format_minutes(seconds):
    return f"{seconds / 60:.1f} min"
