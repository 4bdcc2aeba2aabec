"""Near-duplicate leakage: pair finding against brute force, and the cleaning / analyze_data report."""
import json
from itertools import product

import cv2
import numpy as np
import pandas as pd
import pytest

import analyze_data
from leafdisease.data import near_duplicates
from leafdisease.data.cleaning import clean_dataset
from leafdisease.utils.errors import UserError


def brute_force(query, reference, threshold):
    return {(i, j, bin(int(q) ^ int(r)).count("1")) for (i, q), (j, r) in product(enumerate(query), enumerate(reference))
            if bin(int(q) ^ int(r)).count("1") <= threshold}


@pytest.mark.parametrize("block_elements", [near_duplicates.BLOCK_ELEMENTS, 7])
def test_close_pairs_equal_brute_force(block_elements, monkeypatch):
    monkeypatch.setattr(near_duplicates, "BLOCK_ELEMENTS", block_elements)
    rng = np.random.default_rng(0)
    reference = rng.integers(0, 2 ** 64, 150, dtype=np.uint64)
    query = rng.integers(0, 2 ** 64, 60, dtype=np.uint64)
    for index in range(20):  # near copies with 0..9 bits flipped, so some fall outside the threshold
        flips = rng.choice(64, index % 10, replace=False)
        query[index] = reference[3 * index] ^ np.uint64(sum(1 << int(bit) for bit in flips))
    query[20] = reference[0] ^ np.uint64(1 << 63)  # the top bit counts too
    got = near_duplicates.close_pairs(query, reference, 6)
    expected = brute_force(query, reference, 6)
    assert set(zip(*(array.tolist() for array in got))) == expected
    assert len(expected) >= 15


def test_hex_hashes_round_trip():
    hashes = ["0000000000000000", "ffffffffffffffff", "8000000000000001"]
    values = near_duplicates.hashes_to_uint64(hashes)
    assert [f"{int(value):016x}" for value in values] == hashes


def leaf_photo(seed, size=240):
    """A smooth, structured picture (pHash needs low-frequency content, as real photos have)."""
    field = np.random.default_rng(seed).integers(0, 256, (6, 6, 3), dtype=np.uint8)
    return cv2.resize(field, (size, size), interpolation=cv2.INTER_CUBIC)


def write_split_imagefolder(root):
    """train/val ImageFolder: val/healthy/copy.jpg is a resized re-encoded train/healthy/a.png (leakage),
    val/rust/conflict.jpg one of train/healthy/b.png (label conflict); the rest are unrelated."""
    images = {
        "train/healthy/a.png": leaf_photo(1), "train/healthy/b.png": leaf_photo(2), "train/rust/c.png": leaf_photo(3),
        "train/rust/d.png": leaf_photo(4), "val/healthy/e.png": leaf_photo(5), "val/rust/f.png": leaf_photo(6),
    }
    for relative, image in images.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / relative), image)
    cv2.imwrite(str(root / "val/healthy/copy.jpg"), cv2.resize(images["train/healthy/a.png"], (150, 150),
                                                                 interpolation=cv2.INTER_AREA),
                [cv2.IMWRITE_JPEG_QUALITY, 70])
    cv2.imwrite(str(root / "val/rust/conflict.jpg"), images["train/healthy/b.png"], [cv2.IMWRITE_JPEG_QUALITY, 80])
    return root


def test_cleaning_reports_near_duplicate_pairs(tmp_path):
    source = write_split_imagefolder(tmp_path / "source")
    out = tmp_path / "cleaned"
    summary = clean_dataset(source, out, fmt="imagefolder", workers=1, progress=False)
    pairs = pd.read_csv(out / "metadata" / "near_duplicates.csv")
    assert pairs.columns.tolist() == near_duplicates.PAIR_COLUMNS
    found = {(p.split("/")[-2] + "/" + p.split("/")[-1], t.split("/")[-2] + "/" + t.split("/")[-1], kind)
             for p, t, kind in zip(pairs["val_path"], pairs["train_path"], pairs["kind"])}
    assert found == {("healthy/copy.jpg", "healthy/a.png", "same_class"),
                     ("rust/conflict.jpg", "healthy/b.png", "label_conflict")}
    assert (pairs["distance"] <= near_duplicates.DEFAULT_THRESHOLD).all()
    assert summary["near_duplicates"] == {"threshold": near_duplicates.DEFAULT_THRESHOLD, "same_class_pairs": 1,
                                          "label_conflict_pairs": 1, "val_images_involved": 2, "unhashed_images": 0}
    # Reported, not dropped: both validation images are still there.
    val = pd.read_csv(out / "metadata" / "val.csv")
    assert val["path"].str.endswith("copy.jpg").any() and val["path"].str.endswith("conflict.jpg").any()


def test_threshold_zero_turns_the_check_off(tmp_path):
    source = write_split_imagefolder(tmp_path / "source")
    out = tmp_path / "cleaned"
    summary = clean_dataset(source, out, fmt="imagefolder", workers=1, progress=False, near_dup_threshold=0)
    assert pd.read_csv(out / "metadata" / "near_duplicates.csv").empty
    assert summary["near_duplicates"]["threshold"] == 0
    # A different threshold is a different cleaning, not a reuse of the old report.
    again = clean_dataset(source, out, fmt="imagefolder", workers=1, progress=False, near_dup_threshold=6)
    assert not again["reused"] and again["near_duplicates"]["same_class_pairs"] == 1


@pytest.mark.parametrize("threshold", [-1, 65])
def test_bad_threshold_is_an_error(threshold, tmp_path):
    source = write_split_imagefolder(tmp_path / "source")
    with pytest.raises(UserError, match="--near-dup-threshold"):
        clean_dataset(source, tmp_path / "cleaned", fmt="imagefolder", workers=1, progress=False,
                      near_dup_threshold=threshold)


def test_analyze_data_prints_the_pairs(tmp_path, capsys):
    source = write_split_imagefolder(tmp_path / "source")
    out = tmp_path / "cleaned"
    analyze_data.main(["--source", str(source), "--out", str(out), "--workers", "1", "--near-dup-threshold", "8"])
    printed = capsys.readouterr().out
    assert "Near duplicates across train/val (perceptual hash within 8 bits): 1 same-class pair(s)" in printed
    assert "1 cross-class pair(s) (label conflicts)" in printed and "copy.jpg" in printed
    assert json.loads((out / "metadata" / "summary.json").read_text())["settings"]["near_dup_threshold"] == 8
