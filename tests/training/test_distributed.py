"""Issue 6: train.py under torchrun (2 CPU processes, gloo) matches a single process on the same weights."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import timm
import torch

import dataset
import train
from leafdisease.training import engine

ROOT = Path(__file__).resolve().parents[2]
TINY = ["--model", "test_efficientnet", "--no-pretrained", "--img-size", "32", "--batch-size", "4", "--workers", "0"]


@pytest.mark.parametrize("stage, sampler", [("full", "sqrt"), ("head", "none")])
def test_torchrun_two_processes_gathers_whole_validation_set(tiny_cleaned, tmp_path, stage, sampler):
    output = tmp_path / f"ddp_{stage}"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               str(ROOT / "train.py"), "--data-dir", str(tiny_cleaned), "--output", str(output),
               "--stage", stage, "--epochs", "2", "--sampler", sampler, *TINY]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "2 process(es)" in result.stdout
    assert result.stdout.count("epoch 2/2 |") == 1, "only rank 0 reports"

    last = torch.load(output / "last.pth", weights_only=True)
    model = timm.create_model("test_efficientnet", num_classes=4)
    model.load_state_dict(last["state_dict"])
    metadata = dataset.load_metadata(tiny_cleaned)
    transform = dataset.build_transform("eval", 32, crop_pct=last["crop_pct"])
    val_set = dataset.LeafDataset(metadata.val["path"], metadata.val["label"], transform)
    loader = torch.utils.data.DataLoader(val_set, batch_size=5)
    logits, targets = engine.evaluate(model, loader, dataset.ModelInput.for_config(last, torch.device("cpu")), None,
                                      world_size=1)
    assert len(targets) == len(metadata.val)  # the distributed run saw every image once, too
    single, _, _ = train.metrics.classification_metrics(logits.numpy(), targets.numpy(), last["train_counts"])
    distributed = last["history"][-1]
    for name in ("acc", "balanced_acc", "macro_f1", "top5"):
        assert distributed[f"val_{name}"] == pytest.approx(single[name], abs=1e-9), name
    history = pd.read_csv(output / "history.csv")
    assert history["epoch"].tolist() == [1, 2]


def test_epoch_sampler_ranks_partition_one_global_order():
    targets = np.array([0] * 30 + [1] * 7 + [2] * 2)
    single = dataset.make_sampler(targets, 3, "none", seed=3)
    single.set_epoch(5)
    ranks = [dataset.make_sampler(targets, 3, "none", num_replicas=2, rank=rank, seed=3) for rank in (0, 1)]
    for sampler in ranks:
        sampler.set_epoch(5)
    union = sorted(set(list(ranks[0]) + list(ranks[1])))
    assert union == list(range(len(targets)))
    assert len(list(ranks[0])) == len(list(ranks[1])) == 20
    # resume mid-epoch: skipping k items replays the rest of the same order
    resumed = dataset.make_sampler(targets, 3, "sqrt", seed=3)
    resumed.set_epoch(2, start_index=8)
    full = dataset.make_sampler(targets, 3, "sqrt", seed=3)
    full.set_epoch(2)
    assert list(resumed) == list(full)[8:]


def test_a_rank_that_cannot_see_the_checkpoint_fails_every_rank(tiny_cleaned, tmp_path):
    """Rank 0 resumes from its output/last.pth; rank 1 (another 'node' whose disk lacks that folder) cannot read
    it. Both ranks stop with one message naming rank 1 and the shared-filesystem requirement, instead of rank 1
    starting from epoch 1 or rank 0 waiting forever; rank 0's run is left untouched."""
    for rank in (0, 1):
        (tmp_path / f"rank{rank}").mkdir()
    arguments = ["--data-dir", str(tiny_cleaned), "--output", "run", "--epochs", "1", "--resume", "auto", *TINY]
    train.run(train.parse_args([*arguments[:3], str(tmp_path / "rank0" / "run"), *arguments[4:]]))
    before = (tmp_path / "rank0" / "run" / "last.pth").read_bytes()
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               str(ROOT / "tests" / "rank_local_disk.py"), str(tmp_path), *arguments]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    # Each rank prints the same line; torchrun stops the other rank as soon as one exits, so on a loaded machine
    # the second line can be cut off before it is printed (the run still ends: the timeout would catch a hang).
    assert 1 <= len(errors) <= 2 and len(set(errors)) == 1, result.stderr[-3000:]
    assert "rank 1 on" in errors[0] and "cannot read the checkpoint rank 0 resumes from" in errors[0]
    assert "shared filesystem" in errors[0]
    assert (tmp_path / "rank0" / "run" / "last.pth").read_bytes() == before
    assert not (tmp_path / "rank1" / "run").exists()
