"""Synthetic camera photos for the benchmarks: stand-ins for AI Challenger's multi-megapixel JPEGs."""
import cv2
import numpy as np


def render_photo(path, width, height, rng):
    """A camera-like JPEG: smooth colour field, leaf shapes and lesions, multi-scale sensor/texture noise
    (pure noise or flat colour would make decoding unrealistically slow or fast)."""
    field = rng.integers(40, 200, (5, 8, 3), dtype=np.uint8)
    image = cv2.resize(field, (width, height), interpolation=cv2.INTER_CUBIC)
    for _ in range(5):
        centre = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        axes = (int(rng.integers(width // 10 + 1, width // 4 + 2)), int(rng.integers(height // 12 + 1, height // 6 + 2)))
        colour = (int(rng.integers(20, 60)), int(rng.integers(110, 170)), int(rng.integers(30, 80)))
        cv2.ellipse(image, centre, axes, float(rng.uniform(0, 180)), 0, 360, colour, -1)
    for _ in range(40):
        centre = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        cv2.circle(image, centre, int(rng.integers(2, max(3, width // 75))), (30, 60, 110), -1)
    image = image.astype(np.int16)
    for scale in (1, 2, 4, 8):
        noise = np.empty((max(1, height // scale), max(1, width // scale), 3), np.int16)
        cv2.randn(noise, 0, 18)
        image += cv2.resize(noise, (width, height), interpolation=cv2.INTER_LINEAR)
    cv2.imwrite(str(path), np.clip(image, 0, 255).astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 92])
