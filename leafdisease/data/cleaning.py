"""Turn a dataset source into data/cleaned/: every image decode-checked, deduplicated, split and weighted.

Rules (each excluded image is a row of metadata/rejected.csv: path, split, reason, detail, label; never silently
dropped):
- outside_dataset / missing_file (sources.py: a listed path that leaves the dataset, a listed file that does not
  exist) / unreadable_file / empty_file / not_image / truncated / corrupt: the file cannot be used.
  The decode check is a Pillow decode of all the compressed data (OpenCV, which the trainer uses, silently pads
  truncated JPEGs); JPEGs are decoded at 1/8 scale, which reads the same bytes at half the cost.
- Exact duplicates (same bytes, SHA-256): within one split the first path (sorted) is kept, the others are
  'duplicate'; a copy in val of a training image is 'leakage' (the val copy goes, the train copy stays);
  copies that disagree on the label are all 'label_conflict' (no way to know which label is right).
- Colour: the trainer reads with cv2.IMREAD_COLOR, which was checked to give correct 8-bit RGB for grayscale,
  palette, 1-bit, 16-bit (scaled, not clipped) and CMYK JPEG/TIFF files, so those keep their original file and
  are only counted in summary.json. It drops alpha, which shows whatever colour hides under transparent pixels, so
  images with real transparency are flattened onto black and re-encoded; so are files in formats OpenCV cannot
  decode and in unusual colour modes (LAB, HSV, ...), which Pillow converts instead. These conversions go to
  images/<label>/<sha256 prefix>.png: lossless, so training sees exactly the pixels predict.py and evaluate.py
  get from the same file (read_checked_rgb).
- max_side: images whose longer side exceeds it are downscaled (area interpolation) and re-encoded as
  images/<label>/<sha256 prefix>.jpg (JPEG q95), so training does not decode multi-megapixel photos every epoch
  (a conversion that is also downscaled stays PNG). By default originals are referenced.
  cache_short_side (the --max-side auto copies) instead re-encodes each image at least twice that on its short side
  at its working size for a model needing that side (reduction: 1/2, 1/4 or 1/8), exactly as training, evaluation
  and prediction read such a photo when it is not cached, so a model never sees its photos processed two ways.
- Accepted formats: an image is any file Pillow decodes (JPEG, PNG, BMP, WebP, TIFF, GIF, TGA, ...; the first
  frame of an animation), told by its content, never its name: inspect_image is the one check, and predict.py
  and evaluate.py apply it too (read_checked_rgb), so a file is an image for all three or for none.
- Near duplicates: the decode check also takes each image's perceptual hash (pHash, near_duplicates.py).
  Validation images within near_dup_threshold bits of a training image are listed in
  metadata/near_duplicates.csv: same class = leakage that inflates validation scores, another class = a label
  conflict. They are reported, not dropped: a perceptual hash can also match two distinct but similar photos.
  0 turns the check off.
- Split: a source with a validation split keeps it. Otherwise a seeded, stratified split: a class with n >= 2
  images puts n * val_fraction (rounded half up) of them in val, at least 1 and at most n - 1, so every class with two
  or more images is validated and keeps a training image; a class with one image stays in train.
- A class that has images in the source but no training image after cleaning is an error naming the class
  (its loss weight would be infinite and the model could never learn it); so is a dataset left with fewer than
  two classes (nothing to classify). Classes declared in class_names.csv (or as empty class folders) without any
  image are left out of classes.csv and listed in summary.json (analyze_data.py prints them).
- Output is built in a staging folder next to out_dir (named with the process id) and swapped in at the end, so
  a crash never leaves a mix of two runs; staging folders of killed cleanings are removed by the next one (also
  when it finds its output up to date). A
  folder that does not look like a previous cleaning output is never replaced, and an output inside the source
  folder is refused (it would become part of the source).
- Label hierarchy (hierarchy.py): the crop, disease and severity of each class, from a hierarchy.csv beside the
  source, the official AI Challenger table or the class names, goes to metadata/hierarchy.csv (absent for a flat
  dataset) and summary.json's "hierarchy" (how it was found); a wrong hierarchy.csv is an error before any image is
  opened. It depends on names only, so a re-run on an unchanged source brings it up to date without re-checking.
- Label decisions (audit_decisions.py): an edited label-audit CSV (audit_labels.py) relabels or drops training
  photos before any image is opened. The whole file is checked first; each drop is an 'audit_drop' row of
  rejected.csv, each relabel a row of metadata/relabel_log.csv. The applied decisions are kept in
  metadata/label_decisions.csv and applied again when the same source is cleaned into the same folder (a later
  audit's decisions on top); audit="none" cleans without them. train.csv and val.csv name each photo's file in the
  source (source_path), which the audit CSV refers to, also for photos cleaning re-encoded.
- A re-run whose source files (paths, labels, sizes, modification times) and settings are unchanged reuses the
  existing output without opening an image.
"""
import hashlib
import io
import json
import math
import os
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from PIL import Image, ImageOps, UnidentifiedImageError

from leafdisease.data import audit_decisions, demo_data, hierarchy, near_duplicates
from leafdisease.data.longtail import (
    FEW_SHOT_THRESHOLD,
    MANY_SHOT_THRESHOLD,
    SHOT_GROUPS,
    check_thresholds,
    compute_class_weights,
    shot_groups,
)
from leafdisease.data.sources import REJECTED_COLUMNS, file_problem, read_source
from leafdisease.data.staged_output import map_parallel, remove_abandoned, staged_folder
from leafdisease.utils import atomic_io, runtime
from leafdisease.utils.cli import is_inside
from leafdisease.utils.errors import UserError

# Bump when a rule above changes, so an unchanged source is cleaned again under the new rules (4: source_path).
CLEANING_VERSION = 4
WEIGHT_SCHEMES_WRITTEN = ("inverse", "sqrt", "effective")
# Formats whose every mode in the test suite OpenCV decodes to correct RGB; anything else is tried with OpenCV.
OPENCV_CHECKED_FORMATS = {"JPEG", "PNG", "BMP", "WEBP", "TIFF"}
REENCODE_QUALITY = 95
# Re-encoding reasons that convert pixels rather than shrink them: their copies are PNG (lossless, see above).
CONVERSION_REASONS = ("transparency", "opencv_unreadable", "unusual_color_mode")
MIN_MAX_SIDE = 16
MANAGED_ENTRIES = {"metadata", "images"}
# A photo at least twice the short side a model needs is read reduced by the largest of these factors that keeps
# that side (reduction): a JPEG while it decodes, at a fraction of a full decode's cost.
WORKING_REDUCTIONS = (8, 4, 2)
_REDUCED_JPEG = {2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4, 8: cv2.IMREAD_REDUCED_COLOR_8}
# JPEGs are decoded at 1/8 scale, but no smaller than this, so the 32x32 pHash input is not upsampled.
HASH_MIN_SIDE = 64


def clean_dataset(source, out_dir="data/cleaned", fmt=None, max_side=None, val_fraction=0.15, seed=0,
                  workers=None, path_column=None, label_column=None, split_column=None, val_list=None,
                  many_threshold=MANY_SHOT_THRESHOLD, few_threshold=FEW_SHOT_THRESHOLD,
                  near_dup_threshold=near_duplicates.DEFAULT_THRESHOLD,
                  progress=True, cache_short_side=None, audit=None):
    """Clean the dataset at `source` into `out_dir` and return the summary (as written to summary.json).

    cache_short_side (with max_side None): the short side training needs; images at least twice that are cached at
    their working size (see the module docstring), and summary["cache"] records how many.

    audit: an edited label-audit CSV to apply (on top of the decisions an earlier cleaning of the same source into
    out_dir kept); None: the kept decisions only; audit_decisions.NONE: none. summary["label_decisions"] says what
    was applied.

    The returned dict also has "reused": True when an up-to-date previous output was kept as is. The shot-group
    thresholds only label classes in summary.json: changing them rewrites that file, never re-checks an image.
    """
    _check_settings(max_side, val_fraction, seed, workers, many_threshold, few_threshold, near_dup_threshold)
    out_dir = Path(out_dir)
    workers = workers or runtime.available_cores()
    _refuse_output_inside_source(source, out_dir)
    source_data = read_source(source, fmt, path_column, label_column, split_column, val_list)
    _refuse_source_inside_output(source_data, out_dir)
    # Before any image is opened, so a wrong hierarchy.csv costs no checking time.
    declared_hierarchy = hierarchy.for_classes(list(source_data.class_names.values()), source_data.root)
    settings = {"max_side": max_side, "val_fraction": val_fraction, "seed": seed,
                "near_dup_threshold": near_dup_threshold}
    if cache_short_side is not None:  # only when set, so outputs cleaned before it existed stay up to date
        settings["cache_short_side"] = cache_short_side
    previous = _previous_summary(out_dir)
    # Before any image is opened, so a wrong audit CSV costs no checking time and changes nothing.
    decisions, decisions_entry = _label_decisions(source, source_data, out_dir, previous, audit)
    if decisions:
        settings["label_decisions"] = audit_decisions.fingerprint(decisions)
    fingerprint = _fingerprint(source_data, settings)
    if previous is not None and previous.get("fingerprint") == fingerprint:
        remove_abandoned(out_dir, "cleaning")
        summary = _relabel_shot_groups(out_dir, previous, many_threshold, few_threshold)
        return {**_rewrite_hierarchy(out_dir, summary, declared_hierarchy), "reused": True,
                "label_decisions": decisions_entry}

    started = time.monotonic()
    source_data.images, audit_rejected, relabel_log = audit_decisions.apply(source_data.images, decisions,
                                                                             source_data.class_names)
    source_data.rejected = pd.concat([source_data.rejected, audit_rejected], ignore_index=True)
    listing = pd.concat([source_data.images, source_data.rejected[["path", "label", "split"]]], ignore_index=True)
    inspected = source_data.images.join(pd.DataFrame(map_parallel(
        inspect_image, list(source_data.images["path"]), workers, "checking images", progress)).drop(columns="path"))
    decode_rejected = inspected.loc[inspected["reason"] != ""]
    decoded = inspected.loc[inspected["reason"] == ""]
    kept, duplicate_rejected = _resolve_duplicates(decoded)
    split_from_source = bool((source_data.images["split"] == "val").any())
    if not split_from_source:
        kept = kept.assign(split=_stratified_split(kept, val_fraction, seed))
    rejected = pd.concat([source_data.rejected, decode_rejected[REJECTED_COLUMNS], duplicate_rejected],
                         ignore_index=True)
    classes = _class_table(listing, kept, rejected, source_data.class_names)
    near_pairs = near_duplicates.train_val_pairs(kept, near_dup_threshold)
    near_summary = near_duplicates.summarize(near_pairs, near_dup_threshold, (kept["phash"] == "").sum())
    kept = kept.assign(reencode=_reencode_reasons(kept, max_side, cache_short_side), source_path=kept["path"])
    # A relabelled photo that moved to val (a source without a split is split after relabelling) is logged there.
    relabel_log["split"] = relabel_log["path"].map(dict(zip(kept["path"], kept["split"]))).fillna("rejected")

    with staged_folder(out_dir, "cleaning") as staging:
        kept = kept.assign(path=_reencode(kept, staging, max_side, cache_short_side, workers, progress))
        weights = {scheme: compute_class_weights(classes["train_count"].to_numpy(), scheme)
                   for scheme in WEIGHT_SCHEMES_WRITTEN}
        summary = _summary(source, source_data, settings, split_from_source, kept, rejected, classes, listing,
                           weights, fingerprint, started)
        if cache_short_side is not None:
            summary["cache"] = {"short_side": cache_short_side,
                                "reduced": int((_reductions(kept, cache_short_side) > 1).sum()), "images": len(kept)}
        summary.update(_shot_summary(classes, many_threshold, few_threshold))
        summary["near_duplicates"] = near_summary
        summary["label_decisions"] = decisions_entry
        class_hierarchy, summary["hierarchy"] = _class_hierarchy(declared_hierarchy, classes["name"])
        _write_metadata(staging / "metadata", kept, rejected, classes, weights, summary, class_hierarchy)
        atomic_io.write_csv(staging / "metadata" / "near_duplicates.csv", near_pairs)
        if decisions:
            atomic_io.write_csv(staging / "metadata" / audit_decisions.DECISION_FILE,
                                audit_decisions.kept_table(decisions, source_data.class_names))
            atomic_io.write_csv(staging / "metadata" / audit_decisions.RELABEL_LOG, relabel_log)
    return {**summary, "reused": False}


def _label_decisions(source, source_data, out_dir, previous, audit):
    """(the label decisions to apply, every one checked; their summary.json entry or None).

    The decisions an earlier cleaning of this source into out_dir kept, unless audit is NONE, then those of the
    audit CSV on top."""
    source_labels = dict(zip(source_data.images["path"], source_data.images["label"].astype(int)))
    kept_path = out_dir / "metadata" / audit_decisions.DECISION_FILE
    same_source = previous is not None and previous.get("source") == os.path.abspath(source)
    kept = []
    if audit != audit_decisions.NONE and same_source and kept_path.is_file():
        try:
            kept = audit_decisions.read_kept(kept_path, source_labels, source_data.class_names)
        except UserError as error:
            raise UserError(f"the label decisions an earlier cleaning kept no longer fit the source ({error}); "
                            f"clean without them (--apply-audit {audit_decisions.NONE}) and audit again") from None
    new = []
    if audit not in (None, audit_decisions.NONE):
        new = audit_decisions.read_decisions(audit, audit_decisions.current_labels(source_labels, kept),
                                             source_data.class_names)
    decisions = audit_decisions.merge(kept, new, source_labels)
    cleared = audit == audit_decisions.NONE and same_source and kept_path.is_file()
    if not decisions and not cleared:
        return [], None
    return decisions, {
        "audit_file": None if audit in (None, audit_decisions.NONE) else os.path.abspath(audit),
        "kept_from_earlier": len(kept), "new": len(new),
        "relabelled": sum(d.decision == "relabel" for d in decisions),
        "dropped": sum(d.decision == "drop" for d in decisions), "cleared": cleared}


# ----------------------------------------------------------------------------------------------------
# Per-image work (runs in worker processes)
# ----------------------------------------------------------------------------------------------------
def inspect_image(path):
    """Decode-check one file: reason ('' when usable), detail, sha256, size, colour kind, OpenCV readability,
    perceptual hash ('' if Pillow cannot reduce its mode to grey)."""
    result = {"path": path, "reason": "", "detail": "", "sha256": "", "width": 0, "height": 0,
              "color": "", "has_transparency": False, "opencv_readable": True, "phash": ""}
    problem = file_problem(path)  # a missing file, a dangling link, a link loop, a folder, a pipe
    if problem is not None:
        return {**result, "reason": problem[0], "detail": problem[1]}
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        return {**result, "reason": "unreadable_file", "detail": error.strerror or str(error)}
    if not data:
        return {**result, "reason": "empty_file", "detail": "the file has zero bytes"}
    result["sha256"] = hashlib.sha256(data).hexdigest()
    try:
        image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        return {**result, "reason": "not_image", "detail": "Pillow cannot identify an image format in it"}
    except Exception as error:  # noqa: BLE001 -- any decoder failure is a property of the file
        return {**result, "reason": "corrupt", "detail": _one_line(error)}
    width, height = image.size
    try:
        if image.format == "JPEG":
            # A 1/8-scale decode still reads every compressed byte, so truncation is still caught.
            image.draft(None, (max(HASH_MIN_SIDE, width // 8), max(HASH_MIN_SIDE, height // 8)))
        image.load()
    except Exception as error:  # noqa: BLE001 -- idem
        reason = "truncated" if "truncated" in str(error).lower() else "corrupt"
        return {**result, "reason": reason, "detail": _one_line(error)}
    result.update(width=width, height=height, color=_color_kind(image, data), has_transparency=_has_transparency(image))
    try:
        result["phash"] = near_duplicates.perceptual_hash(image)
    except (ValueError, OSError):  # a mode Pillow cannot convert to grey: counted in summary.json, not hashed
        pass
    if image.format not in OPENCV_CHECKED_FORMATS:
        result["opencv_readable"] = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) is not None
    return result


def _color_kind(image, data):
    """What the file holds: rgb, alpha, cmyk, 16-bit, palette, grayscale or other:<mode>."""
    mode = image.mode
    if mode in ("RGBA", "RGBa", "LA", "La", "PA") or "transparency" in image.info:
        return "alpha"
    if mode == "CMYK":
        return "cmyk"
    # Pillow opens 16-bit RGB PNGs as 8-bit RGB; the PNG header's bit depth byte says what the file holds.
    if mode.startswith("I;16") or (image.format == "PNG" and len(data) > 24 and data[24] == 16):
        return "16-bit"
    if mode == "P":
        return "palette"
    if mode in ("1", "L", "I", "F"):
        return "grayscale"
    if mode == "RGB":
        return "rgb"
    return f"other:{mode}"


def _has_transparency(image):
    if image.mode not in ("RGBA", "RGBa", "LA", "La", "PA") and "transparency" not in image.info:
        return False
    return image.convert("RGBA").getchannel("A").getextrema()[0] < 255


def reduction(width, height, short_side):
    """1, 2, 4 or 8: the factor by which a width x height photo is read for a model that needs `short_side` px on
    its short side (its working size): the largest of WORKING_REDUCTIONS that keeps short_side, so only photos at
    least twice that are reduced. short_side None: 1."""
    if not short_side:
        return 1
    return next((factor for factor in WORKING_REDUCTIONS if min(width, height) // factor >= short_side), 1)


def _reduce_by_area(bgr, factor):
    """The image at 1/factor by area interpolation, at the size libjpeg's scaled decode gives (sides rounded up)."""
    if factor == 1:
        return bgr
    height, width = bgr.shape[:2]
    return cv2.resize(bgr, (math.ceil(width / factor), math.ceil(height / factor)), interpolation=cv2.INTER_AREA)


def _header_reduction(path, short_side):
    """(reduction for short_side, whether the file is a JPEG), from the file's header alone."""
    if not short_side:
        return 1, False
    try:
        with Image.open(path) as header:
            return reduction(*header.size, short_side), header.format == "JPEG"
    except (OSError, ValueError):  # imread reports what is wrong with the file
        return 1, False


def decode_for_training(source_path, flatten_alpha, via_pillow, short_side=None):
    """The image as a BGR uint8 array, converted the way the trainer should see it: alpha flattened on black,
    unusual modes and formats OpenCV cannot read converted by Pillow, anything else read by OpenCV itself; and at
    its working size for a model that needs `short_side` px (reduction): a JPEG reduced while OpenCV decodes it
    (libjpeg's DCT scaling, IMREAD_REDUCED_COLOR_*, EXIF orientation applied as in a full decode), any other image
    resized by area to the same size after decoding."""
    if flatten_alpha or via_pillow:
        image = ImageOps.exif_transpose(Image.open(source_path))
        if flatten_alpha:
            background = Image.new("RGBA", image.size, (0, 0, 0, 255))
            image = Image.alpha_composite(background, image.convert("RGBA"))
        return _reduce_by_area(cv2.cvtColor(np.asarray(image.convert("RGB")), cv2.COLOR_RGB2BGR),
                               reduction(*image.size, short_side))
    factor, jpeg = _header_reduction(source_path, short_side)
    # Same decoder and flags as training, so 16-bit scaling and EXIF orientation match exactly.
    bgr = cv2.imread(str(source_path), _REDUCED_JPEG[factor] if jpeg and factor > 1 else cv2.IMREAD_COLOR)
    if bgr is None:
        raise OSError(f"{source_path}: OpenCV cannot read it any more (changed during cleaning?)")
    return bgr if jpeg else _reduce_by_area(bgr, factor)


def needs_pillow(inspected):
    """Whether an inspect_image result must be converted by Pillow rather than read by OpenCV."""
    return not inspected["opencv_readable"] or inspected["color"].startswith("other:")


def read_checked_rgb(path, short_side=None):
    """RGB uint8 array of a raw photo with cleaning's checks and conversions (for predict.py and evaluate.py,
    which read photos cleaning never saw): a file cleaning would reject (empty, truncated, corrupt, not an image)
    is a UserError '<reason>: <detail>'; transparency is flattened and colour modes converted as cleaning does, and
    it is read at its working size for `short_side` (decode_for_training), as training reads it."""
    inspected = inspect_image(str(path))
    if inspected["reason"]:
        raise UserError(f"{inspected['reason']}: {inspected['detail']}")
    try:
        bgr = decode_for_training(path, inspected["has_transparency"], needs_pillow(inspected), short_side)
    except OSError as error:
        raise UserError(f"unreadable_file: {_one_line(error)}") from None
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def reencode_image(task):
    """Write the image as the trainer should see it, in the format the target's suffix names (PNG lossless, JPEG at
    REENCODE_QUALITY): decode_for_training at its working size for short_side (the --max-side auto copies), or
    reduced no further than max_side needs and resized to at most max_side."""
    source_path, target_path, flatten_alpha, via_pillow, max_side, short_side = task
    bgr = decode_for_training(source_path, flatten_alpha, via_pillow,
                              short_side or _copy_short_side(source_path, max_side))
    longer_side = max(bgr.shape[:2])
    if max_side and longer_side > max_side:
        scale = max_side / longer_side
        size = (max(1, round(bgr.shape[1] * scale)), max(1, round(bgr.shape[0] * scale)))
        bgr = cv2.resize(bgr, size, interpolation=cv2.INTER_AREA)
    Path(target_path).parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(target_path, bgr, [cv2.IMWRITE_JPEG_QUALITY, REENCODE_QUALITY]):  # ignored for PNG
        raise OSError(f"cannot write {target_path}")


def _copy_short_side(path, max_side):
    """The short side of the image's copy at max_side (None when it is kept at its size or unreadable here)."""
    if not max_side:
        return None
    try:
        with Image.open(path) as header:
            short_side, long_side = sorted(header.size)
    except (OSError, ValueError):
        return None
    return math.ceil(short_side * max_side / long_side) if long_side > max_side else None


def _one_line(error):
    return " ".join(f"{type(error).__name__}: {error}".split())


# ----------------------------------------------------------------------------------------------------
# Decisions over the whole dataset
# ----------------------------------------------------------------------------------------------------
def _resolve_duplicates(decoded):
    """(kept rows, rejected rows) after the duplicate / leakage / label-conflict rules."""
    ordered = decoded.assign(split_rank=decoded["split"].map({"train": 0, "": 0, "val": 1})).sort_values(
        ["sha256", "split_rank", "path"])
    copies = ordered.loc[ordered["sha256"].duplicated(keep=False)]
    rejected_rows = []
    for _, group in copies.groupby("sha256", sort=False):
        if group["label"].nunique() > 1:
            for row in group.itertuples():
                others = [f"{p} (label {l})" for p, l in zip(group["path"], group["label"]) if p != row.path]
                rejected_rows.append((row.Index, "label_conflict", "identical to " + "; ".join(others[:3])))
            continue
        keeper = group.iloc[0]
        for row in group.iloc[1:].itertuples():
            if row.split == "val" and keeper["split"] != "val":
                rejected_rows.append((row.Index, "leakage", f"identical to training image {keeper['path']}"))
            else:
                rejected_rows.append((row.Index, "duplicate", f"identical to {keeper['path']} (kept)"))
    index = [row[0] for row in rejected_rows]
    rejected = decoded.loc[index, ["path", "split", "label"]].assign(
        reason=[row[1] for row in rejected_rows], detail=[row[2] for row in rejected_rows])
    return decoded.drop(index=index), rejected[REJECTED_COLUMNS]


def _stratified_split(kept, val_fraction, seed):
    """'train'/'val' per row; per-class draws seeded by (seed, class id), independent of row order."""
    split = pd.Series("train", index=kept.index)
    for label, group in kept.groupby("label"):
        count = len(group)
        if count < 2:
            continue
        val_count = min(count - 1, max(1, math.floor(count * val_fraction + 0.5)))
        candidates = group.sort_values("path").index.to_numpy()
        chosen = np.random.default_rng([seed, int(label)]).choice(candidates, size=val_count, replace=False)
        split[chosen] = "val"
    return split


def _class_table(listing, kept, rejected, class_names):
    """id, name, train_count, val_count for every class with an image in the source; UserError if one has no
    training image left."""
    ids = sorted(set(listing["label"].astype(int)))
    train_counts = kept.loc[kept["split"] == "train", "label"].value_counts()
    val_counts = kept.loc[kept["split"] == "val", "label"].value_counts()
    classes = pd.DataFrame({
        "id": ids,
        "name": [class_names.get(class_id, f"class_{class_id}") for class_id in ids],
        "train_count": [int(train_counts.get(class_id, 0)) for class_id in ids],
        "val_count": [int(val_counts.get(class_id, 0)) for class_id in ids],
    })
    starved = classes.loc[classes["train_count"] == 0]
    if len(starved):
        class_id, name = int(starved["id"].iloc[0]), starved["name"].iloc[0]
        listed = listing.loc[listing["label"] == class_id, "split"].replace("", "unsplit").value_counts()
        listed_text = ", ".join(f"{count} {split}" for split, count in listed.items())
        lost = rejected.loc[rejected["label"] == class_id, "reason"].value_counts()
        lost_text = ", ".join(f"{count} {reason}" for reason, count in lost.items()) or "none"
        more = f" ({len(starved) - 1} more such classes)" if len(starved) > 1 else ""
        raise UserError(
            f"class {class_id} '{name}': no training image after cleaning (source lists {listed_text}; "
            f"rejected: {lost_text}){more}; every class needs a training image: add one or remove the class"
        )
    if len(classes) < 2:
        only = f"only class {classes['id'].iloc[0]} '{classes['name'].iloc[0]}' has" if len(classes) else "no class has"
        raise UserError(f"{only} images after cleaning; a classifier needs at least 2 classes, there is nothing "
                        f"to classify")
    return classes


def _reencode_reasons(kept, max_side, short_side):
    reasons = pd.Series("", index=kept.index)
    if max_side:
        reasons[kept[["width", "height"]].max(axis=1) > max_side] = "max_side"
    if short_side:
        reasons[_reductions(kept, short_side) > 1] = "working_size"
    reasons[kept["color"].str.startswith("other:")] = "unusual_color_mode"
    reasons[~kept["opencv_readable"]] = "opencv_unreadable"
    reasons[kept["has_transparency"]] = "transparency"
    return reasons


def _reductions(kept, short_side):
    return np.array([reduction(width, height, short_side) for width, height in zip(kept["width"], kept["height"])])


def _reencode(kept, staging, max_side, short_side, workers, progress):
    """New path column: originals stay absolute; re-encoded images become images/<label>/<sha>.png (conversions)
    or .jpg (downscaled only)."""
    paths = kept["path"].copy()
    todo = kept.loc[kept["reencode"] != ""]
    relative = {row.Index: f"images/{row.label}/{row.sha256[:20]}"
                           + (".png" if row.reencode in CONVERSION_REASONS else ".jpg") for row in todo.itertuples()}
    tasks = [(row.path, str(staging / relative[row.Index]), row.reencode == "transparency",
              row.reencode in ("opencv_unreadable", "unusual_color_mode"), max_side, short_side)
             for row in todo.itertuples()]
    try:
        map_parallel(reencode_image, tasks, workers, "re-encoding images", progress)
    except OSError as error:
        raise UserError(f"re-encoding into {staging} failed: {error}") from None
    for index, path in relative.items():
        paths[index] = path
    return paths


# ----------------------------------------------------------------------------------------------------
# Output
# ----------------------------------------------------------------------------------------------------
def _summary(source, source_data, settings, split_from_source, kept, rejected, classes, listing, weights,
             fingerprint, started):
    largest, smallest = classes.loc[classes["train_count"].idxmax()], classes.loc[classes["train_count"].idxmin()]
    imageless = sorted(set(source_data.class_names) - set(classes["id"]))
    return {
        "source": os.path.abspath(source),
        "format": source_data.fmt,
        "settings": settings,
        "split_from_source": split_from_source,
        "totals": {
            "listed": len(listing),
            "kept": len(kept),
            "train": int((kept["split"] == "train").sum()),
            "val": int((kept["split"] == "val").sum()),
            "rejected": len(rejected),
            "classes": len(classes),
            "reencoded": int((kept["reencode"] != "").sum()),
        },
        "imbalance_ratio": float(largest["train_count"] / smallest["train_count"]),
        "largest_class": _class_record(largest),
        "smallest_class": _class_record(smallest),
        "rejected_by_reason": {reason: int(count) for reason, count in rejected["reason"].value_counts().items()},
        "color_kinds": {kind: int(count) for kind, count in kept["color"].value_counts().items()},
        "image_sizes": _median_sides(kept, settings["max_side"], settings.get("cache_short_side")),
        "reencoded_by_reason": {reason: int(count) for reason, count
                                in kept.loc[kept["reencode"] != "", "reencode"].value_counts().items()},
        "weight_ranges": {scheme: {"min": float(w.min()), "max": float(w.max()), "ratio": float(w.max() / w.min())}
                          for scheme, w in weights.items()},
        "classes_without_images": [{"id": int(i), "name": source_data.class_names[i]} for i in imageless],
        "classes_without_val_images": [{"id": int(row.id), "name": row.name}
                                       for row in classes.loc[classes["val_count"] == 0].itertuples()],
        "seconds": round(time.monotonic() - started, 1),
        "fingerprint": fingerprint,
    }


def _median_sides(kept, max_side, short_side=None):
    """The median short and long side (pixels) of the images as training reads them, after --max-side (or at their
    working size for short_side)."""
    if kept.empty:
        return None
    sides = np.sort(kept[["width", "height"]].to_numpy(dtype=float), axis=1)
    if max_side:
        sides *= np.minimum(1.0, max_side / sides[:, 1:])
    if short_side:
        sides = np.ceil(sides / _reductions(kept, short_side)[:, None])
    return {"median_short_side": int(round(np.median(sides[:, 0]))),
            "median_long_side": int(round(np.median(sides[:, 1])))}


def _shot_summary(classes, many_threshold, few_threshold):
    groups = shot_groups(classes["train_count"].to_numpy(), many_threshold, few_threshold)
    return {"shot_thresholds": {"many": f"> {many_threshold} training images",
                                "few": f"< {few_threshold} training images"},
            "shot_groups": {group: [int(i) for i in classes["id"][groups == group]] for group in SHOT_GROUPS}}


def _relabel_shot_groups(out_dir, summary, many_threshold, few_threshold):
    """A reused output's summary with the shot groups of these thresholds, rewritten only if they changed."""
    classes = pd.read_csv(out_dir / "metadata" / "classes.csv", keep_default_na=False)
    shot = _shot_summary(classes, many_threshold, few_threshold)
    if all(summary.get(key) == value for key, value in shot.items()):
        return summary
    summary = {**summary, **shot}
    atomic_io.write_json(out_dir / "metadata" / "summary.json", summary)
    return summary


def _class_hierarchy(declared_hierarchy, class_names):
    """(Hierarchy of the cleaned classes or None, its summary.json entry: how it was found, crops, diseases)."""
    declared, note = declared_hierarchy
    if declared is None:
        return None, {"how": note}
    found = declared.subset(list(class_names))
    return found, {"how": note, "crops": len(found.groups("crop")[0]), "diseases": len(found.groups("disease")[0]),
                   "severities": found.has_severity}


def _rewrite_hierarchy(out_dir, summary, declared_hierarchy):
    """A reused output's hierarchy as the source gives it now (a hierarchy.csv added or edited beside the source
    changes no image): metadata/hierarchy.csv and summary.json rewritten only if it changed."""
    metadata_dir = out_dir / "metadata"
    classes = pd.read_csv(metadata_dir / "classes.csv", keep_default_na=False)
    found, entry = _class_hierarchy(declared_hierarchy, classes["name"].astype(str))
    path = metadata_dir / hierarchy.HIERARCHY_FILE
    try:
        written = hierarchy.read_csv(path, found.class_names) if found is not None and path.is_file() else None
    except UserError:  # edited by hand: written anew below
        written = None
    if summary.get("hierarchy") == entry and written == found and path.is_file() == (found is not None):
        return summary
    if found is None:
        path.unlink(missing_ok=True)
    else:
        hierarchy.write_csv(path, found)
    summary = {**summary, "hierarchy": entry}
    atomic_io.write_json(metadata_dir / "summary.json", summary)
    return summary


def _class_record(row):
    return {"id": int(row["id"]), "name": row["name"], "train_count": int(row["train_count"])}


def _write_metadata(metadata_dir, kept, rejected, classes, weights, summary, class_hierarchy):
    name_by_id = dict(zip(classes["id"], classes["name"]))
    for split in ("train", "val"):
        rows = kept.loc[kept["split"] == split].sort_values(["label", "path"])
        atomic_io.write_csv(metadata_dir / f"{split}.csv", pd.DataFrame({
            "path": rows["path"], "label": rows["label"], "class_name": rows["label"].map(name_by_id),
            "source_path": rows["source_path"]}))
    atomic_io.write_csv(metadata_dir / "classes.csv", classes)
    for scheme, scheme_weights in weights.items():
        atomic_io.write_csv(metadata_dir / f"class_weights_{scheme}.csv",
                            classes[["id", "name", "train_count"]].assign(weight=scheme_weights))
    atomic_io.write_csv(metadata_dir / "rejected.csv", rejected.sort_values(["reason", "path"]))
    if class_hierarchy is not None:
        hierarchy.write_csv(metadata_dir / hierarchy.HIERARCHY_FILE, class_hierarchy)
    atomic_io.write_json(metadata_dir / "summary.json", summary)


def _previous_summary(out_dir):
    """The summary.json of an earlier cleaning in out_dir; None if empty/absent; UserError if out_dir holds
    something else (it would be replaced wholesale)."""
    if not out_dir.exists():
        return None
    if not out_dir.is_dir():
        raise UserError(f"{out_dir}: exists and is not a folder; choose another --out")
    entries = {entry.name for entry in out_dir.iterdir()}
    if not entries:
        return None
    summary_path = out_dir / "metadata" / "summary.json"
    if not entries <= MANAGED_ENTRIES or not summary_path.is_file():
        raise UserError(f"{out_dir}: exists and is not a cleaned dataset (no metadata/summary.json, or other "
                        f"files in it); refusing to replace it, choose another --out")
    return read_summary(out_dir)


def read_summary(out_dir):
    """The cleaned dataset's metadata/summary.json as clean_dataset wrote it; {} when missing or unreadable."""
    try:
        return json.loads((Path(out_dir) / "metadata" / "summary.json").read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def cleaned_from_demo(out_dir):
    """True when out_dir was cleaned from the built-in demo (the shell scripts then train with recipes/demo.yaml)."""
    return demo_data.is_demo_folder(read_summary(out_dir).get("source"))


def _refuse_source_inside_output(source_data, out_dir):
    out_prefix = os.path.abspath(out_dir) + os.sep
    inside = [p for p in source_data.images["path"] if p.startswith(out_prefix)]
    if inside or os.path.abspath(source_data.root).startswith(out_prefix):
        raise UserError(f"{out_dir}: the source ({inside[0] if inside else source_data.root}) lies inside the "
                        f"output folder, which is replaced by cleaning; choose another --out")


def _refuse_output_inside_source(source, out_dir):
    """A cleaned copy inside a source folder becomes part of that source for every later run (a class folder,
    or thousands of duplicates)."""
    if Path(source).is_dir() and is_inside(out_dir, source):
        raise UserError(f"--out {out_dir}: lies inside the source folder {source}; choose a folder outside it")


def _fingerprint(source_data, settings):
    """Hash of everything the output depends on: the listing, each file's size and mtime, and the settings."""
    digest = hashlib.sha256(json.dumps({"version": CLEANING_VERSION, "settings": settings, "format": source_data.fmt,
                                        "classes": source_data.class_names}, sort_keys=True).encode())
    for path, label, split in sorted(source_data.images[["path", "label", "split"]].itertuples(index=False)):
        stat = os.stat(path)
        digest.update(f"{path}\0{label}\0{split}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    for path, reason, label in sorted(source_data.rejected[["path", "reason", "label"]].astype(str).itertuples(
            index=False)):
        digest.update(f"{reason}\0{path}\0{label}\n".encode())
    return digest.hexdigest()


def _check_settings(max_side, val_fraction, seed, workers, many_threshold, few_threshold, near_dup_threshold):
    if max_side is not None and max_side < MIN_MAX_SIDE:
        raise UserError(f"--max-side {max_side}: must be at least {MIN_MAX_SIDE} pixels")
    if not 0.0 < val_fraction < 1.0:
        raise UserError(f"--val-fraction {val_fraction}: must be between 0 and 1 (exclusive)")
    if seed < 0:
        raise UserError(f"--seed {seed}: must be a non-negative integer")
    if workers is not None and workers < 1:
        raise UserError(f"--workers {workers}: must be at least 1")
    if not 0 <= near_dup_threshold <= near_duplicates.HASH_BITS:
        raise UserError(f"--near-dup-threshold {near_dup_threshold}: must be a Hamming distance from 0 (off) to "
                        f"{near_duplicates.HASH_BITS}")
    check_thresholds(many_threshold, few_threshold)
