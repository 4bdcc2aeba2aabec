"""What the diagnosis page (app.py) says about a photo and about its model, apart from how the page draws it.

Photos go through predict.py's own path (inference.predict_probabilities: cleaning's decode checks, the eval
transform, the calibrated tau) and explain.py's Grad-CAM, so the page's top-5 classes and probabilities are
predict.py's for the same checkpoint, and a file predict.py would reject is rejected with the same reason.

The "reading" of a photo is a list of levels, each {"level", "answer", "best_guess", "probability"}, the answer
hierarchy.UNKNOWN_LABEL below the confidence threshold. A flat model has one, the class (predict.py's 'label'
column). A model with a label hierarchy (hierarchy.py) first gets the diagnosis at the most specific level the
model is sure of (predict.py --min-confidence's 'label' and 'level': "Tomato bacterial spot, severity uncertain"),
then the best crop, disease and class with their probabilities (sums over their classes).

A model that carries the unknown-photo score (unknown.py) also says, per photo, whether it looks like a leaf the model
knows: {"score", "threshold", "is_unknown"} under "unknown" (None for a model without the score); an unknown photo's
classes are its closest ones, not a diagnosis.
"""
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import torch

from leafdisease.data import hierarchy
from leafdisease.deployment import explain, formats, inference, unknown
from leafdisease.evaluation import metrics

TOP_K = 5  # classes shown per photo, as bars
CLASS_LEVEL, DIAGNOSIS_LEVEL = "class", "diagnosis"


@dataclass
class Photo:
    """One uploaded photo as the model saw it: its file name; and either its class probabilities (K,), the
    model's input crop and the Grad-CAM overlay of the top class (None for an ONNX model), or the reason it could
    not be read."""

    name: str
    probabilities: torch.Tensor = None
    crop: np.ndarray = None
    overlay: np.ndarray = None
    problem: str = ""
    unknown_score: float = None
    is_unknown: bool = None


class Diagnoser:
    """A model loaded once (a train.py checkpoint, an export.py folder or its .onnx) and what it says about photos."""

    def __init__(self, checkpoint_path, device):
        self.path = Path(checkpoint_path)
        self.card, self.model = formats.load_model(self.path)
        self.explains = formats.kind_of(self.path) != "onnx"  # Grad-CAM needs the PyTorch weights
        calibrated = inference.calibrated_tau(self.card)
        self.tau = 0.0 if calibrated is None else calibrated
        self.device = device

    def diagnose(self, paths, names):
        """A Photo per path, in order; `names` are what the page calls them (the uploaded files' names)."""
        predictions = inference.predict_probabilities(self.model, list(paths), self.card, self.device, self.tau,
                                                      workers=0, desc="diagnose")
        probabilities = {str(path): row for path, row in zip(predictions.paths, predictions.probabilities)}
        unknown_of = ({} if predictions.unknown_scores is None else
                      {str(path): (float(score), bool(flag)) for path, score, flag in
                       zip(predictions.paths, predictions.unknown_scores, predictions.unknown)})
        problems = {str(path): reason for path, reason in predictions.rejected}
        if self.explains and predictions.paths:
            top = predictions.probabilities.argmax(dim=1).tolist()
            pictures = {str(path): (crop, overlay) for path, crop, overlay in explain.explained_images(
                self.model, self.card, predictions.paths, top, self.device)}
        else:
            crop = inference.eval_crop_transform(self.card)
            pictures = {str(path): (crop(image=inference.read_photo(path, self.card))["image"], None)
                         for path in predictions.paths}
        photos = []
        for path, name in zip(map(str, paths), names):
            if path in problems:
                photos.append(Photo(name, problem=problems[path]))
            else:
                photos.append(Photo(name, probabilities[path], *pictures[path], "", *unknown_of.get(path, (None, None))))
        return photos


def reading(probabilities, card, min_confidence):
    """The page's answer for one photo, one entry per level (see the module docstring): each level's most probable
    class or group and its probability, answered as hierarchy.UNKNOWN_LABEL below `min_confidence`
    (predict.py --min-confidence's rule)."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    class_hierarchy = hierarchy.from_checkpoint(card)

    def entry(level, names, scores):
        best = int(scores.argmax())
        probability = round(float(scores[best]), metrics.PROBABILITY_DECIMALS)
        return {"level": level, "answer": names[best] if scores[best] >= min_confidence else hierarchy.UNKNOWN_LABEL,
                "best_guess": names[best], "probability": probability}

    by_class = entry(CLASS_LEVEL, list(card["class_names"]), probabilities)
    if class_hierarchy is None:
        return [by_class]
    diagnosis = hierarchy.level_answer(probabilities, card["class_names"], class_hierarchy, min_confidence)
    groups = hierarchy.level_probabilities(probabilities[None], class_hierarchy)
    by_group = [entry(level, class_hierarchy.groups(level)[0], groups[level][0]) for level in ("crop", "disease")]
    # Unknown at every level: the best guess is the crop, the level that came closest.
    best_guess = diagnosis.name or by_group[0]["best_guess"]
    return [{"level": DIAGNOSIS_LEVEL, "answer": diagnosis.label, "answered_at": diagnosis.level,
             "best_guess": best_guess, "probability": round(diagnosis.probability, metrics.PROBABILITY_DECIMALS)},
            *by_group, by_class]


def answers(photos, card, min_confidence):
    """Per photo, what the page shows and its API returns: {"file", "top" (TOP_K {"id", "name", "probability"},
    best first), "reading", "heat_map" (whether a Grad-CAM overlay is shown), "unknown" ({"score", "threshold",
    "is_unknown"}, None without the score)}, or {"file", "problem"} for a file that could not be read."""
    record = card.get("unknown")
    result = []
    for photo in photos:
        if photo.problem:
            result.append({"file": photo.name, "problem": photo.problem})
            continue
        ids, names, probabilities = (column[0] for column in inference.top_classes(photo.probabilities[None], card,
                                                                                    TOP_K))
        result.append({"file": photo.name,
                       "top": [{"id": int(class_id), "name": str(name), "probability": float(probability)}
                               for class_id, name, probability in zip(ids, names, probabilities)],
                       "reading": reading(photo.probabilities, card, min_confidence),
                       "heat_map": photo.overlay is not None,
                       "unknown": None if photo.unknown_score is None else {
                           "score": round(photo.unknown_score, metrics.PROBABILITY_DECIMALS),
                           "threshold": unknown.threshold(record), "is_unknown": photo.is_unknown}})
    return result


def model_facts(card):
    """What the page tells the person about the model: {"model", "classes", "trained", "balanced_accuracy",
    "image_size", "tau"}; "trained" (a date) and "balanced_accuracy" (the selected epoch's on validation) are None
    where the checkpoint or export does not record them."""
    trained = card.get("trained_at")
    return {"model": card["model_name"], "classes": len(card["class_names"]),
            "trained": datetime.fromisoformat(trained).date().isoformat() if trained else None,
            "balanced_accuracy": validation_balanced_accuracy(card), "image_size": int(card["img_size"]),
            "tau": inference.calibrated_tau(card)}


def validation_balanced_accuracy(card):
    """The selected epoch's validation balanced accuracy: its history row in a checkpoint, or the selection metric
    an export keeps when that metric is balanced accuracy; None when neither says."""
    history, best_epoch = card.get("history") or [], card.get("best_epoch")
    row = next((row for row in history if row.get("epoch") == best_epoch), None)
    if row is not None and row.get("val_balanced_acc") is not None:
        return float(row["val_balanced_acc"])
    if card.get("select_metric") == "balanced_acc" and card.get("best_metric") is not None:
        return float(card["best_metric"])
    return None
