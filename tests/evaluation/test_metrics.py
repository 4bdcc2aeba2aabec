import numpy as np
import pytest

from leafdisease.evaluation.metrics import classification_metrics, collapse_warning, confusion_matrix, per_class_metrics


def logits_for(predictions, num_classes):
    logits = np.zeros((len(predictions), num_classes))
    logits[np.arange(len(predictions)), predictions] = 1.0
    return logits


def test_confusion_matrix_and_per_class_metrics_by_hand():
    targets = [0, 0, 0, 1, 1, 2]
    predictions = [0, 0, 1, 1, 0, 0]
    confusion = confusion_matrix(targets, predictions, 3)
    assert confusion.tolist() == [[2, 1, 0], [1, 1, 0], [1, 0, 0]]
    per_class = per_class_metrics(confusion)
    assert per_class["precision"].tolist() == pytest.approx([2 / 4, 1 / 2, 0.0])
    assert per_class["recall"].tolist() == pytest.approx([2 / 3, 1 / 2, 0.0])
    assert per_class["f1"][0] == pytest.approx(2 * (0.5 * 2 / 3) / (0.5 + 2 / 3))
    assert per_class["support"].tolist() == [3, 2, 1]


def test_balanced_accuracy_exposes_head_collapse():
    # 90 head images all right, 10 tail images (5 classes) all predicted as the head class.
    targets = np.array([0] * 90 + [1, 1, 2, 2, 3, 3, 4, 4, 5, 5])
    predictions = np.zeros(100, dtype=int)
    train_counts = [500, 50, 50, 5, 5, 5]
    result, per_class, _ = classification_metrics(logits_for(predictions, 6), targets, train_counts)
    assert result["acc"] == pytest.approx(0.9)
    assert result["balanced_acc"] == pytest.approx(1 / 6)
    assert result["many_acc"] == pytest.approx(1.0)
    assert result["medium_acc"] == pytest.approx(0.0)
    assert result["few_acc"] == pytest.approx(0.0)
    assert result["zero_recall_classes"] == 5
    assert "5 of 6 classes have zero recall" in collapse_warning(result, 6)


def test_no_collapse_warning_when_accuracies_agree_and_absent_classes_ignored():
    targets = np.array([0, 0, 1, 1])
    predictions = np.array([0, 1, 1, 1])
    result, _, _ = classification_metrics(logits_for(predictions, 3), targets, [200, 30, 3])
    # class 2 has no validation image: averaged over the two present classes only
    assert result["balanced_acc"] == pytest.approx((0.5 + 1.0) / 2)
    assert np.isnan(result["few_acc"])
    assert collapse_warning(result, 2) is None


def test_top5_counts_true_class_within_five_highest():
    logits = np.array([[6, 5, 4, 3, 2, 1, 0.0], [0, 1, 2, 3, 4, 5, 6.0]])
    result, _, _ = classification_metrics(logits, np.array([4, 0]), [10] * 7)
    assert result["top5"] == pytest.approx(0.5)


def test_a_class_without_images_is_undefined_not_zero_in_tables_and_named_in_the_confusion_matrix(monkeypatch):
    from leafdisease.evaluation import plots

    confusion = np.array([[3, 1, 0], [0, 2, 0], [0, 0, 0]])  # class 2: trained on, no validation image
    per_class = per_class_metrics(confusion)
    assert np.isnan(per_class["recall"][2]) and np.isnan(per_class["f1"][2]) and per_class["support"][2] == 0
    drawn = {}
    monkeypatch.setattr(plots, "save_figure", lambda fig, path: drawn.setdefault("figure", fig))
    plots.plot_confusion_matrix(confusion, ["a", "b", "c"], "unused.png", title="t")
    rows = [label.get_text() for label in drawn["figure"].axes[0].get_yticklabels()]
    assert rows == ["a", "b", "c (no images)"]
