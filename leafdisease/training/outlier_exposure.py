"""Outlier exposure (Hendrycks et al., 2019): photos that are none of the classes (other crops' leaves, soil, hands,
sky) trained towards a uniform softmax beside every batch of the classes, so that the model itself learns to be
unsure of what it was never meant to name. train.py --outlier-dir DIR...; the unknown-photo scores
(deployment/unknown.py) then read that uncertainty.

Each training batch of B photos gets ceil(B * BATCH_SHARE) outlier photos, drawn with replacement and augmented as
the classes' photos are; the loss adds WEIGHT x the cross-entropy of their softmax to the uniform distribution.

--outlier-mix cutmix (mixture outlier exposure, Zhang et al., WACV 2023, for fine-grained classes whose unknowns are
close to them): each outlier photo is pasted as a patch into one of the batch's photos instead, and the answer
trained towards lies between that photo's class and the even answer in proportion to the area each keeps, so that
confidence falls smoothly from a known leaf towards what is not one.
"""
import math
from pathlib import Path

import numpy as np
import torch

from leafdisease.data import cleaning, sources
from leafdisease.utils.errors import UserError

WEIGHT = 0.5  # Hendrycks et al.'s lambda for fine-tuning
BATCH_SHARE = 0.5
UNLABELLED = -1  # the target an outlier photo carries through the loader
MIXES = ("none", "cutmix")
DEFAULT_MIX = "none"
# The share of the photo kept is drawn from Beta(0.1, 1) (OpenOOD v1.5's MixOE setting): mostly small, so most mixes
# are mostly outlier and a few keep much of the leaf.
KEPT_SHARE_BETA = (0.1, 1.0)


def find_outlier_photos(folders):
    """Every file under `folders` (each a folder), decode-checked as cleaning checks the classes' photos: the
    paths, or a UserError naming the first file that is not a readable image and how many there are."""
    paths = []
    for folder in folders:
        if not (folder := Path(folder)).is_dir():
            raise UserError(f"--outlier-dir {folder}: not a folder")
        found = sorted(sources.files_under(folder))
        if not found:
            raise UserError(f"--outlier-dir {folder}: no files in it")
        paths += found
    problems = [(path, report) for path in paths if (report := cleaning.inspect_image(path))["reason"]]
    if problems:
        path, report = problems[0]
        raise UserError(f"--outlier-dir: {path}: {report['reason']} ({report['detail']}); {len(problems)} of "
                        f"{len(paths)} files are not readable images: remove them")
    return [str(path) for path in paths]


def outlier_batch_size(batch_size):
    return max(1, math.ceil(batch_size * BATCH_SHARE))


def paste_outlier_patches(images, outlier_images):
    """Mixture outlier exposure's cutmix: one box (the same for the batch, its area drawn) of each outlier image
    pasted into one of the first of `images` (same size; as many as there are of both); returns (mixed images,
    the share of each photo its own pixels keep)."""
    height, width = images.shape[-2:]
    kept = float(torch.distributions.Beta(*KEPT_SHARE_BETA).sample())
    box_height, box_width = int(height * math.sqrt(1 - kept)), int(width * math.sqrt(1 - kept))
    centre_y, centre_x = int(torch.randint(height, ())), int(torch.randint(width, ()))
    top, bottom = max(0, centre_y - box_height // 2), min(height, centre_y + box_height // 2)
    left, right = max(0, centre_x - box_width // 2), min(width, centre_x + box_width // 2)
    count = min(len(images), len(outlier_images))
    mixed = images[:count].clone()
    mixed[..., top:bottom, left:right] = outlier_images[:count, :, top:bottom, left:right]
    return mixed, 1 - (bottom - top) * (right - left) / (height * width)


def mixed_cross_entropy(logits, targets, kept_share):
    """The cross-entropy from kept_share x each photo's class (`targets`) + (1 - kept_share) x the even answer to
    softmax(logits), averaged over the photos. kept_share 0 (plain outlier exposure): its minimum, log K, is reached
    where every class is equally likely."""
    log_probabilities = torch.log_softmax(logits.float(), dim=1)
    own_class = log_probabilities.gather(1, targets[:, None]).squeeze(1)
    return -(kept_share * own_class + (1 - kept_share) * log_probabilities.mean(dim=1)).mean()


class EndlessBatches:
    """Batches from `loader` for ever: a new pass (a new random draw) when one ends."""

    def __init__(self, loader):
        self.loader = loader
        self.iterator = iter(loader)

    def __next__(self):
        try:
            return next(self.iterator)
        except StopIteration:
            self.iterator = iter(self.loader)
            return next(self.iterator)


def outlier_loader(dataset, batch_size, seed, **loader_options):
    """A loader of outlier batches (images only) drawn with replacement, as many photos a pass as the dataset
    holds."""
    generator = torch.Generator().manual_seed(int(np.uint32(seed)))
    sampler = torch.utils.data.RandomSampler(dataset, replacement=True, num_samples=len(dataset), generator=generator)
    return torch.utils.data.DataLoader(dataset, batch_size=outlier_batch_size(batch_size), sampler=sampler,
                                       drop_last=False, **loader_options)
