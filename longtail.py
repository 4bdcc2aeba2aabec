"""Long-tail decisions that need no torch: class weights, shot groups and their thresholds, group captions.

Cleaning, metrics, the reports and training all take these from here, so a threshold or a weighting scheme is
decided once; nothing here imports torch, albumentations or OpenCV, so light tools stay light.
"""
from pathlib import Path

import numpy as np
import pandas as pd

from errors import UserError

WEIGHT_SCHEMES = ("inverse", "sqrt", "effective", "none")
# Shot groups by training images, as in the long-tail literature (Liu et al., OLTR, CVPR 2019).
MANY_SHOT_THRESHOLD = 100
FEW_SHOT_THRESHOLD = 20
SHOT_GROUPS = ("many", "medium", "few")


def compute_class_weights(class_counts, scheme, beta=0.999):
    """Per-class loss weights from training-split counts.

    inverse:   total / (n_classes * count)   -- the seed's "before": 2445:1 on its data.
    sqrt:      sqrt(max_count / count), scaled to mean 1 -- the seed's fix: 49:1 on its data.
    effective: (1 - beta) / (1 - beta**count) (Cui et al., CVPR 2019), scaled to mean 1.
    none:      all ones.
    A class with no training image cannot be weighted (its weight would be infinite), so it is an error.
    """
    counts = np.asarray(class_counts, dtype=np.float64)
    if scheme not in WEIGHT_SCHEMES:
        raise UserError(f"class weights: unknown scheme '{scheme}' (choose from {', '.join(WEIGHT_SCHEMES)})")
    if counts.ndim != 1 or counts.size == 0:
        raise UserError("class weights: need a non-empty list of class counts")
    empty = np.flatnonzero(counts <= 0)
    if empty.size:
        raise UserError(
            f"class weights: class index {int(empty[0])} has no training image "
            f"({empty.size} such classes); remove it or use --min-samples"
        )
    if scheme == "none":
        return np.ones_like(counts)
    if scheme == "inverse":
        return counts.sum() / (counts.size * counts)
    if scheme == "sqrt":
        weights = np.sqrt(counts.max() / counts)
    else:
        if not 0.0 <= beta < 1.0:
            raise UserError(f"class weights: effective-number beta must be in [0, 1), got {beta}")
        weights = (1.0 - beta) / (1.0 - np.power(beta, counts))
    return weights / weights.mean()


def load_weights_csv(path, class_ids):
    """Per-class weights from a CSV with columns id,weight, in the order of `class_ids`."""
    path = Path(path)
    try:
        table = pd.read_csv(path)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise UserError(f"{path}: cannot read class weights ({error})") from None
    missing_columns = {"id", "weight"} - set(table.columns)
    if missing_columns:
        raise UserError(f"{path}: missing column(s) {', '.join(sorted(missing_columns))}")
    weight_by_id = dict(zip(table["id"].astype(int), table["weight"].astype(float)))
    missing_ids = [class_id for class_id in class_ids if class_id not in weight_by_id]
    if missing_ids:
        raise UserError(f"{path}: no weight for class id {missing_ids[0]}")
    weights = np.array([weight_by_id[class_id] for class_id in class_ids], dtype=np.float64)
    if not np.all(np.isfinite(weights)) or np.any(weights <= 0):
        raise UserError(f"{path}: weights must be positive finite numbers")
    return weights


def shot_groups(class_counts, many_threshold=MANY_SHOT_THRESHOLD, few_threshold=FEW_SHOT_THRESHOLD):
    """'many' (> many_threshold training images), 'few' (< few_threshold) or 'medium', per class."""
    counts = np.asarray(class_counts)
    return np.where(counts > many_threshold, "many", np.where(counts < few_threshold, "few", "medium"))


def shot_group_captions(many_threshold=MANY_SHOT_THRESHOLD, few_threshold=FEW_SHOT_THRESHOLD):
    """{'many': 'many-shot (> 100 training images)', ...}: how every report names the groups."""
    return {"many": f"many-shot (> {many_threshold} training images)",
            "medium": f"medium-shot ({few_threshold}-{many_threshold} training images)",
            "few": f"few-shot (< {few_threshold} training images)"}


def check_thresholds(many_threshold, few_threshold):
    if few_threshold > many_threshold:
        raise UserError(f"--few-threshold {few_threshold} is above --many-threshold {many_threshold}")
