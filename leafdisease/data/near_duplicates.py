"""Near-duplicate leakage: perceptual hashes (imagehash's pHash, 64 bits) and train/val pairs within a Hamming
distance.

PlantVillage and AI Challenger hold resized and re-encoded copies of the same photo; their bytes differ, so the
content hash misses them, but their pHash stays within a few bits. A validation photo that nearly duplicates a
training photo inflates validation accuracy (same class) or means one of the two labels is wrong (another class).

Pair finding compares every validation hash with every training hash, vectorised: blocks of XORs of the hashes
as uint64 and numpy's bit count, so 30,000 images take seconds (benchmarks/reports/near_duplicates.md), not a Python loop
over pairs.
"""
import imagehash
import numpy as np
import pandas as pd

# Hamming distance (of 64 bits) up to which two photos count as near duplicates. Resized and re-encoded copies
# land at 0-4; unrelated photos of one crop at ~20-32. 0 turns the check off.
DEFAULT_THRESHOLD = 6
HASH_BITS = 64
PAIR_COLUMNS = ["train_path", "val_path", "distance", "train_label", "val_label", "kind"]
SAME_CLASS, LABEL_CONFLICT = "same_class", "label_conflict"
# Distances computed per block (val rows x all train hashes); bounds memory at ~8 bytes x this.
BLOCK_ELEMENTS = 1 << 22


def perceptual_hash(image):
    """pHash of a Pillow image as 16 hex digits."""
    return str(imagehash.phash(image, hash_size=8))


def hashes_to_uint64(hex_hashes):
    """16-hex-digit hashes as a uint64 array."""
    return np.array([int(value, 16) for value in hex_hashes], dtype=np.uint64)


def close_pairs(query, reference, threshold):
    """(query index, reference index, distance) arrays for every pair within `threshold` bits, sorted by query
    then reference index."""
    query, reference = np.asarray(query, dtype=np.uint64), np.asarray(reference, dtype=np.uint64)
    found_query, found_reference, found_distance = [], [], []
    rows = max(1, BLOCK_ELEMENTS // max(1, len(reference)))
    for start in range(0, len(query), rows):
        distances = np.bitwise_count(query[start:start + rows, None] ^ reference[None, :])
        query_index, reference_index = np.nonzero(distances <= threshold)
        found_query.append(query_index + start)
        found_reference.append(reference_index)
        found_distance.append(distances[query_index, reference_index])
    if not found_query:
        return np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.uint8)
    return (np.concatenate(found_query).astype(np.int64), np.concatenate(found_reference).astype(np.int64),
            np.concatenate(found_distance).astype(np.uint8))


def train_val_pairs(images, threshold):
    """Near-duplicate (train, val) pairs of `images` (columns path, label, split, phash; rows with an empty phash
    are skipped), as a PAIR_COLUMNS table: same_class pairs are informational, label_conflict pairs disagree."""
    if threshold <= 0:
        return pd.DataFrame(columns=PAIR_COLUMNS)
    hashed = images.loc[images["phash"] != ""]
    train = hashed.loc[hashed["split"] == "train"].reset_index(drop=True)
    val = hashed.loc[hashed["split"] == "val"].reset_index(drop=True)
    val_index, train_index, distance = close_pairs(hashes_to_uint64(val["phash"]), hashes_to_uint64(train["phash"]),
                                                   threshold)
    train_label = train["label"].to_numpy()[train_index]
    val_label = val["label"].to_numpy()[val_index]
    pairs = pd.DataFrame({
        "train_path": train["path"].to_numpy()[train_index], "val_path": val["path"].to_numpy()[val_index],
        "distance": distance, "train_label": train_label, "val_label": val_label,
        "kind": np.where(train_label == val_label, SAME_CLASS, LABEL_CONFLICT),
    }, columns=PAIR_COLUMNS)
    return pairs.sort_values(["kind", "distance", "val_path", "train_path"], ignore_index=True)


def summarize(pairs, threshold, unhashed):
    """The summary.json entry: threshold, pair counts by kind, validation images involved, images not hashed."""
    return {"threshold": int(threshold), "same_class_pairs": int((pairs["kind"] == SAME_CLASS).sum()),
            "label_conflict_pairs": int((pairs["kind"] == LABEL_CONFLICT).sum()),
            "val_images_involved": int(pairs["val_path"].nunique()), "unhashed_images": int(unhashed)}
