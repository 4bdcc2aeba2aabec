import re
from pathlib import Path

import matplotlib.image
import numpy as np
import pandas as pd
import pytest
import torch

import train
import visualize_training as vt
from leafdisease.evaluation import metrics, plots

SINGLE_RUN_FIGURES = ("training_curves.png", "per_class_recall.png", "confusion_matrix_normalized.png")
COMPARISON_FIGURES = ("comparison_curves.png", "shot_group_accuracy.png", "per_class_recall_change.png")
LONG_NAME = "Tomato_septoria_leaf_spot_serious"


def history_rows(epochs, offset, num_classes, stage="full"):
    """Distinct, known values per epoch: val_balanced_acc = offset + 0.1 * epoch, and so on."""
    return [{"epoch": epoch, "stage": stage, "train_loss": 3.0 / epoch + offset, "train_acc": 0.05 * epoch + offset,
             "val_loss": 2.0 / epoch + offset, "val_acc": 0.3 + 0.05 * epoch + offset,
             "val_balanced_acc": 0.1 * epoch + offset, "val_macro_f1": 0.08 * epoch + offset,
             "val_top5": 0.5 + 0.05 * epoch + offset, "val_many_acc": 0.3 + 0.05 * epoch + offset,
             "val_medium_acc": 0.2 + 0.05 * epoch + offset, "val_few_acc": 0.05 * epoch + offset,
             "val_zero_recall_classes": num_classes - epoch, "lr": 1e-3 / epoch, "epoch_seconds": 1.0,
             "eval_seconds": 0.1, "train_images_per_s": 100.0}
            for epoch in range(1, epochs + 1)]


def confusion_for(num_classes, shift):
    """4 validation images per class except the last (none); class i gets (i + shift) % 5 right (at most 4) and
    the rest mistaken for class i + 1."""
    confusion = np.zeros((num_classes, num_classes), dtype=np.int64)
    for index in range(num_classes - 1):
        correct = min(4, (index + shift) % 5)
        confusion[index, index] = correct
        confusion[index, (index + 1) % num_classes] += 4 - correct
    return confusion


def make_checkpoint(path, train_counts, *, class_ids=None, names=None, epochs=3, best_epoch=2, offset=0.0,
                    shift=0, parent=None, per_class=True, stage="full"):
    """A checkpoint in train.py's documented format, without weights."""
    num_classes = len(train_counts)
    class_ids = list(range(num_classes)) if class_ids is None else class_ids
    names = names or [f"class_{class_id}" for class_id in class_ids]
    checkpoint = {
        "model_name": "test_efficientnet", "num_classes": num_classes, "class_ids": class_ids, "class_names": names,
        "train_counts": list(train_counts), "stage": stage, "args": {"many_threshold": 100, "few_threshold": 20},
        "history": history_rows(epochs, offset, num_classes, stage), "best_metric": 0.1 * best_epoch + offset,
        "best_epoch": best_epoch, "select_metric": "balanced_acc", "parent": parent, "epoch": best_epoch,
        "state_dict": {"classifier.weight": torch.zeros(num_classes, 2)},
    }
    if per_class:
        confusion = confusion_for(num_classes, shift)
        checkpoint["per_class"] = {key: [float(v) for v in values]
                                   for key, values in metrics.per_class_metrics(confusion).items()}
        checkpoint["confusion_matrix"] = confusion.tolist()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(checkpoint, path)
    return path


def parent_record(path, checkpoint_path):
    checkpoint = torch.load(checkpoint_path, weights_only=True)
    return {"path": str(path), "stage": checkpoint["stage"], "history": checkpoint["history"],
            "parent": checkpoint["parent"]}


def sixty_one_classes():
    counts = [int(2445 / (index + 1) ** 1.4) + 1 for index in range(61)]
    names = [LONG_NAME if index == 60 else f"Crop{index}_disease_general" for index in range(61)]
    return counts, names


def assert_png(path):
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100, path


def run_cli(*argv):
    vt.main(list(map(str, argv)))


def one_line_error(capsys, *argv):
    with pytest.raises(SystemExit) as exit_info:
        run_cli(*argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "\n" not in err and "Traceback" not in err
    return err


def test_one_run_writes_its_figures_and_names_the_failing_classes(tmp_path, capsys):
    counts, names = sixty_one_classes()
    run_dir = tmp_path / "task1_stage2"
    make_checkpoint(run_dir / "best.pth", counts, names=names)
    make_checkpoint(run_dir / "last.pth", counts, names=names, per_class=False)
    run_cli("--checkpoint-dir", f"{run_dir}/")
    for name in SINGLE_RUN_FIGURES:
        assert_png(run_dir / name)
    out = capsys.readouterr().out
    assert "best epoch 2 of 3" in out and "balanced accuracy 0.200" in out
    # Every fifth class gets 0 of 4 right, all mistaken for the next class; of these 12, the 10 with the fewest
    # training images are listed.
    worst = out.split("worst 10 of 60 classes")[1]
    assert "(1 without validation images); 12 have zero recall" in out
    assert "Crop55_disease_general" in worst and "Crop56_disease_general (4/4)" in worst
    assert "Crop0_disease_general" not in worst


def test_without_arguments_it_shows_train_fixed_sh_stage_2_run(tmp_path, monkeypatch, capsys):
    """The design card's bare `python visualize_training.py`: train_fixed.sh's stage 2 run, or a one-line error
    saying what to do when there is none yet."""
    monkeypatch.chdir(tmp_path)
    err = one_line_error(capsys)
    assert "no --checkpoint-dir or --compare given" in err and "checkpoints/task1_stage2" in err
    make_checkpoint(tmp_path / "checkpoints" / "task1_stage2" / "best.pth", [150, 40, 3], names=["a", "b", "c"])
    run_cli()
    for name in SINGLE_RUN_FIGURES:
        assert_png(tmp_path / "checkpoints" / "task1_stage2" / name)


def test_the_default_run_is_where_train_fixed_sh_writes_stage_2_by_default():
    script = (Path(__file__).resolve().parents[2] / "train_fixed.sh").read_text()
    out_root, run_name = re.search(r'"\$\{OUT_ROOT:=([^}]*)\}" "\$\{RUN_NAME:=([^}]*)\}"', script).groups()
    assert vt.DEFAULT_RUN == f"{out_root}/{run_name}_stage2"


def test_last_checkpoint_alone_gives_curves_and_says_what_is_missing(tmp_path, capsys):
    make_checkpoint(tmp_path / "run" / "last.pth", [50, 10, 3], per_class=False)
    run_cli("--checkpoint-dir", tmp_path / "run", "--out", tmp_path / "figures")
    assert_png(tmp_path / "figures" / "training_curves.png")
    assert not (tmp_path / "figures" / "per_class_recall.png").exists()
    assert "holds no per-class results" in capsys.readouterr().out


def test_a_checkpoint_file_is_accepted(tmp_path):
    checkpoint = make_checkpoint(tmp_path / "run" / "best.pth", [150, 40, 3], names=["a", "b", LONG_NAME])
    run_cli("--checkpoint-dir", checkpoint)
    for name in SINGLE_RUN_FIGURES:
        assert_png(tmp_path / "run" / name)


def test_comparison_table_holds_each_runs_best_epoch_values(tmp_path, capsys):
    counts = [150, 40, 3, 1]
    stage1 = make_checkpoint(tmp_path / "runs" / "task1_stage1" / "best.pth", counts, epochs=2, best_epoch=2,
                             stage="head", shift=0)
    stage2 = make_checkpoint(tmp_path / "runs" / "task1_stage2" / "best.pth", counts, epochs=3, best_epoch=3,
                             offset=0.01, shift=2, parent=parent_record(stage1, stage1))
    run_cli("--compare", stage1, stage2)
    out_dir = tmp_path / "runs" / "comparison"
    for name in COMPARISON_FIGURES:
        assert_png(out_dir / name)
    table = pd.read_csv(out_dir / "comparison.csv")
    assert table["run"].tolist() == ["task1_stage1", "task1_stage2"]
    assert table["best_epoch"].tolist() == [2, 3]
    assert table["val_balanced_acc"].tolist() == pytest.approx([0.2, 0.31])
    assert table["val_few_acc"].tolist() == pytest.approx([0.1, 0.16])
    assert table["val_loss"].tolist() == pytest.approx([1.0, 2.0 / 3 + 0.01])
    assert table["initialised_from"].fillna("").tolist() == ["", "task1_stage1"]
    markdown = (out_dir / "comparison.md").read_text()
    assert "| val_balanced_acc | 0.2000 | 0.3100 |" in markdown
    assert "| val_zero_recall_classes | 2 | 1 |" in markdown
    change = pd.read_csv(out_dir / "per_class_recall_change.csv")
    assert change["change"].dropna().tolist() == pytest.approx(
        (change["recall_last"] - change["recall_first"]).dropna().tolist())
    assert change.loc[change["id"] == 0, ["recall_first", "recall_last"]].values.tolist() == [[0.0, 0.5]]
    out = capsys.readouterr().out
    assert "largest recall gains, task1_stage2 over task1_stage1" in out and "0.000 -> 0.500" in out


def test_a_continued_run_starts_after_its_parents_epochs(tmp_path):
    counts = [30, 20]
    stage1 = make_checkpoint(tmp_path / "task1_stage1" / "best.pth", counts, epochs=4, best_epoch=3, stage="head")
    stage2 = make_checkpoint(tmp_path / "task1_stage2" / "best.pth", counts, epochs=2, best_epoch=1,
                             parent=parent_record(stage1, stage1))
    other = make_checkpoint(tmp_path / "other" / "best.pth", counts, epochs=2)
    runs = [vt.load_run(path, path.parent.name) for path in (stage1, stage2, other)]
    curves = vt.curve_data(runs)
    assert curves[1]["history"]["x"].tolist() == [5, 6] and curves[1]["best_x"] == 5
    assert curves[1]["inherited"] == []  # the parent is compared itself
    assert curves[2]["start_x"] == 0
    # Without the parent among the compared runs, its history is drawn under the child.
    alone = vt.curve_data(runs[1:])
    assert alone[0]["history"]["x"].tolist() == [5, 6]
    assert alone[0]["inherited"][0][1]["x"].tolist() == [1, 2, 3, 4]


def test_sixty_one_class_comparison_with_labels(tmp_path):
    counts, names = sixty_one_classes()
    first = make_checkpoint(tmp_path / "a" / "best.pth", counts, names=names, shift=0)
    second = make_checkpoint(tmp_path / "b" / "best.pth", counts, names=names, shift=3, offset=0.05)
    out_dir = tmp_path / "compared"
    run_cli("--compare", first.parent, second.parent, "--labels", "sqrt weights", "focal", "--out", out_dir)
    for name in COMPARISON_FIGURES:
        assert_png(out_dir / name)
    assert pd.read_csv(out_dir / "comparison.csv")["run"].tolist() == ["sqrt weights", "focal"]
    change = pd.read_csv(out_dir / "per_class_recall_change.csv")
    assert len(change) == 61 and change["change"].isna().sum() == 1  # the class without validation images


def test_different_class_sets_are_compared_on_shared_ids(tmp_path, capsys):
    full = make_checkpoint(tmp_path / "all" / "best.pth", [100, 50, 10, 1, 1])
    reduced = make_checkpoint(tmp_path / "min2" / "best.pth", [100, 50, 10], shift=1)
    run_cli("--compare", full, reduced, "--out", tmp_path / "out")
    out = capsys.readouterr().out
    assert "different class lists" in out and "3 class ids all share" in out and "only in all: 3, 4" in out
    change = pd.read_csv(tmp_path / "out" / "per_class_recall_change.csv")
    assert change["id"].tolist() == [0, 1, 2]
    table = pd.read_csv(tmp_path / "out" / "comparison.csv")
    # Recall over shared classes 0, 1, 2: shift 0 -> 0, 1/4, 2/4; shift 1 -> 1/4, 2/4, (class 2 has no val) .
    assert table["val_balanced_acc_shared_classes"].tolist() == pytest.approx([0.25, 0.375])


def test_no_shared_class_is_a_one_line_error(tmp_path, capsys):
    first = make_checkpoint(tmp_path / "a" / "best.pth", [10, 5], class_ids=[0, 1])
    second = make_checkpoint(tmp_path / "b" / "best.pth", [10, 5], class_ids=[7, 8])
    assert "shares no class id" in one_line_error(capsys, "--compare", first, second)


def test_bad_inputs_are_one_line_errors_naming_the_file(tmp_path, capsys):
    good = make_checkpoint(tmp_path / "good" / "best.pth", [10, 5])
    assert str(tmp_path / "missing.pth") in one_line_error(capsys, "--checkpoint-dir", tmp_path / "missing.pth")
    (tmp_path / "empty").mkdir()
    assert "no best.pth or last.pth" in one_line_error(capsys, "--checkpoint-dir", tmp_path / "empty")
    (tmp_path / "broken.pth").write_bytes(b"not a checkpoint")
    err = one_line_error(capsys, "--compare", good, tmp_path / "broken.pth")
    assert "broken.pth: not a readable checkpoint" in err
    torch.save({"weights": torch.zeros(2)}, tmp_path / "foreign.pth")
    err = one_line_error(capsys, "--checkpoint-dir", tmp_path / "foreign.pth")
    assert "foreign.pth: not a train.py checkpoint" in err


def test_labels_are_run_folder_names_unless_ambiguous(tmp_path):
    paths = [tmp_path / "stage1" / "best.pth", tmp_path / "stage2" / "best.pth"]
    assert vt.default_labels(paths) == ["stage1", "stage2"]
    assert vt.default_labels([paths[0], paths[0].with_name("last.pth")]) == ["stage1/best", "stage1/last"]


def test_abbreviate_keeps_the_distinguishing_end():
    assert plots.abbreviate("Apple_healthy") == "Apple_healthy"
    general, serious = plots.abbreviate(LONG_NAME[:-7] + "general"), plots.abbreviate(LONG_NAME)
    assert general.endswith("_general") and serious.endswith("_serious") and len(serious) == 24
    assert len(plots.abbreviate("x" * 50, 20)) == 20


def test_real_training_runs(tiny_cleaned, tmp_path, capsys):
    tiny = ["--model", "test_efficientnet", "--no-pretrained", "--img-size", "32", "--batch-size", "8",
            "--workers", "0"]
    stage1, stage2 = tmp_path / "task1_stage1", tmp_path / "task1_stage2"
    train.run(train.parse_args(["--data-dir", str(tiny_cleaned), "--output", str(stage1), *tiny,
                                "--stage", "head", "--epochs", "1", "--lr", "1e-2"]))
    train.run(train.parse_args(["--data-dir", str(tiny_cleaned), "--output", str(stage2), *tiny,
                                "--stage", "full", "--epochs", "1", "--init-from", str(stage1 / "best.pth")]))
    capsys.readouterr()
    run_cli("--checkpoint-dir", f"{stage2}/")
    for name in SINGLE_RUN_FIGURES:
        assert_png(stage2 / name)
    run_cli("--compare", stage1 / "best.pth", stage2 / "best.pth")
    table = pd.read_csv(tmp_path / "comparison" / "comparison.csv")
    history = pd.read_csv(stage2 / "history.csv")
    assert table["epochs"].tolist() == [1, 1]
    assert table["val_balanced_acc"].iloc[1] == pytest.approx(history["val_balanced_acc"].iloc[0])
    assert "initialised from" in capsys.readouterr().out
