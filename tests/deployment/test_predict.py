import io
import json
import os
import shutil

import numpy as np
import pandas as pd
import pytest
import timm
import torch
from PIL import Image
from timm.data import resolve_data_config

import dataset
import predict
import train
from conftest import write_cleaned_dataset
from leafdisease.data import cleaning
from leafdisease.deployment import inference
from leafdisease.training import engine
from tiny_run import TINY_ARGS, load_checkpoint

FAST = ["--workers", "0", "--batch-size", "5"]  # batch 5: batches split differently from training's evaluation


def run_stage(data_dir, output, *extra):
    train.run(train.parse_args(["--data-dir", str(data_dir), "--output", str(output), *TINY_ARGS,
                                "--epochs", "3", "--lr", "1e-2", "--warmup-epochs", "0", *extra]))
    return output / "best.pth"


def run_predict(checkpoint, *argv):
    predict.main(["--checkpoint", str(checkpoint), *FAST, *map(str, argv)])


def training_time_logits(checkpoint_path, paths):
    """Logits for `paths` the way train.py evaluates: its own transform builder, LeafDataset and evaluate()."""
    checkpoint = load_checkpoint(checkpoint_path)
    model = timm.create_model(checkpoint["model_name"], num_classes=checkpoint["num_classes"])
    model.load_state_dict(checkpoint["state_dict"])
    args = train.parse_args(["--img-size", str(checkpoint["img_size"])])
    data_config = resolve_data_config(model=model)
    _, _, eval_transform = train.build_transforms(args, data_config, checkpoint["train_counts"])
    loader = torch.utils.data.DataLoader(dataset.LeafDataset(paths, np.zeros(len(paths)), eval_transform),
                                         batch_size=16, shuffle=False)
    logits, _ = engine.evaluate(model, loader, dataset.ModelInput.for_config(data_config, torch.device("cpu")), None, 1)
    return logits


def probability_matrix(table, class_ids):
    """Rebuild each image's full probability vector (in checkpoint output order) from a top-K CSV with K = all."""
    column_of = {class_id: index for index, class_id in enumerate(class_ids)}
    matrix = np.zeros((len(table), len(class_ids)))
    for rank in range(1, len(class_ids) + 1):
        for row, (class_id, probability) in enumerate(zip(table[f"pred_{rank}_id"], table[f"pred_{rank}_prob"])):
            matrix[row, column_of[class_id]] = probability
    return matrix


@pytest.fixture(scope="module")
def trained(tiny_cleaned, tmp_path_factory):
    return run_stage(tiny_cleaned, tmp_path_factory.mktemp("predict_runs") / "full")


@pytest.fixture(scope="module")
def gapped(tmp_path_factory):
    """Class 1 has a single image and is left out by --min-samples 2: outputs 0,1,2 are original ids 0,2,3."""
    data_dir = write_cleaned_dataset(tmp_path_factory.mktemp("gapped"), [24, 1, 12, 4])
    checkpoint = run_stage(data_dir, tmp_path_factory.mktemp("predict_runs") / "gapped", "--min-samples", "2")
    assert load_checkpoint(checkpoint)["class_ids"] == [0, 2, 3]
    return data_dir, checkpoint


@pytest.fixture
def val_paths(tiny_cleaned):
    return dataset.load_metadata(tiny_cleaned).val["path"].tolist()


def test_predictions_equal_training_time_evaluation(trained, val_paths, tmp_path):
    output = tmp_path / "predictions.csv"
    run_predict(trained, *val_paths, "--output", output, "--top-k", 4)
    table = pd.read_csv(output)
    assert table["path"].tolist() == val_paths
    expected = torch.softmax(training_time_logits(trained, val_paths), dim=1).numpy()
    assert probability_matrix(table, [0, 1, 2, 3]) == pytest.approx(expected, abs=2e-6)
    assert table["pred_1_id"].tolist() == expected.argmax(axis=1).tolist()


def test_csv_columns_and_rejected_list(trained, tiny_cleaned, tmp_path):
    output = tmp_path / "out" / "top3.csv"
    run_predict(trained, tiny_cleaned / "images", "--output", output, "--top-k", 3)
    table = pd.read_csv(output)
    assert table.columns.tolist() == ["path", "label", "unknown_score", "unknown"] + [
        f"pred_{rank}_{field}" for rank in (1, 2, 3) for field in ("id", "name", "prob")]
    assert len(table) == len(list((tiny_cleaned / "images").glob("*.png")))
    for rank in (1, 2, 3):
        assert (table[f"pred_{rank}_name"] == "class_" + table[f"pred_{rank}_id"].astype(str)).all()
    assert (table["pred_1_prob"] >= table["pred_2_prob"]).all() and (table["pred_2_prob"] >= table["pred_3_prob"]).all()
    rejected = pd.read_csv(tmp_path / "out" / "top3.rejected.csv")
    assert rejected.columns.tolist() == ["path", "reason"] and rejected.empty


def test_aichallenger_json_has_original_class_ids(gapped, tmp_path):
    data_dir, checkpoint = gapped
    paths = dataset.load_metadata(data_dir).val["path"].tolist()
    class_ids = np.array([0, 2, 3])
    run_predict(checkpoint, *paths, "--format", "aichallenger", "--output", tmp_path / "submission.json")
    entries = json.loads((tmp_path / "submission.json").read_text())
    logits = training_time_logits(checkpoint, paths)
    assert entries == [{"image_id": path.split("/")[-1], "disease_class": int(class_id)}
                       for path, class_id in zip(paths, class_ids[logits.argmax(dim=1).numpy()])]
    # An overwhelming prior correction pushes everything to the rarest kept class: output 2, original id 3.
    run_predict(checkpoint, *paths, "--format", "aichallenger", "--tau", 1000, "--output", tmp_path / "tail.json")
    assert {entry["disease_class"] for entry in json.loads((tmp_path / "tail.json").read_text())} == {3}
    run_predict(checkpoint, *paths, "--top-k", 3, "--output", tmp_path / "gapped.csv")
    table = pd.read_csv(tmp_path / "gapped.csv")
    assert set(table[["pred_1_id", "pred_2_id", "pred_3_id"]].to_numpy().ravel()) == {0, 2, 3}
    assert (table["pred_3_name"] == "class_" + table["pred_3_id"].astype(str)).all()


def test_tau_zero_changes_nothing(trained, val_paths, tmp_path):
    scores = torch.randn(6, 4)
    assert torch.equal(inference.adjust_scores(scores, [24, 12, 4, 1], 0.0), scores)
    for name, extra in (("default", []), ("zero", ["--tau", 0]), ("one", ["--tau", 1])):
        run_predict(trained, *val_paths, "--top-k", 4, "--output", tmp_path / f"{name}.csv", *extra)
    default, zero, one = (pd.read_csv(tmp_path / f"{name}.csv") for name in ("default", "zero", "one"))
    pd.testing.assert_frame_equal(default, zero)
    adjusted = torch.softmax(inference.adjust_scores(training_time_logits(trained, val_paths),
                                                     [24, 12, 4, 1], 1.0), dim=1).numpy()
    assert probability_matrix(one, [0, 1, 2, 3]) == pytest.approx(adjusted, abs=2e-6)


def test_tta_averages_image_and_its_mirror(trained, val_paths, tmp_path):
    run_predict(trained, *val_paths, "--tta", "--top-k", 4, "--output", tmp_path / "tta.csv")
    checkpoint = load_checkpoint(trained)
    model = inference.build_model(checkpoint, trained)
    transform = inference.eval_transform(checkpoint)
    images = inference.model_input(checkpoint, torch.device("cpu"))(
        torch.stack([transform(image=dataset.read_image_rgb(path))["image"] for path in val_paths]))
    with torch.no_grad():
        expected = (torch.softmax(model(images), 1) + torch.softmax(model(images.flip(3)), 1)) / 2
    assert probability_matrix(pd.read_csv(tmp_path / "tta.csv"), [0, 1, 2, 3]) == pytest.approx(expected.numpy(), abs=2e-6)


def test_search_tau_prefers_balanced_accuracy_and_smaller_tau_on_ties():
    # A head-biased model: class 0 gets +1 on every image, so half of class 1's images go to class 0.
    targets = np.array([0] * 4 + [1] * 4)
    scores = torch.tensor([[3.0, 0.0]] * 4 + [[1.5, 1.0], [1.5, 1.0], [0.0, 3.0], [0.0, 3.0]])
    search = inference.search_tau(scores, targets, [100, 10], inference.tau_grid(-2.0, 2.0, 0.25), 50, 20)
    assert search.row(0.0)["balanced_acc"] == 0.75 and search.margin == 1 / 8
    assert search.tau == search.best_tau == 0.25 and max(row["balanced_acc"] for row in search.rows) == 1.0
    perfect = torch.tensor([[5.0, 0.0]] * 4 + [[0.0, 5.0]] * 4)
    assert inference.search_tau(perfect, targets, [100, 10], [-0.5, 0.0, 0.5, 1.0], 50, 20).tau == 0.0


def test_search_tau_corrects_a_model_biased_against_the_head_with_a_negative_tau():
    # The mirror case (a logit-adjusted or over-weighted run): the tail class steals half of the head's images.
    targets = np.array([0] * 4 + [1] * 4)
    scores = torch.tensor([[1.0, 1.5], [1.0, 1.5], [3.0, 0.0], [3.0, 0.0]] + [[0.0, 3.0]] * 4)
    search = inference.search_tau(scores, targets, [100, 10], inference.tau_grid(-2.0, 2.0, 0.25), 50, 20)
    assert search.tau < 0 and search.row(search.tau)["balanced_acc"] == 1.0
    assert inference.search_tau(scores, targets, [100, 10], inference.tau_grid(0.0, 2.0, 0.25), 50, 20).tau == 0.0


def test_search_tau_keeps_tau_0_when_the_gain_is_one_validation_image():
    # One of class 1's four images is fixed by tau: a gain of 1/8 = exactly what one image of it can change.
    targets = np.array([0] * 4 + [1] * 4)
    scores = torch.tensor([[3.0, 0.0]] * 4 + [[1.5, 1.0], [0.0, 3.0], [0.0, 3.0], [0.0, 3.0]])
    search = inference.search_tau(scores, targets, [100, 10], inference.tau_grid(-2.0, 2.0, 0.25), 50, 20)
    assert search.best_tau > 0 and search.row(search.best_tau)["balanced_acc"] - search.row(0.0)["balanced_acc"] == 1 / 8
    assert search.tau == 0.0


def test_search_tau_follows_the_target_metric():
    """Tuned for plain accuracy (a long-tailed test set), tau serves the head; tuned for balanced accuracy, the
    tail: with 40 head and 4 tail images the two targets pick taus of opposite sign."""
    targets = np.array([0] * 40 + [1] * 4)
    # Head: 30 clear, 6 barely head, 4 leaning to the tail. Tail: 2 clear, 2 that look like the head.
    scores = torch.tensor([[3.0, 0.0]] * 30 + [[0.3, 0.0]] * 6 + [[0.0, 0.5]] * 4 + [[0.0, 3.0]] * 2 + [[0.5, 0.0]] * 2)
    grid, counts = inference.tau_grid(-2.0, 2.0, 0.25), [400, 4]
    by_accuracy = inference.search_tau(scores, targets, counts, grid, 50, 20, metric="acc")
    assert by_accuracy.tau < 0 and by_accuracy.metric == "acc" and by_accuracy.margin == pytest.approx(1 / 44)
    assert by_accuracy.row(by_accuracy.tau)["acc"] > by_accuracy.row(0.0)["acc"]
    by_balanced = inference.search_tau(scores, targets, counts, grid, 50, 20)
    assert by_balanced.tau > 0 and by_balanced.metric == "balanced_acc"
    # One image's worth of accuracy at the training prior: the largest share / images of a present class.
    assert inference.one_image_gain(targets, counts, "prior_acc") == pytest.approx(max(400 / 404 / 40, 4 / 404 / 4))
    assert inference.one_image_gain(targets, counts, "balanced_acc") == pytest.approx(1 / 8)


def test_tau_grid_is_symmetric_and_always_holds_0():
    assert inference.tau_grid(-1.0, 1.0, 0.5) == [-1.0, -0.5, 0.0, 0.5, 1.0]
    assert inference.tau_grid(0.0, 0.6, 0.25) == [0.0, 0.25, 0.5]
    with pytest.raises(inference.UserError):
        inference.tau_grid(0.5, 2.0, 0.25)


def test_calibration_never_lowers_balanced_accuracy_and_stores_tau(trained, tiny_cleaned, val_paths, tmp_path, capsys):
    checkpoint_path = tmp_path / "best.pth"
    shutil.copy(trained, checkpoint_path)
    run_predict(checkpoint_path, "--calibrate-tau", "--data-dir", tiny_cleaned)
    out = capsys.readouterr().out
    assert "before: tau 0 " in out and f"after:  tau {load_checkpoint(checkpoint_path)['logit_adjust_tau']:<5g}" in out
    original, calibrated = load_checkpoint(trained), load_checkpoint(checkpoint_path)
    tau, report = calibrated["logit_adjust_tau"], calibrated["logit_adjust_report"]
    assert tau in inference.tau_grid(-2.0, 2.0, 0.25) and report["tau"] == tau
    assert report["after"]["balanced_acc"] >= report["before"]["balanced_acc"]
    best = max(row["balanced_acc"] for row in report["grid"])
    assert report["after"]["balanced_acc"] == best or best - report["before"]["balanced_acc"] <= report["margin"]
    assert (checkpoint_path.parent / "tau_calibration.png").stat().st_size > 0
    # Before = the model as training evaluated it at its best epoch.
    assert report["before"]["balanced_acc"] == pytest.approx(original["best_metric"])
    assert report["val_images"] == 12 and report["many_threshold"] == 100
    assert all(torch.equal(value, original["state_dict"][key]) for key, value in calibrated["state_dict"].items())
    pd.testing.assert_frame_equal(pd.DataFrame(calibrated["history"]), pd.DataFrame(original["history"]))
    # The stored tau becomes the default.
    run_predict(checkpoint_path, *val_paths, "--top-k", 4, "--output", tmp_path / "stored.csv")
    run_predict(trained, *val_paths, "--top-k", 4, "--tau", tau, "--output", tmp_path / "explicit.csv")
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "stored.csv"), pd.read_csv(tmp_path / "explicit.csv"))


def test_unreadable_images_are_listed_and_the_rest_predicted(trained, val_paths, tmp_path, capsys):
    folder = tmp_path / "photos" / "nested"
    folder.mkdir(parents=True)
    for path in val_paths[:2]:
        shutil.copy(path, folder)
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (folder / "empty.PNG").write_bytes(b"")
    (folder / "notes.txt").write_text("not an image")
    Image.new("RGB", (8, 8)).save(folder / "animation.gif")
    whole = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(whole, "JPEG")
    (folder / "truncated.jpg").write_bytes(whole.getvalue()[: len(whole.getvalue()) // 2])
    output = tmp_path / "preds.csv"
    run_predict(trained, tmp_path / "photos", "--output", output)
    # A file is an image by its content, as cleaning decides: the GIF is predicted like the PNGs.
    assert sorted(pd.read_csv(output)["path"].map(lambda p: p.split("/")[-1])) == sorted(
        [os.path.basename(path) for path in val_paths[:2]] + ["animation.gif"])
    rejected = pd.read_csv(tmp_path / "preds.rejected.csv")
    reasons = dict(zip(rejected["path"].map(lambda p: p.split("/")[-1]), rejected["reason"].str.split(":").str[0]))
    # Every file of the folder that was not predicted is listed, with cleaning's reason names.
    assert reasons == {"broken.jpg": "corrupt", "empty.PNG": "empty_file", "notes.txt": "not_image",
                       "truncated.jpg": "truncated"}
    assert "4 file(s) skipped" in capsys.readouterr().out

    with pytest.raises(SystemExit) as exit_info:
        run_predict(trained, folder / "broken.jpg", "--output", tmp_path / "none.csv")
    assert exit_info.value.code == 2
    assert "none of the 1 images could be read" in capsys.readouterr().err
    assert len(pd.read_csv(tmp_path / "none.rejected.csv")) == 1


def test_transparent_png_is_flattened_as_cleaning_prepares_it(trained, tmp_path):
    """predict.py sees a transparent PNG as the copy cleaning re-encodes for training: alpha flattened on black."""
    rgba = np.random.default_rng(1).integers(0, 255, (48, 48, 4), dtype=np.uint8)
    rgba[:, :24, 3] = 0  # half transparent, with colour hidden under it
    Image.fromarray(rgba, "RGBA").save(tmp_path / "leaf.png")
    flattened = rgba[:, :, :3].astype(np.float64) * (rgba[:, :, 3:] / 255.0)
    assert cleaning.read_checked_rgb(tmp_path / "leaf.png") == pytest.approx(flattened, abs=1)
    cleaning.reencode_image((str(tmp_path / "leaf.png"), str(tmp_path / "cleaned.jpg"), True, False, None, None))
    Image.fromarray(np.round(flattened).astype(np.uint8)).save(tmp_path / "flat.png")
    run_predict(trained, tmp_path / "leaf.png", "--top-k", 4, "--output", tmp_path / "rgba.csv")
    run_predict(trained, tmp_path / "flat.png", "--top-k", 4, "--output", tmp_path / "flat.csv")
    rgba_probabilities = probability_matrix(pd.read_csv(tmp_path / "rgba.csv"), [0, 1, 2, 3])
    assert rgba_probabilities == pytest.approx(probability_matrix(pd.read_csv(tmp_path / "flat.csv"), [0, 1, 2, 3]),
                                               abs=1e-5)


@pytest.mark.parametrize("content", [None, b"garbage, not a checkpoint", "not-a-train-checkpoint"])
def test_bad_checkpoint_is_a_one_line_error(tmp_path, val_paths, capsys, content):
    path = tmp_path / "model.pth"
    if content == "not-a-train-checkpoint":
        torch.save({"state_dict": {}}, path)
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises(SystemExit) as exit_info:
        run_predict(path, *val_paths)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and str(path) in err and "\n" not in err and "Traceback" not in err


def test_no_images_found_is_a_one_line_error(trained, tmp_path, capsys):
    (tmp_path / "empty_folder").mkdir()
    with pytest.raises(SystemExit) as exit_info:
        run_predict(trained, tmp_path / "empty_folder")
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: no images") and "\n" not in err
