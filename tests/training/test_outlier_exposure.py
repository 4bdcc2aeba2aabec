"""Outlier exposure (issue 32): photos of none of the classes trained towards an even answer beside every batch,
or pasted into the batch's photos (--outlier-mix cutmix), train.py --outlier-dir, and its bad input."""
import math

import cv2
import numpy as np
import pytest
import torch
import yaml

import dataset
import train
from leafdisease.training import engine, models, outlier_exposure
from tiny_run import TINY_ARGS, run_stage

NUM_CLASSES, EPOCHS = 3, 10
CPU_INPUT = dataset.ModelInput.for_config({"mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5)}, torch.device("cpu"))


def write_noise_photos(folder, count=6, seed=1):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for index in range(count):
        cv2.imwrite(str(folder / f"noise_{index}.png"), (rng.random((40, 40, 3)) * 255).astype(np.uint8))
    return folder


def test_the_outlier_loss_is_least_for_an_even_answer_and_is_cross_entropy_for_a_whole_photo():
    even, targets = torch.zeros(2, NUM_CLASSES), torch.tensor([0, 2])
    assert outlier_exposure.mixed_cross_entropy(even, targets, 0.0).item() == pytest.approx(math.log(NUM_CLASSES))
    confident = torch.tensor([[8.0, 0.0, 0.0], [0.0, 0.0, 8.0]])
    assert outlier_exposure.mixed_cross_entropy(confident, targets, 0.0).item() > math.log(NUM_CLASSES) + 1
    assert outlier_exposure.mixed_cross_entropy(confident, targets, 1.0).item() == pytest.approx(
        torch.nn.functional.cross_entropy(confident, targets).item())
    # half the photo kept: an answer between its class and the even one costs less than either
    between = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    half_kept = [outlier_exposure.mixed_cross_entropy(logits, targets, 0.5) for logits in (between, even, confident)]
    assert half_kept[0] < min(half_kept[1:])


def test_cutmix_pastes_one_box_of_each_outlier_and_returns_the_share_kept():
    torch.manual_seed(3)
    images, outlier_images = torch.zeros(5, 3, 20, 30), torch.ones(3, 3, 20, 30)
    for _ in range(20):
        mixed, kept = outlier_exposure.paste_outlier_patches(images, outlier_images)
        assert mixed.shape == (3, 3, 20, 30) and 0 <= kept <= 1
        assert (mixed == 0).float().mean().item() == pytest.approx(kept)
        pasted = mixed[0, 0].nonzero()
        if len(pasted):  # one rectangle, the same in every photo and channel
            rows, columns = pasted[:, 0], pasted[:, 1]
            assert len(pasted) == (rows.max() - rows.min() + 1) * (columns.max() - columns.min() + 1)
            assert torch.equal(mixed, mixed[:1].expand_as(mixed))
    # fewer photos in the batch than outliers: as many mixes as photos
    assert outlier_exposure.paste_outlier_patches(images[:2], outlier_images)[0].shape[0] == 2


def trained_state(outliers, outlier_mix=outlier_exposure.DEFAULT_MIX):
    """A tiny model trained EPOCHS epochs on flat-coloured class batches, with or without noise photos beside them."""
    torch.manual_seed(0)
    model = models.create_model("test_efficientnet", NUM_CLASSES, pretrained=False)
    optimizer = engine.build_optimizer(model, lr=1e-2)
    state = engine.TrainingState(model=model, trainable=model, optimizer=optimizer,
                                 scheduler=engine.build_scheduler(optimizer, epochs=EPOCHS, steps_per_epoch=4),
                                 scaler=torch.amp.GradScaler("cpu", enabled=False), ema=None)
    targets = torch.arange(8) % NUM_CLASSES
    images = (targets * 100).to(torch.uint8)[:, None, None, None].expand(8, 3, 32, 32).contiguous()
    criterion = engine.build_criterion("ce", [1.0] * NUM_CLASSES, [4] * NUM_CLASSES)
    for epoch in range(1, EPOCHS + 1):
        engine.train_one_epoch(state, criterion, [(images, targets)] * 4, CPU_INPUT, epoch,
                               engine.new_epoch_progress(), epochs=EPOCHS, show_progress=False, outliers=outliers,
                               outlier_mix=outlier_mix)
    return model.eval()


@pytest.mark.parametrize("outlier_mix", outlier_exposure.MIXES)
def test_outlier_batches_beside_each_batch_make_the_answer_on_them_even(outlier_mix):
    generator = torch.Generator().manual_seed(1)
    noise = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8, generator=generator)
    exposed = trained_state(outliers=iter(lambda: (noise, None), None), outlier_mix=outlier_mix)
    plain = trained_state(outliers=None)
    with torch.no_grad():
        top = {name: torch.softmax(model(CPU_INPUT(noise)), dim=1).max(dim=1).values.mean().item()
               for name, model in (("exposed", exposed), ("plain", plain))}
    assert top["exposed"] < top["plain"]
    if outlier_mix == "none":  # cutmix shows the noise only as patches, so less of its answer is even
        assert top["exposed"] < 1 / NUM_CLASSES + 0.1


def test_train_py_trains_with_the_outlier_folder_and_records_it(tiny_cleaned, tmp_path):
    noise = write_noise_photos(tmp_path / "noise")
    output = run_stage(tiny_cleaned, tmp_path / "run", "--epochs", "1", "--outlier-dir", str(noise),
                       "--outlier-mix", "cutmix")
    log = (output / "train.log").read_text()
    assert f"outlier exposure: 6 photos of none of the classes ({noise})" in log and "(cutmix)" in log
    assert yaml.safe_load((output / "config.yaml").read_text())["args"]["outlier_dir"] == [str(noise)]
    assert yaml.safe_load((output / "config.yaml").read_text())["args"]["outlier_mix"] == "cutmix"
    assert torch.load(output / "best.pth", map_location="cpu", weights_only=True)["args"]["outlier_dir"] == [str(noise)]


@pytest.mark.parametrize("problem", ["missing", "empty", "not_image"])
def test_a_bad_outlier_folder_is_one_line_naming_it(tiny_cleaned, tmp_path, capsys, problem):
    folder = tmp_path / "outliers"
    if problem != "missing":
        folder.mkdir()
    if problem == "not_image":
        write_noise_photos(folder, count=2)
        (folder / "notes.txt").write_text("not a photo")
    with pytest.raises(SystemExit) as exit_info:
        train.main(["--data-dir", str(tiny_cleaned), "--output", str(tmp_path / "out"), *TINY_ARGS, "--epochs", "1",
                    "--outlier-dir", str(folder)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --outlier-dir") and "\n" not in err
    assert {"missing": "not a folder", "empty": "no files in it",
            "not_image": "notes.txt: not_image"}[problem] in err
    assert not (tmp_path / "out").exists()
