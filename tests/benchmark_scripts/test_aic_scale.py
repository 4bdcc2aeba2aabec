"""benchmarks/aic_scale.py at 1 % scale: the stand-in of the official download (repeated and conflicting JSON ids,
text lists, class 45 without a validation photo) is cleaned with the right rejected rows and trains through
train_fixed.sh, which names class 45 as having no validation image."""
import json

import pandas as pd

from benchmarks import aic_scale


def test_standin_plan_has_the_official_repeats_and_counts():
    images, entries, repeats = aic_scale.plan_standin(1.0)
    train = images.loc[images["split"] == "train"]
    assert len(train) == 31541 and len(images) - len(train) == 4533
    assert len(entries["train"]) == 31718 and len(entries["val"]) == 4540
    listed = pd.Series([entry["image_id"] for entry in entries["train"]]).value_counts()
    assert (listed == 2).sum() == 148 + 19 and (listed == 3).sum() == 5
    labels = pd.DataFrame(entries["train"]).groupby("image_id")["disease_class"].nunique()
    assert (labels == 2).sum() == 19
    counts = train["label"].value_counts()
    assert counts[59] == 2445 and counts[44] == counts[45] == 1
    assert 45 not in set(images.loc[images["split"] == "val", "label"])


def test_rehearsal_cleans_and_trains_the_official_layout(tmp_path):
    out = tmp_path / "report"
    out.mkdir()
    aic_scale.main(["--scale", "0.005", "--source", str(tmp_path / "standin"), "--data-dir", str(tmp_path / "clean"),
                    "--runs", str(tmp_path / "runs"), "--out", str(out), "--img-size", "32", "--batch-size", "16",
                    "--model", "test_efficientnet", "--no-pretrained", "--workers", "1", "--photo-scale", "0.125",
                    "--leaf-pool", "1"])
    _, _, repeats = aic_scale.plan_standin(0.005)
    summary = json.loads((tmp_path / "clean" / "metadata" / "summary.json").read_text())
    expected_repeats = repeats["train_twice"] + 2 * repeats["train_thrice"] + repeats["val_twice"]
    assert summary["rejected_by_reason"] == {"duplicate_entry": expected_repeats,
                                             "label_conflict": 2 * repeats["train_two_labels"]}
    assert {"id": 45, "name": "Tomato_bacterial_spot_serious"} in summary["classes_without_val_images"]
    report = (out / "aic_scale.md").read_text()
    assert "no validation image for" in report and "45 'Tomato_bacterial_spot_serious'" in report
    assert "| cleaning (analyze_data.py, JSON layout) |" in report
    assert all((out / f"aic_scale_{name}").stat().st_size > 0 for name in aic_scale.PLOTS)
