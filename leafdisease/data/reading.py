"""How a photo is read: at its working size for a model of a given image size, or in full.

One size for every reader (training, validation, evaluate.py, predict.py, export checks, the page), so a model is
always shown its photos the way it was trained on them.
"""
import math
import os

import cv2
import torch

from leafdisease.data.cleaning import decode_for_training, read_summary
from leafdisease.utils.errors import UserError

# The weak and strong pipelines' crops keep at least this share of the image's area.
MIN_CROP_AREA = 0.5


def short_side_for_crops(img_size):
    """The shortest image side at which the strong augmentation's smallest (square) crop still spans img_size
    pixels, so is not upsampled: larger images only cost decoding time.

    It is also the short side photos are worked at for a model of img_size px: photos at least twice as large are
    read reduced to between one and two times it (cleaning.reduction) in training, validation, evaluation and
    prediction alike, and the --max-side auto copies hold exactly that. One size for every way a photo is read:
    a model trained on copies reduced by area and shown the raw photos decoded in full (a 7x bilinear resize to
    the evaluation size, which aliases) lost 10 points of test balanced accuracy (benchmarks/feeding.md). The
    plain and heavy augmentations' smaller crops are upsampled from it."""
    return math.ceil(img_size / math.sqrt(MIN_CROP_AREA))


# How photos are read for a model (train.py --photo-reading; carried by its checkpoint and export):
# "working": at their working size (short_side_for_crops), a JPEG reduced while it decodes;
# "full": decoded in full, the augmentation's or evaluation's own resize does all the reducing.
PHOTO_READINGS = ("working", "full")
DEFAULT_PHOTO_READING = "working"


def photo_short_side(img_size, photo_reading=DEFAULT_PHOTO_READING):
    """The short side photos are read at for a model of img_size px read `photo_reading` (None: in full)."""
    if photo_reading not in PHOTO_READINGS:
        raise UserError(f"photo reading {photo_reading!r}: must be one of {', '.join(PHOTO_READINGS)}")
    return short_side_for_crops(img_size) if photo_reading == "working" else None



def check_cache_covers(data_dir, img_size, reader):
    """Refuse (a one-line UserError naming the cleaning command for img_size) a cleaned dataset whose --max-side auto
    copies were made for a smaller model than the img_size px one `reader` ("training at --img-size 192") reads it
    for: they keep a short side of summary.json's cache short_side, below what short_side_for_crops(img_size) needs,
    and reading them would enlarge copies of photos whose originals hold the detail. A dataset without a cache, or
    whose cache reduced no photo, holds the originals and passes."""
    summary = read_summary(data_dir)
    cache = summary.get("cache") or {}
    needed = short_side_for_crops(img_size)
    if not cache.get("reduced") or cache["short_side"] >= needed:
        return
    raise UserError(f"{data_dir}: its --max-side auto copies of {cache['reduced']} photos were made for a smaller "
                    f"model (a short side of {cache['short_side']} px); {reader} needs {needed} px, and would enlarge "
                    f"them where the originals have the detail; clean it for this size: python analyze_data.py "
                    f"--source {summary.get('source', 'SOURCE')} --out {data_dir} --max-side auto --img-size {img_size}")


def read_image_rgb(path, short_side=None):
    """HxWx3 uint8 RGB, at its working size for a model that needs `short_side` px (cleaning.decode_for_training;
    None: as it is). A file that can't be read mid-training is a UserError naming it, not a crash."""
    try:
        image = decode_for_training(path, False, False, short_side) if os.path.isfile(path) else None
    except OSError:
        image = None
    if image is None:
        raise UserError(f"{path}: cannot read image (missing, truncated or not an image); re-run analyze_data.py")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)



def worker_init(_worker_id):
    # OpenCV's own thread pool fights the DataLoader workers for the same cores.
    cv2.setNumThreads(0)
    worker = torch.utils.data.get_worker_info()
    if hasattr(worker.dataset, "reseed"):
        worker.dataset.reseed(worker.seed % 2**32)  # torch derives worker.seed from the run's --seed
