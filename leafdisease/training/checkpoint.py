"""The checkpoint format: the one place that knows what train.py writes and what each reader may rely on.

A checkpoint is a dict saved with torch.save and read back with weights_only=True (plain values and tensors,
no pickled objects). It describes itself, so predict.py, visualize_training.py and the benchmarks need nothing
but the file:

  format_version      this module's FORMAT_VERSION at save time (absent in checkpoints from before it existed)
  header (header())   model_name, num_classes, class_ids (original dataset ids, in model output order),
                      class_names, train_counts, class_weights, img_size, mean, std, crop_pct, stage, args,
                      history (one row per finished epoch), best_metric, best_epoch, select_metric,
                      dataset_fingerprint, parent (the header of the run this one started from), versions,
                      hierarchy (hierarchy.Hierarchy.to_record(): crop, disease, severity per class; None or
                      absent, as in checkpoints from before it: flat classes)
                      trained_at (when train.py wrote it, UTC ISO 8601: the end of the latest epoch of the run;
                      absent in checkpoints from before it was recorded)
                      photo_reading (dataset.PHOTO_READINGS: how its photos were read, so every reader reads them
                      the same way; absent in checkpoints from before it: "working")
  state_dict          the weights; `timm.create_model(name, num_classes=N, checkpoint_path=...)` loads them
  best.pth adds       epoch, per_class, confusion_matrix (of that epoch)
  last.pth adds       epoch, optimizer, scheduler, scaler, global_step, epoch_in_progress, epoch_progress,
                      best (best.pth's weights and per-class results, so a kill between the two writes is
                      repaired on resume), and with EMA state_dict_ema (timm's key: timm's load_checkpoint
                      prefers those weights)
  predict.py adds     logit_adjust_tau, logit_adjust_report
  unknown             the unknown-photo record (leafdisease/deployment/unknown.py): written into best.pth at the
                      end of training, or by predict.py --fit-unknown; absent in checkpoints from before it

Versions: none (before format_version): EMA weights under 'ema_state_dict'; load() renames them.
          1: format_version, EMA weights under 'state_dict_ema'.
Modelled on timm's CheckpointSaver / load_checkpoint / resume_checkpoint.
"""
import zipfile
from datetime import datetime, timezone
from pathlib import Path

import torch

from leafdisease.data.longtail import FEW_SHOT_THRESHOLD, MANY_SHOT_THRESHOLD
from leafdisease.utils.atomic_io import save_torch
from leafdisease.utils.errors import UserError

FORMAT_VERSION = 1

HEADER_KEYS = ("model_name", "num_classes", "class_ids", "class_names", "train_counts", "class_weights", "img_size",
               "mean", "std", "crop_pct", "stage", "args", "history", "best_metric", "best_epoch", "select_metric",
               "dataset_fingerprint", "parent", "versions", "hierarchy", "trained_at", "photo_reading")
SECTION_KEYS = ("epoch", "per_class", "confusion_matrix", "optimizer", "scheduler", "scaler", "global_step",
                "epoch_in_progress", "epoch_progress", "best", "state_dict_ema", "logit_adjust_tau",
                "logit_adjust_report", "unknown")

# What each reader relies on; load(need=...) refuses a checkpoint without it.
NEEDS = {
    "weights": ("state_dict", "model_name", "num_classes", "class_ids", "class_names", "train_counts", "img_size",
                "mean", "std", "crop_pct"),
    "init": ("state_dict", "model_name", "class_ids"),
    "history": ("history", "class_ids", "class_names", "train_counts"),
    "result": ("history", "best_epoch"),
    "progress": ("epoch",),
    "resume": ("state_dict", "model_name", "class_ids", "stage", "history", "best_metric", "best_epoch", "epoch",
               "optimizer", "scheduler", "scaler", "global_step"),
}
LEGACY_KEYS = {"ema_state_dict": "state_dict_ema"}
# The needs that use no tensor: load() maps the file's tensors instead of reading them (torch.load's mmap), so a
# reader of a run's header and history does not read its weights and optimiser state (gigabytes for a large model).
HEADER_ONLY_NEEDS = ("history", "result", "progress")


def header(*, model_name, class_ids, class_names, train_counts, class_weights, img_size, data_config, stage, args,
           history, best_metric, best_epoch, select_metric, dataset_fingerprint, parent, versions, hierarchy=None, photo_reading="working"):
    """The self-description every checkpoint of a run carries; plain values only, so weights_only loads it."""
    return {
        "model_name": model_name,
        "num_classes": len(class_ids),
        "class_ids": [int(class_id) for class_id in class_ids],
        "class_names": [str(name) for name in class_names],
        "train_counts": [int(count) for count in train_counts],
        "class_weights": [float(weight) for weight in class_weights],
        "img_size": int(img_size),
        "mean": [float(value) for value in data_config["mean"]],
        "std": [float(value) for value in data_config["std"]],
        "crop_pct": float(data_config["crop_pct"]),
        "stage": stage,
        "args": {key: (str(value) if isinstance(value, Path) else value) for key, value in args.items()},
        "history": history,
        "best_metric": best_metric,
        "best_epoch": best_epoch,
        "select_metric": select_metric,
        "dataset_fingerprint": dataset_fingerprint,
        "parent": parent,
        "versions": versions,
        "hierarchy": hierarchy,
        "trained_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "photo_reading": photo_reading,
    }


def save(path, checkpoint):
    """Write `checkpoint` (a header plus state_dict and sections) atomically, stamped with FORMAT_VERSION."""
    unknown = set(checkpoint) - set(HEADER_KEYS) - set(SECTION_KEYS) - {"state_dict", "format_version"}
    if unknown:
        raise ValueError(f"checkpoint keys not in the format: {', '.join(sorted(unknown))}")
    save_torch({"format_version": FORMAT_VERSION, **checkpoint}, path)


def load(path, need="weights"):
    """The checkpoint at `path` as a dict in the current format, checked to hold what `need` (a NEEDS key) relies
    on. Anything else is a one-line UserError naming the file, what it holds and what was expected."""
    path = Path(path)
    expected = f"expected a train.py checkpoint (a dict with {', '.join(NEEDS[need][:4])}, ...)"
    if not path.is_file():
        raise UserError(f"{path}: checkpoint not found")
    if not zipfile.is_zipfile(path):
        raise UserError(f"{path}: not a readable checkpoint: not a torch.save file at all (empty, truncated or "
                        f"another format); {expected}")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=need in HEADER_ONLY_NEEDS)
    except Exception as error:  # pickle, zip and torch errors alike: name the file, no traceback
        reason = ("it holds pickled Python objects (a whole model or another class), which a safe load refuses"
                  if "Weights only load failed" in str(error) else f"{type(error).__name__}")
        raise UserError(f"{path}: not a readable checkpoint: {reason}; {expected}") from None
    if not isinstance(checkpoint, dict):
        raise UserError(f"{path}: not a train.py checkpoint: it holds a {type(checkpoint).__name__}, not a dict; "
                        f"{expected}")
    if checkpoint and all(isinstance(value, torch.Tensor) for value in checkpoint.values()):
        raise UserError(f"{path}: not a train.py checkpoint: a bare state_dict (weights only, no classes or "
                        f"settings); {expected}")
    version = checkpoint.get("format_version", 0)
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise UserError(f"{path}: checkpoint format {version!r} is newer than this code reads ({FORMAT_VERSION}); "
                        f"update the code")
    for old, new in LEGACY_KEYS.items():
        if old in checkpoint:
            checkpoint.setdefault(new, checkpoint.pop(old))
    missing = [key for key in NEEDS[need] if key not in checkpoint]
    if missing:
        shown = ", ".join(sorted(map(str, checkpoint))[:6]) + (", ..." if len(checkpoint) > 6 else "")
        raise UserError(f"{path}: not a train.py checkpoint: no {', '.join(missing)} (it has {shown or 'no keys'}); "
                        f"{expected}")
    sizes = [len(checkpoint[key]) for key in ("class_ids", "class_names", "train_counts") if key in checkpoint]
    if "num_classes" in checkpoint:
        sizes.append(checkpoint["num_classes"])
    if len(set(sizes)) > 1:
        raise UserError(f"{path}: its class_ids, class_names, train_counts and num_classes disagree in length "
                        f"({', '.join(map(str, sizes))})")
    return checkpoint


def check_compatible(checkpoint, path, *, model_name=None, stage=None, class_ids=None, dataset_fingerprint=None,
                     hint=""):
    """Refuse another model's weights, another stage's run, another class list or another dataset, naming which.
    None skips a check; `hint` says what to do about it."""
    problem = None
    if class_ids is not None and checkpoint.get("class_ids") != list(class_ids):
        theirs = checkpoint.get("class_ids") or []
        problem = (f"trained on {len(theirs)} classes, this run has {len(class_ids)}" if len(theirs) != len(class_ids)
                   else "trained on other class ids than this run's")
    elif dataset_fingerprint is not None and checkpoint.get("dataset_fingerprint") != dataset_fingerprint:
        problem = "was trained on a different dataset (another list of training images) than this run's"
    elif model_name is not None and checkpoint.get("model_name") != model_name:
        problem = f"holds {checkpoint.get('model_name')} weights, this run's model is {model_name}"
    elif stage is not None and checkpoint.get("stage") != stage:
        problem = f"is a '{checkpoint.get('stage')}' stage run, this run is '{stage}'"
    if problem:
        raise UserError(f"{path}: {problem}" + (f"; {hint}" if hint else ""))


def load_weights(model, model_name, checkpoint, path, key="state_dict"):
    """model.load_state_dict(checkpoint[key]); another architecture's or class count's weights are a one-line
    UserError naming both models."""
    try:
        model.load_state_dict(checkpoint[key])
    except (RuntimeError, KeyError) as error:
        raise UserError(f"{path}: its {checkpoint.get('model_name', 'unnamed')} weights do not fit {model_name} "
                        f"({str(error).splitlines()[0]})") from None
    return model


def shot_thresholds(checkpoint):
    """(many, few) thresholds the run was evaluated with, so shot-group numbers match its history."""
    args = checkpoint.get("args") or {}
    return args.get("many_threshold", MANY_SHOT_THRESHOLD), args.get("few_threshold", FEW_SHOT_THRESHOLD)
