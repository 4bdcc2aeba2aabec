"""Classification metrics that expose long-tail failure: balanced accuracy, macro-F1, shot-group accuracy."""
import numpy as np

from leafdisease.data.longtail import FEW_SHOT_THRESHOLD, MANY_SHOT_THRESHOLD, SHOT_GROUPS, shot_groups

METRIC_NAMES = ("acc", "balanced_acc", "prior_acc", "macro_f1", "top5", "many_acc", "medium_acc", "few_acc")
# What a run is judged on: train.py's --select-metric chooses best.pth by it and post-hoc calibration tunes tau for
# it. Balanced accuracy when every disease matters equally (a balanced test set, the field's rare diseases);
# plain accuracy when the test set is as long-tailed as training (the AI Challenger 2018 leaderboard).
DEFAULT_TARGET_METRIC = "balanced_acc"
# Probabilities as predict.py's CSV, the hierarchy's group columns and the diagnosis page give them (more digits
# only show float noise).
PROBABILITY_DECIMALS = 6


# Metrics that are a mean over images, not over classes: one image moves them by 1 / images.
IMAGE_MEAN_METRICS = ("acc", "top5")
# The --min-confidence values evaluate.py reports coverage and accuracy at, so a user can pick one for predict.py.
CONFIDENCE_THRESHOLDS = (0.0, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95)


def calibration_target(select_metric):
    """The metric post-hoc calibration tunes tau for: the run's --select-metric, or the default target when that
    is the validation loss (a score of the logits' scale, not of the decisions tau changes)."""
    return select_metric if select_metric in METRIC_NAMES else DEFAULT_TARGET_METRIC


def confusion_matrix(targets, predictions, num_classes):
    """counts[true, predicted]."""
    targets = np.asarray(targets, dtype=np.int64)
    predictions = np.asarray(predictions, dtype=np.int64)
    return np.bincount(targets * num_classes + predictions, minlength=num_classes ** 2).reshape(num_classes, num_classes)


def per_class_metrics(confusion):
    """precision, recall, f1, support per class. A class with no support (no validation image) has recall and F1
    NaN: undefined, not 0, so tables and plots can say "no validation images"; precision is 0 where a class is
    never predicted."""
    confusion = np.asarray(confusion, dtype=np.float64)
    true_positive = np.diag(confusion)
    support = confusion.sum(axis=1)
    predicted = confusion.sum(axis=0)
    precision = np.divide(true_positive, predicted, out=np.zeros_like(true_positive), where=predicted > 0)
    recall = np.divide(true_positive, support, out=np.full_like(true_positive, np.nan), where=support > 0)
    denominator = precision + recall
    f1 = np.divide(2 * precision * recall, denominator, out=np.zeros_like(true_positive), where=denominator > 0)
    f1[support == 0] = np.nan
    return {"precision": precision, "recall": recall, "f1": f1, "support": support.astype(np.int64)}


def classification_metrics(logits, targets, train_counts, many_threshold=MANY_SHOT_THRESHOLD,
                           few_threshold=FEW_SHOT_THRESHOLD):
    """Every validation metric from logits (N, K) and targets (N,).

    Averages over classes count only classes present in the validation set. Shot-group accuracy is the mean
    per-class recall within the group (groups by *training* count), so a group's score is not dominated by
    its most frequent validation class; a group with no validation class is NaN. `prior_acc` weighs each present
    class's recall by its share of the training images (renormalised over the present classes): on a balanced
    test set, the top-1 accuracy a field where classes occur as in training would see.
    """
    logits = np.asarray(logits, dtype=np.float64)
    targets = np.asarray(targets, dtype=np.int64)
    num_classes = logits.shape[1]
    predictions = logits.argmax(axis=1)
    confusion = confusion_matrix(targets, predictions, num_classes)
    per_class = per_class_metrics(confusion)
    present = per_class["support"] > 0
    top_k = min(5, num_classes)
    top_k_predictions = np.argpartition(-logits, top_k - 1, axis=1)[:, :top_k]
    groups = shot_groups(train_counts, many_threshold, few_threshold)
    result = {
        "acc": float((predictions == targets).mean()) if len(targets) else float("nan"),
        "balanced_acc": float(per_class["recall"][present].mean()) if present.any() else float("nan"),
        "macro_f1": float(per_class["f1"][present].mean()) if present.any() else float("nan"),
        "prior_acc": prior_weighted_recall(per_class["recall"], train_counts, present),
        "top5": float((top_k_predictions == targets[:, None]).any(axis=1).mean()) if len(targets) else float("nan"),
    }
    for group in SHOT_GROUPS:
        in_group = present & (groups == group)
        result[f"{group}_acc"] = float(per_class["recall"][in_group].mean()) if in_group.any() else float("nan")
    result["zero_recall_classes"] = int((present & (per_class["recall"] == 0)).sum())
    return result, per_class, confusion


def prior_weighted_recall(recall, train_counts, present):
    """Sum over the present classes of (training share x recall); NaN when no class is present."""
    shares = np.asarray(train_counts, dtype=np.float64) * present
    return float((shares * np.nan_to_num(recall)).sum() / shares.sum()) if shares.sum() > 0 else float("nan")


def collapse_warning(metrics, num_present_classes, max_gap=0.15):
    """The seed's failure mode: plain accuracy far above balanced accuracy means the model fell back on
    guessing head classes. Returns a message, or None while the gap is below `max_gap`."""
    if not metrics["acc"] - metrics["balanced_acc"] >= max_gap:
        return None
    return (
        f"accuracy {metrics['acc']:.1%} is far above balanced accuracy {metrics['balanced_acc']:.1%}: the model "
        f"is leaning on head classes; {metrics['zero_recall_classes']} of {num_present_classes} classes have zero recall"
    )


def coverage_table(probabilities, targets, thresholds=CONFIDENCE_THRESHOLDS):
    """One row per threshold P: coverage (share of images whose top probability is >= P, i.e. not labelled
    'unknown' by predict.py --min-confidence P), how many, and the accuracy and balanced accuracy (mean recall of
    the classes present) over those images; NaN where none is left."""
    probabilities, targets = np.asarray(probabilities), np.asarray(targets)
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == targets
    rows = []
    for threshold in thresholds:
        accepted = confidence >= threshold
        recalls = [correct[accepted & (targets == label)].mean() for label in np.unique(targets[accepted])]
        rows.append({"min_confidence": float(threshold), "coverage": float(accepted.mean()),
                     "images": int(accepted.sum()),
                     "accuracy": float(correct[accepted].mean()) if accepted.any() else float("nan"),
                     "balanced_acc": float(np.mean(recalls)) if recalls else float("nan")})
    return rows
