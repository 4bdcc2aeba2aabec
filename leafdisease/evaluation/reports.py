"""Scoring a labelled image set with a trained checkpoint, the way training scored its validation set.

A labelled set is any layout analyze_data.py reads (its validation split when it has one, else every image), a
plain ImageFolder test folder, or a cleaned dataset folder (its val split). Its classes are matched to the
checkpoint's: ImageFolder by folder name; other layouts by name when every class name in the set is one of the
checkpoint's, else by id. A class the checkpoint does not know is an error naming it; checkpoint classes with no
image in the set are reported and left out of every class average (metrics.classification_metrics does that).
"""
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from leafdisease.data import hierarchy, longtail, reading, sources
from leafdisease.data import metadata as cleaned_metadata
from leafdisease.deployment import inference
from leafdisease.evaluation import metrics, plots
from leafdisease.training import checkpoint as checkpoint_format
from leafdisease.utils.atomic_io import write_csv, write_json
from leafdisease.utils.errors import UserError

GENERIC_FOLDER_NAMES = {"test", "val", "valid", "validation", "images", "cleaned", "data"}
MISCLASSIFIED_CLASSES = 6
MISCLASSIFIED_PER_CLASS = 6


@dataclass
class LabelledSet:
    """paths and targets (indices into the checkpoint's classes) of the images to score."""

    name: str
    description: str
    paths: list
    targets: np.ndarray
    absent: list = field(default_factory=list)  # checkpoint class indices with no image in the set


def dataset_name(data):
    """A folder name for reports: field13/test -> field13_test, my_photos -> my_photos."""
    path = Path(data).resolve()
    name = path.stem if path.is_file() else path.name
    return f"{path.parent.name}_{name}" if name.lower() in GENERIC_FOLDER_NAMES else name


def read_labelled_set(data, checkpoint, fmt=None):
    """The images of `data` with their checkpoint class indices; UserError for a class the checkpoint lacks."""
    data = Path(data)
    if (data / "metadata" / "classes.csv").is_file():
        reading.check_cache_covers(data, checkpoint["img_size"], f"the checkpoint's {checkpoint['img_size']} px model")
        metadata = cleaned_metadata.load_metadata(data)
        names = dict(zip(metadata.classes["id"].astype(int), metadata.classes["name"].astype(str)))
        table = metadata.val.assign(label=metadata.val["label"].astype(int))
        description, by_name = f"cleaned dataset {data} (val split)", False
    else:
        source = sources.read_source(data, fmt)
        table = source.images
        if (table["split"] == "val").any():
            table, split_text = table.loc[table["split"] == "val"], "val split"
        else:
            split_text = "all images"
        names = {int(class_id): str(name) for class_id, name in source.class_names.items()}
        present_names = {names[label] for label in table["label"].unique()}
        by_name = source.fmt == "imagefolder" or present_names <= set(checkpoint["class_names"])
        description = f"{source.fmt} {data} ({split_text})"
        if len(source.rejected):
            listed = [f"{path} ({reason})" for path, reason in zip(source.rejected["path"], source.rejected["reason"])]
            print(f"{len(listed)} listed file(s) not scored (missing, not a file, outside the dataset or listed "
                  f"again): "
                  f"{', '.join(listed[:5])}" + (" ..." if len(listed) > 5 else ""))
    if table.empty:
        raise UserError(f"{data}: no labelled images to evaluate")
    if by_name:
        index_of = {name: index for index, name in enumerate(checkpoint["class_names"])}
        keys = table["label"].map(names)
    else:
        index_of = {int(class_id): index for index, class_id in enumerate(checkpoint["class_ids"])}
        keys = table["label"]
    unknown = sorted(set(keys) - set(index_of), key=str)
    if unknown:
        what = "class" if by_name else "class id"
        raise UserError(f"{data}: {what} '{unknown[0]}' is not one of the checkpoint's {len(index_of)} classes"
                        + (f" (and {len(unknown) - 1} more unknown)" if len(unknown) > 1 else "")
                        + f"; classes are matched {'by name' if by_name else 'by id'}")
    targets = keys.map(index_of).to_numpy(dtype=np.int64)
    absent = sorted(set(range(len(checkpoint["class_ids"]))) - set(targets.tolist()))
    return LabelledSet(name=dataset_name(data), description=description, paths=table["path"].tolist(),
                       targets=targets, absent=absent)


def score_metrics(scores, targets, checkpoint, tau=0.0):
    """(metrics dict, per-class table, confusion matrix) of scores (N, K) after logit adjustment by tau; with the
    checkpoint's label hierarchy the metrics include hierarchy.level_metrics (crop_acc, disease_acc, ...)."""
    adjusted = inference.adjust_scores(scores, checkpoint["train_counts"], tau)
    many, few = checkpoint_format.shot_thresholds(checkpoint)
    result, per_class, confusion = metrics.classification_metrics(
        adjusted.numpy(), targets, checkpoint["train_counts"], many, few)
    class_hierarchy = hierarchy.from_checkpoint(checkpoint)
    if class_hierarchy is not None:
        result.update(hierarchy.level_metrics(confusion, class_hierarchy))
    groups = longtail.shot_groups(checkpoint["train_counts"], many, few)
    off_diagonal = np.asarray(confusion, dtype=np.float64) - np.diag(np.diag(confusion))
    confused_with = [checkpoint["class_names"][row.argmax()] if row.any() else "" for row in off_diagonal]
    table = pd.DataFrame({"id": checkpoint["class_ids"], "name": checkpoint["class_names"],
                          "train_count": checkpoint["train_counts"], "group": groups,
                          "support": per_class["support"], "recall": per_class["recall"],
                          "precision": per_class["precision"], "f1": per_class["f1"],
                          "most_confused_with": confused_with})
    return result, table, confusion


def misclassified_examples(probabilities, targets, paths, per_class, class_names):
    """Errors of the worst classes (lowest recall first): [(path, true name, predicted name, probability)]."""
    predictions = probabilities.argmax(axis=1)
    candidates = per_class.loc[(per_class["support"] > 0) & (per_class["recall"] < 1)]
    worst = candidates.sort_values(["recall", "support"], ascending=[True, False]).index[:MISCLASSIFIED_CLASSES]
    examples = []
    for class_index in worst:
        wrong = np.flatnonzero((targets == class_index) & (predictions != class_index))
        wrong = wrong[np.argsort(-probabilities[wrong, predictions[wrong]])][:MISCLASSIFIED_PER_CLASS]
        examples += [(paths[i], class_names[class_index], class_names[predictions[i]],
                      float(probabilities[i, predictions[i]])) for i in wrong]
    return examples


def write_evaluation_report(output, result, per_class, confusion, probabilities, labelled, checkpoint, extra,
                            explainer=None):
    """metrics.json, per_class.csv, predictions.csv, confusion_matrix.png, misclassified.png, coverage.csv and
    coverage_accuracy.png into `output`; with a label hierarchy also levels.csv (hierarchy.level_table), the
    level-aware answers' columns in coverage.csv (hierarchy.coverage_by_level) and the confusion matrix by crop.
    `explainer(paths, class indices)`, when given, turns the misclassified photos into Grad-CAM images for their
    predicted class. Returns the coverage rows."""
    output = Path(output)
    class_hierarchy = hierarchy.from_checkpoint(checkpoint)
    coverage = metrics.coverage_table(probabilities, labelled.targets)
    report = {**{key: _plain(value) for key, value in result.items()}, **extra}
    if class_hierarchy is not None:
        by_level = hierarchy.coverage_by_level(probabilities, labelled.targets, class_hierarchy,
                                               [row["min_confidence"] for row in coverage])
        coverage = [{**row, **level_row} for row, level_row in zip(coverage, by_level)]
        levels = hierarchy.level_table(confusion, class_hierarchy)
        write_csv(output / "levels.csv", levels)
        report["levels"] = levels.to_dict("records")
    write_json(output / "metrics.json", {**report, "coverage": coverage})
    write_csv(output / "predictions.csv", predictions_table(probabilities, labelled, checkpoint, class_hierarchy))
    write_csv(output / "per_class.csv", per_class)
    write_csv(output / "coverage.csv", pd.DataFrame(coverage))
    plots.plot_coverage(probabilities, labelled.targets, coverage, output / "coverage_accuracy.png",
                        title=f"{labelled.name}: accuracy against coverage by --min-confidence")
    labels = [f"{class_id} {plots.abbreviate(name, 32)}" for class_id, name in
              zip(checkpoint["class_ids"], checkpoint["class_names"])]
    plots.plot_confusion_matrix(confusion, labels, output / "confusion_matrix.png",
                                title=f"{labelled.name}: confusion matrix (rows normalised to recall)",
                                hierarchy=class_hierarchy)
    examples = misclassified_examples(probabilities, labelled.targets, labelled.paths, per_class,
                                      checkpoint["class_names"])
    paths = [path for path, *_ in examples]
    if explainer is not None and examples:
        index_of = {name: index for index, name in enumerate(checkpoint["class_names"])}
        images = explainer(paths, [index_of[predicted] for _, _, predicted, _ in examples])
        what = "photo | Grad-CAM for the predicted class"
    else:
        images = [inference.read_photo(path, checkpoint) for path in paths]
        what = "true -> predicted, probability"
    plots.plot_misclassified([(image, true, predicted, probability)
                              for image, (_, true, predicted, probability) in zip(images, examples)],
                             output / "misclassified.png",
                             title=f"{labelled.name}: errors of the worst classes ({what})")
    return coverage


def predictions_table(probabilities, labelled, checkpoint, class_hierarchy):
    """One row per photo: path, true and predicted class and the prediction's probability, and with a hierarchy
    the most probable crop and disease with theirs (sums over their classes)."""
    names = np.asarray(checkpoint["class_names"], dtype=object)
    table = pd.DataFrame({"path": labelled.paths, "true_name": names[labelled.targets],
                          "pred_name": names[probabilities.argmax(axis=1)],
                          "pred_prob": probabilities.max(axis=1).round(6)})
    if class_hierarchy is not None:
        table = table.assign(**hierarchy.top_group_columns(probabilities, class_hierarchy))
    return table


def _plain(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    return value


def summary_lines(result, per_class, labelled, checkpoint):
    """The one-screen summary evaluate.py prints."""
    lines = [f"{len(labelled.targets)} images of {int((per_class['support'] > 0).sum())} classes from "
             f"{labelled.description}",
             f"balanced accuracy {result['balanced_acc']:.4f} | accuracy {result['acc']:.4f} | accuracy at the "
             f"training prior {result['prior_acc']:.4f} | macro-F1 {result['macro_f1']:.4f} | top-5 "
             f"{result['top5']:.4f}",
             "(balanced accuracy: mean recall over the classes present here; accuracy at the training prior: their "
             "recall weighted by training shares, the top-1 a field where classes occur as in training would see)",
             f"many/medium/few-shot {result['many_acc']:.3f}/{result['medium_acc']:.3f}/{result['few_acc']:.3f} "
             f"(groups by training count, thresholds {checkpoint_format.shot_thresholds(checkpoint)})"]
    if "crop_acc" in result:
        lines.append(f"crop accuracy {result['crop_acc']:.4f} | disease accuracy {result['disease_acc']:.4f} | errors: "
                     f"severity only {result['err_severity']:.4f}, another disease of the same crop "
                     f"{result['err_disease']:.4f}, another crop {result['err_crop']:.4f} (shares of all images)")
    if labelled.absent:
        lines.append(f"{len(labelled.absent)} checkpoint class(es) have no image here and are not averaged in: "
                     + ", ".join(checkpoint["class_names"][index] for index in labelled.absent))
    present = per_class.loc[per_class["support"] > 0].sort_values("recall")
    lines.append("worst classes: " + "; ".join(
        f"{row.name} {row.recall:.2f} (-> {row.most_confused_with or '-'})" for row in present.head(5).itertuples()))
    return lines
