"""The data module the scripts share (the design card's dataset.py): the training augmentations (the seed's strong
augmentation among them), the training Dataset and the class-aware samplers, over the package's data parts.

What every reader of a model needs (how a photo is read, the evaluation transform, the model's input, the cleaned
metadata) lives in leafdisease.data and is re-exported here, so train.py, analyze_data.py and predict.py see one
data module. Class weights and shot groups, which need no torch, are in leafdisease.data.longtail.
"""
import math

import albumentations as A
import cv2
import numpy as np
import torch
from albumentations.pytorch import ToTensorV2
from torch.utils.data import Dataset, Sampler

from leafdisease.data.longtail import compute_class_weights
from leafdisease.data.metadata import Metadata, label_to_index, load_metadata, select_classes  # noqa: F401
from leafdisease.data.reading import (  # noqa: F401
    DEFAULT_PHOTO_READING,
    MIN_CROP_AREA,
    PHOTO_READINGS,
    check_cache_covers,
    photo_short_side,
    read_image_rgb,
    short_side_for_crops,
    worker_init,
)
from leafdisease.data.transforms import DEFAULT_CROP_PCT, EVAL_INTERPOLATION, ModelInput, eval_pipeline  # noqa: F401
from leafdisease.utils.errors import UserError

AUGMENTATIONS = ("plain", "weak", "strong", "heavy")

# ----------------------------------------------------------------------------------------------------
# Augmentation
# ----------------------------------------------------------------------------------------------------
def _random_resized_crop(img_size):
    return A.RandomResizedCrop(size=(img_size, img_size), scale=(MIN_CROP_AREA, 1.0), ratio=(0.75, 1.333))


def _plain_pipeline(img_size):
    """What a generic fine-tuning script applies (timm's default ImageNet training transform): a random-resized
    crop over 8-100 % of the image, a horizontal flip and colour jitter 0.4. The reference for benchmarks."""
    return [
        A.RandomResizedCrop(size=(img_size, img_size), scale=(0.08, 1.0), ratio=(0.75, 1.333)),
        A.HorizontalFlip(p=0.5),
        A.ColorJitter(brightness=0.4, contrast=0.4, saturation=0.4, hue=0.0, p=1.0),
    ]


def _weak_pipeline(img_size):
    """The seed's "before": mild rotation, occasional colour jitter and cutout."""
    return [
        _random_resized_crop(img_size),
        A.HorizontalFlip(p=0.5),
        A.Rotate(limit=15, border_mode=cv2.BORDER_REFLECT_101, p=0.5),
        A.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2, hue=0.05, p=0.5),
        A.CoarseDropout(num_holes_range=(1, 4), hole_height_range=(0.05, 0.15), hole_width_range=(0.05, 0.15), p=0.3),
    ]


# The seed's rotation range for strong augmentation (its checklist greps this line); train.py's --rotate-limit
# default.
STRONG_AUGMENTATION = dict(rotate_limit=45)


def _strong_pipeline(img_size, rotate_limit):
    """The seed's "after": leaves have no canonical orientation, field photos have shadows and deformation.

    Rare classes (one image in the seed's data) only generalise if every epoch shows them differently.
    """
    return [
        _random_resized_crop(img_size),
        A.HorizontalFlip(p=0.5),
        A.VerticalFlip(p=0.3),
        A.Rotate(limit=rotate_limit, border_mode=cv2.BORDER_REFLECT_101, p=0.7),
        A.GridDistortion(num_steps=5, distort_limit=0.3, border_mode=cv2.BORDER_REFLECT_101, p=0.3),
        A.ColorJitter(brightness=0.3, contrast=0.3, saturation=0.3, hue=0.05, p=0.8),
        A.RandomShadow(shadow_roi=(0, 0, 1, 1), num_shadows_limit=(1, 2), p=0.2),
        A.CoarseDropout(num_holes_range=(1, 8), hole_height_range=(0.05, 0.2), hole_width_range=(0.05, 0.2), p=0.5),
    ]


def _heavy_pipeline(img_size):
    """For classes with a handful of images (targeted augmentation): any orientation, tighter crops,
    more deformation and occlusion, so a single photo yields many distinct views."""
    return [
        A.RandomResizedCrop(size=(img_size, img_size), scale=(0.3, 1.0), ratio=(0.7, 1.4)),
        A.HorizontalFlip(p=0.5),
        A.VerticalFlip(p=0.5),
        A.Rotate(limit=180, border_mode=cv2.BORDER_REFLECT_101, p=0.9),
        A.GridDistortion(num_steps=5, distort_limit=0.4, border_mode=cv2.BORDER_REFLECT_101, p=0.5),
        A.ColorJitter(brightness=0.4, contrast=0.4, saturation=0.4, hue=0.08, p=0.9),
        A.RandomShadow(shadow_roi=(0, 0, 1, 1), num_shadows_limit=(1, 3), p=0.4),
        A.GaussNoise(std_range=(0.02, 0.08), p=0.3),
        A.CoarseDropout(num_holes_range=(1, 8), hole_height_range=(0.05, 0.25), hole_width_range=(0.05, 0.25), p=0.7),
    ]


def build_transform(kind, img_size, rotate_limit=STRONG_AUGMENTATION["rotate_limit"], crop_pct=DEFAULT_CROP_PCT, to_tensor=True):
    """An albumentations pipeline: 'plain', 'weak', 'strong' or 'heavy' for training, 'eval' (resize + center crop).

    It returns a uint8 CHW tensor, which ModelInput turns into the model's normalised float input on the device; with
    to_tensor=False it returns the HWC uint8 image, for plotting.
    """
    if kind == "plain":
        steps = _plain_pipeline(img_size)
    elif kind == "weak":
        steps = _weak_pipeline(img_size)
    elif kind == "strong":
        steps = _strong_pipeline(img_size, rotate_limit)
    elif kind == "heavy":
        steps = _heavy_pipeline(img_size)
    elif kind == "eval":
        steps = eval_pipeline(img_size, crop_pct)
    else:
        raise UserError(f"unknown augmentation '{kind}' (choose plain, weak, strong, heavy or eval)")
    if to_tensor:
        steps.append(ToTensorV2())
    return A.Compose(steps)


def describe_transform(transform):
    """One line per step, for logs and the run config: proof of what augmentation was applied."""
    return [repr(step).replace("\n", " ") for step in transform.transforms]


# ----------------------------------------------------------------------------------------------------
# Dataset and samplers
# ----------------------------------------------------------------------------------------------------
class LeafDataset(Dataset):
    """(image tensor, class index) pairs; each class index may get its own transform (targeted augmentation).
    Images are read at their working size for short_side (read_image_rgb; short_side_for_crops of the model's size).
    """

    def __init__(self, paths, targets, transform, transform_by_target=None, short_side=None):
        self.paths = list(paths)
        self.targets = np.asarray(targets, dtype=np.int64)
        self.transform = transform
        self.transform_by_target = transform_by_target or {}
        self.short_side = short_side

    def __len__(self):
        return len(self.paths)

    def reseed(self, seed):
        """Seed the augmentation: albumentations draws from its own generators, which torch leaves unseeded,
        so without this no two runs (and no two loader workers) would augment alike."""
        for transform in {id(t): t for t in (self.transform, *self.transform_by_target.values())}.values():
            transform.set_random_seed(seed)

    def __getitem__(self, index):
        target = int(self.targets[index])
        transform = self.transform_by_target.get(target, self.transform)
        image = transform(image=read_image_rgb(self.paths[index], self.short_side))["image"]
        return image, target


def sample_weights(targets, num_classes, scheme):
    """Per-image sampling weight so that class c is drawn with probability proportional to
    count_c * class_weight_c: 'sqrt' -> proportional to sqrt(count), 'inverse' -> uniform over classes."""
    targets = np.asarray(targets)
    counts = np.bincount(targets, minlength=num_classes)
    per_class = compute_class_weights(np.maximum(counts, 1), scheme)
    return per_class[targets]


class EpochSampler(Sampler):
    """Indices for one rank for one epoch: a shuffle, or class-aware draws with replacement.

    The order depends only on (seed, epoch), never on the process, so every rank of a distributed run
    takes its own slice of one global order, and a resumed run replays the same order and can skip the
    batches it already trained on (`start_index`).
    """

    def __init__(self, num_items, weights=None, num_replicas=1, rank=0, seed=0):
        self.num_items = num_items
        self.weights = None if weights is None else torch.as_tensor(weights, dtype=torch.double)
        self.num_replicas = num_replicas
        self.rank = rank
        self.seed = seed
        self.epoch = 0
        self.start_index = 0
        self.num_samples = math.ceil(num_items / num_replicas)

    def set_epoch(self, epoch, start_index=0):
        self.epoch = epoch
        self.start_index = start_index

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        total = self.num_samples * self.num_replicas
        if self.weights is None:
            order = torch.randperm(self.num_items, generator=generator)
            order = torch.cat([order, order[: total - self.num_items]])  # pad so every rank gets equal work
        else:
            order = torch.multinomial(self.weights, total, replacement=True, generator=generator)
        return iter(order[self.rank::self.num_replicas][self.start_index:].tolist())

    def __len__(self):
        return self.num_samples - self.start_index


def make_sampler(targets, num_classes, scheme, num_replicas=1, rank=0, seed=0):
    """Class-aware oversampling of tail classes ('sqrt', 'inverse') or a plain shuffle ('none')."""
    weights = None if scheme == "none" else sample_weights(targets, num_classes, scheme)
    return EpochSampler(len(targets), weights, num_replicas=num_replicas, rank=rank, seed=seed)
