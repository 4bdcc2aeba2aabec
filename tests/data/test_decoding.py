"""Issue 23: photos far larger than a model needs are read at their working size (reduced by 2, 4 or 8, never below
the short side its crops need) in training, validation, evaluation and prediction alike, and the --max-side auto
copies hold exactly that, so a model never sees a photo processed two ways."""
import cv2
import numpy as np
import pytest
from PIL import Image

import dataset
from leafdisease.data import cleaning
from leafdisease.deployment import inference


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    """An 800 x 600 camera-like JPEG: smooth colour with texture, so a reduced decode can be compared to a resize."""
    rng = np.random.default_rng(0)
    smooth = cv2.resize(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8), (800, 600), interpolation=cv2.INTER_CUBIC)
    image = np.clip(smooth + rng.normal(0, 4, smooth.shape), 0, 255).astype(np.uint8)
    path = tmp_path_factory.mktemp("photos") / "leaf.jpg"
    assert cv2.imwrite(str(path), image, [cv2.IMWRITE_JPEG_QUALITY, 90])
    return path


def test_a_large_photo_is_read_at_the_smallest_reduction_that_keeps_the_needed_side(photo, tmp_path):
    full = dataset.read_image_rgb(photo)
    assert full.shape == (600, 800, 3)
    assert dataset.read_image_rgb(photo, 140).shape == (150, 200, 3)  # 1/4; 1/8 would leave 75 px
    assert dataset.read_image_rgb(photo, 151).shape == (300, 400, 3)  # 1/4 would leave 150 px
    assert dataset.read_image_rgb(photo, 301).shape == (600, 800, 3)  # not twice the need: as it is
    assert dataset.read_image_rgb(photo, 75).shape == (75, 100, 3)  # 1/8, the largest reduction
    # The JPEG is reduced while it decodes; it is the photo at a quarter size, as an area resize makes it.
    reduced = dataset.read_image_rgb(photo, 140).astype(float)
    area = cv2.resize(full, (200, 150), interpolation=cv2.INTER_AREA)
    assert np.abs(reduced - area).mean() < 3
    # Another format is decoded in full, then resized by area to the same working size.
    png = tmp_path / "leaf.png"
    assert cv2.imwrite(str(png), cv2.imread(str(photo)))
    assert np.abs(dataset.read_image_rgb(png, 140).astype(float) - area).mean() < 1


def test_exif_orientation_is_applied_to_a_reduced_jpeg(photo, tmp_path):
    rotated = tmp_path / "rotated.jpg"
    image = Image.open(photo)
    exif = image.getexif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    image.save(rotated, exif=exif.tobytes(), quality=90)
    assert dataset.read_image_rgb(rotated).shape == (800, 600, 3)
    assert dataset.read_image_rgb(rotated, 140).shape == (200, 150, 3)


def test_training_validation_prediction_and_the_cache_read_a_photo_alike(photo, tmp_path):
    img_size = 100  # its crops need a short side of 142 px: the 600 px photo is read at 1/4
    short_side = dataset.short_side_for_crops(img_size)
    assert short_side == 142
    decoded = dataset.read_image_rgb(photo, short_side)
    assert decoded.shape == (150, 200, 3)
    assert np.array_equal(inference.read_photo(photo, {"img_size": img_size}), decoded)  # predict.py, evaluate.py
    evaluation = dataset.build_transform("eval", img_size, to_tensor=False)
    validation = dataset.LeafDataset([str(photo)], [0], evaluation, short_side=short_side)
    assert np.array_equal(validation[0][0], evaluation(image=decoded)["image"])
    # The --max-side auto copy is that image (re-encoded at JPEG quality 95), which training then reads as it is.
    copy = tmp_path / "copy.jpg"
    cleaning.reencode_image((str(photo), str(copy), False, False, None, short_side))
    cached = dataset.read_image_rgb(copy, short_side)
    assert cached.shape == decoded.shape and np.abs(cached.astype(float) - decoded).mean() < 1.5


def test_a_model_trained_on_full_decodes_is_shown_full_decodes(photo):
    # train.py --photo-reading full stores the reading with the model; every reader then decodes in full.
    full = dataset.read_image_rgb(photo)
    assert dataset.photo_short_side(100, "full") is None
    checkpoint = {"img_size": 100, "photo_reading": "full"}
    assert np.array_equal(inference.read_photo(photo, checkpoint), full)
    files = inference.ImageFiles([photo], lambda image: {"image": image}, checkpoint)
    assert np.array_equal(files[0][0], full)
    # A checkpoint from before the option reads at the working size.
    assert inference.read_photo(photo, {"img_size": 100, "photo_reading": None}).shape == (150, 200, 3)
