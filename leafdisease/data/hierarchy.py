"""The label hierarchy: the crop, disease and severity of each class, and what follows from it (metrics, answers
and group probabilities at each level). Every other module asks this one.

An agronomist reads a diagnosis as crop, then disease, then severity. AI Challenger 2018's 61 classes are 10 crops,
their diseases and, for most diseases, two severities (general, serious); PlantVillage names are Crop___Disease,
field13's crop_disease. Levels, most to least specific (LEVELS): class, disease (one crop's disease, its severities
merged), crop. A disease is a (crop, disease) pair: Apple scab and Pepper scab are two diseases. `healthy` is a
disease like any other.

Where a dataset's hierarchy comes from (for_classes; the first that applies):
  1. hierarchy.csv beside the source (HIERARCHY_FILE; in the source folder, or next to a CSV / list file):
     columns class,crop,disease and optionally severity (empty: none); every class listed once, by name;
  2. the official AI Challenger 2018 table (aichallenger_classes.py) when every class name is an official one
     (both AI Challenger layouts and the demo);
  3. parsed from the class names when every name parses and they give at least two crops:
     - `Crop___Disease` (PlantVillage): split at the first '___';
     - `crop_disease` (field13): the crop is the first '_'-separated token and the disease the rest, and each crop
       prefix must be shared by at least two classes (a prefix of one class alone is as likely part of its name);
     parsed names carry no severity;
  4. none: the dataset stays flat, and every script works as it does without this module.
Cleaning writes the result to metadata/hierarchy.csv (same columns; write_csv) and prints it once (describe);
train.py records it in every checkpoint under "hierarchy" (to_record), exports carry it in their card, and
from_checkpoint reads it back (None for older checkpoints: flat).

Public API (numpy in, numpy out; nothing here needs torch):
  Hierarchy                          per-class crop / disease / severity; .groups(level), .membership(level),
                                     .subset(names), .to_record(), .training_levels()
  for_classes(names, source_dir)     -> (Hierarchy or None, a note saying where it came from or why there is none)
  read_csv(path, names), write_csv(path, hierarchy), from_checkpoint(checkpoint), describe(hierarchy)
  level_probabilities(probabilities, hierarchy)  -> {"disease": (N, D), "crop": (N, C)}: sums over each group's
                                     classes (probabilities @ membership); top_group_columns: the best of each
  level_metrics(confusion, hierarchy)  -> crop_acc, disease_acc and the errors split into err_severity (the
                                     severity only), err_disease (another disease of the same crop), err_crop
                                     (another crop), each a share of all images
  level_table(confusion, hierarchy)  -> one row per level: groups, accuracy, balanced accuracy, its errors
  level_answer(probabilities, class_names, hierarchy, min_confidence) -> LevelAnswer for ONE photo:
                                     the most specific level whose best class or group reaches min_confidence
                                     (the class; else its disease, "severity uncertain"; else its crop, "disease
                                     uncertain"; else "unknown"). Works with hierarchy None (class or unknown).
  level_answers(...)                 the same for N photos; coverage_by_level(...) scores them for evaluate.py
  crop_blocks(hierarchy)             class order by crop and the crop blocks, for the confusion matrix
"""
import csv
import io
import textwrap
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from leafdisease.data.aichallenger_classes import AICHALLENGER_CLASS_NAMES, AICHALLENGER_CLASS_TABLE
from leafdisease.evaluation import metrics
from leafdisease.utils import atomic_io
from leafdisease.utils.errors import UserError

HIERARCHY_FILE = "hierarchy.csv"
CSV_COLUMNS = ("class", "crop", "disease", "severity")  # severity optional in a user's file
LEVELS = ("class", "disease", "crop")
# The label of a photo no level is sure enough of (predict.py --min-confidence).
UNKNOWN_LABEL = "unknown"
PLANTVILLAGE_SEPARATOR = "___"
# level_metrics' keys; train.py adds them to history.csv with the val_ prefix.
LEVEL_METRIC_NAMES = ("crop_acc", "disease_acc", "err_severity", "err_disease", "err_crop")
# What an error first made at each level is (level_table's error_kind).
ERROR_KINDS = {"class": "severity only", "disease": "another disease of the same crop", "crop": "another crop"}
UNCERTAIN_SUFFIX = {"disease": ", severity uncertain", "crop": ", disease uncertain"}


def readable(name):
    """'bacterial_spot' -> 'bacterial spot', 'Corn_(maize)' -> 'Corn (maize)': for labels people read."""
    return " ".join(name.replace("_", " ").split())


@dataclass(frozen=True)
class Hierarchy:
    """The crop, disease and severity ('' for none) of each class, in class order (the model's output order)."""

    class_names: tuple
    crops: tuple
    diseases: tuple
    severities: tuple

    def __post_init__(self):
        sizes = {len(self.class_names), len(self.crops), len(self.diseases), len(self.severities)}
        if len(sizes) != 1:
            raise ValueError(f"hierarchy columns differ in length: {sorted(sizes)}")

    @classmethod
    def from_table(cls, table, class_names):
        """From {class name: (crop, disease, severity)}, for `class_names` in that order."""
        rows = [table[name] for name in class_names]
        return cls(tuple(class_names), *(tuple(column) for column in zip(*rows)))

    @property
    def has_severity(self):
        return any(self.severities)

    def groups(self, level):
        """(group names, each class's group index): crops and diseases in order of first appearance, named for
        reading ('Tomato', 'Tomato bacterial spot'); the class level is the classes themselves."""
        if level == "class":
            return list(self.class_names), np.arange(len(self.class_names))
        keys = self.crops if level == "crop" else list(zip(self.crops, self.diseases))
        order = list(dict.fromkeys(keys))
        position = {key: index for index, key in enumerate(order)}
        names = ([readable(crop) for crop in order] if level == "crop"
                 else [f"{readable(crop)} {readable(disease)}" for crop, disease in order])
        return names, np.array([position[key] for key in keys], dtype=np.int64)

    def membership(self, level):
        """(K, G) 0/1 matrix: class k belongs to group g. probabilities @ membership = group probabilities."""
        names, index = self.groups(level)
        matrix = np.zeros((len(self.class_names), len(names)))
        matrix[np.arange(len(index)), index] = 1.0
        return matrix

    def training_levels(self):
        """The coarser levels a loss can learn from: they group classes (a group holds two or more) and hold two
        groups or more (one group is certain, its cross-entropy always 0)."""
        return [level for level in LEVELS[1:] if 2 <= len(self.groups(level)[0]) < len(self.class_names)]

    def subset(self, class_names):
        """The hierarchy of these classes only (train.py --min-samples leaves some out)."""
        return Hierarchy.from_table(self.as_table(), class_names)

    def as_table(self):
        """{class name: (crop, disease, severity)}."""
        return {name: (crop, disease, severity) for name, crop, disease, severity
                in zip(self.class_names, self.crops, self.diseases, self.severities)}

    def to_record(self):
        """Plain lists aligned with the checkpoint's class_names (weights_only loads them)."""
        return {"crop": list(self.crops), "disease": list(self.diseases), "severity": list(self.severities)}


# ----------------------------------------------------------------------------------------------------
# Where it comes from
# ----------------------------------------------------------------------------------------------------
def for_classes(class_names, source_dir=None, declared_names=None):
    """(Hierarchy or None, note) for these classes. source_dir: where a hierarchy.csv would be (UserError if it is
    there and wrong); declared_names: every class the source declares (a hierarchy.csv may list classes that have
    no image), default class_names."""
    class_names = [str(name) for name in class_names]
    csv_path = Path(source_dir) / HIERARCHY_FILE if source_dir is not None else None
    if csv_path is not None and csv_path.is_file():
        full = read_csv(csv_path, declared_names or class_names)
        return full.subset(class_names), f"from {csv_path}"
    official = dict(zip(AICHALLENGER_CLASS_NAMES, AICHALLENGER_CLASS_TABLE))
    if all(name in official for name in class_names):
        table = {name: (official[name][0], official[name][1], official[name][2] or "") for name in class_names}
        return Hierarchy.from_table(table, class_names), "the official AI Challenger 2018 table"
    table, problem = parse_names(class_names)
    if table is None:
        return None, (f"none, the classes stay flat: {problem}; to give one, write {HIERARCHY_FILE} "
                      f"({','.join(CSV_COLUMNS)}) beside the source and clean again")
    return Hierarchy.from_table(table, class_names), "parsed from the class names"


def parse_names(class_names):
    """({name: (crop, disease, '')}, None) when every name parses (module docstring, rule 3), else (None, why)."""
    with_separator = [name for name in class_names if PLANTVILLAGE_SEPARATOR in name]
    if with_separator:
        if len(with_separator) < len(class_names):
            odd = next(name for name in class_names if PLANTVILLAGE_SEPARATOR not in name)
            return None, f"class '{odd}' is not Crop{PLANTVILLAGE_SEPARATOR}Disease like '{with_separator[0]}'"
        parts = {name: name.split(PLANTVILLAGE_SEPARATOR, 1) for name in class_names}
        style = f"Crop{PLANTVILLAGE_SEPARATOR}Disease"
    else:
        parts = {name: name.split("_", 1) for name in class_names}
        style = "crop_disease"
    for name, split in parts.items():
        if len(split) < 2 or not split[0].strip("_ ") or not split[1].strip("_ "):
            return None, f"class '{name}' does not parse as {style}"
    if style == "crop_disease":
        sharing = Counter(crop for crop, _ in parts.values())
        lone = next((name for name, (crop, _) in parts.items() if sharing[crop] < 2), None)
        if lone is not None:
            return None, (f"class '{lone}' does not parse as crop_disease: no other class shares its prefix "
                          f"'{parts[lone][0]}'")
    crops = {crop for crop, _ in parts.values()}
    if len(crops) < 2:
        return None, f"every class name starts with '{next(iter(crops))}': one crop, no crop level"
    return {name: (crop, disease, "") for name, (crop, disease) in parts.items()}, None


def read_csv(path, class_names):
    """A hierarchy.csv (class,crop,disease[,severity]) for `class_names`: every class listed exactly once, nothing
    else; a one-line UserError naming the file and line otherwise."""
    path = Path(path)
    header, records = _read_csv_lines(path)
    expected = f"expected columns {','.join(CSV_COLUMNS[:3])}[,severity]"
    missing = [column for column in CSV_COLUMNS[:3] if column not in header]
    unknown = [column for column in header if column not in CSV_COLUMNS]
    repeated = sorted({column for column in header if header.count(column) > 1})
    if missing or unknown or repeated:
        problem = (f"no column {', '.join(missing)}" if missing else f"unknown column {', '.join(unknown)}"
                   if unknown else f"column {', '.join(repeated)} twice")
        raise UserError(f"{path}: {problem}; {expected}")
    known = set(class_names)
    rows, first_line = {}, {}
    for line, fields in records:
        if len(fields) > len(header):
            raise UserError(f"{path}: line {line}: {len(fields)} fields, the header has {len(header)} "
                            f"({','.join(header)})")
        # A short row: the fields it lacks are named (a missing severity is an empty one, as the column may be).
        absent = [column for column in header[len(fields):] if column in CSV_COLUMNS[:3]]
        if absent:
            raise UserError(f"{path}: line {line}: no {', '.join(absent)} ({len(fields)} of the header's "
                            f"{len(header)} fields: {','.join(header)})")
        record = dict(zip(header, fields))
        entry = {column: record.get(column, "").strip() for column in CSV_COLUMNS}
        name = entry["class"]
        empty = [column for column in CSV_COLUMNS[:3] if not entry[column]]
        if empty:
            raise UserError(f"{path}: line {line}: empty {', '.join(empty)}")
        if name not in known:
            raise UserError(f"{path}: line {line}: '{name}' is not a class of this dataset")
        triple = (entry["crop"], entry["disease"], entry["severity"])
        if name in rows:
            problem = ("listed twice" if rows[name] == triple else
                       f"listed again as {'/'.join(filter(None, triple))} (line {first_line[name]}: "
                       f"{'/'.join(filter(None, rows[name]))}); a class belongs to one crop and one disease")
            raise UserError(f"{path}: line {line}: class '{name}' {problem}")
        rows[name], first_line[name] = triple, line
    absent = [name for name in class_names if name not in rows]
    if absent:
        raise UserError(f"{path}: class '{absent[0]}' is not listed" +
                        (f" (and {len(absent) - 1} more)" if len(absent) > 1 else "") + "; every class needs a row")
    return Hierarchy.from_table(rows, list(class_names))


def _read_csv_lines(path):
    """(header names, [(line number, fields)]) of a CSV file, blank lines skipped; line numbers as an editor shows
    them, so a message can name the line. A file that is not readable text, or has no header, is a UserError."""
    try:
        reader = csv.reader(io.StringIO(path.read_text(encoding="utf-8-sig"), newline=""))
        lines = [(reader.line_num, fields) for fields in reader if any(field.strip() for field in fields)]
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise UserError(f"{path}: not a readable CSV ({str(error).splitlines()[0]})") from None
    if not lines:
        raise UserError(f"{path}: not a readable CSV (empty: no header line)")
    return [field.strip() for field in lines[0][1]], lines[1:]


def write_csv(path, hierarchy):
    """metadata/hierarchy.csv of a cleaned dataset (read_csv reads it back)."""
    atomic_io.write_csv(path, pd.DataFrame({"class": hierarchy.class_names, "crop": hierarchy.crops,
                                         "disease": hierarchy.diseases, "severity": hierarchy.severities}))


def from_checkpoint(checkpoint, path="checkpoint"):
    """The Hierarchy a checkpoint (or an exported model's card, read from `path`) records, or None (flat; checkpoints
    from before hierarchies)."""
    record = checkpoint.get("hierarchy")
    if not record:
        return None
    names = checkpoint["class_names"]
    columns = [record.get(key) for key in ("crop", "disease", "severity")]
    if any(column is None or len(column) != len(names) for column in columns):
        raise UserError(f"{path}: its hierarchy does not list crop, disease and severity for its {len(names)} classes")
    return Hierarchy(tuple(names), *(tuple(str(value) for value in column) for column in columns))


def describe(hierarchy):
    """The table to check by eye: one line per crop with its diseases and their severities."""
    crops, crop_of = hierarchy.groups("crop")
    diseases, _ = hierarchy.groups("disease")
    lines = [f"{len(crops)} crops, {len(diseases)} diseases, {len(hierarchy.class_names)} classes"
             + (f"; severities {', '.join(sorted(set(filter(None, hierarchy.severities))))}"
                if hierarchy.has_severity else "")]
    for crop_index, crop in enumerate(crops):
        members = np.flatnonzero(crop_of == crop_index)
        severities = {}
        for index in members:
            severities.setdefault(hierarchy.diseases[index], []).append(hierarchy.severities[index])
        parts = [disease + (f" ({', '.join(filter(None, found))})" if any(found) else "")
                 for disease, found in severities.items()]
        lines += textwrap.wrap(f"{crop} ({len(members)} classes): {'; '.join(parts)}", width=116,
                               initial_indent="  ", subsequent_indent="      ")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------------
# Probabilities and metrics at each level
# ----------------------------------------------------------------------------------------------------
def level_probabilities(probabilities, hierarchy):
    """{"disease": (N, D), "crop": (N, C)}: each group's probability, the sum of its classes' (group order:
    hierarchy.groups(level))."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    return {level: probabilities @ hierarchy.membership(level) for level in LEVELS[1:]}


def top_group_columns(probabilities, hierarchy):
    """Per photo its most probable crop and disease with their probabilities (sums over their classes), as table
    columns: {"crop": names, "crop_prob": values, "disease": ..., "disease_prob": ...} (probabilities rounded to
    metrics.PROBABILITY_DECIMALS, as predict.py writes them)."""
    columns = {}
    for level, scores in sorted(level_probabilities(probabilities, hierarchy).items()):
        names = np.asarray(hierarchy.groups(level)[0], dtype=object)
        columns[level] = names[scores.argmax(axis=1)]
        columns[f"{level}_prob"] = scores.max(axis=1).round(metrics.PROBABILITY_DECIMALS)
    return columns


def level_metrics(confusion, hierarchy):
    """From a confusion matrix (counts[true, predicted]): crop_acc (the predicted class is of the true crop),
    disease_acc (of the true disease, any severity), and every error by the level where it goes wrong:
    err_severity (right disease, wrong severity), err_disease (another disease of the same crop), err_crop
    (another crop); the three add up to 1 - accuracy. NaN without images."""
    confusion = np.asarray(confusion, dtype=np.float64)
    total = confusion.sum()
    if total == 0:
        return {name: float("nan") for name in LEVEL_METRIC_NAMES}
    _, crop = hierarchy.groups("crop")
    _, disease = hierarchy.groups("disease")
    right_crop = confusion[crop[:, None] == crop[None, :]].sum()
    right_disease = confusion[disease[:, None] == disease[None, :]].sum()
    right_class = np.trace(confusion)
    shares = {"crop_acc": right_crop, "disease_acc": right_disease, "err_severity": right_disease - right_class,
              "err_disease": right_crop - right_disease, "err_crop": total - right_crop}
    return {name: float(count / total) for name, count in shares.items()}


def level_table(confusion, hierarchy):
    """One row per level (class, disease, crop): groups, images, accuracy, balanced_acc (mean recall of the groups
    with images), and errors: the share of images first wrong at this level (error_kind: at the class level the
    severity only, at the disease level another disease of the same crop, at the crop level another crop)."""
    confusion = np.asarray(confusion, dtype=np.float64)
    total = confusion.sum()
    rows, correct = [], {}
    for level in LEVELS:
        membership = hierarchy.membership(level)
        grouped = membership.T @ confusion @ membership
        support = grouped.sum(axis=1)
        present = support > 0
        correct[level] = np.trace(grouped)
        rows.append({"level": level, "groups": grouped.shape[0], "images": int(total),
                     "accuracy": float(correct[level] / total) if total else float("nan"),
                     "balanced_acc": float((np.diag(grouped)[present] / support[present]).mean())
                     if present.any() else float("nan")})
    coarser = {"class": "disease", "disease": "crop"}
    for row in rows:
        level = row["level"]
        first_wrong_here = (correct[coarser[level]] if level in coarser else total) - correct[level]
        row.update(errors=float(first_wrong_here / total) if total else float("nan"), error_kind=ERROR_KINDS[level])
    return pd.DataFrame(rows)


def crop_blocks(hierarchy):
    """(class order, blocks): the classes grouped by crop (then disease, first appearance), and each crop's
    (name, first position, end position) in that order, for a confusion matrix drawn in blocks."""
    crops, crop = hierarchy.groups("crop")
    _, disease = hierarchy.groups("disease")
    order = np.lexsort((np.arange(len(crop)), disease, crop))
    sorted_crops = crop[order]
    blocks = [(crops[index], int(np.argmax(sorted_crops == index)), int(len(sorted_crops)
               - np.argmax(sorted_crops[::-1] == index))) for index in range(len(crops))]
    return order, blocks


# ----------------------------------------------------------------------------------------------------
# Answers at the level the model is sure of
# ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LevelAnswer:
    """What to tell a user about one photo.

    level: 'class', 'disease', 'crop' or 'unknown' (no level reaches the threshold).
    name: the class's name (as trained), or the disease's / crop's readable name; '' when unknown.
    label: what to show: the class name, '<disease>, severity uncertain', '<crop>, disease uncertain' or 'unknown'.
    probability: of the answered class or group (the sum over its classes); when unknown, the best crop's (the most
    any level reached; without a hierarchy, the top class's).
    """

    level: str
    name: str
    label: str
    probability: float


def _answer_levels(hierarchy):
    return ("class",) if hierarchy is None else LEVELS


def _answer_arrays(probabilities, hierarchy, min_confidence):
    """Per photo: the answering level's index into _answer_levels (len = unknown), the group index at that level
    and its probability (for unknown: the coarsest level's best group and probability)."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    levels = _answer_levels(hierarchy)
    count = len(probabilities)
    level_index = np.full(count, len(levels))
    group = np.zeros(count, dtype=np.int64)
    probability = np.zeros(count)
    # Coarse to fine: a group's probability is at least its members', so the finest level reaching the threshold
    # is the last to claim the photo. The coarsest level is written for every photo, which fills in 'unknown'.
    for index in reversed(range(len(levels))):
        level = levels[index]
        scores = probabilities if level == "class" else probabilities @ hierarchy.membership(level)
        best, best_probability = scores.argmax(axis=1), scores.max(axis=1)
        claimed = best_probability >= min_confidence
        if index == len(levels) - 1:
            group, probability = best.copy(), best_probability.copy()
        level_index[claimed], group[claimed], probability[claimed] = index, best[claimed], best_probability[claimed]
    return level_index, group, probability


def level_answers(probabilities, class_names, hierarchy=None, min_confidence=0.0):
    """level_answer for each row of `probabilities` (N, K): a list of N LevelAnswer."""
    levels = _answer_levels(hierarchy)
    level_index, group, probability = _answer_arrays(probabilities, hierarchy, min_confidence)
    names = {level: (list(class_names) if level == "class" else hierarchy.groups(level)[0]) for level in levels}
    answers = []
    for index, group_index, value in zip(level_index.tolist(), group.tolist(), probability.tolist()):
        if index == len(levels):
            answers.append(LevelAnswer(UNKNOWN_LABEL, "", UNKNOWN_LABEL, value))
            continue
        level = levels[index]
        name = names[level][group_index]
        answers.append(LevelAnswer(level, name, name + UNCERTAIN_SUFFIX.get(level, ""), value))
    return answers


def level_answer(probabilities, class_names, hierarchy=None, min_confidence=0.0):
    """The answer for ONE photo (probabilities: its K class probabilities, after softmax): its top class when that
    reaches min_confidence; else the most probable disease (the sum over its severities) when that does ('Tomato
    bacterial spot, severity uncertain'); else the most probable crop ('Tomato, disease uncertain'); else
    'unknown'. hierarchy None (a flat model): the top class or 'unknown'. min_confidence 0 always names a class."""
    return level_answers(np.asarray(probabilities, dtype=np.float64)[None, :], class_names, hierarchy,
                         min_confidence)[0]


def coverage_by_level(probabilities, targets, hierarchy, thresholds):
    """Per threshold P, the level-aware answers of predict.py --min-confidence P: answered (the share of photos
    answered at some level), answered_class / _disease / _crop (the share answered at each level) and
    answered_correct (of the answered photos, the share whose class or group holds the true class)."""
    targets = np.asarray(targets, dtype=np.int64)
    true_group = {level: hierarchy.groups(level)[1][targets] for level in LEVELS}
    rows = []
    for threshold in thresholds:
        level_index, group, _ = _answer_arrays(probabilities, hierarchy, threshold)
        answered = level_index < len(LEVELS)
        correct = np.zeros(len(targets), dtype=bool)
        for index, level in enumerate(LEVELS):
            at_level = level_index == index
            correct[at_level] = group[at_level] == true_group[level][at_level]
        row = {"min_confidence": float(threshold), "answered": float(answered.mean())}
        row.update({f"answered_{level}": float((level_index == index).mean()) for index, level in enumerate(LEVELS)})
        row["answered_correct"] = float(correct[answered].mean()) if answered.any() else float("nan")
        rows.append(row)
    return rows
