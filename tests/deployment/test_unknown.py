"""Unknown photos: the scores, the record train.py stores with the model, predict.py's and evaluate.py's columns and
report, an older checkpoint's path to the score, the export and the page's answer."""
import shutil

import cv2
import numpy as np
import pandas as pd
import pytest
import torch

import evaluate
import export
import predict
from leafdisease.deployment import diagnosis, formats, unknown
from leafdisease.training import checkpoint as checkpoint_format


@pytest.fixture(scope="module")
def odd_photos(tmp_path_factory):
    """Photos unlike tiny_cleaned's flat-coloured classes: high-contrast noise and stripes."""
    folder = tmp_path_factory.mktemp("odd")
    rng = np.random.default_rng(1)
    for index in range(4):
        image = (rng.random((40, 40, 3)) * 255).astype(np.uint8)
        image[::4] = 255 * (index % 2)
        cv2.imwrite(str(folder / f"odd_{index}.png"), image)
    return folder


def test_scores_rank_far_features_above_near_ones_and_the_threshold_keeps_its_share():
    rng = np.random.default_rng(0)
    targets = np.repeat(np.arange(3), 30)
    features = rng.normal(size=(90, 6)) + 6 * np.eye(6)[targets]
    val = rng.normal(size=(40, 6)) + 6 * np.eye(6)[np.repeat(np.arange(3), 14)[:40]]
    record = unknown.fit(features, targets, 3, val, torch.zeros(40, 3), keep=0.9)
    far = rng.normal(size=(10, 6)) + 6 * np.eye(6)[5]  # near no class mean
    for method in ("mahalanobis", "knn"):
        known_scores = unknown.score(record, val, torch.zeros(40, 3), method)
        assert unknown.auroc(known_scores, unknown.score(record, far, torch.zeros(10, 3), method)) > 0.95
        kept = (known_scores <= unknown.threshold(record, method=method)).float().mean()
        assert 0.9 <= kept <= 0.9 + 2 / 40
        # Another share at predict time comes from the stored validation scores.
        assert unknown.threshold(record, keep=0.5, method=method) < unknown.threshold(record, method=method)
    # msp and energy read the logits alone: a confident logit is known, a flat one unknown.
    logits = torch.tensor([[9.0, 0, 0], [0.1, 0, 0]])
    assert (unknown.score(record, features[:2], logits, "msp").argsort() == torch.tensor([0, 1])).all()
    assert (unknown.score(record, features[:2], logits, "energy").argsort() == torch.tensor([0, 1])).all()


@pytest.mark.parametrize("count, keep, rank", [(99, 0.95, 95), (86, 0.95, 83), (19, 0.95, 19), (10, 0.95, 10),
                                               (40, 0.5, 21), (1, 0.95, 1)])
def test_the_threshold_is_the_conformal_rank_of_the_validation_scores(count, keep, rank):
    # ceil((n + 1) x keep): a new photo exchangeable with the n validation photos falls at or below it with
    # probability at least keep; past n (too few photos for the share), the largest.
    scores = torch.randperm(count).double()  # the scores 0 .. n-1 in any order: the k-th smallest is k - 1
    assert unknown.threshold_at(scores, keep) == rank - 1
    assert (scores <= unknown.threshold_at(scores, keep)).double().mean() >= keep


def test_auroc_and_the_detection_figures():
    assert unknown.auroc([0, 1, 2], [3, 4]) == 1.0
    assert unknown.auroc([3, 4], [0, 1]) == 0.0
    assert unknown.auroc([1, 1], [1]) == 0.5
    figures = unknown.detection_metrics([0.1, 0.2, 0.3, 0.9], [0.25, 1.0, 2.0], stored_threshold=0.3,
                                        known_targets=[0, 0, 1, 1], known_predictions=[0, 1, 1, 1])
    assert figures["diagnosed_at_stored"] == pytest.approx(1 / 3)
    assert figures["known_coverage_at_stored"] == 0.75
    assert figures["known_accuracy_at_stored"] == pytest.approx(2 / 3)
    assert figures["known_balanced_accuracy_at_stored"] == pytest.approx(0.75)


def test_the_reference_sample_is_bounded_and_keeps_every_class():
    targets = np.repeat(np.arange(4), [1, 3, 500, 20_000])
    sample = unknown.reference_sample(targets, limit=1000)
    assert len(sample) == 1000 and len(np.unique(sample)) == 1000
    assert np.bincount(targets[sample]).tolist()[:2] == [1, 3]  # the small classes whole
    assert len(unknown.reference_sample(targets[:10], limit=1000)) == 10


def test_training_stores_the_record_with_the_model(trained_checkpoint):
    saved = checkpoint_format.load(trained_checkpoint)
    record = saved["unknown"]
    assert record["method"] == unknown.DEFAULT_METHOD and record["keep"] == unknown.DEFAULT_KEEP
    assert record["train_photos"] == 41 and record["reference"].shape[0] == 41
    assert set(record["val_scores"]) == set(unknown.METHODS)


def test_predict_labels_unknown_photos_and_a_share_moves_the_threshold(trained_checkpoint, tiny_cleaned, odd_photos,
                                                                        tmp_path, capsys):
    output = tmp_path / "predictions.csv"
    photos = [str(path) for path in sorted((tiny_cleaned / "images").glob("val_*.png"))]
    predict.main(["--checkpoint", str(trained_checkpoint), "--workers", "0", "--output", str(output), *photos,
                  str(odd_photos)])
    table = pd.read_csv(output)
    assert table.columns.tolist()[:4] == ["path", "label", "unknown_score", "unknown"]
    odd = table["path"].str.contains("odd_")
    assert table.loc[odd, "unknown"].all() and (table.loc[odd, "label"] == "unknown").all()
    assert (table.loc[~table["unknown"], "label"] == table.loc[~table["unknown"], "pred_1_name"]).all()
    assert "do not look like a leaf this model knows" in capsys.readouterr().out
    predict.main(["--checkpoint", str(trained_checkpoint), "--workers", "0", "--output", str(output), *photos,
                  "--unknown-keep", "0.5"])
    assert pd.read_csv(output)["unknown"].sum() > table.loc[~odd, "unknown"].sum()


def test_an_older_checkpoint_gets_empty_columns_then_the_score_by_one_command(trained_checkpoint, tiny_cleaned,
                                                                              odd_photos, tmp_path, capsys):
    older = tmp_path / "older.pth"
    saved = checkpoint_format.load(trained_checkpoint)
    saved.pop("unknown")
    checkpoint_format.save(older, saved)
    output = tmp_path / "predictions.csv"
    predict.main(["--checkpoint", str(older), "--workers", "0", "--output", str(output), str(odd_photos)])
    table = pd.read_csv(output)
    assert table["unknown_score"].isna().all() and table["unknown"].isna().all()
    assert f"--checkpoint {older} --fit-unknown --data-dir" in capsys.readouterr().out
    predict.main(["--checkpoint", str(older), "--fit-unknown", "--data-dir", str(tiny_cleaned), "--workers", "0"])
    assert checkpoint_format.load(older)["unknown"]["train_photos"] == 41
    predict.main(["--checkpoint", str(older), "--workers", "0", "--output", str(output), str(odd_photos)])
    assert pd.read_csv(output)["unknown"].all()


def test_evaluate_reports_unknown_folders_for_every_method(trained_checkpoint, tiny_cleaned, odd_photos, tmp_path):
    evaluate.main(["--checkpoint", str(trained_checkpoint), str(tiny_cleaned), "--ood", str(odd_photos),
                   "--no-explain", "--workers", "0", "--output", str(tmp_path / "report")])
    table = pd.read_csv(tmp_path / "report" / evaluate.UNKNOWN_REPORT)
    assert sorted(table["method"]) == sorted(unknown.METHODS) and (table["photos"] == 4).all()
    default = table.loc[table["default"]].iloc[0]
    assert default["auroc"] > 0.9 and default["diagnosed_at_stored"] < 0.5
    assert 0.5 < default["known_coverage_at_stored"] <= 1


def test_the_exported_folder_carries_the_score_and_the_page_says_unknown(trained_checkpoint, tiny_cleaned,
                                                                         odd_photos, tmp_path):
    exported = tmp_path / "exported"
    export.main(["--checkpoint", str(trained_checkpoint), "--output", str(exported), "--format", "timm",
                 "--data-dir", str(tiny_cleaned)])
    card, _ = formats.load_model(exported)
    record = checkpoint_format.load(trained_checkpoint)["unknown"]
    assert unknown.threshold(card["unknown"]) == pytest.approx(unknown.threshold(record))
    assert torch.equal(card["unknown"]["reference"], record["reference"])
    page = diagnosis.Diagnoser(exported, torch.device("cpu"))
    odd = sorted(odd_photos.glob("*.png"))[:1]
    known = sorted((tiny_cleaned / "images").glob("train_0_*.png"))[:1]
    answers = diagnosis.answers(page.diagnose(odd + known, ["odd.png", "known.png"]), page.card, 0.0)
    assert answers[0]["unknown"]["is_unknown"] and not answers[1]["unknown"]["is_unknown"]
    shutil.rmtree(exported)
