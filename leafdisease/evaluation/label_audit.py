"""Which training labels are wrong: out-of-sample class probabilities for every training photo, cleanlab's ranking
of the labels they contradict, an outlier score for photos unlike any other, and the table a person acts on.

How the probabilities are out of sample (the one thing confident learning needs): each photo's features come from
the ImageNet-pretrained backbone (photo_features), which never saw this dataset's labels, right or wrong; a
multinomial logistic regression on those features is fitted k times, each time without one fold of the photos
(assign_folds), and scores the fold it did not see (out_of_sample_probabilities). One feature pass and k small
fits: seconds after the pass, where k-fold fine-tuning would cost k training runs (benchmarks/reports/label_audit.md
measures what this finds on real photos with planted errors).

Two kinds of suspect, told apart by two scores:
- another_class: cleanlab's confident learning (cleanlab.filter.find_label_issues) says the photos contradict its
  label; its label quality (cleanlab.rank.get_label_quality_scores, self-confidence: the out-of-sample probability
  of the given class; 0 = surely wrong) ranks them, and the suggested label is the most probable class;
- unusable: the photo is far from the photos of every class in feature space (outlier_distances: for each class, the
  mean cosine distance to its OUTLIER_NEIGHBOURS nearest photos of that class; the smallest over the classes), beyond
  OUTLIER_FENCE times the median photo's: probably not a leaf, or not a usable photo of one, whatever its label. A
  photo that is both is unusable (no class fits it, so relabelling it would not help). Not cleanlab's
  OutOfDistribution, which measures the distance to the nearest photos whatever their class: similar junk photos are
  each other's nearest (on field13 with 40 planted photos without a leaf it found 8, the per-class distance all 40:
  benchmarks/reports/label_audit.md), and with more neighbours than a small class has photos, every photo of a
  distinctive small class (and one filed under it) looks unusable.
- only_photo: the only training photo of its class cannot be checked against others (no fold can learn its class
  without it, and it is far from every other class by nature); it is listed with the class the other photos
  suggest, for a person to look at, and never ranked.
"""
import math
import time
import warnings

import numpy as np
import pandas as pd
import torch
from timm.data import resolve_data_config

from leafdisease.data import longtail, reading
from leafdisease.data.audit_decisions import AUDIT_COLUMNS, KINDS
from leafdisease.deployment import inference
from leafdisease.training import models

DEFAULT_FOLDS = 5
# The backbone sees each photo at 256 px: on field13 (256 px photos) it found more planted errors than at the
# recipes' 192 px or at 128 px (benchmarks/reports/label_audit.md).
DEFAULT_IMG_SIZE = 256
DEFAULT_BATCH_SIZE = 32
# Logistic regression on standardised features: inverse L2 strength, and balanced class weights so a few-shot
# class's photos are not all explained away as the large classes' (chosen on field13 without planted errors:
# benchmarks/reports/label_audit.md; 0.005 to 1 found about as many planted errors).
LOGISTIC_C = 0.05
LOGISTIC_MAX_ITER = 300
# Unusable: the distance to the nearest class (outlier_distances) above OUTLIER_FENCE times the median photo's. On
# field13 (895 leaf photos) 0.7 % of the leaves are that far, and every one of 5 to 40 planted photos without a leaf.
OUTLIER_NEIGHBOURS = 10
OUTLIER_FENCE = 2.0
OUTLIER_BLOCK = 2048  # photos whose distances to all others are held at once (2048 x N float32)
RANK_METHOD = "self_confidence"


# ----------------------------------------------------------------------------------------------------
# Features: the pretrained backbone, never trained on these labels
# ----------------------------------------------------------------------------------------------------
def feature_model(model_name=models.DEFAULT_MODEL, pretrained=True, pretrained_file=None):
    """The backbone (classifier removed) with its ImageNet weights (offline for EfficientNet-Lite)."""
    model = models.create_model(model_name, 0, pretrained=pretrained, pretrained_file=pretrained_file)
    return model.eval()


def reading_config(model, img_size):
    """What inference needs to read and normalise photos for `model` at img_size (a checkpoint's fields): the
    evaluation resize and centre crop, the pretrained mean and std, photos read at their working size."""
    data_config = resolve_data_config(model=model)
    return {"img_size": img_size, "crop_pct": data_config["crop_pct"], "mean": list(data_config["mean"]),
            "std": list(data_config["std"]), "photo_reading": reading.DEFAULT_PHOTO_READING}


def photo_features(model, paths, img_size=DEFAULT_IMG_SIZE, device="cpu", batch_size=DEFAULT_BATCH_SIZE, workers=0,
                   desc="features"):
    """(features (N_readable, D) float32, indices of the readable paths, [(path, reason)] of the others): the
    backbone's pooled features of each photo and its mirror image, averaged."""
    _, indices, rejected, features = inference.predict_scores_and_features(
        model, paths, reading_config(model, img_size), torch.device(device), batch_size=batch_size, workers=workers,
        tta=True, desc=desc)
    if features is None:
        return np.zeros((0, 0), np.float32), indices.numpy(), rejected
    return features.numpy().astype(np.float32), indices.numpy(), rejected


# ----------------------------------------------------------------------------------------------------
# Out-of-sample probabilities
# ----------------------------------------------------------------------------------------------------
def assign_folds(labels, folds=DEFAULT_FOLDS, seed=0):
    """A fold (0..folds-1) per photo, stratified by hand: each class's photos, in a seeded order, are dealt to the
    folds in turn from a seeded first fold, so every fold holds its share of each class and a class with fewer
    photos than folds has at most one photo per fold (its other photos stay in that fold's training part).
    sklearn's StratifiedKFold instead warns and may put two of a 3-photo class in one fold."""
    labels = np.asarray(labels)
    fold_of = np.zeros(len(labels), dtype=int)
    rng = np.random.default_rng(seed)
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        fold_of[members] = (rng.integers(folds) + np.arange(len(members))) % folds
    return fold_of


def _logistic_regression():
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(C=LOGISTIC_C, class_weight="balanced",
                                                              max_iter=LOGISTIC_MAX_ITER))


def fit_probe(features, labels):
    """A logistic regression on the features (the same model the audit's folds fit): for the benchmark's
    linear-probe comparisons."""
    from threadpoolctl import threadpool_limits

    probe = _logistic_regression()
    # One BLAS thread: the fit is small (a second on one core for field13), and on a shared 2-core machine OpenBLAS'
    # threads waiting for each other made it 35 times slower (0.5 s against 17.6 s with 2 threads).
    with warnings.catch_warnings(), threadpool_limits(limits=1, user_api="blas"):
        warnings.simplefilter("ignore")  # lbfgs' ConvergenceWarning: the probabilities are used, not the optimum
        probe.fit(features, labels)
    return probe


def probe_probabilities(probe, features):
    """A fitted probe's class probabilities (one BLAS thread, as fit_probe)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        return probe.predict_proba(features)


def out_of_sample_probabilities(features, labels, num_classes, folds=DEFAULT_FOLDS, seed=0):
    """(pred_probs (N, num_classes), fold of each photo): each photo's class probabilities from a logistic
    regression fitted on the other folds. labels are 0..num_classes-1. A class absent from a fold's training part
    (a one-photo class's fold) gets probability 0 there."""
    labels = np.asarray(labels)
    fold_of = assign_folds(labels, folds, seed)
    pred_probs = np.zeros((len(labels), num_classes))
    for fold in range(folds):
        held_out = fold_of == fold
        if not held_out.any():
            continue
        training = ~held_out
        present = np.unique(labels[training])
        if len(present) == 1:  # nothing to tell apart: the one class it knows
            pred_probs[np.ix_(held_out, present)] = 1.0
            continue
        probe = fit_probe(features[training], labels[training])
        pred_probs[np.ix_(held_out, probe.classes_)] = probe_probabilities(probe, features[held_out])
    return pred_probs, fold_of


# ----------------------------------------------------------------------------------------------------
# Ranking and outliers (cleanlab)
# ----------------------------------------------------------------------------------------------------
def rank_labels(labels, pred_probs):
    """(label quality per photo: lower = more likely wrong, label-issue flag per photo) from cleanlab, over the
    classes with at least two photos (pred_probs restricted to them and renormalised); photos of one-photo classes
    get NaN and False (they cannot be checked out of sample)."""
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    labels = np.asarray(labels)
    counts = np.bincount(labels, minlength=pred_probs.shape[1])
    checkable_classes = np.flatnonzero(counts >= 2)
    quality = np.full(len(labels), np.nan)
    issues = np.zeros(len(labels), dtype=bool)
    rows = np.isin(labels, checkable_classes)
    if len(checkable_classes) < 2 or not rows.any():
        return quality, issues
    position = {label: index for index, label in enumerate(checkable_classes)}
    sub_labels = np.array([position[label] for label in labels[rows]])
    sub_probs = pred_probs[np.ix_(rows, checkable_classes)]
    sub_probs = np.clip(sub_probs, 1e-12, None)
    sub_probs /= sub_probs.sum(axis=1, keepdims=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # cleanlab's notes on small classes: the counts are in the audit's table
        quality[rows] = get_label_quality_scores(sub_labels, sub_probs, method=RANK_METHOD)
        issues[rows] = find_label_issues(sub_labels, sub_probs, filter_by="prune_by_noise_rate")
    return quality, issues


def outlier_distances(features, labels, neighbours=OUTLIER_NEIGHBOURS):
    """The distance ratio per photo: for each class, the mean cosine distance to its `neighbours` nearest photos of
    that class (fewer in a smaller class; the photo itself excluded), the smallest over the classes, divided by the
    median photo's. About 1 for a typical photo; far above 1 for a photo unlike the photos of every class."""
    labels = np.asarray(labels)
    unit = np.asarray(features, dtype=np.float32)
    unit = unit / np.maximum(np.linalg.norm(unit, axis=1, keepdims=True), 1e-12)
    members = [np.flatnonzero(labels == label) for label in np.unique(labels)]
    nearest = np.full(len(labels), np.inf)
    for start in range(0, len(labels), OUTLIER_BLOCK):
        rows = np.arange(start, min(start + OUTLIER_BLOCK, len(labels)))
        distances = 1.0 - unit[rows] @ unit.T
        distances[np.arange(len(rows)), rows] = np.inf  # not its own neighbour
        for columns in members:
            k = min(neighbours, len(columns))
            block = distances[:, columns]
            closest = np.partition(block, k - 1, axis=1)[:, :k] if k < len(columns) else block
            finite = np.where(np.isinf(closest), np.nan, closest)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # a one-photo class seen from its own photo: no neighbour
                mean = np.nanmean(finite, axis=1)
            nearest[rows] = np.fmin(nearest[rows], mean)
    median = np.median(nearest[np.isfinite(nearest)]) if np.isfinite(nearest).any() else 1.0
    return nearest / max(float(median), 1e-12)


# ----------------------------------------------------------------------------------------------------
# The audit
# ----------------------------------------------------------------------------------------------------
def audit(features, labels, num_classes, folds=DEFAULT_FOLDS, seed=0, outlier_fence=OUTLIER_FENCE):
    """Per photo (in the order given): given and suggested class index, their out-of-sample probabilities, the
    label quality and issue flag, the distance ratio (outlier_distances), its kind (KINDS, '' = no suspect) and the
    fold it was scored in; plus seconds taken, in the frame's attrs."""
    started = time.perf_counter()
    labels = np.asarray(labels)
    pred_probs, fold_of = out_of_sample_probabilities(features, labels, num_classes, folds, seed)
    quality, issues = rank_labels(labels, pred_probs)
    distance_ratio = outlier_distances(features, labels)
    counts = np.bincount(labels, minlength=num_classes)
    only_photo = counts[labels] == 1
    # The suggestion is the most probable class other than the given one (for a photo the model agrees with, the
    # runner-up), so a person always sees the alternative.
    others = pred_probs.copy()
    others[np.arange(len(labels)), labels] = -1
    suggested = others.argmax(axis=1)
    unusable = distance_ratio > outlier_fence
    # A one-photo class's photo is far from every other class by nature: only a person can check it.
    kind = np.where(only_photo, "only_photo", np.where(unusable, "unusable", np.where(issues, "another_class", "")))
    table = pd.DataFrame({
        "given": labels, "suggested": suggested,
        "given_prob": pred_probs[np.arange(len(labels)), labels],
        "suggested_prob": pred_probs[np.arange(len(labels)), suggested],
        "label_quality": quality, "label_issue": issues,
        "distance_ratio": distance_ratio, "kind": kind, "fold": fold_of,
        "class_size": counts[labels],
    })
    table.attrs["seconds"] = time.perf_counter() - started
    table.attrs["pred_probs"] = pred_probs
    return table


def ranking(table):
    """Photo positions from the most to the least likely wrong label: by label quality (cleanlab's rank), the
    unrankable (one-photo classes) last."""
    quality = table["label_quality"].to_numpy()
    return np.argsort(np.where(np.isnan(quality), np.inf, quality), kind="stable")


def suspects(table, paths, class_names, many_threshold=longtail.MANY_SHOT_THRESHOLD,
             few_threshold=longtail.FEW_SHOT_THRESHOLD):
    """The audit CSV (AUDIT_COLUMNS; the person fills `decision`): every photo of a kind, grouped so the few-shot
    classes' suspects come first (few, medium, many), within a group 'another_class' and 'only_photo' before
    'unusable'; the first two by score (label quality, the likeliest wrong first), unusable photos by distance ratio
    (the farthest first)."""
    counts = np.bincount(table["given"].to_numpy(), minlength=len(class_names))
    group_of_class = longtail.shot_groups(counts, many_threshold, few_threshold)
    flagged = table.loc[table["kind"] != ""]
    group = group_of_class[flagged["given"].to_numpy()]
    names = np.asarray(class_names, dtype=object)
    score = flagged["label_quality"].to_numpy()
    sort_key = np.where(flagged["kind"] == "unusable", -flagged["distance_ratio"], np.nan_to_num(score, nan=0.0))
    rows = pd.DataFrame({
        "decision": "",
        "kind": flagged["kind"].to_numpy(),
        "shot_group": group,
        "path": [str(paths[index]) for index in flagged.index],
        "given_label": names[flagged["given"].to_numpy()],
        "suggested_label": names[flagged["suggested"].to_numpy()],
        "score": np.round(score, 4),  # label quality; empty for one-photo classes
        "given_prob": np.round(flagged["given_prob"].to_numpy(), 4),
        "suggested_prob": np.round(flagged["suggested_prob"].to_numpy(), 4),
        "class_size": flagged["class_size"].to_numpy(),
        "distance_ratio": np.round(flagged["distance_ratio"].to_numpy(), 3),
    })
    group_rank = {name: position for position, name in enumerate(("few", "medium", "many"))}
    kind_rank = {"another_class": 0, "only_photo": 1, "unusable": 2}
    order = np.lexsort((sort_key, rows["kind"].map(kind_rank).to_numpy(),
                        rows["shot_group"].map(group_rank).to_numpy()))
    rows = rows.iloc[order].reset_index(drop=True)
    assert list(rows.columns) == list(AUDIT_COLUMNS) and set(rows["kind"]) <= set(KINDS)
    return rows


def precision_recall_at(order, is_wrong, count):
    """(precision, recall) of the first `count` photos of a ranking against the truly wrong ones."""
    is_wrong = np.asarray(is_wrong, dtype=bool)
    if count <= 0 or not is_wrong.any():
        return math.nan, math.nan
    found = is_wrong[np.asarray(order)[:count]].sum()
    return found / count, found / is_wrong.sum()
