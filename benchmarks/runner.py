"""Running benchmark rows as train.py stages: resumable, recorded, and summarised over seeds.

Each stage directory holds RUN_RECORD (the train.py arguments that decide its result, and wall seconds
accumulated over invocations), so re-running a benchmark skips finished stages, continues interrupted ones
(train.py --resume auto) and refuses a directory trained with other settings.
"""
import json
import math
import time

import numpy as np

import checkpoint as checkpoint_format
import train
from atomic_io import write_json
from errors import UserError

RUN_RECORD = "ablation_run.json"


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
    """Train (or resume, or skip a finished) stage; returns its record: wall seconds accumulated over
    invocations, and the divergence message if the loss diverged.

    Runs in-process: one Python and one torch import for the whole ablation. A stage whose loss diverges
    is a result (the seed's inverse weights can do that), recorded instead of stopping the ablation.
    """
    record_path = stage_dir / RUN_RECORD
    record = load_record(stage_dir, argv) or {"settings": settings_key(argv), "wall_seconds": 0.0, "diverged": None}
    record["diverged"] = None
    write_json(record_path, record)
    started = time.perf_counter()
    try:
        train.run(train.parse_args(argv))
    except train.TrainingDiverged as error:
        record["diverged"] = str(error)
        print(f"{stage_dir}: diverged: {error}", flush=True)
    finally:
        record["wall_seconds"] += time.perf_counter() - started
        write_json(record_path, record)
    return record


def is_complete(stage_dir, argv):
    last = stage_dir / "last.pth"
    if not last.exists():
        return False
    checkpoint = checkpoint_format.load(last, need="progress")
    return checkpoint["epoch"] >= train.parse_args(argv).epochs and not checkpoint.get("epoch_in_progress")


def mean_and_spread(values):
    values = np.asarray([value for value in values if value is not None and not math.isnan(value)], dtype=float)
    if values.size == 0:
        return float("nan"), float("nan")
    return float(values.mean()), float(values.std(ddof=1)) if values.size > 1 else float("nan")


def format_percent(values, several_seeds):
    mean, spread = mean_and_spread(values)
    if math.isnan(mean):
        return "–"
    return f"{100 * mean:.1f} ± {100 * spread:.1f}" if several_seeds and not math.isnan(spread) else f"{100 * mean:.1f}"


def format_minutes(seconds):
    return f"{seconds / 60:.1f} min"
