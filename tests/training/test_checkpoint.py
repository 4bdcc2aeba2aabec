"""Issue 12: checkpoint.py owns the format: round trip, checkpoints from before format_version, foreign files."""
import collections
import pickle

import pandas as pd
import pytest
import timm
import torch

import predict
import train
import visualize_training
from leafdisease.training import checkpoint
from leafdisease.utils.errors import UserError
from tiny_run import TINY_ARGS


def header(**overrides):
    values = dict(model_name="test_efficientnet", class_ids=[0, 2], class_names=["a", "b"], train_counts=[5, 1],
                  class_weights=[1.0, 2.2], img_size=32, data_config={"mean": (0.5,) * 3, "std": (0.5,) * 3,
                                                                       "crop_pct": 0.875},
                  stage="full", args={"many_threshold": 100, "few_threshold": 20}, history=[{"epoch": 1}],
                  best_metric=0.5, best_epoch=1, select_metric="balanced_acc", dataset_fingerprint="abc",
                  parent=None, versions={})
    values.update(overrides)
    return checkpoint.header(**values)


def test_round_trip_keeps_every_value_and_stamps_the_version(tmp_path):
    weights = timm.create_model("test_efficientnet", num_classes=2).state_dict()
    path = tmp_path / "best.pth"
    checkpoint.save(path, {**header(), "state_dict": weights, "epoch": 1, "state_dict_ema": weights})
    loaded = checkpoint.load(path, need="weights")
    assert loaded["format_version"] == checkpoint.FORMAT_VERSION
    assert loaded["class_ids"] == [0, 2] and loaded["num_classes"] == 2 and loaded["mean"] == [0.5] * 3
    assert all(torch.equal(loaded["state_dict"][key], value) for key, value in weights.items())
    assert not list(tmp_path.glob(".*tmp*")), "saved through a temporary name"
    # A header-only reader maps the tensors from the file instead of reading them; they still read back the same.
    assert "history" in checkpoint.HEADER_ONLY_NEEDS
    mapped = checkpoint.load(path, need="history")
    assert mapped["history"] == [{"epoch": 1}] and mapped["class_names"] == ["a", "b"]
    assert all(torch.equal(mapped["state_dict_ema"][key], value) for key, value in weights.items())
    # timm reads it, and prefers the EMA weights under its own key
    model = timm.create_model("test_efficientnet", num_classes=2, checkpoint_path=str(path))
    assert model.state_dict().keys() == weights.keys()


def test_save_refuses_keys_outside_the_format(tmp_path):
    with pytest.raises(ValueError, match="ema_state_dict"):
        checkpoint.save(tmp_path / "x.pth", {**header(), "state_dict": {}, "ema_state_dict": {}})


def old_format_last_pth(path):
    """last.pth as train.py wrote it before format_version: the same header, EMA weights under 'ema_state_dict'."""
    saved = torch.load(path, weights_only=True)
    saved.pop("format_version")
    saved["ema_state_dict"] = saved.pop("state_dict_ema")
    torch.save(saved, path)
    return saved


def test_a_checkpoint_from_before_format_version_loads_and_resumes(tiny_cleaned, tmp_path):
    output = tmp_path / "run"
    common = ["--data-dir", str(tiny_cleaned), "--output", str(output), *TINY_ARGS, "--ema-decay", "0.9",
              "--warmup-epochs", "0"]
    train.run(train.parse_args([*common, "--epochs", "1"]))
    old = old_format_last_pth(output / "last.pth")
    assert "format_version" not in old and "ema_state_dict" in old
    old["args"]["epochs"] = 2  # as if a 2-epoch run had stopped after its first epoch (a resume keeps --epochs)
    torch.save(old, output / "last.pth")

    loaded = checkpoint.load(output / "last.pth", need="resume")
    assert "ema_state_dict" not in loaded
    assert all(torch.equal(loaded["state_dict_ema"][key], value) for key, value in old["ema_state_dict"].items())

    train.run(train.parse_args([*common, "--epochs", "2", "--resume", "auto"]))
    assert pd.read_csv(output / "history.csv")["epoch"].tolist() == [1, 2]
    resumed = checkpoint.load(output / "last.pth", need="resume")
    assert resumed["format_version"] == checkpoint.FORMAT_VERSION and "state_dict_ema" in resumed


class Pickled:
    pass


FOREIGN = {
    "not a checkpoint at all": (lambda path: path.write_text("id,name\n0,a\n"), "not a torch.save file at all"),
    "empty file": (lambda path: path.write_bytes(b""), "not a torch.save file at all"),
    "plain pickle": (lambda path: path.write_bytes(pickle.dumps({"state_dict": {}})), "not a torch.save file at all"),
    "pickled object": (lambda path: torch.save(Pickled(), path), "pickled Python objects"),
    "pickled non-dict": (lambda path: torch.save([torch.zeros(2)], path), "it holds a list, not a dict"),
    "bare state_dict": (lambda path: torch.save(collections.OrderedDict(w=torch.zeros(2)), path), "bare state_dict"),
    "another tool's checkpoint": (lambda path: torch.save({"arch": "resnet50", "epoch": 3, "state_dict": {}}, path),
                                  "no model_name"),
    "newer format": (lambda path: torch.save({"format_version": checkpoint.FORMAT_VERSION + 1}, path),
                     "newer than this code reads"),
}


@pytest.mark.parametrize("kind", FOREIGN)
def test_foreign_files_are_told_apart(tmp_path, kind):
    write, expected = FOREIGN[kind]
    path = tmp_path / "model.pth"
    write(path)
    with pytest.raises(UserError) as error:
        checkpoint.load(path, need="weights")
    message = str(error.value)
    assert message.startswith(f"{path}: ") and expected in message and "\n" not in message
    if kind != "newer format":
        assert "expected a train.py checkpoint" in message


def test_foreign_file_is_one_line_in_every_reader(tmp_path, capsys):
    path = tmp_path / "model.pth"
    torch.save(collections.OrderedDict(w=torch.zeros(2)), path)
    for main, argv in ((predict.main, ["--checkpoint", str(path), str(tmp_path)]),
                       (visualize_training.main, ["--checkpoint-dir", str(path)])):
        with pytest.raises(SystemExit):
            main(argv)
        err = capsys.readouterr().err.strip()
        assert err == err.splitlines()[0] and "bare state_dict" in err and str(path) in err


def test_class_lengths_that_disagree_are_refused(tmp_path):
    path = tmp_path / "x.pth"
    torch.save({**header(), "class_names": ["a"], "state_dict": {}}, path)
    with pytest.raises(UserError, match="disagree in length"):
        checkpoint.load(path, need="weights")


def test_another_model_or_dataset_is_named(tmp_path):
    saved = {**header(), "state_dict": timm.create_model("test_efficientnet", num_classes=2).state_dict()}
    with pytest.raises(UserError, match="holds test_efficientnet weights, this run's model is resnet18"):
        checkpoint.check_compatible(saved, "x.pth", model_name="resnet18")
    with pytest.raises(UserError, match="different dataset"):
        checkpoint.check_compatible(saved, "x.pth", class_ids=[0, 2], dataset_fingerprint="other")
    with pytest.raises(UserError, match="trained on 2 classes, this run has 3"):
        checkpoint.check_compatible(saved, "x.pth", class_ids=[0, 1, 2])
    checkpoint.check_compatible(saved, "x.pth", model_name="test_efficientnet", class_ids=[0, 2],
                                dataset_fingerprint="abc", stage="full")
    other_model = timm.create_model("test_vit", num_classes=2)
    with pytest.raises(UserError, match="its test_efficientnet weights do not fit test_vit"):
        checkpoint.load_weights(other_model, "test_vit", saved, "x.pth")


def test_shot_thresholds_come_from_the_run_or_the_defaults():
    assert checkpoint.shot_thresholds({"args": {"many_threshold": 50, "few_threshold": 5}}) == (50, 5)
    assert checkpoint.shot_thresholds({}) == (100, 20)
