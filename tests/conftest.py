import sys
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def write_cleaned_dataset(root, train_counts, val_per_class=3, image_size=40, seed=0):
    """A cleaned dataset (data/cleaned layout) of flat-coloured noisy images, one colour per class;
    val_per_class: one count for every class, or a list of counts per class."""
    val_counts = [val_per_class] * len(train_counts) if isinstance(val_per_class, int) else list(val_per_class)
    rng = np.random.default_rng(seed)
    (root / "metadata").mkdir(parents=True)
    (root / "images").mkdir()
    rows = {"train": [], "val": []}
    for class_id, count in enumerate(train_counts):
        colour = np.array([(class_id * 70) % 256, (class_id * 130) % 256, (class_id * 190) % 256], np.uint8)
        for split, number in (("train", count), ("val", val_counts[class_id])):
            for index in range(number):
                noise = rng.integers(0, 30, (image_size, image_size, 3)).astype(np.uint8)
                relative = f"images/{split}_{class_id}_{index}.png"
                cv2.imwrite(str(root / relative), np.clip(colour + noise, 0, 255).astype(np.uint8))
                rows[split].append((relative, class_id, f"class_{class_id}"))
    for split, split_rows in rows.items():
        pd.DataFrame(split_rows, columns=["path", "label", "class_name"]).to_csv(root / "metadata" / f"{split}.csv", index=False)
    pd.DataFrame({"id": range(len(train_counts)), "name": [f"class_{i}" for i in range(len(train_counts))],
                  "train_count": train_counts, "val_count": val_counts}
                 ).to_csv(root / "metadata" / "classes.csv", index=False)
    return root


@pytest.fixture(scope="session")
def tiny_cleaned(tmp_path_factory):
    return write_cleaned_dataset(tmp_path_factory.mktemp("cleaned"), [24, 12, 4, 1])


@pytest.fixture(scope="session")
def trained_checkpoint(tiny_cleaned, tmp_path_factory):
    """best.pth of a 3-epoch full-stage run of timm's tiny test model on tiny_cleaned (read it, don't change it)."""
    import train

    output = tmp_path_factory.mktemp("tiny_run") / "full"
    train.run(train.parse_args(["--data-dir", str(tiny_cleaned), "--output", str(output), "--model", "test_efficientnet",
                                "--no-pretrained", "--img-size", "32", "--batch-size", "8", "--workers", "0",
                                "--epochs", "3", "--lr", "1e-2", "--warmup-epochs", "0"]))
    return output / "best.pth"


@pytest.fixture()
def tiny_profile(monkeypatch):
    """The benchmarks' realdata.py profiles at 32 px and a few epochs (enough for the crt row's three stages), for
    one test only. Kept here: a second conftest.py under tests/ would shadow this one for `from conftest import`."""
    from benchmarks import realdata

    for name, epochs in (("screen", 4), ("final", 3)):
        monkeypatch.setitem(realdata.PROFILES, name, realdata.Profile(
            img_size=32, baseline_img_size=32, epochs=epochs, head_epochs=1, warmup_epochs=0, crt_epochs=1))


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    """Tiny test models gain nothing from threads, and on a shared 2-core machine spinning OpenMP threads
    slow them several-fold."""
    import torch

    torch.set_num_threads(1)
