"""Read a dataset in one of the layouts we know into one table: path, label, split (+ class names).

Layouts (detected, or named with `fmt`):
- aichallenger: AI Challenger 2018 crop disease, <root>/AgriculturalDisease_trainingset/ and
  <root>/AgriculturalDisease_validationset/, each with images/ and a JSON list of
  {"image_id": "xxx.jpg", "disease_class": <int>}; the image is images/<image_id>.
- aichallenger-list: the same folders with text lists instead of the JSON (the widely redistributed copy, e.g.
  ShuWeiCup 2025 "Problem B"): AgriculturalDisease_trainingset/train_list.txt and
  AgriculturalDisease_validationset/ttest_list.txt (test_list.txt and val_list.txt accepted too), each line
  "<image path> <class id>". Detected when the training JSON is absent and train_list.txt is present.
- imagefolder: <root>/<class>/<image> (PlantVillage), or <root>/train/<class>/... and <root>/val/<class>/...
  ("valid"/"validation" also accepted for val; other folders such as test/ are not read).
- csv: a CSV file (or a folder holding exactly one data CSV; class_names.csv and hierarchy.csv are not data CSVs)
  with an image-path column and a label column (integer ids or class names) and optionally a split column
  (train/val).
- list: a text file of "<image path> <label>" lines (the PaddleClas / Caffe convention; any .txt source), labels
  integer ids or class names as in a CSV; paths relative to the list's folder. Its lines are the training split
  when a validation list is given (val_list), else unsplit.

Text lists (both list layouts): whitespace separates path and label, split at the LAST whitespace so file names
may contain spaces; backslashes are path separators (lists written on Windows); blank lines and surrounding
whitespace are ignored. In the AI Challenger lists a path starting with a set folder's name is relative to the
root, any other relative to its set folder.

Rules a user can rely on:
- A malformed annotation (not a list, missing key, non-integer / negative / unknown label, no entries at all) is
  fatal: a UserError naming the file and the entry, because nothing downstream can be trusted. Entries are
  numbered from 0 in JSON lists; CSV rows and text-list lines by their line number in the file. A text-list line
  without both a path and a label is malformed too.
- An image listed more than once (the official AI Challenger JSON repeats 172 ids) is not fatal: listed again
  with the same label, it is kept once (its first listing, a training one before a validation one) and each repeat
  is a 'duplicate_entry' row of the rejected table; listed with different labels, every listing is a
  'label_conflict' row (there is no way to know which label is right). The detail names every listing.
- A listed path that leaves its dataset (a '..' too many, an absolute path elsewhere, a list line's Windows drive
  or share path such as C:\\x\\y.jpg, kept as written) in the AI Challenger layouts (JSON and lists) and text
  lists becomes an 'outside_dataset' row of the rejected table, and the file is
  never opened: a downloaded annotation file must not make cleaning read files outside the dataset. The dataset
  is the root folder for AI Challenger, the folder of the list (each list's own with --val-list) for text lists.
  The check is on the path as written (symlinks inside the dataset are followed as usual). A CSV names any file
  (absolute, or relative to the CSV's folder, '..' included): the user wrote it; ImageFolder reads the files
  under its class folders.
- A listed image whose file does not exist is not fatal: it becomes a 'missing_file' row of the rejected table
  (rejected.csv after cleaning), since one lost file should not stop a 30k-image dataset; so does a symbolic link
  to nothing (ImageFolder lists every entry under its class folders, links included: files_under). A link loop, a
  folder (a link to one: linked folders are not descended into) or a pipe is an 'unreadable_file' row
  (file_problem). If none of the listed files exist, the layout is wrong and that is fatal.
- Class names come from <root>/class_names.csv (columns id,name; for CSV and list files, next to the file) when
  present, else the official AI Challenger names (aichallenger_classes.py) for both AI Challenger layouts, the
  class folder names (ImageFolder) or the name labels (CSV, list), else "class_<id>".
- Class ids: AI Challenger ids as given (0..60 unless class_names.csv lists others); ImageFolder folders named by
  integers keep those integers, otherwise folders get ids by sorted name (or the id of their name in
  class_names.csv); CSV and list integer labels as given, name labels by sorted name (or class_names.csv).
"""
import errno
import json
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import pandas as pd

from leafdisease.data.aichallenger_classes import AICHALLENGER_CLASS_NAMES
from leafdisease.data.hierarchy import HIERARCHY_FILE
from leafdisease.utils.errors import UserError

FORMATS = ("aichallenger", "aichallenger-list", "imagefolder", "csv", "list")
AICHALLENGER_SPLITS = {
    "train": ("AgriculturalDisease_trainingset", "AgriculturalDisease_train_annotations.json"),
    "val": ("AgriculturalDisease_validationset", "AgriculturalDisease_validation_annotations.json"),
}
# The text-list copy's list file names per split; "ttest_list.txt" is really spelled so in that distribution.
AICHALLENGER_LISTS = {"train": ("train_list.txt",), "val": ("ttest_list.txt", "test_list.txt", "val_list.txt")}
AICHALLENGER_NUM_CLASSES = len(AICHALLENGER_CLASS_NAMES)
LIST_SUFFIX = ".txt"
# "<path> <label>": the label is the last whitespace-separated token, so the path may contain spaces.
LIST_LINE_PATTERN = re.compile(r"^(?P<path>.*\S)\s+(?P<label>\S+)$")
CLASS_NAMES_FILE = "class_names.csv"
IMAGE_COLUMN_CANDIDATES = ("path", "filepath", "file_path", "image_path", "image", "image_id", "filename",
                           "file_name", "file", "img")
LABEL_COLUMN_CANDIDATES = ("label", "disease_class", "class_id", "label_id", "class", "class_name", "category",
                           "label_name")
NAME_LABEL_COLUMNS = ("class_name", "category", "label_name")
SPLIT_COLUMN_CANDIDATES = ("split", "subset")
SPLIT_ALIASES = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val"}
VAL_FOLDER_NAMES = ("val", "valid", "validation")
SOURCE_COLUMNS = ["path", "label", "split"]
# Where each row of an annotated layout was listed ("train_list.txt line 12"), to name repeats; dropped after.
ENTRY_COLUMN = "entry"
# rejected.csv: the contract's path,split,reason,detail plus the label, so a lost image's class is visible.
REJECTED_COLUMNS = ["path", "split", "reason", "detail", "label"]
INTEGER_PATTERN = re.compile(r"^[+-]?\d+$")
# A list line's path on a Windows drive (C:\x\y.jpg, d:/x.jpg) or share (\\server\x.jpg): absolute on the machine
# that wrote the list, never inside the dataset here.
WINDOWS_ABSOLUTE_PATTERN = re.compile(r"^([A-Za-z]:[\\/]|\\\\)")


@dataclass
class Source:
    """What a dataset layout says, before any image is opened.

    images: path (absolute str), label (int), split ("train", "val", or "" when the source has no split).
    class_names: {id: name} for every class the source declares (may include ids without images).
    rejected: listings not read as images: repeated listings ('duplicate_entry', 'label_conflict'), paths outside
        the dataset ('outside_dataset'), files that do not exist ('missing_file'); columns REJECTED_COLUMNS.
    """

    root: Path
    fmt: str
    images: pd.DataFrame
    class_names: dict
    rejected: pd.DataFrame


def detect_format(path):
    """One of FORMATS for a dataset path; UserError when it is none of them."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: no such file or directory")
    if path.is_file():
        if path.suffix.lower() == ".csv":
            return "csv"
        if path.suffix.lower() == LIST_SUFFIX:
            return "list"
        raise UserError(f"{path}: not a dataset; pass a dataset folder, a CSV file or a text list ({LIST_SUFFIX})")
    if any((path / folder).is_dir() for folder, _ in AICHALLENGER_SPLITS.values()):
        train_folder, train_annotations = AICHALLENGER_SPLITS["train"]
        if not (path / train_folder / train_annotations).is_file() and any(
                (path / train_folder / name).is_file() for name in AICHALLENGER_LISTS["train"]):
            return "aichallenger-list"
        return "aichallenger"
    if len(_data_csvs(path)) == 1:
        return "csv"
    if _class_folders_present(path):
        return "imagefolder"
    csvs = _data_csvs(path)
    if csvs:
        raise UserError(f"{path}: {len(csvs)} CSV files ({', '.join(p.name for p in csvs)}); pass the one to use")
    raise UserError(
        f"{path}: unknown dataset layout: expected AgriculturalDisease_trainingset/ (AI Challenger), "
        f"class folders (ImageFolder), a CSV file or a text list; pass --format to say which"
    )


def read_source(path, fmt=None, path_column=None, label_column=None, split_column=None, val_list=None):
    """Read a dataset into a Source. fmt None/'auto' detects the layout; the column options apply to CSV, val_list
    (the validation list file) to 'list'."""
    path = Path(path)
    if fmt in (None, "auto"):
        fmt = detect_format(path)
    elif fmt not in FORMATS:
        raise UserError(f"unknown format '{fmt}' (choose auto, {', '.join(FORMATS)})")
    elif not path.exists():
        raise UserError(f"{path}: no such file or directory")
    if val_list is not None and fmt != "list":
        raise UserError(f"--val-list {val_list}: only for --format list, and {path} is read as {fmt}")
    if fmt in ("aichallenger", "aichallenger-list"):
        source = _read_aichallenger(path, from_lists=fmt == "aichallenger-list")
    elif fmt == "imagefolder":
        source = _read_imagefolder(path)
    elif fmt == "csv":
        source = _read_csv_source(path, path_column, label_column, split_column)
    else:
        source = _read_list_source(path, val_list)
    # The folder each split's listed paths must stay in (see the module docstring); a CSV or ImageFolder has none.
    if fmt in ("aichallenger", "aichallenger-list"):
        _reject_outside_dataset(source, path, {"train": path, "val": path})
    elif fmt == "list":
        _reject_outside_dataset(source, path, {"": path.parent, "train": path.parent,
                                               "val": Path(val_list or path).parent})
    _reject_repeated_entries(source)
    _drop_missing_files(source)
    return source


# ----------------------------------------------------------------------------------------------------
# AI Challenger 2018
# ----------------------------------------------------------------------------------------------------
def _read_aichallenger(root, from_lists):
    train_folder, train_annotations = AICHALLENGER_SPLITS["train"]
    if not from_lists and not (root / train_folder / train_annotations).is_file():
        raise UserError(f"{root / train_folder / train_annotations}: not found (AI Challenger training annotations; "
                        f"a copy with text lists has {AICHALLENGER_LISTS['train'][0]} there instead)")
    declared = read_class_names(root)
    if declared is None:
        valid_ids = set(range(AICHALLENGER_NUM_CLASSES))
        range_text = f"0..{AICHALLENGER_NUM_CLASSES - 1}"
    else:
        valid_ids = set(declared)
        range_text = f"an id listed in {root / CLASS_NAMES_FILE}"
    rows = []
    for split, (folder, annotations_name) in AICHALLENGER_SPLITS.items():
        if split == "val" and not (root / folder).exists():
            continue
        if from_lists:
            rows += _read_aichallenger_list(root, root / folder, split, valid_ids, range_text)
            continue
        annotations = root / folder / annotations_name
        if not annotations.is_file():
            raise UserError(f"{annotations}: not found (AI Challenger {split} annotations)")
        rows += _read_aichallenger_annotations(annotations, root / folder / "images", split, valid_ids, range_text)
    images = pd.DataFrame(rows, columns=SOURCE_COLUMNS + [ENTRY_COLUMN])
    # Without class_names.csv every id is within 0..60 (checked above), so each has its official name.
    class_names = declared or {class_id: AICHALLENGER_CLASS_NAMES[class_id]
                               for class_id in sorted(set(images["label"]))}
    return Source(root=root, fmt="aichallenger-list" if from_lists else "aichallenger", images=images,
                  class_names=class_names, rejected=_no_rejections())


def _read_aichallenger_annotations(annotations, images_dir, split, valid_ids, range_text):
    try:
        entries = json.loads(annotations.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as error:
        raise UserError(f"{annotations}: cannot read ({error})") from None
    except json.JSONDecodeError as error:
        raise UserError(f"{annotations}: not valid JSON ({error})") from None
    if not isinstance(entries, list):
        raise UserError(f"{annotations}: expected a JSON list of {{\"image_id\", \"disease_class\"}} entries, "
                        f"got a JSON {type(entries).__name__}")
    if not entries:
        raise UserError(f"{annotations}: no entries")
    rows = []
    for index, entry in enumerate(entries):
        where = f"{annotations}: entry {index}"
        if not isinstance(entry, dict):
            raise UserError(f"{where}: expected an object with image_id and disease_class, got {entry!r:.60}")
        missing_keys = [key for key in ("image_id", "disease_class") if key not in entry]
        if missing_keys:
            raise UserError(f"{where}: missing key(s) {', '.join(missing_keys)}")
        image_id = entry["image_id"]
        if not isinstance(image_id, str) or not image_id.strip():
            raise UserError(f"{where}: image_id {image_id!r} is not a file name")
        where = f"{where} (image_id '{image_id}')"
        label = entry["disease_class"]
        # bool is an int subclass in Python; true/false in a label field is a broken annotation, not 1/0.
        if isinstance(label, bool) or not isinstance(label, int):
            raise UserError(f"{where}: disease_class {label!r} is not an integer")
        if label not in valid_ids:
            raise UserError(f"{where}: disease_class {label} is out of range (expected {range_text})")
        rows.append((os.path.abspath(images_dir / image_id), label, split, f"{annotations.name} entry {index}"))
    return rows


def _read_aichallenger_list(root, set_folder, split, valid_ids, range_text):
    present = [set_folder / name for name in AICHALLENGER_LISTS[split] if (set_folder / name).is_file()]
    if not present:
        raise UserError(f"{set_folder}: no {' or '.join(AICHALLENGER_LISTS[split])} (AI Challenger {split} list)")
    if len(present) > 1:
        raise UserError(f"{set_folder}: several {split} lists ({', '.join(p.name for p in present)}); keep one")
    list_path = present[0]
    set_folder_names = {folder for folder, _ in AICHALLENGER_SPLITS.values()}

    def resolve(relative):
        # "AgriculturalDisease_trainingset/images/x.jpg" is relative to the root, "images/x.jpg" to the set folder.
        parts = PurePosixPath(relative).parts
        return os.path.abspath((root if parts and parts[0] in set_folder_names else set_folder) / relative)

    rows = []
    for line_number, image_path, raw_label in _read_list(list_path, resolve):
        where = f"{list_path}: line {line_number}"
        if not INTEGER_PATTERN.match(raw_label):
            raise UserError(f"{where}: class id '{raw_label}' is not an integer")
        label = int(raw_label)
        if label not in valid_ids:
            raise UserError(f"{where}: class id {label} is out of range (expected {range_text})")
        rows.append((image_path, label, split, f"{list_path.name} line {line_number}"))
    return rows


# ----------------------------------------------------------------------------------------------------
# ImageFolder
# ----------------------------------------------------------------------------------------------------
def _read_imagefolder(root):
    if (root / "train").is_dir():
        split_dirs = {"train": root / "train"}
        val_dirs = [root / name for name in VAL_FOLDER_NAMES if (root / name).is_dir()]
        if len(val_dirs) > 1:
            raise UserError(f"{root}: several validation folders ({', '.join(p.name for p in val_dirs)}); keep one")
        if val_dirs:
            split_dirs["val"] = val_dirs[0]
    else:
        split_dirs = {"": root}
    folder_files = {}
    for split, split_dir in split_dirs.items():
        for class_dir in sorted(p for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
            # Every file counts (non-images end up rejected, never silently skipped), links that are not files too.
            files = files_under(class_dir)
            folder_files.setdefault(class_dir.name, []).extend((split, f) for f in files)
    if not any(folder_files.values()):
        where = " and ".join(str(p) for p in split_dirs.values())
        raise UserError(f"{where}: no class folder with files in it (expected <class>/<image> under it)")
    declared = read_class_names(root)
    folder_ids = _imagefolder_class_ids(root, sorted(folder_files), declared)
    rows = [(os.path.abspath(file), folder_ids[folder], split)
            for folder, files in folder_files.items() for split, file in files]
    images = pd.DataFrame(rows, columns=SOURCE_COLUMNS)
    if declared is not None:
        class_names = declared
    elif all(INTEGER_PATTERN.match(folder) for folder in folder_ids):
        class_names = {class_id: f"class_{class_id}" for class_id in sorted(folder_ids.values())}
    else:
        class_names = {class_id: folder for folder, class_id in folder_ids.items()}
    return Source(root=root, fmt="imagefolder", images=images, class_names=class_names, rejected=_no_rejections())


def _imagefolder_class_ids(root, folders, declared):
    """Folder name -> class id (see the module docstring for the rule)."""
    if declared is not None:
        id_by_name = {name: class_id for class_id, name in declared.items()}
        folder_ids = {}
        for folder in folders:
            if folder in id_by_name:
                folder_ids[folder] = id_by_name[folder]
            elif INTEGER_PATTERN.match(folder) and int(folder) in declared:
                folder_ids[folder] = int(folder)
            else:
                raise UserError(f"{root}: class folder '{folder}' is neither a name nor an id in "
                                f"{root / CLASS_NAMES_FILE}")
        return folder_ids
    if all(INTEGER_PATTERN.match(folder) for folder in folders):
        folder_ids = {folder: int(folder) for folder in folders}
        negative = [folder for folder, class_id in folder_ids.items() if class_id < 0]
        if negative:
            raise UserError(f"{root / negative[0]}: class folder names a negative class id")
        return folder_ids
    return {folder: class_id for class_id, folder in enumerate(folders)}


def _class_folders_present(root):
    for child in root.iterdir():
        if child.is_dir() and not child.name.startswith("."):
            if any(True for _ in child.iterdir()):
                return True
    return False


def files_under(folder):
    """Every entry anywhere under `folder` (sorted) except the folders it descends into: files, and symbolic links
    of every kind, a dangling link, a link loop or a link to a folder included, so a reader lists those with their
    reason (file_problem) instead of passing over them. Linked folders are not descended into."""
    return sorted(path for path in Path(folder).rglob("*") if path.is_symlink() or not path.is_dir())


def file_problem(path):
    """(reason, detail) of rejected.csv when `path` is not a readable regular file's path (missing, a dangling
    link, a link loop, a folder), else None. The one rule for cleaning (sources, cleaning.inspect_image), predict.py
    and evaluate.py."""
    try:
        mode = os.stat(path).st_mode
        if stat.S_ISREG(mode):
            return None
        if not stat.S_ISDIR(mode):
            return "unreadable_file", "not a regular file (a device, pipe or socket)"
        linked = f" (a link to {os.readlink(path)})" if os.path.islink(path) else ""
        return "unreadable_file", f"a folder{linked}, not a file; the files in a linked folder are not read"
    except FileNotFoundError:
        if os.path.islink(path):
            return "missing_file", f"a symbolic link to {os.readlink(path)}, which does not exist"
        return "missing_file", "listed in the source but the file does not exist"
    except OSError as error:
        if error.errno == errno.ELOOP:
            return "unreadable_file", "a symbolic link loop (it leads back to itself)"
        return "unreadable_file", error.strerror or str(error)


# ----------------------------------------------------------------------------------------------------
# CSV
# ----------------------------------------------------------------------------------------------------
def _read_csv_source(path, path_column, label_column, split_column):
    csv_path = path if path.is_file() else _single_data_csv(path)
    table = _read_csv_table(csv_path)
    if table.empty:
        raise UserError(f"{csv_path}: no rows")
    path_column = _pick_column(csv_path, table, path_column, IMAGE_COLUMN_CANDIDATES, "image path", "--path-column")
    label_column = _pick_column(csv_path, table, label_column, LABEL_COLUMN_CANDIDATES, "label", "--label-column")
    if split_column is None:
        split_column = next((c for c in table.columns if c.strip().lower() in SPLIT_COLUMN_CANDIDATES), None)
    elif split_column not in table.columns:
        raise UserError(f"{csv_path}: no column '{split_column}' (columns: {', '.join(table.columns)})")
    line_of = {row: row + 2 for row in table.index}  # header is line 1
    declared = read_class_names(csv_path.parent)

    labels, class_names = _parse_labels(table[label_column], label_column, declared, csv_path.parent / CLASS_NAMES_FILE,
                                        lambda row: f"{csv_path}: line {line_of[row]}")

    paths = []
    for row, raw in table[path_column].items():
        if not raw.strip():
            raise UserError(f"{csv_path}: line {line_of[row]}: empty {path_column}")
        paths.append(os.path.abspath(csv_path.parent / raw.strip()))

    if split_column is None:
        splits = [""] * len(table)
    else:
        splits = []
        for row, raw in table[split_column].items():
            split = SPLIT_ALIASES.get(raw.strip().lower())
            if split is None:
                raise UserError(f"{csv_path}: line {line_of[row]}: {split_column} '{raw}' is not train or val")
            splits.append(split)
    images = pd.DataFrame({"path": paths, "label": labels, "split": splits,
                           ENTRY_COLUMN: [f"{csv_path.name} line {line_of[row]}" for row in table.index]})
    return Source(root=csv_path.parent, fmt="csv", images=images, class_names=class_names,
                  rejected=_no_rejections())


def _parse_labels(raw_labels, label_column, declared, names_file, where):
    """Integer labels (ids) or class names (a Series of text) -> (list of ids, {id: name}).

    declared: class_names.csv's {id: name} (from names_file) or None; where(row) names the file and line of a row.
    """
    stripped = raw_labels.str.strip()
    empty = stripped.eq("")
    if empty.any():
        raise UserError(f"{where(empty.idxmax())}: empty {label_column}")
    is_integer = stripped.str.match(INTEGER_PATTERN.pattern)
    by_name = label_column.strip().lower() in NAME_LABEL_COLUMNS or not is_integer.any()
    if by_name:
        if declared is not None:
            id_by_name = {name: class_id for class_id, name in declared.items()}
            unknown = ~stripped.isin(list(id_by_name))
            if unknown.any():
                row = unknown.idxmax()
                raise UserError(f"{where(row)}: {label_column} '{stripped[row]}' is not a class name in {names_file}")
            return [id_by_name[name] for name in stripped], declared
        names = sorted(set(stripped))
        id_by_name = {name: class_id for class_id, name in enumerate(names)}
        return [id_by_name[name] for name in stripped], {class_id: name for name, class_id in id_by_name.items()}
    if not is_integer.all():
        row = (~is_integer).idxmax()
        raise UserError(f"{where(row)}: {label_column} '{stripped[row]}' is not an integer "
                        f"(the other labels are integer class ids)")
    labels = [int(value) for value in stripped]
    for row, label in zip(stripped.index, labels):
        if label < 0:
            raise UserError(f"{where(row)}: {label_column} {label} is negative")
        if declared is not None and label not in declared:
            raise UserError(f"{where(row)}: {label_column} {label} is not an id in {names_file}")
    class_names = declared or {class_id: f"class_{class_id}" for class_id in sorted(set(labels))}
    return labels, class_names


def _pick_column(csv_path, table, requested, candidates, what, option):
    if requested is not None:
        if requested not in table.columns:
            raise UserError(f"{csv_path}: no column '{requested}' (columns: {', '.join(table.columns)})")
        return requested
    by_lower = {column.strip().lower(): column for column in table.columns}
    for candidate in candidates:
        if candidate in by_lower:
            return by_lower[candidate]
    raise UserError(f"{csv_path}: no {what} column (looked for {', '.join(candidates)}; columns: "
                    f"{', '.join(table.columns)}); name it with {option}")


def _read_csv_table(csv_path):
    try:
        return pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError:
        raise UserError(f"{csv_path}: empty file") from None
    except (OSError, UnicodeDecodeError, pd.errors.ParserError) as error:
        raise UserError(f"{csv_path}: not a readable CSV ({str(error).strip()})") from None


def _data_csvs(folder):
    return sorted(p for p in folder.glob("*.csv") if p.is_file() and p.name not in (CLASS_NAMES_FILE, HIERARCHY_FILE))


def _single_data_csv(folder):
    csvs = _data_csvs(folder)
    if len(csvs) != 1:
        found = ", ".join(p.name for p in csvs) or "none"
        raise UserError(f"{folder}: expected exactly one data CSV file (found: {found}); pass the CSV file itself")
    return csvs[0]


# ----------------------------------------------------------------------------------------------------
# Text lists
# ----------------------------------------------------------------------------------------------------
def _read_list_source(list_path, val_list):
    if list_path.is_dir():
        raise UserError(f"{list_path}: a folder; --format list reads a text file of '<image path> <label>' lines: "
                        f"pass that file (and --val-list for the validation list)")
    lists = {"": list_path}
    if val_list is not None:
        val_list = Path(val_list)
        if not val_list.is_file():
            raise UserError(f"--val-list {val_list}: no such file")
        lists = {"train": list_path, "val": val_list}
    tables = []
    for split, path in lists.items():
        entries = _read_list(path, lambda relative: os.path.abspath(path.parent / relative))
        tables.append(pd.DataFrame(entries, columns=["line", "path", "label"]).assign(file=str(path), split=split))
    entries = pd.concat(tables, ignore_index=True)
    labels, class_names = _parse_labels(entries["label"], "label", read_class_names(list_path.parent),
                                        list_path.parent / CLASS_NAMES_FILE,
                                        lambda row: f"{entries.at[row, 'file']}: line {entries.at[row, 'line']}")
    images = entries[SOURCE_COLUMNS].assign(
        label=labels, **{ENTRY_COLUMN: [f"{Path(file).name} line {line}"
                                        for file, line in zip(entries["file"], entries["line"])]})
    return Source(root=list_path.parent, fmt="list", images=images, class_names=class_names,
                  rejected=_no_rejections())


def _read_list(list_path, resolve):
    """(line number, absolute image path, label text) for each non-blank line of a '<image path> <label>' list;
    resolve(relative path with forward slashes) gives the absolute path."""
    try:
        text = list_path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        raise UserError(f"{list_path}: cannot read ({error})") from None
    entries = []
    for line_number, line in enumerate(text.split("\n"), start=1):
        line = line.strip()
        if not line:
            continue
        match = LIST_LINE_PATTERN.match(line)
        if match is None:
            raise UserError(f"{list_path}: line {line_number}: expected '<image path> <label>', got '{line:.80}'")
        written = match["path"]
        # A Windows absolute path stays as written: _reject_outside_dataset lists it as outside_dataset.
        image_path = written if WINDOWS_ABSOLUTE_PATTERN.match(written) else resolve(written.replace("\\", "/"))
        entries.append((line_number, image_path, match["label"]))
    if not entries:
        raise UserError(f"{list_path}: no entries")
    return entries


# ----------------------------------------------------------------------------------------------------
# Shared
# ----------------------------------------------------------------------------------------------------
def read_class_names(folder):
    """{id: name} from <folder>/class_names.csv (columns id,name), or None when there is no such file."""
    path = Path(folder) / CLASS_NAMES_FILE
    if not path.is_file():
        return None
    table = _read_csv_table(path)
    missing = [column for column in ("id", "name") if column not in table.columns]
    if missing:
        raise UserError(f"{path}: missing column(s) {', '.join(missing)} (expected id,name)")
    if table.empty:
        raise UserError(f"{path}: no rows")
    names = {}
    for row, (raw_id, name) in enumerate(zip(table["id"], table["name"])):
        line = row + 2
        if not INTEGER_PATTERN.match(raw_id.strip()) or int(raw_id) < 0:
            raise UserError(f"{path}: line {line}: id '{raw_id}' is not a non-negative integer")
        if not name.strip():
            raise UserError(f"{path}: line {line}: empty name")
        class_id = int(raw_id)
        if class_id in names:
            raise UserError(f"{path}: line {line}: id {class_id} is listed twice")
        names[class_id] = name.strip()
    if len(set(names.values())) != len(names):
        raise UserError(f"{path}: class names must be unique")
    return dict(sorted(names.items()))


def _no_rejections():
    return pd.DataFrame(columns=REJECTED_COLUMNS)


def _reject_repeated_entries(source):
    """Keep one listing of each image (see the module docstring's rule); repeats and label conflicts move to
    rejected, each naming every listing of its image."""
    images = source.images
    if ENTRY_COLUMN not in images:
        return
    # A training listing before a validation one: a repeat across splits keeps the image for training.
    order = images.assign(_train_first=images["split"] != "train").sort_values(["_train_first"], kind="stable")
    repeated = order.loc[order["path"].duplicated(keep=False)]
    rejected_rows, dropped = [], []
    for path, listings in repeated.groupby("path", sort=False):
        named = "; ".join(f"{entry} ({split or 'unsplit'}, label {label})"
                          for entry, split, label in zip(listings[ENTRY_COLUMN], listings["split"], listings["label"]))
        conflict = listings["label"].nunique() > 1
        rejects = listings if conflict else listings.iloc[1:]
        reason = "label_conflict" if conflict else "duplicate_entry"
        detail = f"listed {len(listings)} times: {named}"
        rejected_rows += [(path, split, reason, detail, label)
                          for split, label in zip(rejects["split"], rejects["label"])]
        dropped += list(rejects.index)
    source.images = images.drop(index=dropped).drop(columns=ENTRY_COLUMN).reset_index(drop=True)
    source.rejected = pd.concat([source.rejected, pd.DataFrame(rejected_rows, columns=REJECTED_COLUMNS)],
                                ignore_index=True)
def _reject_outside_dataset(source, listing, folder_of_split):
    """Move the images whose path leaves their split's folder to rejected ('outside_dataset'), without touching
    those files; all of them outside is an error naming `listing` (the dataset or list given)."""
    images = source.images
    folders = {split: os.path.abspath(folder) for split, folder in folder_of_split.items()}
    # Every listed path is absolute here but a Windows one (C:\x.jpg, _read_list), which is outside by definition.
    outside = pd.Series([not os.path.isabs(path) or os.path.commonpath([path, folders[split]]) != folders[split]
                         for path, split in zip(images["path"], images["split"])], index=images.index, dtype=bool)
    if not outside.any():
        return
    if outside.all():
        raise UserError(f"{listing}: all {len(images)} listed images lie outside the dataset folder "
                        f"(first: {images['path'].iloc[0]}); a CSV source may name images anywhere")
    rows = images.loc[outside]
    source.rejected = pd.concat([source.rejected, pd.DataFrame({
        "path": rows["path"], "split": rows["split"], "reason": "outside_dataset",
        "detail": [f"the listed path leaves {folders[split]}" if os.path.isabs(path) else
                   f"a Windows drive or share path, outside {folders[split]}"
                   for path, split in zip(rows["path"], rows["split"])], "label": rows["label"],
    }, columns=REJECTED_COLUMNS)], ignore_index=True)
    source.images = images.loc[~outside].reset_index(drop=True)


def _drop_missing_files(source):
    """Move listed paths that are not files (absent, a dangling link, a link loop, a folder: file_problem) from
    images to rejected; none of them a file means the layout is wrong."""
    images = source.images
    problems = images["path"].map(file_problem)
    exists = problems.isna().astype(bool)
    if not exists.any():
        raise UserError(f"{source.root}: none of the {len(images)} listed images exist "
                        f"(first: {images['path'].iloc[0]}); is the image folder in place?")
    missing = images.loc[~exists]
    problems = problems.loc[~exists]
    source.rejected = pd.concat([source.rejected, pd.DataFrame({
        "path": missing["path"], "split": missing["split"], "reason": [reason for reason, _ in problems],
        "detail": [detail for _, detail in problems], "label": missing["label"],
    }, columns=REJECTED_COLUMNS)], ignore_index=True)
    source.images = images.loc[exists].reset_index(drop=True).astype({"label": "int64"})
