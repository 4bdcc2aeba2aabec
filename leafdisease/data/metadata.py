"""The cleaned dataset's metadata as analyze_data.py writes it: classes, the train and val tables, the hierarchy."""
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from leafdisease.data import hierarchy
from leafdisease.utils.errors import UserError


@dataclass
class Metadata:
    train: pd.DataFrame
    val: pd.DataFrame
    classes: pd.DataFrame
    hierarchy: object = None  # hierarchy.Hierarchy of the classes, or None (flat)


def _read_table(path, columns):
    if not path.exists():
        raise UserError(f"{path}: not found; run `python analyze_data.py --source PATH` (or without --source for the demo)")
    try:
        table = pd.read_csv(path, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise UserError(f"{path}: not a valid CSV ({error})") from None
    missing = [column for column in columns if column not in table.columns]
    if missing:
        raise UserError(f"{path}: missing column(s) {', '.join(missing)}")
    return table


def load_metadata(cleaned_dir="data/cleaned"):
    """The cleaned dataset written by analyze_data.py; paths resolved to absolute strings; the label hierarchy from
    metadata/hierarchy.csv when cleaning found one."""
    root = Path(cleaned_dir).resolve()
    metadata_dir = root / "metadata"
    classes = _read_table(metadata_dir / "classes.csv", ["id", "name", "train_count", "val_count"])
    classes = classes.sort_values("id").reset_index(drop=True)
    known_ids = set(classes["id"].astype(int))
    splits = {}
    for split in ("train", "val"):
        path = metadata_dir / f"{split}.csv"
        table = _read_table(path, ["path", "label"])
        unknown = table.loc[~table["label"].isin(known_ids)]
        if len(unknown):
            row = unknown.index[0]
            raise UserError(f"{path}: row {row + 2}: label {unknown['label'].iloc[0]} is not in classes.csv")
        table = table.assign(path=[str(root / p) for p in table["path"]], label=table["label"].astype(int))
        splits[split] = table
    if splits["train"].empty:
        raise UserError(f"{metadata_dir / 'train.csv'}: no training images")
    hierarchy_path = metadata_dir / hierarchy.HIERARCHY_FILE
    class_hierarchy = (hierarchy.read_csv(hierarchy_path, [str(name) for name in classes["name"]])
                       if hierarchy_path.is_file() else None)
    return Metadata(train=splits["train"], val=splits["val"], classes=classes, hierarchy=class_hierarchy)


def select_classes(metadata, min_samples):
    """Drop classes with fewer than `min_samples` training images (the seed's "remove classes 44, 45").

    Returns (metadata restricted to kept classes, excluded classes table). Labels stay the original ids;
    the mapping to contiguous model outputs is `label_to_index`.
    """
    keep = metadata.classes["train_count"] >= min_samples
    kept_classes = metadata.classes.loc[keep].reset_index(drop=True)
    excluded = metadata.classes.loc[~keep].reset_index(drop=True)
    if len(kept_classes) < 2:
        kept = f"only class {kept_classes['id'].iloc[0]} has" if len(kept_classes) else "no class has"
        raise UserError(f"--min-samples {min_samples}: {kept} that many training images; a classifier needs at "
                        f"least 2 classes" if min_samples > 1 else
                        f"classes.csv: the dataset has {len(kept_classes)} class(es); a classifier "
                        f"needs at least 2 classes, there is nothing to classify")
    kept_ids = set(kept_classes["id"])
    subset = Metadata(
        train=metadata.train.loc[metadata.train["label"].isin(kept_ids)].reset_index(drop=True),
        val=metadata.val.loc[metadata.val["label"].isin(kept_ids)].reset_index(drop=True),
        classes=kept_classes,
        hierarchy=(metadata.hierarchy.subset([str(name) for name in kept_classes["name"]])
                   if metadata.hierarchy is not None else None),
    )
    return subset, excluded


def label_to_index(class_ids):
    """Original class id -> model output index (contiguous 0..K-1)."""
    return {int(class_id): index for index, class_id in enumerate(class_ids)}


def rows_of_classes(table, class_ids):
    """The rows of `table` (train.csv or val.csv) whose label is one of `class_ids` (a checkpoint's classes),
    numbered from 0."""
    return table.loc[table["label"].isin([int(class_id) for class_id in class_ids])].reset_index(drop=True)
