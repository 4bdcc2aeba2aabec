"""Outlier exposure (Hendrycks et al., 2019): photos that are none of the classes (other crops' leaves, soil, hands,
sky) trained towards a uniform softmax beside every batch of the classes, so that the model itself learns to be
unsure of what it was never meant to name. train.py --outlier-dir DIR...; the unknown-photo scores
(deployment/unknown.py) then read that uncertainty.

Each training batch of B photos gets ceil(B * BATCH_SHARE) outlier photos, drawn with replacement and augmented as
the classes' photos are; the loss adds WEIGHT x the cross-entropy of their softmax to the uniform distribution.
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


def uniform_cross_entropy(logits):
    """The cross-entropy from the uniform distribution to softmax(logits), averaged over the photos: its minimum,
    log K, is reached where every class is equally likely."""
    return -(torch.log_softmax(logits.float(), dim=1).mean(dim=1)).mean()


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
