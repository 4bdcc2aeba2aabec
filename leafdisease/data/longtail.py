"""Long-tail decisions that need no torch: class weights, shot groups and their thresholds, group captions.

Cleaning, metrics, the reports and training all take these from here, so a threshold or a weighting scheme is
decided once; nothing here imports torch, albumentations or OpenCV, so light tools stay light.
"""
from pathlib import Path

import numpy as np
import pandas as pd

from leafdisease.utils.errors import UserError

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


def load_weights_csv(path, class_ids, ignored_ids=()):
    """Per-class weights from a CSV with columns id,weight, in the order of `class_ids`. Every class needs one
    row; an id that is not a class of the run (other than `ignored_ids`, classes left out on purpose) is an
    error, since it means the file was made for another dataset."""
    path = Path(path)
    try:
        table = pd.read_csv(path)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise UserError(f"{path}: cannot read class weights ({' '.join(str(error).split())})") from None
    missing_columns = {"id", "weight"} - set(table.columns)
    if missing_columns:
        raise UserError(f"{path}: missing column(s) {', '.join(sorted(missing_columns))}")
    ids = pd.to_numeric(table["id"], errors="coerce")
    weights = pd.to_numeric(table["weight"], errors="coerce")
    for row in range(len(table)):
        if pd.isna(ids[row]) or ids[row] != int(ids[row]):
            raise UserError(f"{path}: row {row + 2}: id {table['id'][row]!r} is not an integer class id")
        if pd.isna(weights[row]) or not np.isfinite(weights[row]) or weights[row] <= 0:
            raise UserError(f"{path}: row {row + 2}: weight {table['weight'][row]!r} is not a positive finite number")
    ids = ids.astype(int)
    duplicated = ids[ids.duplicated()]
    if len(duplicated):
        raise UserError(f"{path}: row {duplicated.index[0] + 2}: class id {duplicated.iloc[0]} listed twice")
    known = set(int(class_id) for class_id in class_ids) | set(int(class_id) for class_id in ignored_ids)
    extra = ids[~ids.isin(known)]
    if len(extra):
        raise UserError(f"{path}: row {extra.index[0] + 2}: class id {extra.iloc[0]} is not a class of this dataset; "
                        f"was the file made for another dataset?")
    weight_by_id = dict(zip(ids, weights.astype(float)))
    missing_ids = [class_id for class_id in class_ids if class_id not in weight_by_id]
    if missing_ids:
        raise UserError(f"{path}: no weight for class id {missing_ids[0]}")
    return np.array([weight_by_id[class_id] for class_id in class_ids], dtype=np.float64)


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
