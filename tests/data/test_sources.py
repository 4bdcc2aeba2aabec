"""sources.py: each layout read from a tiny fixture, and every malformed input a UserError naming file and entry."""
import json
import os
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from leafdisease.data.aichallenger_classes import AICHALLENGER_CLASS_NAMES
from leafdisease.data.sources import AICHALLENGER_LISTS, AICHALLENGER_SPLITS, detect_format, read_source
from leafdisease.utils.errors import UserError

TRAIN_DIR, TRAIN_JSON = AICHALLENGER_SPLITS["train"]
VAL_DIR, VAL_JSON = AICHALLENGER_SPLITS["val"]


def write_image(path, seed=0, size=8):
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    assert cv2.imwrite(str(path), pixels)
    return path


def write_aichallenger(root, train, val=None, train_entries=None):
    """train/val: lists of (image_id, disease_class); train_entries overrides the training JSON content."""
    splits = ((TRAIN_DIR, TRAIN_JSON, train), (VAL_DIR, VAL_JSON, val))
    for seed_offset, (folder, annotations, items) in enumerate(splits):
        if items is None:
            continue
        for seed, (image_id, _) in enumerate(items):
            write_image(root / folder / "images" / image_id, seed=seed + 1000 * seed_offset)
        entries = [{"image_id": image_id, "disease_class": label} for image_id, label in items]
        (root / folder / annotations).write_text(json.dumps(entries))
    if train_entries is not None:
        (root / TRAIN_DIR / TRAIN_JSON).write_text(train_entries if isinstance(train_entries, str)
                                                   else json.dumps(train_entries))
    return root


def write_aichallenger_lists(root, train_text, val_text=None, val_name="ttest_list.txt", images=()):
    """The text-list copy: list files written verbatim; images: paths relative to root to create."""
    for seed, relative in enumerate(images):
        write_image(root / relative, seed=seed)
    (root / TRAIN_DIR).mkdir(parents=True, exist_ok=True)
    (root / TRAIN_DIR / "train_list.txt").write_text(train_text, newline="")
    if val_text is not None:
        (root / VAL_DIR).mkdir(parents=True, exist_ok=True)
        (root / VAL_DIR / val_name).write_text(val_text, newline="")
    return root


def write_class_names(folder, names):
    pd.DataFrame({"id": list(names), "name": list(names.values())}).to_csv(folder / "class_names.csv", index=False)


def write_imagefolder(root, layout):
    """layout: {relative class folder: number of images}."""
    seed = 0
    for folder, count in layout.items():
        for index in range(count):
            write_image(root / folder / f"img{index}.png", seed=seed)
            seed += 1
    return root


# ----------------------------------------------------------------------------------------------------
# Readers
# ----------------------------------------------------------------------------------------------------
def test_reads_aichallenger_train_and_val(tmp_path):
    root = write_aichallenger(tmp_path, train=[("a.jpg", 0), ("b.jpg", 60), ("c.jpg", 0)], val=[("d.jpg", 60)])
    source = read_source(root)
    assert source.fmt == "aichallenger"
    images = source.images.sort_values("path").reset_index(drop=True)
    assert images["path"].tolist() == [str(root / TRAIN_DIR / "images" / name) for name in ("a.jpg", "b.jpg", "c.jpg")
                                       ] + [str(root / VAL_DIR / "images" / "d.jpg")]
    assert images["label"].tolist() == [0, 60, 0, 60]
    assert images["split"].tolist() == ["train", "train", "train", "val"]
    assert source.class_names == {0: "Apple_healthy", 60: "Tomato_mosaic_virus"}  # the official names
    assert source.rejected.empty


def test_official_names_are_the_demo_generators_table():
    from leafdisease.data import demo_data

    assert demo_data.CLASS_NAMES is AICHALLENGER_CLASS_NAMES
    assert len(AICHALLENGER_CLASS_NAMES) == 61 and len(set(AICHALLENGER_CLASS_NAMES)) == 61
    assert (AICHALLENGER_CLASS_NAMES[1], AICHALLENGER_CLASS_NAMES[60]) == ("Apple_scab_general", "Tomato_mosaic_virus")


@pytest.mark.parametrize("val_name", AICHALLENGER_LISTS["val"])
def test_reads_aichallenger_lists(tmp_path, val_name):
    """Windows backslashes, ROOT-relative paths, spaces in names, tabs, CRLF, blank lines, trailing whitespace."""
    images = [f"{TRAIN_DIR}/images/1_0.jpg", f"{TRAIN_DIR}/images/leaf 2 (copy).jpg", f"{TRAIN_DIR}/images/sub/3.jpg",
              f"{VAL_DIR}/images/v 1.jpg", f"{VAL_DIR}/images/v2.jpg"]
    train_text = (f"images\\1_0.jpg 1\r\n\r\n{TRAIN_DIR}/images/leaf 2 (copy).jpg\t60   \r\n"
                  f"  images\\sub\\3.jpg  1\r\n\r\n")
    val_text = f"images/v 1.jpg 0\n{VAL_DIR}\\images\\v2.jpg 60\n   \n"
    root = write_aichallenger_lists(tmp_path, train_text, val_text, val_name, images)
    assert detect_format(root) == "aichallenger-list"
    source = read_source(root)
    assert source.fmt == "aichallenger-list"
    assert source.images.values.tolist() == [[str(root / images[0]), 1, "train"], [str(root / images[1]), 60, "train"],
                                             [str(root / images[2]), 1, "train"], [str(root / images[3]), 0, "val"],
                                             [str(root / images[4]), 60, "val"]]
    assert source.class_names == {0: "Apple_healthy", 1: "Apple_scab_general", 60: "Tomato_mosaic_virus"}
    assert source.rejected.empty


def test_aichallenger_json_wins_detection_and_lists_can_be_forced(tmp_path):
    root = write_aichallenger(tmp_path, train=[("a.jpg", 0), ("b.jpg", 5)])
    (root / TRAIN_DIR / "train_list.txt").write_text("images/b.jpg 7\n")
    assert detect_format(root) == "aichallenger"
    assert read_source(root).images["label"].tolist() == [0, 5]
    forced = read_source(root, fmt="aichallenger-list")
    assert forced.images["label"].tolist() == [7] and forced.class_names == {7: "Cherry_powdery_mildew_general"}
    assert set(forced.images["split"]) == {"train"}


def test_aichallenger_list_missing_file_is_a_rejection_and_class_names_csv_wins(tmp_path):
    root = write_aichallenger_lists(tmp_path, "images/a.jpg 3\nimages/gone.jpg 70\n", images=[f"{TRAIN_DIR}/images/a.jpg"])
    write_class_names(root, {3: "Apple_scab", 70: "Extra_class"})
    source = read_source(root)
    assert source.images["path"].tolist() == [str(root / TRAIN_DIR / "images" / "a.jpg")]
    assert source.rejected[["path", "reason", "label", "split"]].values.tolist() == [
        [str(root / TRAIN_DIR / "images" / "gone.jpg"), "missing_file", 70, "train"]]
    assert source.class_names == {3: "Apple_scab", 70: "Extra_class"}


def test_reads_generic_list_with_names_and_val_list(tmp_path):
    for seed, relative in enumerate(["data/img/a.jpg", "data/img/b c.jpg", "data/img/d.jpg", "valset/e.jpg"]):
        write_image(tmp_path / relative, seed=seed)
    train_list = tmp_path / "data" / "train.txt"
    train_list.write_text("img/a.jpg Tomato_healthy\r\nimg\\b c.jpg  Apple_scab \n\nimg/d.jpg Tomato_healthy\n")
    (tmp_path / "valset" / "list.txt").write_text("e.jpg Apple_scab\n")
    assert detect_format(train_list) == "list"
    source = read_source(train_list, val_list=tmp_path / "valset" / "list.txt")
    assert source.fmt == "list"
    assert source.images.values.tolist() == [[str(tmp_path / "data/img/a.jpg"), 1, "train"],
                                             [str(tmp_path / "data/img/b c.jpg"), 0, "train"],
                                             [str(tmp_path / "data/img/d.jpg"), 1, "train"],
                                             [str(tmp_path / "valset/e.jpg"), 0, "val"]]
    assert source.class_names == {0: "Apple_scab", 1: "Tomato_healthy"}

    write_class_names(tmp_path / "data", {4: "Apple_scab", 9: "Tomato_healthy"})
    source = read_source(train_list, fmt="list")
    assert source.images["label"].tolist() == [9, 4, 9] and set(source.images["split"]) == {""}


def test_generic_list_integer_ids_and_missing_file(tmp_path):
    write_image(tmp_path / "x.png")
    (tmp_path / "labels.txt").write_text("x.png 4\ny.png 2\n")
    source = read_source(tmp_path / "labels.txt")
    assert source.images["label"].tolist() == [4]
    assert source.class_names == {2: "class_2", 4: "class_4"}  # not AI Challenger: no official names
    assert source.rejected[["reason", "label", "split"]].values.tolist() == [["missing_file", 2, ""]]


def test_aichallenger_names_from_class_names_csv_and_no_val_folder(tmp_path):
    root = write_aichallenger(tmp_path, train=[("a.jpg", 3), ("b.jpg", 70)])
    write_class_names(root, {3: "Apple_scab", 70: "Extra_class"})
    source = read_source(root)
    assert set(source.images["split"]) == {"train"}
    assert source.class_names == {3: "Apple_scab", 70: "Extra_class"}


def test_reads_flat_imagefolder(tmp_path):
    root = write_imagefolder(tmp_path, {"Tomato_healthy": 2, "Apple_scab": 1})
    source = read_source(root)
    assert source.fmt == "imagefolder"
    assert source.class_names == {0: "Apple_scab", 1: "Tomato_healthy"}
    assert sorted(source.images["label"]) == [0, 1, 1]
    assert set(source.images["split"]) == {""}
    assert all(os.path.isabs(p) for p in source.images["path"])


def test_reads_imagefolder_with_train_and_valid(tmp_path):
    root = write_imagefolder(tmp_path, {"train/b": 2, "train/a": 1, "valid/a": 1, "valid/b": 1, "test/a": 5})
    source = read_source(root)
    assert source.class_names == {0: "a", 1: "b"}
    counts = source.images.groupby(["split", "label"]).size().to_dict()
    assert counts == {("train", 0): 1, ("train", 1): 2, ("val", 0): 1, ("val", 1): 1}  # test/ is not read


def test_imagefolder_integer_folders_keep_their_ids(tmp_path):
    root = write_imagefolder(tmp_path, {"2": 1, "10": 1})
    source = read_source(root)
    assert source.class_names == {2: "class_2", 10: "class_10"}
    assert sorted(source.images["label"]) == [2, 10]


def test_imagefolder_uses_class_names_csv_ids(tmp_path):
    root = write_imagefolder(tmp_path, {"Apple_scab": 1, "Corn_rust": 1})
    write_class_names(root, {7: "Corn_rust", 9: "Apple_scab"})
    source = read_source(root)
    label_of = {os.path.basename(os.path.dirname(path)): label
                for path, label in zip(source.images["path"], source.images["label"])}
    assert label_of == {"Apple_scab": 9, "Corn_rust": 7}


def test_reads_csv_with_relative_paths_ids_and_split(tmp_path):
    write_image(tmp_path / "imgs" / "x.png")
    write_image(tmp_path / "imgs" / "y.png", seed=1)
    absolute = write_image(tmp_path / "elsewhere" / "z.png", seed=2)
    (tmp_path / "labels.csv").write_text(f"filename,disease_class,split\nimgs/x.png,4,train\nimgs/y.png,4,Validation\n"
                                         f"{absolute},1,train\n")
    source = read_source(tmp_path)
    assert source.fmt == "csv"
    assert source.images["path"].tolist() == [str(tmp_path / "imgs" / "x.png"), str(tmp_path / "imgs" / "y.png"),
                                              str(absolute)]
    assert source.images["label"].tolist() == [4, 4, 1]
    assert source.images["split"].tolist() == ["train", "val", "train"]
    assert source.class_names == {1: "class_1", 4: "class_4"}


def test_reads_csv_with_class_names_and_named_columns(tmp_path):
    for name in ("p.png", "q.png", "r.png"):
        write_image(tmp_path / name, seed=len(name) + ord(name[0]))
    csv_path = tmp_path / "data.csv"
    csv_path.write_text("file_ref,disease\np.png,Tomato_healthy\nq.png,Apple_scab\nr.png,Tomato_healthy\n")
    source = read_source(csv_path, path_column="file_ref", label_column="disease")
    assert source.class_names == {0: "Apple_scab", 1: "Tomato_healthy"}
    assert source.images["label"].tolist() == [1, 0, 1]
    assert set(source.images["split"]) == {""}

    write_class_names(tmp_path, {5: "Apple_scab", 8: "Tomato_healthy"})
    source = read_source(csv_path, fmt="csv", path_column="file_ref", label_column="disease")
    assert source.images["label"].tolist() == [8, 5, 8]


def test_missing_listed_file_is_a_rejection_not_an_error(tmp_path):
    root = write_aichallenger(tmp_path, train=[("a.jpg", 0), ("b.jpg", 1)])
    (root / TRAIN_DIR / "images" / "b.jpg").unlink()
    source = read_source(root)
    assert source.images["path"].tolist() == [str(root / TRAIN_DIR / "images" / "a.jpg")]
    assert source.rejected[["reason", "label", "split"]].values.tolist() == [["missing_file", 1, "train"]]


def _by_reason(source):
    return {reason: sorted(zip(rows["path"].map(lambda p: Path(p).name), rows["split"], rows["label"]))
            for reason, rows in source.rejected.groupby("reason")}


def test_repeated_json_entries_keep_one_listing_and_reject_repeats_and_conflicts(tmp_path):
    """The official download: ids repeated with the same label (twice, three times) and with two labels, in train
    and val, and one id in both splits (two different files)."""
    root = write_aichallenger(tmp_path, train=[("a.jpg", 0), ("b.jpg", 1), ("c.jpg", 2), ("d.jpg", 3)],
                              val=[("a.jpg", 0), ("e.jpg", 1)])
    (root / TRAIN_DIR / TRAIN_JSON).write_text(json.dumps([
        {"image_id": image_id, "disease_class": label}
        for image_id, label in [("a.jpg", 0), ("b.jpg", 1), ("b.jpg", 1), ("c.jpg", 58), ("c.jpg", 59),
                                ("d.jpg", 3), ("d.jpg", 3), ("d.jpg", 3)]]))
    (root / VAL_DIR / VAL_JSON).write_text(json.dumps([{"image_id": "a.jpg", "disease_class": 0},
                                                       {"image_id": "e.jpg", "disease_class": 1},
                                                       {"image_id": "e.jpg", "disease_class": 1}]))
    source = read_source(root)
    kept = sorted(zip(source.images["path"].map(lambda p: Path(p).name), source.images["split"]))
    assert kept == [("a.jpg", "train"), ("a.jpg", "val"), ("b.jpg", "train"), ("d.jpg", "train"), ("e.jpg", "val")]
    assert _by_reason(source) == {
        "duplicate_entry": [("b.jpg", "train", 1), ("d.jpg", "train", 3), ("d.jpg", "train", 3),
                            ("e.jpg", "val", 1)],
        "label_conflict": [("c.jpg", "train", 58), ("c.jpg", "train", 59)]}
    conflict = source.rejected.loc[source.rejected["reason"] == "label_conflict", "detail"].iloc[0]
    assert conflict == (f"listed 2 times: {TRAIN_JSON} entry 3 (train, label 58); "
                        f"{TRAIN_JSON} entry 4 (train, label 59)")
    triple = source.rejected.loc[source.rejected["reason"] == "duplicate_entry", "detail"]
    assert f"listed 3 times: {TRAIN_JSON} entry 5 (train, label 3); {TRAIN_JSON} entry 6" in triple.iloc[1]


def test_repeated_list_and_csv_lines_and_a_path_in_both_splits(tmp_path):
    root = write_aichallenger_lists(tmp_path / "aic", "images/a.jpg 0\nimages\\a.jpg 0\nimages/b.jpg 1\n"
                                    "images/b.jpg 2\n", images=[f"{TRAIN_DIR}/images/a.jpg", f"{TRAIN_DIR}/images/b.jpg"])
    source = read_source(root)
    assert list(source.images["path"].map(lambda p: Path(p).name)) == ["a.jpg"]
    assert _by_reason(source) == {"duplicate_entry": [("a.jpg", "train", 0)],
                                  "label_conflict": [("b.jpg", "train", 1), ("b.jpg", "train", 2)]}
    assert "train_list.txt line 1 (train, label 0); train_list.txt line 2" in source.rejected["detail"].iloc[0]

    # A CSV listing one image for validation first and for training after: the training listing is kept.
    _csv("path,label,split\na.png,0,val\n./a.png,0,train\nb.png,1,train\n")(tmp_path / "csv")
    source = read_source(tmp_path / "csv")
    assert sorted(zip(source.images["path"].map(lambda p: Path(p).name), source.images["split"])) == [
        ("a.png", "train"), ("b.png", "train")]
    assert _by_reason(source) == {"duplicate_entry": [("a.png", "val", 0)]}
    assert "labels.csv line 3 (train, label 0); labels.csv line 2 (val, label 0)" in source.rejected["detail"].iloc[0]

    # A generic list and its --val-list naming the same image with two labels: dropped from both.
    _text_list("a.png 0\nb.png 1\n")(tmp_path / "list")
    (tmp_path / "list" / "val.txt").write_text("a.png 1\nb.png 1\n")
    source = read_source(tmp_path / "list" / "labels.txt", val_list=tmp_path / "list" / "val.txt")
    assert _by_reason(source) == {"duplicate_entry": [("b.png", "val", 1)],
                                  "label_conflict": [("a.png", "train", 0), ("a.png", "val", 1)]}


def test_format_override_beats_detection(tmp_path):
    write_imagefolder(tmp_path, {"images": 2})
    (tmp_path / "index.csv").write_text("path,label\nimages/img0.png,0\nimages/img1.png,1\n")
    assert detect_format(tmp_path) == "csv"
    assert read_source(tmp_path, fmt="imagefolder").class_names == {0: "images"}


# ----------------------------------------------------------------------------------------------------
# Bad input: one UserError naming the file and the entry
# ----------------------------------------------------------------------------------------------------
def _aic_entries(entries):
    return lambda root: write_aichallenger(root, train=[("a.jpg", 0)], train_entries=entries)


def _csv(text, images=("a.png", "b.png")):
    def build(root):
        for seed, name in enumerate(images):
            write_image(root / name, seed=seed)
        (root / "labels.csv").write_text(text)
        return root
    return build


def _all_missing(root):
    write_aichallenger(root, train=[("a.jpg", 0)])
    (root / TRAIN_DIR / "images" / "a.jpg").unlink()
    return root


def _no_training_annotations(root):
    write_aichallenger(root, train=[("a.jpg", 0)], val=[("b.jpg", 0)])
    (root / TRAIN_DIR / TRAIN_JSON).unlink()
    return root


def _only_a_text_file(root):
    (root / "notes.txt").write_text("hi")
    return root


def _label_not_in_class_names(root):
    _aic_entries([{"image_id": "a.jpg", "disease_class": 3}])(root)
    write_class_names(root, {0: "Apple"})
    return root


def _aic_lists(train_text, val_text=None, val_names=("ttest_list.txt",)):
    def build(root):
        write_aichallenger_lists(root, train_text, images=[f"{TRAIN_DIR}/images/a.jpg", f"{TRAIN_DIR}/images/b.jpg"])
        for name in val_names if val_text is not None else ():
            write_aichallenger_lists(root, train_text, val_text, name)
        return root
    return build


def _aic_val_folder_without_list(root):
    _aic_lists("images/a.jpg 0\n")(root)
    (root / VAL_DIR / "images").mkdir(parents=True)
    return root


def _text_list(text, images=("a.png", "b.png")):
    def build(root):
        for seed, name in enumerate(images):
            write_image(root / name, seed=seed)
        (root / "labels.txt").write_text(text)
        return root / "labels.txt"
    return build


def _class_names(text):
    def build(root):
        write_aichallenger(root, train=[("a.jpg", 0)])
        (root / "class_names.csv").write_text(text)
        return root
    return build


BAD_INPUTS = {
    "missing path": (lambda root: root / "nowhere", ["nowhere", "no such file"]),
    "unknown layout": (_only_a_text_file, ["unknown dataset layout"]),
    "invalid json": (_aic_entries("[{"), [TRAIN_JSON, "not valid JSON"]),
    "json not a list": (_aic_entries({"image_id": "a.jpg"}), [TRAIN_JSON, "expected a JSON list"]),
    "empty list": (_aic_entries([]), [TRAIN_JSON, "no entries"]),
    "entry not an object": (_aic_entries([{"image_id": "a.jpg", "disease_class": 0}, 5]), [TRAIN_JSON, "entry 1"]),
    "missing key": (_aic_entries([{"image_id": "a.jpg"}]), [TRAIN_JSON, "entry 0", "disease_class"]),
    "non-integer label": (_aic_entries([{"image_id": "a.jpg", "disease_class": "x"}]),
                          [TRAIN_JSON, "entry 0", "'a.jpg'", "disease_class 'x' is not an integer"]),
    "boolean label": (_aic_entries([{"image_id": "a.jpg", "disease_class": True}]), [TRAIN_JSON, "not an integer"]),
    "float label": (_aic_entries([{"image_id": "a.jpg", "disease_class": 1.5}]), [TRAIN_JSON, "not an integer"]),
    "negative label": (_aic_entries([{"image_id": "a.jpg", "disease_class": -1}]),
                       [TRAIN_JSON, "out of range", "0..60"]),
    "label 61": (_aic_entries([{"image_id": "a.jpg", "disease_class": 61}]), [TRAIN_JSON, "entry 0", "out of range"]),
    "bad image id": (_aic_entries([{"image_id": "", "disease_class": 0}]), [TRAIN_JSON, "entry 0", "image_id"]),
    "no listed file exists": (_all_missing, ["none of the 1 listed images exist"]),
    "training annotations missing": (_no_training_annotations, [TRAIN_JSON, "not found"]),
    "label not in class_names.csv": (_label_not_in_class_names, [TRAIN_JSON, "entry 0", "class_names.csv"]),
    "class_names.csv bad id": (_class_names("id,name\nzero,Apple\n"), ["class_names.csv", "line 2", "'zero'"]),
    "class_names.csv duplicate id": (_class_names("id,name\n0,Apple\n0,Pear\n"),
                                     ["class_names.csv", "line 3", "twice"]),
    "class_names.csv columns": (_class_names("class,label\n0,Apple\n"), ["class_names.csv", "missing column"]),
    "csv without path column": (_csv("picture,label\na.png,0\n"), ["labels.csv", "no image path column"]),
    "csv without label column": (_csv("path,kind\na.png,0\n"), ["labels.csv", "no label column", "--label-column"]),
    "csv mixed labels": (_csv("path,label\na.png,0\nb.png,x\n"), ["labels.csv", "line 3", "'x' is not an integer"]),
    "csv negative label": (_csv("path,label\na.png,-2\n"), ["labels.csv", "line 2", "negative"]),
    "csv empty label": (_csv("path,label\na.png,\n"), ["labels.csv", "line 2", "empty label"]),
    "csv empty path": (_csv("path,label\n,1\n"), ["labels.csv", "line 2", "empty path"]),
    "csv bad split": (_csv("path,label,split\na.png,0,test\n"), ["labels.csv", "line 2", "'test' is not train or val"]),
    "csv no rows": (_csv("path,label\n"), ["labels.csv", "no rows"]),
    "list line without label": (_aic_lists("images/a.jpg 0\n\nimages/b.jpg\n"),
                                ["train_list.txt", "line 3", "expected '<image path> <label>'", "'images/b.jpg'"]),
    "list non-integer class id": (_aic_lists("images/a.jpg 0\nimages/b.jpg rust\n"),
                                  ["train_list.txt", "line 2", "class id 'rust' is not an integer"]),
    "list class id 61": (_aic_lists("images/a.jpg 61\n"), ["train_list.txt", "line 1", "out of range", "0..60"]),
    "list negative class id": (_aic_lists("images/a.jpg -1\n"), ["train_list.txt", "line 1", "out of range"]),
    "list only blank lines": (_aic_lists("images/a.jpg 0\n", val_text="\n  \n"), ["ttest_list.txt", "no entries"]),
    "list bad val line": (_aic_lists("images/a.jpg 0\n", val_text="images/a.jpg 0\n0\n"),
                          ["ttest_list.txt", "line 2", "expected"]),
    "two val lists": (_aic_lists("images/a.jpg 0\n", "images/a.jpg 0\n", ("ttest_list.txt", "val_list.txt")),
                      [VAL_DIR, "several val lists", "ttest_list.txt, val_list.txt"]),
    "val folder without list": (_aic_val_folder_without_list, [VAL_DIR, "no ttest_list.txt or test_list.txt"]),
    "text list mixed labels": (_text_list("a.png 0\nb.png rust\n"), ["labels.txt", "line 2", "'rust' is not an integer"]),
    "text list malformed line": (_text_list("a.png 0\nb.png\n"), ["labels.txt", "line 2", "expected"]),
    "text list label not in class_names.csv": (
        lambda root: (write_class_names(root, {0: "Apple"}), _text_list("a.png Pear\n")(root))[1],
        ["labels.txt", "line 1", "'Pear' is not a class name", "class_names.csv"]),
    "text list not utf-8": (lambda root: (_text_list("")(root), (root / "labels.txt").write_bytes(b"\xff\xfe\x00a"))[0],
                            ["labels.txt", "cannot read"]),
    "csv empty file": (_csv(""), ["labels.csv", "empty file"]),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_a_user_error_naming_file_and_entry(tmp_path, case):
    build, expected = BAD_INPUTS[case]
    path = build(tmp_path)
    with pytest.raises(UserError) as raised:
        read_source(path)
    message = str(raised.value)
    assert "\n" not in message
    for fragment in expected:
        assert fragment in message, f"{case}: {fragment!r} not in {message!r}"


def test_two_data_csvs_are_ambiguous(tmp_path):
    (tmp_path / "a.csv").write_text("path,label\n")
    (tmp_path / "b.csv").write_text("path,label\n")
    with pytest.raises(UserError, match="2 CSV files"):
        read_source(tmp_path)


def test_unknown_column_option_and_format(tmp_path):
    _csv("path,label\na.png,0\n")(tmp_path)
    with pytest.raises(UserError, match="no column 'file'"):
        read_source(tmp_path, path_column="file")
    with pytest.raises(UserError, match="unknown format 'coco'"):
        read_source(tmp_path, fmt="coco")


def test_forced_imagefolder_without_class_folders(tmp_path):
    (tmp_path / "empty_class").mkdir()
    with pytest.raises(UserError, match="no class folder with files"):
        read_source(tmp_path, fmt="imagefolder")


def test_list_options_are_checked(tmp_path):
    root = write_aichallenger(tmp_path / "aic", train=[("a.jpg", 0)])
    with pytest.raises(UserError, match="--val-list .*only for --format list.* read as aichallenger"):
        read_source(root, val_list=tmp_path / "val.txt")
    with pytest.raises(UserError, match="a folder; --format list reads a text file"):
        read_source(root, fmt="list")
    _text_list("a.png 0\n")(tmp_path)
    with pytest.raises(UserError, match="--val-list .*nowhere.txt: no such file"):
        read_source(tmp_path / "labels.txt", val_list=tmp_path / "nowhere.txt")
