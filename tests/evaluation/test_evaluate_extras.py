"""evaluate.py with exported models, the coverage-vs-accuracy report and Grad-CAM in the misclassified grid."""
import json

import numpy as np
import pandas as pd
import pytest
import torch

import evaluate
import export
from leafdisease.evaluation import metrics, reports


def run_evaluate(model_path, data, output, *argv):
    evaluate.main(["--checkpoint", str(model_path), str(data), "--workers", "0", "--output", str(output),
                   *map(str, argv)])
    return json.loads((output / "metrics.json").read_text())


def test_coverage_table_by_hand():
    probabilities = np.array([[0.9, 0.1], [0.6, 0.4], [0.45, 0.55], [0.2, 0.8]])
    targets = np.array([0, 1, 1, 1])  # correct, wrong, correct, correct
    rows = metrics.coverage_table(probabilities, targets, thresholds=(0.0, 0.56, 0.85, 0.95))
    assert [row["images"] for row in rows] == [4, 3, 1, 0]
    assert [row["coverage"] for row in rows] == [1.0, 0.75, 0.25, 0.0]
    assert rows[0]["accuracy"] == 0.75 and rows[1]["accuracy"] == pytest.approx(2 / 3)
    assert rows[0]["balanced_acc"] == pytest.approx((1.0 + 2 / 3) / 2)
    assert np.isnan(rows[3]["accuracy"]) and np.isnan(rows[3]["balanced_acc"])


def test_exported_models_score_like_the_checkpoint(trained_checkpoint, tiny_cleaned, tmp_path):
    exported = tmp_path / "exported"
    export.main(["--checkpoint", str(trained_checkpoint), "--output", str(exported), "--data-dir", str(tiny_cleaned)])
    reference = run_evaluate(trained_checkpoint, tiny_cleaned, tmp_path / "pth")
    for name, model_path in (("folder", exported), ("onnx", exported / "model.onnx")):
        result = run_evaluate(model_path, tiny_cleaned, tmp_path / name)
        for key in ("acc", "balanced_acc", "macro_f1", "top5"):
            assert result[key] == pytest.approx(reference[key], abs=1e-9), (name, key)
        assert (tmp_path / name / "misclassified.png").is_file()


def test_coverage_report_matches_the_probabilities(trained_checkpoint, tiny_cleaned, tmp_path, capsys):
    result = run_evaluate(trained_checkpoint, tiny_cleaned, tmp_path / "report")
    table = pd.read_csv(tmp_path / "report" / "coverage.csv")
    assert table["min_confidence"].tolist() == list(metrics.CONFIDENCE_THRESHOLDS)
    assert table["coverage"].iloc[0] == 1.0 and table["accuracy"].iloc[0] == pytest.approx(result["acc"])
    assert table["coverage"].is_monotonic_decreasing
    pd.testing.assert_frame_equal(pd.DataFrame(result["coverage"]), table, check_dtype=False)
    assert (tmp_path / "report" / "coverage_accuracy.png").stat().st_size > 0
    assert "coverage / accuracy by --min-confidence: 0: 100% /" in capsys.readouterr().out


def test_misclassified_grid_gets_grad_cam_of_the_predicted_class(tmp_path):
    probabilities = np.array([[0.2, 0.8], [0.7, 0.3], [0.4, 0.6], [0.9, 0.1]])
    labelled = reports.LabelledSet("set", "test", ["a.png", "b.png", "c.png", "d.png"], np.array([0, 1, 0, 0]))
    checkpoint = {"class_ids": [3, 7], "class_names": ["rust", "healthy"], "train_counts": [5, 5]}
    result, per_class, confusion = reports.score_metrics(torch.log(torch.tensor(probabilities)), labelled.targets,
                                                            checkpoint)
    calls = []

    def explainer(paths, class_indices):
        calls.append((paths, class_indices))
        return [np.zeros((8, 16, 3), np.uint8) for _ in paths]

    reports.write_evaluation_report(tmp_path, result, per_class, confusion, probabilities, labelled, checkpoint,
                                       {}, explainer=explainer)
    # Errors: a.png (rust predicted healthy), c.png (rust -> healthy), b.png (healthy -> rust).
    assert len(calls) == 1
    paths, indices = calls[0]
    assert sorted(zip(paths, indices)) == [("a.png", 1), ("b.png", 0), ("c.png", 1)]
    assert (tmp_path / "misclassified.png").is_file()
