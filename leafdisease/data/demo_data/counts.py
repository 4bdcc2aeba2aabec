"""Class names and the long-tailed class counts of the demo, modelled on the AI Challenger 2018 training set."""
import numpy as np

from leafdisease.data.aichallenger_classes import AICHALLENGER_CLASS_NAMES as CLASS_NAMES

NUM_CLASSES = len(CLASS_NAMES)
DEFAULT_SCALE = 1 / 16

FULL_TRAIN_TOTAL = 31718
HEAD_SHARE = 0.422
_RARE_COUNTS = {44: 1, 45: 1, 53: 22, 52: 43, 5: 40}
_LARGEST_CLASS, _LARGEST_COUNT = 59, 2445
_OTHER_HEAD_CLASSES = (25, 26, 58, 41, 20, 36, 9, 17)


def _log_spaced_counts(low, high, n, total):
    """n integers spaced evenly in log between about low and high, rescaled to sum exactly to total."""
    raw = np.geomspace(low, high, n)
    raw *= total / raw.sum()
    counts = np.floor(raw).astype(int)
    remainder_order = np.argsort(counts - raw, kind="stable")
    counts[remainder_order[: total - counts.sum()]] += 1
    return counts


def _full_train_counts():
    counts = np.zeros(NUM_CLASSES, dtype=int)
    counts[_LARGEST_CLASS] = _LARGEST_COUNT
    for class_id, count in _RARE_COUNTS.items():
        counts[class_id] = count
    head_total = round(HEAD_SHARE * FULL_TRAIN_TOTAL)
    order = np.random.default_rng(2018)
    counts[list(_OTHER_HEAD_CLASSES)] = order.permutation(
        _log_spaced_counts(1150, 1650, len(_OTHER_HEAD_CLASSES), head_total - _LARGEST_COUNT)
    )
    fixed = {_LARGEST_CLASS, *_RARE_COUNTS, *_OTHER_HEAD_CLASSES}
    medium = [class_id for class_id in range(NUM_CLASSES) if class_id not in fixed]
    medium_total = FULL_TRAIN_TOTAL - counts.sum()
    counts[medium] = order.permutation(_log_spaced_counts(100, 1000, len(medium), medium_total))
    return tuple(int(count) for count in counts)


FULL_TRAIN_COUNTS = _full_train_counts()


def demo_train_counts(scale=DEFAULT_SCALE):
    """Training images per class at `scale` of the full AI Challenger size (at least one per class)."""
    return tuple(max(1, round(count * scale)) for count in FULL_TRAIN_COUNTS)


def demo_val_counts(train_counts):
    """Validation images per class: about 15% of training, at least 4 so every class is evaluated, at most 30."""
    return tuple(min(30, max(4, round(0.15 * count))) for count in train_counts)

