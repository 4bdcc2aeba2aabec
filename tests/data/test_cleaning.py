"""cleaning.py: rejections with reasons, colour conversion, duplicates/leakage, split, output contract."""
import hashlib
import json
import os
import shutil

import cv2
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from dataset import load_metadata, read_image_rgb
from leafdisease.data.cleaning import clean_dataset, read_checked_rgb
from leafdisease.data.longtail import compute_class_weights
from leafdisease.data.sources import AICHALLENGER_SPLITS
from leafdisease.utils.errors import UserError

TRAIN_DIR, TRAIN_JSON = AICHALLENGER_SPLITS["train"]
VAL_DIR, VAL_JSON = AICHALLENGER_SPLITS["val"]


def write_image(path, seed=0, size=(12, 12)):
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)
    assert cv2.imwrite(str(path), pixels)
    return path


def write_imagefolder(root, counts, seed=0):
    """counts: {class folder: number of distinct images}."""
    for folder, count in counts.items():
        for index in range(count):
            seed += 1
            write_image(root / folder / f"img{index:03d}.png", seed=seed)
    return root


def write_aichallenger(root, train, val):
    """train/val: {image_id: (disease_class, bytes or None for a fresh random image)}."""
    seed = 0
    for folder, annotations, items in ((TRAIN_DIR, TRAIN_JSON, train), (VAL_DIR, VAL_JSON, val)):
        entries = []
        for image_id, (label, content) in items.items():
            path = root / folder / "images" / image_id
            seed += 1
            if content is None:
                write_image(path, seed=seed)
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(content)
            entries.append({"image_id": image_id, "disease_class": label})
        (root / folder / annotations).write_text(json.dumps(entries))
    return root


def read_metadata(out_dir, name):
    return pd.read_csv(out_dir / "metadata" / name, keep_default_na=False)


def rejected_reasons(out_dir):
    rejected = read_metadata(out_dir, "rejected.csv")
    return {os.path.basename(path): reason for path, reason in zip(rejected["path"], rejected["reason"])}


def test_unusable_files_land_in_rejected_csv_with_their_reason(tmp_path):
    leaf = write_imagefolder(tmp_path / "src", {"leaf": 4, "stem": 2}) / "leaf"
    (leaf / "zero.jpg").write_bytes(b"")
    noise = np.random.default_rng(9).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    full_jpeg = cv2.imencode(".jpg", noise)[1].tobytes()
    (leaf / "truncated.jpg").write_bytes(full_jpeg[: len(full_jpeg) // 2])
    png = bytearray(cv2.imencode(".png", np.random.default_rng(8).integers(0, 256, (32, 32, 3), dtype=np.uint8))[1])
    png[60:200] = bytes(b ^ 0x5A for b in png[60:200])  # scrambled pixel data behind an intact header
    (leaf / "corrupt.png").write_bytes(bytes(png))
    (leaf / "notes.jpg").write_text("not an image")
    (leaf / "readme.txt").write_text("neither")
    shutil.copy(leaf / "img000.png", leaf / "img000_copy.png")

    out = tmp_path / "cleaned"
    summary = clean_dataset(tmp_path / "src", out, workers=2)

    assert rejected_reasons(out) == {
        "zero.jpg": "empty_file", "truncated.jpg": "truncated", "corrupt.png": "corrupt", "notes.jpg": "not_image",
        "readme.txt": "not_image", "img000_copy.png": "duplicate",
    }
    rejected = read_metadata(out, "rejected.csv")
    assert list(rejected.columns)[:4] == ["path", "split", "reason", "detail"]
    assert rejected.loc[rejected["reason"] == "duplicate", "detail"].iloc[0].endswith("img000.png (kept)")
    assert summary["totals"] == {"listed": 12, "kept": 6, "train": 4, "val": 2, "rejected": 6, "classes": 2,
                                 "reencoded": 0}
    assert summary["rejected_by_reason"]["not_image"] == 2


def _color_variants(folder):
    """{file name: expected RGB as the trainer should see it} for every non-RGB kind we accept."""
    folder.mkdir(parents=True)
    colour = np.array([200, 120, 40], np.uint8)
    rgb = np.tile(colour, (16, 16, 1))
    gray = np.full((16, 16), 90, np.uint8)
    expected = {}

    Image.fromarray(gray).save(folder / "gray.png")
    Image.fromarray(gray).save(folder / "gray.jpg", quality=100)
    Image.fromarray(gray).convert("1", dither=Image.Dither.NONE).save(folder / "bilevel.png")
    expected.update({"gray.png": np.dstack([gray] * 3), "gray.jpg": np.dstack([gray] * 3),
                     "bilevel.png": np.zeros((16, 16, 3), np.uint8)})

    cv2.imwrite(str(folder / "gray16.png"), gray.astype(np.uint16) * 257)
    cv2.imwrite(str(folder / "rgb16.png"), rgb[..., ::-1].astype(np.uint16) * 257)
    expected.update({"gray16.png": np.dstack([gray] * 3), "rgb16.png": rgb})

    opaque = np.dstack([rgb, np.full((16, 16), 255, np.uint8)])
    Image.fromarray(opaque, "RGBA").save(folder / "rgba_opaque.png")
    transparent = opaque.copy()
    transparent[:8, :, 3] = 0  # top half fully transparent: flattened onto black
    Image.fromarray(transparent, "RGBA").save(folder / "rgba_transparent.png")
    flattened = rgb.copy()
    flattened[:8] = 0
    Image.fromarray(np.dstack([gray, np.full((16, 16), 255, np.uint8)]), "LA").save(folder / "gray_alpha.png")
    expected.update({"rgba_opaque.png": rgb, "rgba_transparent.png": flattened,
                     "gray_alpha.png": np.dstack([gray] * 3)})

    Image.fromarray(rgb).convert("CMYK").save(folder / "cmyk.jpg", quality=100)
    Image.fromarray(rgb).quantize(colors=4).save(folder / "palette.png")  # adaptive palette: exact colour
    expected.update({"cmyk.jpg": rgb, "palette.png": rgb})
    Image.fromarray(rgb).save(folder / "opencv_cannot_read.tga")
    Image.fromarray(rgb).convert("LAB").save(folder / "lab.tif")  # OpenCV reads it as if it were RGB
    expected.update({"opencv_cannot_read.tga": rgb, "lab.tif": rgb})
    return expected


def test_non_rgb_images_are_kept_and_read_as_8bit_rgb(tmp_path):
    kinds = tmp_path / "src" / "kinds"
    expected = _color_variants(kinds)
    write_imagefolder(tmp_path / "src", {"other": 1})
    out = tmp_path / "cleaned"
    summary = clean_dataset(tmp_path / "src", out, workers=1)

    assert read_metadata(out, "rejected.csv").empty
    assert summary["reencoded_by_reason"] == {"transparency": 1, "opencv_unreadable": 1, "unusual_color_mode": 1}
    assert summary["color_kinds"] == {"rgb": 2, "grayscale": 3, "16-bit": 2, "alpha": 3, "cmyk": 1, "palette": 1,
                                      "other:LAB": 1}
    kept_paths = pd.concat([load_metadata(out).train, load_metadata(out).val])["path"].tolist()
    for name, expected_rgb in expected.items():
        if name in ("rgba_transparent.png", "opencv_cannot_read.tga", "lab.tif"):
            # re-encoded copies are named by the original's content hash
            digest = hashlib.sha256((kinds / name).read_bytes()).hexdigest()[:20]
            path = next(p for p in kept_paths if digest in p)
            assert path.startswith(str(out / "images")) and path.endswith(".png"), name  # lossless conversions
            assert np.array_equal(read_image_rgb(path), read_checked_rgb(kinds / name)), "as predict.py sees it"
        else:
            path = str(kinds / name)
            assert path in kept_paths, name
        image = read_image_rgb(path)
        assert image.dtype == np.uint8 and image.shape == (16, 16, 3), name
        difference = image.astype(int) - expected_rgb.astype(int)
        assert np.abs(difference).max() <= 3, name  # gray.jpg and cmyk.jpg are JPEGs, at quality 100


def test_leakage_and_label_conflicts(tmp_path):
    shared = cv2.imencode(".png", np.random.default_rng(1).integers(0, 256, (8, 8, 3), dtype=np.uint8))[1].tobytes()
    disputed = cv2.imencode(".png", np.random.default_rng(2).integers(0, 256, (8, 8, 3), dtype=np.uint8))[1].tobytes()
    train = {"t1.png": (0, shared), "t2.png": (0, None), "t3.png": (1, None), "t4.png": (1, disputed),
             "t5.png": (2, disputed), "t6.png": (2, None)}
    val = {"v1.png": (0, shared), "v2.png": (1, None), "v3.png": (0, None)}
    out = tmp_path / "cleaned"
    summary = clean_dataset(write_aichallenger(tmp_path / "src", train, val), out)

    assert rejected_reasons(out) == {"v1.png": "leakage", "t4.png": "label_conflict", "t5.png": "label_conflict"}
    assert summary["split_from_source"] is True
    classes = read_metadata(out, "classes.csv")
    assert classes[["id", "train_count", "val_count"]].values.tolist() == [[0, 2, 1], [1, 1, 1], [2, 1, 0]]


def test_repeated_annotation_entries_are_counted_in_rejected_csv_and_summary(tmp_path):
    """The official JSON repeats ids: a repeat with the same label is kept once, one with two labels is dropped;
    a class with training images and no validation image is cleaned and named in the summary."""
    source = write_aichallenger(tmp_path / "src", {"a.png": (0, None), "b.png": (1, None), "c.png": (1, None),
                                                   "d.png": (2, None)}, {"v.png": (0, None), "w.png": (1, None)})
    annotations = source / TRAIN_DIR / TRAIN_JSON
    entries = json.loads(annotations.read_text())
    annotations.write_text(json.dumps(entries + [{"image_id": "a.png", "disease_class": 0},
                                                 {"image_id": "c.png", "disease_class": 0}, entries[1]]))
    out = tmp_path / "cleaned"
    summary = clean_dataset(source, out)
    rejected = read_metadata(out, "rejected.csv")
    assert sorted(zip(rejected["path"].map(os.path.basename), rejected["reason"], rejected["label"])) == [
        ("a.png", "duplicate_entry", 0), ("b.png", "duplicate_entry", 1), ("c.png", "label_conflict", 0),
        ("c.png", "label_conflict", 1)]
    assert summary["rejected_by_reason"] == {"duplicate_entry": 2, "label_conflict": 2}
    assert summary["totals"]["listed"] == 9 and summary["totals"]["kept"] == 5
    assert summary["classes_without_val_images"] == [{"id": 2, "name": "Apple_scab_serious"}]
    classes = read_metadata(out, "classes.csv")
    assert classes[["id", "train_count", "val_count"]].values.tolist() == [[0, 1, 1], [1, 1, 1], [2, 1, 0]]
    # The same source again is reused: the repeats are part of the fingerprint, not a reason to re-clean.
    assert clean_dataset(source, out)["reused"] is True


def _split_of(out_dir):
    return {os.path.basename(p): split for split in ("train", "val")
            for p in read_metadata(out_dir, f"{split}.csv")["path"]}


def test_split_is_stratified_seeded_and_keeps_singletons_in_train(tmp_path):
    source = write_imagefolder(tmp_path / "src", {"big": 20, "mid": 7, "pair": 2, "single": 1})
    clean_dataset(source, tmp_path / "a", seed=3, workers=1)
    classes = read_metadata(tmp_path / "a", "classes.csv").set_index("name")
    # round(n * 0.15), at least 1 and at most n - 1; a single image stays in train
    assert classes.loc[["big", "mid", "pair", "single"], "val_count"].tolist() == [3, 1, 1, 0]
    assert classes.loc[["big", "mid", "pair", "single"], "train_count"].tolist() == [17, 6, 1, 1]

    clean_dataset(source, tmp_path / "b", seed=3, workers=2)
    clean_dataset(source, tmp_path / "c", seed=4, workers=1)
    assert _split_of(tmp_path / "a") == _split_of(tmp_path / "b")
    assert _split_of(tmp_path / "a") != _split_of(tmp_path / "c")


def test_max_side_reencodes_only_large_images(tmp_path):
    source = tmp_path / "src"
    write_image(source / "a" / "large.png", seed=1, size=(40, 100))
    write_image(source / "a" / "small.png", seed=2, size=(20, 20))
    write_image(source / "b" / "other.png", seed=3, size=(20, 20))
    out = tmp_path / "cleaned"
    summary = clean_dataset(source, out, max_side=50)
    metadata = load_metadata(out)
    paths = pd.concat([metadata.train, metadata.val])["path"].tolist()
    reencoded = [p for p in paths if p.startswith(str(out / "images"))]
    assert len(reencoded) == 1 and reencoded[0].endswith(".jpg")
    assert read_image_rgb(reencoded[0]).shape == (20, 50, 3)
    assert str(source / "a" / "small.png") in paths
    assert summary["reencoded_by_reason"] == {"max_side": 1}


def test_output_contract_and_weights_from_training_split(tmp_path):
    source = write_imagefolder(tmp_path / "src", {"a": 12, "b": 4, "c": 1})
    out = tmp_path / "cleaned"
    summary = clean_dataset(source, out, workers=1, many_threshold=5, few_threshold=2)
    expected_columns = {
        "train.csv": ["path", "label", "class_name", "source_path"],
        "val.csv": ["path", "label", "class_name", "source_path"],
        "classes.csv": ["id", "name", "train_count", "val_count"],
        "rejected.csv": ["path", "split", "reason", "detail", "label"],
    }
    for name, columns in expected_columns.items():
        assert list(read_metadata(out, name).columns) == columns, name
    classes = read_metadata(out, "classes.csv")
    assert classes["train_count"].tolist() == [10, 3, 1]
    for scheme in ("inverse", "sqrt", "effective"):
        weights = read_metadata(out, f"class_weights_{scheme}.csv")
        assert list(weights.columns) == ["id", "name", "train_count", "weight"]
        np.testing.assert_allclose(weights["weight"], compute_class_weights([10, 3, 1], scheme))
    on_disk = json.loads((out / "metadata" / "summary.json").read_text())
    assert on_disk["shot_groups"] == {"many": [0], "medium": [1], "few": [2]}
    assert on_disk["imbalance_ratio"] == 10.0
    assert on_disk["weight_ranges"]["inverse"]["ratio"] == pytest.approx(10.0)
    assert summary["reused"] is False and "reused" not in on_disk
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left behind


def test_rerun_reuses_unchanged_output_and_notices_changes(tmp_path):
    source = write_imagefolder(tmp_path / "src", {"a": 3, "b": 2})
    out = tmp_path / "cleaned"
    assert clean_dataset(source, out)["reused"] is False
    assert clean_dataset(source, out)["reused"] is True
    assert clean_dataset(source, out, seed=1)["reused"] is False
    write_image(source / "b" / "new.png", seed=99)
    summary = clean_dataset(source, out, seed=1)
    assert summary["reused"] is False and summary["totals"]["kept"] == 6


def test_class_without_training_image_is_an_error_naming_it(tmp_path):
    source = write_imagefolder(tmp_path / "src", {"train/a": 2, "train/b": 2, "val/a": 1, "val/ghost": 1})
    with pytest.raises(UserError, match=r"class 2 'ghost': no training image after cleaning \(source lists 1 val"):
        clean_dataset(source, tmp_path / "cleaned")
    assert not (tmp_path / "cleaned").exists()


def test_failed_run_leaves_previous_output_intact(tmp_path):
    source = write_imagefolder(tmp_path / "src", {"a": 2, "b": 1})
    out = tmp_path / "cleaned"
    clean_dataset(source, out)
    before = {p.name: p.read_bytes() for p in (out / "metadata").iterdir()}
    (source / "b" / "img000.png").write_bytes(b"")  # b's only image becomes unusable
    with pytest.raises(UserError, match=r"class 1 'b'.*rejected: 1 empty_file"):
        clean_dataset(source, out)
    assert {p.name: p.read_bytes() for p in (out / "metadata").iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cleaned", "src"]


def test_refuses_to_replace_a_folder_it_did_not_write(tmp_path):
    source = write_imagefolder(tmp_path / "src", {"a": 2})
    (tmp_path / "precious").mkdir()
    (tmp_path / "precious" / "thesis.tex").write_text("years of work")
    with pytest.raises(UserError, match="not a cleaned dataset"):
        clean_dataset(source, tmp_path / "precious")
    with pytest.raises(UserError, match="inside the output folder"):
        clean_dataset(source, tmp_path)
    assert (tmp_path / "precious" / "thesis.tex").exists()


@pytest.mark.parametrize("settings, message", [
    ({"val_fraction": 1.0}, "--val-fraction"), ({"max_side": 4}, "--max-side"), ({"seed": -1}, "--seed"),
    ({"workers": 0}, "--workers"), ({"few_threshold": 200}, "--few-threshold"),
])
def test_bad_settings(tmp_path, settings, message):
    with pytest.raises(UserError, match=message):
        clean_dataset(tmp_path, tmp_path / "out", **settings)
