"""The 61 official AI Challenger 2018 crop-disease classes, in id order: one table for the dataset reader
(sources.py names a dataset's classes with it) and the demo generator (demo_data draws each class from it)."""

# (crop, disease, severity); severity None: the class has no general/serious split.
AICHALLENGER_CLASS_TABLE = (
    ("Apple", "healthy", None),
    ("Apple", "scab", "general"),
    ("Apple", "scab", "serious"),
    ("Apple", "frogeye_spot", None),
    ("Apple", "cedar_rust", "general"),
    ("Apple", "cedar_rust", "serious"),
    ("Cherry", "healthy", None),
    ("Cherry", "powdery_mildew", "general"),
    ("Cherry", "powdery_mildew", "serious"),
    ("Corn", "healthy", None),
    ("Corn", "gray_leaf_spot", "general"),
    ("Corn", "gray_leaf_spot", "serious"),
    ("Corn", "rust", "general"),
    ("Corn", "rust", "serious"),
    ("Corn", "leaf_spot", "general"),
    ("Corn", "leaf_spot", "serious"),
    ("Corn", "dwarf_mosaic", None),
    ("Grape", "healthy", None),
    ("Grape", "black_rot", "general"),
    ("Grape", "black_rot", "serious"),
    ("Grape", "black_measles", "general"),
    ("Grape", "black_measles", "serious"),
    ("Grape", "leaf_blight", "general"),
    ("Grape", "leaf_blight", "serious"),
    ("Citrus", "healthy", None),
    ("Citrus", "greening", "general"),
    ("Citrus", "greening", "serious"),
    ("Peach", "healthy", None),
    ("Peach", "bacterial_spot", "general"),
    ("Peach", "bacterial_spot", "serious"),
    ("Pepper", "healthy", None),
    ("Pepper", "scab", "general"),
    ("Pepper", "scab", "serious"),
    ("Potato", "healthy", None),
    ("Potato", "early_blight", "general"),
    ("Potato", "early_blight", "serious"),
    ("Potato", "late_blight", "general"),
    ("Potato", "late_blight", "serious"),
    ("Strawberry", "healthy", None),
    ("Strawberry", "scorch", "general"),
    ("Strawberry", "scorch", "serious"),
    ("Tomato", "healthy", None),
    ("Tomato", "powdery_mildew", "general"),
    ("Tomato", "powdery_mildew", "serious"),
    ("Tomato", "bacterial_spot", "general"),
    ("Tomato", "bacterial_spot", "serious"),
    ("Tomato", "early_blight", "general"),
    ("Tomato", "early_blight", "serious"),
    ("Tomato", "late_blight", "general"),
    ("Tomato", "late_blight", "serious"),
    ("Tomato", "leaf_mold", "general"),
    ("Tomato", "leaf_mold", "serious"),
    ("Tomato", "target_spot", "general"),
    ("Tomato", "target_spot", "serious"),
    ("Tomato", "septoria_leaf_spot", "general"),
    ("Tomato", "septoria_leaf_spot", "serious"),
    ("Tomato", "spider_mite", "general"),
    ("Tomato", "spider_mite", "serious"),
    ("Tomato", "yellow_leaf_curl", "general"),
    ("Tomato", "yellow_leaf_curl", "serious"),
    ("Tomato", "mosaic_virus", None),
)

# "<Crop>_<disease>[_<severity>]", e.g. Apple_scab_general; list index = class id.
AICHALLENGER_CLASS_NAMES = tuple(
    f"{crop}_{disease}" + (f"_{severity}" if severity else "") for crop, disease, severity in AICHALLENGER_CLASS_TABLE
)

# Images per class id in the official download's text lists (train_list.txt: 31,541 lines; ttest_list.txt: 4,533),
# as counted in the project's issue 20: the seed's 2445:1 (class 59 against 44 and 45). Class 45 has no validation
# image. The training JSON lists 31,718 entries, some ids two or three times.
OFFICIAL_TRAIN_COUNTS = (
    1185, 211, 151, 427, 142, 40, 598, 116, 110, 376, 191, 167, 483, 355, 205, 480, 815, 294, 381, 462, 503, 419, 61,
    629, 367, 1824, 1787, 251, 857, 770, 1025, 287, 377, 1430, 203, 510, 251, 446, 242, 192, 583, 1208, 319, 966, 1, 1,
    251, 442, 264, 1075, 325, 336, 43, 22, 421, 807, 542, 271, 1338, 2445, 261,
)
OFFICIAL_VAL_COUNTS = (
    169, 30, 22, 61, 20, 6, 85, 12, 18, 54, 27, 24, 69, 51, 29, 70, 116, 42, 54, 66, 74, 59, 9, 90, 52, 269, 262, 36,
    122, 110, 147, 40, 54, 204, 29, 73, 36, 64, 35, 27, 83, 173, 46, 138, 1, 0, 36, 63, 38, 157, 46, 48, 4, 5, 60, 115,
    77, 39, 197, 353, 37,
)
