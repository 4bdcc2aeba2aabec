"""The data module: cleaned metadata, augmentation pipelines, the Dataset and the samplers.

Everything that decides *what the model sees* lives here, so train.py, analyze_data.py and predict.py
agree on it: one set of transforms. Class weights and shot groups, which need no torch, are in longtail.py.
"""
import math
import os
from dataclasses import dataclass
from pathlib import Path

import albumentations as A
import cv2
import numpy as np
import pandas as pd
import torch
from albumentations.pytorch import ToTensorV2
from torch.utils.data import Dataset, Sampler

import hierarchy
from cleaning import decode_for_training
from errors import UserError
from longtail import compute_class_weights

AUGMENTATIONS = ("plain", "weak", "strong", "heavy")
# The eval resize's interpolation, by timm's name (exported configs carry it) and as OpenCV's flag.
EVAL_INTERPOLATION = "bilinear"
_CV2_INTERPOLATION = {"bilinear": cv2.INTER_LINEAR}


# ----------------------------------------------------------------------------------------------------
# Augmentation
# ----------------------------------------------------------------------------------------------------
# The weak and strong pipelines' crops keep at least this share of the image's area.
MIN_CROP_AREA = 0.5


def _random_resized_crop(img_size):
    return A.RandomResizedCrop(size=(img_size, img_size), scale=(MIN_CROP_AREA, 1.0), ratio=(0.75, 1.333))


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


def _eval_pipeline(img_size, crop_pct):
    return [
        A.SmallestMaxSize(max_size=int(round(img_size / crop_pct)),
                          interpolation=_CV2_INTERPOLATION[EVAL_INTERPOLATION]),
        A.CenterCrop(height=img_size, width=img_size),
    ]


def build_transform(kind, img_size, rotate_limit=STRONG_AUGMENTATION["rotate_limit"], crop_pct=0.875, to_tensor=True):
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
        steps = _eval_pipeline(img_size, crop_pct)
    else:
        raise UserError(f"unknown augmentation '{kind}' (choose plain, weak, strong, heavy or eval)")
    if to_tensor:
        steps.append(ToTensorV2())
    return A.Compose(steps)


class ModelInput:
    """Turns a batch of transformed images (uint8, N x 3 x H x W, as a loader yields them) into the model's input:
    on `device`, float, normalised with the pretrained mean and std (0-1 scale, the model's data config) so the
    pretrained features see what they expect, in the model's memory format.

    Normalising here rather than in each loader worker (timm's PrefetchLoader does the same) saves the workers a
    float pass per image (benchmarks/feeding.md) and sends a quarter of the bytes through the workers' shared
    memory and the pinned-memory copy; on a GPU the arithmetic costs nothing.
    """

    def __init__(self, device, mean, std, channels_last=False):
        self.device = torch.device(device)
        self.channels_last = channels_last
        shape = (1, len(mean), 1, 1)
        # Put on the device once: made per batch, they would be copied from pageable memory, and such a copy makes
        # the host wait for the GPU's queued work at every step.
        self.mean = (torch.tensor(mean, dtype=torch.float32) * 255).view(shape).to(self.device)
        self.std = (torch.tensor(std, dtype=torch.float32) * 255).view(shape).to(self.device)

    @classmethod
    def for_config(cls, config, device, channels_last=False):
        """From anything that carries the model's "mean" and "std": timm's data config, a checkpoint, an exported
        model's card."""
        return cls(device, [float(value) for value in config["mean"]], [float(value) for value in config["std"]],
                   channels_last)

    def __call__(self, images):
        images = images.to(self.device, non_blocking=True).float().sub_(self.mean).div_(self.std)
        return images.contiguous(memory_format=torch.channels_last) if self.channels_last else images


def describe_transform(transform):
    """One line per step, for logs and the run config: proof of what augmentation was applied."""
    return [repr(step).replace("\n", " ") for step in transform.transforms]


# ----------------------------------------------------------------------------------------------------
# Reading images and metadata
# ----------------------------------------------------------------------------------------------------
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


def worker_init(_worker_id):
    # OpenCV's own thread pool fights the DataLoader workers for the same cores.
    cv2.setNumThreads(0)
    worker = torch.utils.data.get_worker_info()
    if isinstance(worker.dataset, LeafDataset):
        worker.dataset.reseed(worker.seed % 2**32)  # torch derives worker.seed from the run's --seed


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
