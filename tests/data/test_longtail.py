"""Issue 12: long-tail logic without torch; cleaning and metrics stay light; report thresholds are not part of the
cleaning cache."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_cleaning import write_imagefolder

from leafdisease.data import longtail
from leafdisease.data.cleaning import clean_dataset

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "albumentations", "cv2")


@pytest.mark.parametrize("module, allowed", [("leafdisease.data.longtail", ()), ("leafdisease.evaluation.metrics", ()), ("leafdisease.data.cleaning", ("cv2",))])
def test_module_imports_without_torch(module, allowed):
    """cleaning keeps OpenCV itself: it checks that the trainer's reader decodes each image."""
    code = (f"import sys; import {module}; "
            f"print(','.join(name for name in {HEAVY!r} if name in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    loaded = set(filter(None, result.stdout.strip().split(",")))
    assert loaded <= set(allowed), f"importing {module} loaded {sorted(loaded)}"


def test_shot_groups_and_captions_share_the_thresholds():
    counts = [longtail.MANY_SHOT_THRESHOLD + 1, longtail.MANY_SHOT_THRESHOLD, longtail.FEW_SHOT_THRESHOLD,
              longtail.FEW_SHOT_THRESHOLD - 1]
    assert longtail.shot_groups(counts).tolist() == ["many", "medium", "medium", "few"]
    captions = longtail.shot_group_captions(50, 5)
    assert list(captions) == list(longtail.SHOT_GROUPS)
    assert "> 50" in captions["many"] and "< 5" in captions["few"]


def test_sqrt_weights_match_the_seed_ratio():
    weights = longtail.compute_class_weights([2445, 1], "sqrt")
    assert weights.max() / weights.min() == pytest.approx(np.sqrt(2445))


def test_changing_report_thresholds_reuses_the_cleaned_images(tmp_path):
    source = write_imagefolder(tmp_path / "src", {"a": 12, "b": 4, "c": 1})
    out = tmp_path / "cleaned"
    assert clean_dataset(source, out, workers=1)["reused"] is False
    summary = clean_dataset(source, out, workers=1, many_threshold=5, few_threshold=2)
    assert summary["reused"] is True
    on_disk = json.loads((out / "metadata" / "summary.json").read_text())
    assert on_disk["shot_groups"] == summary["shot_groups"] == {"many": [0], "medium": [1], "few": [2]}
    assert on_disk["shot_thresholds"]["many"] == "> 5 training images"
