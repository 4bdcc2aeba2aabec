import pandas as pd
import pytest
import timm
import torch

import train
from leafdisease.data import longtail
from leafdisease.training import losses
from leafdisease.utils import errors
from tiny_run import TINY_ARGS, load_checkpoint, run_stage


@pytest.fixture(scope="module")
def stage1(tiny_cleaned, tmp_path_factory):
    output = tmp_path_factory.mktemp("runs") / "stage1"
    return run_stage(tiny_cleaned, output, "--stage", "head", "--epochs", "2", "--lr", "1e-2")


def test_head_stage_changes_only_the_classifier(tiny_cleaned, stage1, tmp_path):
    # The same initial weights as the run: test_efficientnet from scratch is seeded by --seed 0.
    torch.manual_seed(0)
    initial = timm.create_model("test_efficientnet", num_classes=4, drop_rate=0.2).state_dict()
    trained = load_checkpoint(stage1 / "last.pth")["state_dict"]
    assert trained.keys() == initial.keys()
    changed = [key for key in initial if not torch.equal(initial[key], trained[key])]
    assert changed and all(key.startswith("classifier.") for key in changed), changed
    # BatchNorm running statistics are buffers: frozen too.
    assert any("running_mean" in key for key in initial)


def test_outputs_of_a_stage(stage1):
    for name in ("best.pth", "last.pth", "history.csv", "training_curves.png", "per_class_metrics.csv",
                 "confusion_matrix.png", "config.yaml", "train_batch.png", "class_weights_used.csv"):
        assert (stage1 / name).stat().st_size > 0, name
    history = pd.read_csv(stage1 / "history.csv")
    assert history["epoch"].tolist() == [1, 2]
    for column in ("val_balanced_acc", "val_macro_f1", "val_top5", "val_many_acc", "val_few_acc", "lr",
                   "epoch_seconds", "train_images_per_s"):
        assert column in history
    best = load_checkpoint(stage1 / "best.pth")
    assert best["class_names"] == ["class_0", "class_1", "class_2", "class_3"]
    assert best["select_metric"] == "balanced_acc"
    assert best["best_metric"] == max(row["val_balanced_acc"] for row in best["history"])
    assert len(best["confusion_matrix"]) == 4


def test_full_stage_starts_from_stage1_weights(tiny_cleaned, stage1, tmp_path):
    model = timm.create_model("test_efficientnet", num_classes=4)
    parent = train.init_from(model, stage1 / "best.pth", [0, 1, 2, 3])
    expected = load_checkpoint(stage1 / "best.pth")["state_dict"]
    assert all(torch.equal(value, expected[key]) for key, value in model.state_dict().items())
    assert parent["stage"] == "head" and len(parent["history"]) == 2
    output = run_stage(tiny_cleaned, tmp_path / "stage2", "--stage", "full", "--epochs", "1",
                       "--init-from", str(stage1 / "best.pth"))
    checkpoint = load_checkpoint(output / "best.pth")
    assert checkpoint["parent"]["path"] == str(stage1 / "best.pth")
    changed = [key for key, value in checkpoint["state_dict"].items()
               if value.dtype.is_floating_point and not torch.equal(value, expected[key])]
    assert any(key.startswith("conv_stem") for key in changed)


def test_init_from_refuses_other_class_list(stage1):
    model = timm.create_model("test_efficientnet", num_classes=3)
    with pytest.raises(train.UserError, match="trained on 4 classes"):
        train.init_from(model, stage1 / "best.pth", [0, 1, 2])


def test_checkpoint_loads_with_timm_create_model(tiny_cleaned, stage1):
    checkpoint = load_checkpoint(stage1 / "best.pth")
    model = timm.create_model(checkpoint["model_name"], num_classes=checkpoint["num_classes"],
                              checkpoint_path=str(stage1 / "best.pth")).eval()
    reference = timm.create_model(checkpoint["model_name"], num_classes=checkpoint["num_classes"]).eval()
    reference.load_state_dict(checkpoint["state_dict"])
    images = torch.randn(2, 3, 32, 32)
    assert torch.equal(model(images), reference(images))


def test_resume_continues_at_next_epoch_with_the_same_lr(tiny_cleaned, tmp_path, monkeypatch):
    uninterrupted = run_stage(tiny_cleaned, tmp_path / "straight", "--epochs", "3", "--warmup-epochs", "1")
    original_validate_and_save_epoch = train.validate_and_save_epoch

    def crash_after_epoch_2(context, state, epoch, *args):
        original_validate_and_save_epoch(context, state, epoch, *args)
        if epoch == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(train, "validate_and_save_epoch", crash_after_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        run_stage(tiny_cleaned, tmp_path / "crashed", "--epochs", "3", "--warmup-epochs", "1")
    assert load_checkpoint(tmp_path / "crashed" / "last.pth")["epoch"] == 2
    monkeypatch.setattr(train, "validate_and_save_epoch", original_validate_and_save_epoch)
    run_stage(tiny_cleaned, tmp_path / "crashed", "--epochs", "3", "--warmup-epochs", "1", "--resume", "auto")
    straight = pd.read_csv(uninterrupted / "history.csv")
    resumed = pd.read_csv(tmp_path / "crashed" / "history.csv")
    assert resumed["epoch"].tolist() == [1, 2, 3]
    assert resumed["lr"].tolist() == pytest.approx(straight["lr"].tolist())


def test_resume_refuses_a_different_dataset(tiny_cleaned, stage1, tmp_path):
    from conftest import write_cleaned_dataset

    other = write_cleaned_dataset(tmp_path / "other", [5, 5, 5, 5])
    # stage1's last.pth, as if it were a 3-epoch run stopped after its 2nd epoch.
    unfinished = load_checkpoint(stage1 / "last.pth")
    unfinished["args"]["epochs"] = 3
    (tmp_path / "run").mkdir()
    torch.save(unfinished, tmp_path / "run" / "last.pth")
    with pytest.raises(train.UserError, match="different dataset"):
        run_stage(other, tmp_path / "run", "--stage", "head", "--epochs", "3", "--resume", "auto")


def test_nan_loss_stops_the_run_and_keeps_last_good_epoch(tiny_cleaned, tmp_path, monkeypatch):
    calls = {"count": 0}
    real_build_loss = losses.build_loss

    class PoisonedAfterEpoch1(torch.nn.Module):
        def __init__(self, criterion):
            super().__init__()
            self.criterion = criterion

        def forward(self, logits, targets):
            calls["count"] += 1
            value = self.criterion(logits, targets)
            return value * float("nan") if calls["count"] > 5 else value  # 41 images / batch 8 = 5 steps = epoch 1

    def build_failing_loss(*args, **kwargs):
        return PoisonedAfterEpoch1(real_build_loss(*args, **kwargs))

    monkeypatch.setattr(losses, "build_loss", build_failing_loss)
    output = tmp_path / "nan"
    with pytest.raises(errors.TrainingDiverged, match="loss became nan at epoch 2"):
        run_stage(tiny_cleaned, output, "--epochs", "3")
    assert load_checkpoint(output / "last.pth")["epoch"] == 1
    assert load_checkpoint(output / "best.pth")["epoch"] == 1


def test_min_samples_leaves_out_rare_classes_and_records_them(tiny_cleaned, tmp_path):
    output = run_stage(tiny_cleaned, tmp_path / "min", "--stage", "head", "--epochs", "1", "--min-samples", "2")
    checkpoint = load_checkpoint(output / "best.pth")
    assert checkpoint["class_ids"] == [0, 1, 2] and checkpoint["num_classes"] == 3
    assert pd.read_csv(output / "excluded_classes.csv")["id"].tolist() == [3]


def test_a_class_without_validation_images_is_named_and_the_target_metric_is_followed(tmp_path, capsys):
    """The seed's class 45: training images, no validation image. It is named at setup, its recall is undefined
    (not 0) in per_class_metrics.csv, and --select-metric acc is recorded for calibration to follow."""
    import predict
    from conftest import write_cleaned_dataset

    data = write_cleaned_dataset(tmp_path / "data", [20, 10, 4, 1], val_per_class=[4, 3, 2, 0])
    output = run_stage(data, tmp_path / "run", "--stage", "head", "--epochs", "1", "--select-metric", "acc")
    printed = capsys.readouterr().out
    assert ("no validation image for 1 class(es): 3 'class_3'; validation metrics average over the 3 classes that "
            "have one") in printed
    assert "best.pth chosen by validation acc" in printed and " prior_acc " in printed
    per_class = pd.read_csv(output / "per_class_metrics.csv")
    assert per_class["support"].tolist() == [4, 3, 2, 0] and per_class["recall"].isna().tolist() == [False] * 3 + [True]
    history = pd.read_csv(output / "history.csv")
    recall = per_class["recall"].to_numpy()[:3]
    expected_prior = (recall * [20, 10, 4]).sum() / 34
    assert history["val_prior_acc"].iloc[0] == pytest.approx(expected_prior)
    assert load_checkpoint(output / "best.pth")["select_metric"] == "acc"

    predict.main(["--checkpoint", str(output / "best.pth"), "--calibrate-tau", "--data-dir", str(data)])
    printed = capsys.readouterr().out
    assert "tau calibration for validation acc (the run's --select-metric) on 9 validation images" in printed
    assert "1 class(es) have none: class averages are over the 3 that do" in printed
    report = load_checkpoint(output / "best.pth")["logit_adjust_report"]
    assert report["metric"] == "acc" and report["margin"] == pytest.approx(1 / 9)


def test_class_weights_used_are_recorded(tiny_cleaned, stage1):
    used = pd.read_csv(stage1 / "class_weights_used.csv")
    expected = longtail.compute_class_weights([24, 12, 4, 1], "sqrt")
    assert used["weight"].tolist() == pytest.approx(expected.tolist())


def test_bad_data_dir_is_one_line_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        train.main(["--data-dir", str(tmp_path / "missing"), "--output", str(tmp_path / "out"), *TINY_ARGS])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "classes.csv" in err and "\n" not in err


def test_same_seed_same_augmentation_and_loss(tiny_cleaned, tmp_path):
    first = run_stage(tiny_cleaned, tmp_path / "a", "--epochs", "1", "--workers", "1")
    second = run_stage(tiny_cleaned, tmp_path / "b", "--epochs", "1", "--workers", "1")
    other_seed = run_stage(tiny_cleaned, tmp_path / "c", "--epochs", "1", "--workers", "1", "--seed", "1")
    losses_of = [pd.read_csv(path / "history.csv")["train_loss"].iloc[0] for path in (first, second, other_seed)]
    assert losses_of[0] == losses_of[1]
    assert losses_of[0] != losses_of[2]
