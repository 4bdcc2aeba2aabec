"""Unknown photos: a score per photo for how unlike the model's own classes it is, and a threshold above which the
answer is "not a leaf this model knows" instead of a disease.

Post-hoc scores, all computed from one forward pass (the penultimate features and the logits), higher = more
unknown:

- msp:          1 - the maximum softmax probability (Hendrycks & Gimpel, 2017): the baseline.
- energy:       -logsumexp(logits) (Liu et al., 2020).
- mahalanobis:  the smallest Mahalanobis distance of the features to a class mean under the shared covariance
                (Lee et al., 2018), shrunk towards a multiple of the identity so that few photos in many dimensions
                still invert.
- knn:          the distance of the L2-normalised features to their KNN_K-th nearest training photo (Sun et al.,
                2022), against a class-balanced sample of at most MAX_REFERENCE training photos.

What a score needs (the record: reference features, class means, the precision matrix and the validation photos'
scores) is fitted at the end of training (train.py) or added to an older checkpoint by `predict.py --fit-unknown`,
and stored with the model (the checkpoint's "unknown" section). The threshold is set on the stored validation scores
(known classes) so that a new photo of the known classes is answered with probability at least `keep` (split
conformal, threshold_at); `keep` can be changed at predict time. A matrix product over at most MAX_REFERENCE stored
features costs milliseconds per photo on a CPU, so no approximate-neighbour index (faiss) is needed at this size.
"""
import math

import numpy as np
import pandas as pd
import torch

from leafdisease.evaluation import metrics
from leafdisease.utils.errors import UserError

METHODS = ("msp", "energy", "mahalanobis", "knn")
DEFAULT_METHOD = "knn"
DEFAULT_KEEP = 0.95
KNN_K = 1
MAX_REFERENCE = 10_000
COVARIANCE_SHRINKAGE = 0.1
RECORD_VERSION = 1
FIT_HINT = "python predict.py --checkpoint CHECKPOINT --fit-unknown --data-dir DATA_DIR"


def reference_sample(targets, limit=MAX_REFERENCE, seed=0):
    """Indices of a class-balanced sample of at most `limit` photos (every photo when there are fewer): each class
    keeps min(its count, an equal share), the share left by small classes going to the larger ones."""
    targets = np.asarray(targets)
    if len(targets) <= limit:
        return np.arange(len(targets))
    rng = np.random.default_rng(seed)
    by_class = [rng.permutation(np.flatnonzero(targets == label)) for label in np.unique(targets)]
    quota, left = {}, limit
    for position, members in enumerate(sorted(by_class, key=len)):
        share = left // (len(by_class) - position)
        quota[id(members)] = min(len(members), share)
        left -= quota[id(members)]
    return np.sort(np.concatenate([members[:quota[id(members)]] for members in by_class]))


def fit(train_features, train_targets, num_classes, val_features, val_logits, keep=DEFAULT_KEEP,
        method=DEFAULT_METHOD):
    """The record for `method` and every other method: training features (N, D) with their class indices, and the
    validation photos' features and logits, which set each method's threshold at `keep`."""
    if method not in METHODS:
        raise UserError(f"unknown-photo method {method!r}: must be one of {', '.join(METHODS)}")
    features = torch.as_tensor(train_features, dtype=torch.float64)
    targets = torch.tensor(np.array(train_targets), dtype=torch.long)
    means = torch.zeros(num_classes, features.shape[1], dtype=torch.float64)
    present = torch.unique(targets)
    for label in present.tolist():
        means[label] = features[targets == label].mean(dim=0)
    centred = features - means[targets]
    covariance = centred.T @ centred / max(1, len(features) - len(present))
    scale = torch.trace(covariance) / covariance.shape[0]
    shrunk = (1 - COVARIANCE_SHRINKAGE) * covariance + COVARIANCE_SHRINKAGE * scale * torch.eye(covariance.shape[0],
                                                                                                  dtype=torch.float64)
    record = {
        "version": RECORD_VERSION, "method": method, "keep": float(keep), "knn_k": KNN_K,
        "reference": torch.nn.functional.normalize(features, dim=1).to(torch.float16),
        "class_means": means.float(), "class_present": torch.zeros(num_classes, dtype=torch.bool).index_fill_(
            0, present, True), "precision": torch.linalg.inv(shrunk).float(),
        "train_photos": int(len(features)),
    }
    val_scores = score_all(record, val_features, val_logits)
    record["val_scores"] = {name: torch.sort(values.float()).values for name, values in val_scores.items()}
    return record


def threshold_at(val_scores, keep):
    """The threshold above which a photo is called unknown: the ceil((n + 1) x keep)-th smallest of the n validation
    scores (the largest where that rank passes n), so that a new photo of the known classes, exchangeable with the
    validation photos, scores at or below it with probability at least `keep` (split conformal prediction). The
    plain `keep` quantile of a few dozen validation photos answers fewer new photos than `keep`
    (benchmarks/reports/ood.md)."""
    values = torch.sort(torch.as_tensor(val_scores, dtype=torch.float64).flatten()).values
    if not len(values):
        raise UserError("no validation photo to set the unknown-photo threshold on")
    rank = math.ceil((len(values) + 1) * keep - 1e-9)  # the tolerance: (n + 1) x keep a whole number in floats
    return float(values[min(max(rank, 1), len(values)) - 1])


def score_all(record, features, logits):
    """{method: scores (N,)} for every method, higher = more unknown."""
    return {name: score(record, features, logits, name) for name in METHODS}


def score(record, features, logits, method=None):
    """Unknown scores (N,) of photos with `features` (N, D) and `logits` (N, K) by `method` (the record's own by
    default); higher = more unknown."""
    method = method or record["method"]
    logits = torch.as_tensor(logits, dtype=torch.float64)
    if method == "msp":
        return 1 - torch.softmax(logits, dim=1).max(dim=1).values
    if method == "energy":
        return -torch.logsumexp(logits, dim=1)
    features = torch.as_tensor(features, dtype=torch.float64)
    if method == "mahalanobis":
        means = record["class_means"].double()[record["class_present"]]
        precision = record["precision"].double()
        differences = features[:, None, :] - means[None, :, :]
        distances = torch.einsum("ncd,de,nce->nc", differences, precision, differences)
        return distances.min(dim=1).values
    if method == "knn":
        reference = record["reference"].double()
        similarity = torch.nn.functional.normalize(features, dim=1) @ reference.T
        k = min(int(record.get("knn_k", KNN_K)), reference.shape[0])
        kth = torch.topk(similarity, k, dim=1).values[:, -1]
        return torch.sqrt(torch.clamp(2 - 2 * kth, min=0))
    raise UserError(f"unknown-photo method {method!r}: must be one of {', '.join(METHODS)}")


def threshold(record, keep=None, method=None):
    """The threshold for `method` (the record's own by default) at `keep` (the record's by default), from its stored
    validation scores."""
    return threshold_at(record["val_scores"][method or record["method"]], record["keep"] if keep is None else keep)


def auroc(known_scores, unknown_scores):
    """The probability that an unknown photo scores higher than a known one, ties counting half (Mann-Whitney U)."""
    known = np.asarray(known_scores, dtype=float)
    unknown = np.asarray(unknown_scores, dtype=float)
    if not len(known) or not len(unknown):
        return float("nan")
    ranks = pd.Series(np.concatenate([known, unknown])).rank(method="average").to_numpy()[len(known):]
    return float((ranks.sum() - len(unknown) * (len(unknown) + 1) / 2) / (len(known) * len(unknown)))


def detection_metrics(known_scores, unknown_scores, stored_threshold, known_targets=None, known_predictions=None):
    """How well scores tell unknown photos from known ones: AUROC; the share of unknown photos still diagnosed
    (score at or below the threshold) at the stored threshold and at the one that keeps 95 % of these known photos
    (FPR at 95 % TPR); and the known photos' coverage at the stored threshold, with their accuracy and balanced
    accuracy there when their class indices `known_targets` and `known_predictions` are given."""
    known, unknown_ = np.asarray(known_scores, dtype=float), np.asarray(unknown_scores, dtype=float)
    at_95 = float(np.quantile(known, 0.95)) if len(known) else float("nan")
    answered = known <= stored_threshold
    result = {"auroc": auroc(known, unknown_), "diagnosed_at_stored": float(np.mean(unknown_ <= stored_threshold)),
              "fpr_at_95_tpr": float(np.mean(unknown_ <= at_95)), "known_coverage_at_stored": float(np.mean(answered)),
              "stored_threshold": float(stored_threshold)}
    if known_targets is not None and answered.any():
        targets, predictions = np.asarray(known_targets)[answered], np.asarray(known_predictions)[answered]
        confusion = metrics.confusion_matrix(targets, predictions, int(max(targets.max(), predictions.max())) + 1)
        result["known_accuracy_at_stored"] = float(np.mean(targets == predictions))
        result["known_balanced_accuracy_at_stored"] = float(np.nanmean(metrics.per_class_metrics(confusion)["recall"]))
    return result
