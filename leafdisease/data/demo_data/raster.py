"""Drawing primitives shared by the leaf, the disease painters and the photo: float32 layers in 0..1, masks drawn
anti-aliased in uint8 at sub-pixel precision and converted."""
from functools import lru_cache

import cv2
import numpy as np

SUBPIXEL_BITS = 4  # fractional bits of the fixed-point coordinates OpenCV draws with


@lru_cache(maxsize=8)
def pixel_grid(size):
    """x and y coordinate of every pixel of a size x size image."""
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    return xs, ys


def smooth_noise(rng, size, cells):
    """Uniform noise on a (cells + 1) square grid, upsampled smoothly to size x size."""
    grid = rng.random((cells + 1, cells + 1), dtype=np.float32)
    return cv2.resize(grid, (size, size), interpolation=cv2.INTER_CUBIC)


def gaussian_blur(layer, sigma):
    """`layer` blurred with a Gaussian of `sigma` pixels (unchanged below 0.3, where the blur would not show)."""
    return cv2.GaussianBlur(layer, (0, 0), sigma) if sigma >= 0.3 else layer


def blend(canvas, alpha, colour):
    """Move `canvas` towards `colour` by `alpha` per pixel, in place."""
    canvas += alpha[..., None] * (np.asarray(colour, dtype=np.float32) - canvas)


def smoothstep(x):
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def fixed_point(points):
    return np.round(np.asarray(points) * (1 << SUBPIXEL_BITS)).astype(np.int32)

