"""Built-in demo dataset: synthetic crop-leaf-disease photos in the AI Challenger 2018 layout.

Each image is a leaf of its crop on a field-like background, with the class's disease painted on the leaf,
drawn with numpy/OpenCV from a random generator seeded by (seed, split, class, index). The same parameters
therefore give byte-identical files whatever the number of worker processes.

The class structure (61 classes: 10 crops, healthy classes, most diseases at a "general" and a "serious"
severity) and the long-tailed class counts follow AI Challenger 2018, so the demo shows the same problem
as the real data: 2445:1 imbalance, nine head classes holding 42% of the images, and classes that differ
only in how far the same disease has spread.

Modules: counts (class names and counts), raster (drawing primitives), leaves (leaf geometry and drawing),
diseases (lesions and the per-disease painters), photo (background, lighting, camera: one photo), writer (the
dataset on disk).
"""
from leafdisease.data.demo_data.counts import (
                              CLASS_NAMES,
                              DEFAULT_SCALE,
                              FULL_TRAIN_COUNTS,
                              NUM_CLASSES,
                              demo_train_counts,
                              demo_val_counts,
)
from leafdisease.data.demo_data.photo import DEFAULT_IMAGE_SIZE, MIN_IMAGE_SIZE, RENDER_VERSION, render_leaf
from leafdisease.data.demo_data.writer import (
                              CLASS_NAMES_FILE,
                              INFO_FILE,
                              TRAIN_ANNOTATIONS,
                              TRAIN_DIR,
                              VAL_ANNOTATIONS,
                              VAL_DIR,
                              generate_demo,
                              image_file_name,
                              is_demo_folder,
)

__all__ = ["CLASS_NAMES", "CLASS_NAMES_FILE", "DEFAULT_IMAGE_SIZE", "DEFAULT_SCALE", "FULL_TRAIN_COUNTS", "INFO_FILE",
           "MIN_IMAGE_SIZE", "NUM_CLASSES", "RENDER_VERSION", "TRAIN_ANNOTATIONS", "TRAIN_DIR", "VAL_ANNOTATIONS",
           "VAL_DIR", "demo_train_counts", "demo_val_counts", "generate_demo", "image_file_name", "is_demo_folder",
           "render_leaf"]
