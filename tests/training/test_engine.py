"""Issue 12: engine.py's TrainingState saves and restores everything training continues from, and
benchmarks/runner.py runs train.py's command line for a stage, recording a diverged stage as a result.
Issue 14: the loaders ship uint8 images, and dataset.ModelInput makes them the model's input on the device."""
import json

import albumentations as A
import numpy as np
import pytest
import torch
from timm.utils import ModelEmaV3

import dataset
from benchmarks import runner
from leafdisease.training import checkpoint, engine, models
from leafdisease.utils.errors import UserError

NUM_CLASSES, BATCH = 3, 4
CPU_INPUT = dataset.ModelInput.for_config({"mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5)}, torch.device("cpu"))


def fresh_state(seed):
    """A full-stage TrainingState of timm's tiny test model, with EMA, built as train.py builds it."""
    torch.manual_seed(seed)
    model = models.create_model("test_efficientnet", NUM_CLASSES, pretrained=False)
    optimizer = engine.build_optimizer(model, lr=1e-2)
    return engine.TrainingState(
        model=model, trainable=model, optimizer=optimizer,
        scheduler=engine.build_scheduler(optimizer, epochs=3, steps_per_epoch=4, warmup_epochs=1),
        scaler=torch.amp.GradScaler("cpu", enabled=False), ema=ModelEmaV3(model, decay=0.9))


def batches(seed, count=4):
    generator = torch.Generator().manual_seed(seed)
    return [(torch.randint(0, 256, (BATCH, 3, 32, 32), dtype=torch.uint8, generator=generator),
             torch.randint(0, NUM_CLASSES, (BATCH,), generator=generator)) for _ in range(count)]


def train_epoch(state, epoch, seed):
    criterion = engine.build_criterion("ce", [1.0, 2.0, 3.0], [8, 4, 1])
    torch.manual_seed(seed)  # dropout draws the same masks in both runs
    return engine.train_one_epoch(state, criterion, batches(seed), CPU_INPUT, epoch,
                                  engine.new_epoch_progress(), epochs=3, show_progress=False)


def test_a_saved_state_loaded_into_a_fresh_one_continues_identically(tmp_path):
    original = fresh_state(seed=0)
    train_epoch(original, 1, seed=1)
    original.history.append({"epoch": 1, "val_balanced_acc": 0.5})
    original.best_metric, original.best_epoch = 0.5, 1
    original.best = {"epoch": 1, "state_dict": {key: value.clone() for key, value in original.model.state_dict().items()}}
    original.parent = {"path": "stage1/best.pth", "stage": "head", "history": [], "parent": None}
    # Through a file in the checkpoint format, as last.pth: every key is one the format knows.
    checkpoint.save(tmp_path / "last.pth", original.state_dict())
    saved = checkpoint.load(tmp_path / "last.pth", need="progress")
    assert saved["epoch"] == 1 and saved["global_step"] == 4

    restored = fresh_state(seed=99)  # other initial weights: everything must come from the file
    restored.load_state_dict(saved)
    assert (restored.global_step, restored.history, restored.best_metric, restored.best_epoch, restored.parent) == \
        (original.global_step, original.history, original.best_metric, original.best_epoch, original.parent)
    assert engine.current_lr(restored.optimizer) == engine.current_lr(original.optimizer)

    for state in (original, restored):
        train_epoch(state, 2, seed=2)
    assert engine.current_lr(restored.optimizer) == engine.current_lr(original.optimizer)
    for name, value in original.model.state_dict().items():
        assert torch.equal(restored.model.state_dict()[name], value), name
    for name, value in original.ema.module.state_dict().items():
        assert torch.equal(restored.ema.module.state_dict()[name], value), f"EMA {name}"


def test_model_input_normalises_a_loaders_uint8_batch_as_albumentations_normalises_an_image(tiny_cleaned):
    """Moving the normalisation from the workers to the device changes no input the model sees."""
    metadata = dataset.load_metadata(tiny_cleaned)
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    transform = dataset.build_transform("eval", 32)
    loader = torch.utils.data.DataLoader(dataset.LeafDataset(metadata.val["path"], metadata.val["label"], transform),
                                         batch_size=4)
    images, _ = next(iter(loader))
    assert images.dtype == torch.uint8 and images.shape == (4, 3, 32, 32)  # a quarter of float32's bytes

    to_input = dataset.ModelInput.for_config({"mean": mean, "std": std}, torch.device("cpu"), channels_last=True)
    model_input = to_input(images)
    assert model_input.dtype == torch.float32 and model_input.is_contiguous(memory_format=torch.channels_last)
    normalize = A.Normalize(mean=mean, std=std, max_pixel_value=255.0)
    expected = np.stack([normalize(image=image.permute(1, 2, 0).numpy())["image"] for image in images])
    assert model_input.permute(0, 2, 3, 1).numpy() == pytest.approx(expected, abs=1e-5)
    assert np.abs(expected).max() > 1.5  # the check compares normalised values, not raw pixels


def stage_argv(data_dir, output, *extra):
    return ["--data-dir", str(data_dir), "--output", str(output), "--model", "test_efficientnet", "--no-pretrained",
            "--img-size", "32", "--batch-size", "8", "--workers", "0", "--epochs", "2", "--resume", "auto", *extra]


def test_a_diverged_stage_is_recorded_with_its_message(tiny_cleaned, tmp_path, capsys):
    stage_dir = tmp_path / "full"
    # An absurd LR without warmup or clipping: the loss is NaN by the 2nd step; train.py exits with status 3.
    argv = stage_argv(tiny_cleaned, stage_dir, "--lr", "1e30", "--warmup-epochs", "0", "--clip-grad", "0")
    record = runner.run_stage(stage_dir, argv)
    assert record["diverged"].startswith("loss became nan at epoch 1 step ")
    assert json.loads((stage_dir / runner.RUN_RECORD).read_text()) == record and record["wall_seconds"] > 0
    assert f"{stage_dir}: diverged: loss became nan" in capsys.readouterr().out
    assert not runner.is_complete(stage_dir, argv)


def test_a_stage_refused_by_train_py_stops_the_benchmark(tiny_cleaned, tmp_path, capsys):
    stage_dir = tmp_path / "full"
    with pytest.raises(UserError, match="full: `python train.py .*` stopped with exit status 2"):
        runner.run_stage(stage_dir, stage_argv(tiny_cleaned, stage_dir, "--lr", "-1"))
    assert capsys.readouterr().err.strip().splitlines()[-1] == "error: --lr -1.0: must be a number > 0"


def test_option_value_reads_the_last_occurrence():
    assert runner.option_value(["--epochs", "3", "--stage", "head", "--epochs", "5"], "--epochs") == "5"
