import json
import shutil

import pandas as pd
import pytest
import torch

import evaluate


def run_evaluate(checkpoint, data, *argv):
    evaluate.main(["--checkpoint", str(checkpoint), str(data), "--workers", "0", "--batch-size", "5", *map(str, argv)])


def image_folder(tiny_cleaned, root, classes):
    """An ImageFolder test set made of the cleaned val images of `classes` (ids), named as the checkpoint names them."""
    val = pd.read_csv(tiny_cleaned / "metadata" / "val.csv")
    for row in val.loc[val["label"].isin(classes)].itertuples():
        (root / row.class_name).mkdir(parents=True, exist_ok=True)
        shutil.copy(tiny_cleaned / row.path, root / row.class_name)
    return root


def test_cleaned_val_split_reproduces_training_validation_metrics(trained_checkpoint, tiny_cleaned, tmp_path, capsys):
    run_evaluate(trained_checkpoint, tiny_cleaned, "--output", tmp_path / "report")
    checkpoint = torch.load(trained_checkpoint, map_location="cpu", weights_only=True)
    best = checkpoint["history"][checkpoint["best_epoch"] - 1]
    result = json.loads((tmp_path / "report" / "metrics.json").read_text())
    for name in ("acc", "balanced_acc", "macro_f1", "top5", "many_acc", "medium_acc", "few_acc"):
        value = float("nan") if result[name] is None else result[name]  # strict JSON writes NaN as null
        assert value == pytest.approx(best[f"val_{name}"], abs=1e-12, nan_ok=True), name
    assert result["images"] == 12 and result["tau"] == 0.0 and result["absent_classes"] == []
    per_class = pd.read_csv(tmp_path / "report" / "per_class.csv")
    assert list(per_class["name"]) == checkpoint["class_names"] and per_class["support"].sum() == 12
    for name in ("confusion_matrix.png", "misclassified.png"):
        assert (tmp_path / "report" / name).stat().st_size > 0
    assert f"balanced accuracy {result['balanced_acc']:.4f}" in capsys.readouterr().out


def test_image_folder_matched_by_name_with_absent_classes_reported(trained_checkpoint, tiny_cleaned, tmp_path, capsys):
    data = image_folder(tiny_cleaned, tmp_path / "field" / "test", classes=[0, 2, 3])
    (data / "class_0" / "broken.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
    run_evaluate(trained_checkpoint, data)
    report = trained_checkpoint.parent / "eval_field_test"
    result = json.loads((report / "metrics.json").read_text())
    assert result["images"] == 9 and result["unreadable"] == 1 and result["absent_classes"] == ["class_1"]
    per_class = pd.read_csv(report / "per_class.csv")
    assert per_class.set_index("name").loc["class_1", "support"] == 0
    present = per_class.loc[per_class["support"] > 0]
    assert result["balanced_acc"] == pytest.approx(present["recall"].mean())
    assert list(pd.read_csv(report / "unreadable.csv")["path"].map(lambda p: p.split("/")[-1])) == ["broken.jpg"]
    assert "not averaged in: class_1" in capsys.readouterr().out


def test_stored_tau_is_the_default_and_tau_changes_the_scores(trained_checkpoint, tiny_cleaned, tmp_path):
    calibrated = tmp_path / "best.pth"
    checkpoint = torch.load(trained_checkpoint, map_location="cpu", weights_only=True)
    torch.save({**checkpoint, "logit_adjust_tau": 1.5}, calibrated)
    run_evaluate(calibrated, tiny_cleaned, "--output", tmp_path / "stored")
    run_evaluate(trained_checkpoint, tiny_cleaned, "--tau", 1.5, "--output", tmp_path / "explicit")
    stored, explicit = (json.loads((tmp_path / name / "metrics.json").read_text()) for name in ("stored", "explicit"))
    assert stored["tau"] == explicit["tau"] == 1.5 and stored["tau_source"] == "stored by calibration"
    assert {key: stored[key] for key in ("acc", "balanced_acc")} == {key: explicit[key] for key in ("acc", "balanced_acc")}


@pytest.mark.parametrize("case", ["unknown_class", "no_images", "output_is_a_file"])
def test_bad_input_is_a_one_line_error(trained_checkpoint, tiny_cleaned, tmp_path, capsys, case):
    data = image_folder(tiny_cleaned, tmp_path / "test", classes=[0, 1])
    argv = []
    if case == "unknown_class":
        (data / "rust_mite").mkdir()
        shutil.copy(next((data / "class_0").iterdir()), data / "rust_mite" / "x.png")
        expected = "class 'rust_mite' is not one of the checkpoint's 4 classes"
    elif case == "no_images":
        for image in data.rglob("*.png"):
            image.write_bytes(b"")
        expected = "none of its 6 images could be read"
    else:
        (tmp_path / "report").write_text("a file")
        argv = ["--output", tmp_path / "report"]
        expected = "exists and is not a folder"
    with pytest.raises(SystemExit) as exit_info:
        run_evaluate(trained_checkpoint, data, *argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and expected in err and "\n" not in err
