"""export.py: the timm/safetensors folder and ONNX file reproduce the checkpoint and feed predict.py."""
import json
import os
import shutil

import numpy as np
import onnxruntime
import pandas as pd
import pytest
import timm
import torch

import dataset
import export
import predict
import train
from conftest import write_cleaned_dataset
from leafdisease.deployment import formats, inference
from leafdisease.training import checkpoint as checkpoint_format
from tiny_run import TINY_ARGS


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    # Class 1 is left out by --min-samples 2, so output index and original class id differ (0, 2, 3).
    return write_cleaned_dataset(tmp_path_factory.mktemp("export_data"), [24, 1, 12, 4])


@pytest.fixture(scope="module")
def checkpoint(data_dir, tmp_path_factory):
    output = tmp_path_factory.mktemp("export_run") / "full"
    train.run(train.parse_args(["--data-dir", str(data_dir), "--output", str(output), *TINY_ARGS, "--epochs", "2",
                                "--lr", "1e-2", "--warmup-epochs", "0", "--min-samples", "2"]))
    return output / "best.pth"


@pytest.fixture(scope="module")
def exported(checkpoint, data_dir, tmp_path_factory):
    output = tmp_path_factory.mktemp("exported")
    export.main(["--checkpoint", str(checkpoint), "--output", str(output), "--data-dir", str(data_dir)])
    return output


@pytest.fixture(scope="module")
def val_images(checkpoint, data_dir):
    card = checkpoint_format.load(checkpoint)
    paths = dataset.load_metadata(data_dir).val["path"].tolist()
    return paths, formats.transformed_images(paths, card)


def reference_logits(checkpoint, images):
    loaded = checkpoint_format.load(checkpoint)
    with torch.no_grad():
        return inference.build_model(loaded, checkpoint)(images)


def test_timm_folder_loads_without_num_classes(exported, checkpoint, val_images):
    loaded = checkpoint_format.load(checkpoint)
    assert sorted(p.name for p in exported.iterdir()) == ["config.json", "model.onnx", "model.safetensors",
                                                          "unknown.safetensors"]
    umask = os.umask(0)
    os.umask(umask)
    assert {oct(p.stat().st_mode & 0o777) for p in exported.iterdir()} == {oct(0o666 & ~umask)}
    model = timm.create_model(f"local-dir:{exported}", pretrained=True).eval()
    assert model.num_classes == loaded["num_classes"] == 3
    cfg = model.pretrained_cfg
    assert cfg["label_names"] == loaded["class_names"]
    assert tuple(cfg["input_size"]) == (3, 32, 32)
    assert list(cfg["mean"]) == pytest.approx(loaded["mean"]) and list(cfg["std"]) == pytest.approx(loaded["std"])
    assert cfg["crop_pct"] == pytest.approx(loaded["crop_pct"])
    assert cfg["interpolation"] == dataset.EVAL_INTERPOLATION
    with torch.no_grad():
        assert torch.allclose(model(val_images[1]), reference_logits(checkpoint, val_images[1]), atol=1e-6)
    card = json.loads((exported / "config.json").read_text())[formats.CARD_KEY]
    assert card["class_ids"] == [0, 2, 3] and card["train_counts"] == loaded["train_counts"]


def test_onnx_has_dynamic_batch_and_matches_pytorch(exported, checkpoint, val_images):
    session = onnxruntime.InferenceSession(str(exported / "model.onnx"), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape[0] == session.get_outputs()[0].shape[0]
    assert not isinstance(session.get_inputs()[0].shape[0], int)
    images = val_images[1]
    expected = reference_logits(checkpoint, images).numpy()
    for batch in (images[:1], images[:7], images):
        got = session.run(None, {formats.ONNX_INPUT: batch.numpy()})[0]
        assert got.shape == (len(batch), 3)
        assert np.abs(got - expected[:len(batch)]).max() < 1e-4
        assert (got.argmax(1) == expected[:len(batch)].argmax(1)).all()


def test_export_prints_the_logit_difference(checkpoint, data_dir, tmp_path, capsys):
    export.main(["--checkpoint", str(checkpoint), "--format", "onnx", "--output", str(tmp_path),
                 "--verify-images", str(data_dir / "images"), "--verify-count", "5"])
    lines = [line for line in capsys.readouterr().out.splitlines() if "max |logit difference|" in line]
    assert len(lines) == 1 and "on 5 images" in lines[0] and "predicted classes agree" in lines[0]
    assert float(lines[0].split("PyTorch ")[1].split()[0]) < formats.DEFAULT_MAX_LOGIT_DIFF
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]


def test_failed_check_replaces_nothing(checkpoint, data_dir, tmp_path, capsys):
    (tmp_path / "model.onnx").write_bytes(b"previous")
    with pytest.raises(SystemExit) as exit_info:
        export.main(["--checkpoint", str(checkpoint), "--format", "onnx", "--output", str(tmp_path),
                     "--data-dir", str(data_dir), "--max-logit-diff", "1e-30", "--overwrite"])
    assert exit_info.value.code != 0
    error = capsys.readouterr().err
    assert "does not reproduce the PyTorch model" in error and "Traceback" not in error
    assert (tmp_path / "model.onnx").read_bytes() == b"previous"
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]


def test_export_without_images_is_a_one_line_error(checkpoint, tmp_path, capsys):
    with pytest.raises(SystemExit):
        export.main(["--checkpoint", str(checkpoint), "--output", str(tmp_path / "out"),
                     "--data-dir", str(tmp_path / "nothing")])
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and "--verify-images" in error and "val.csv" in error


def test_predict_gives_the_same_answers_from_every_format(exported, checkpoint, val_images, tmp_path):
    tables = {}
    for name, model_path in (("pth", checkpoint), ("folder", exported), ("onnx", exported / "model.onnx")):
        output = tmp_path / f"{name}.csv"
        predict.main(["--checkpoint", str(model_path), "--workers", "0", "--top-k", "3", "--output", str(output),
                      *val_images[0]])
        tables[name] = pd.read_csv(output)
    for name in ("folder", "onnx"):
        for rank in (1, 2, 3):
            assert (tables[name][f"pred_{rank}_id"] == tables["pth"][f"pred_{rank}_id"]).all(), name
            assert np.abs(tables[name][f"pred_{rank}_prob"] - tables["pth"][f"pred_{rank}_prob"]).max() < 1e-4
    assert set(tables["onnx"]["pred_1_id"]) <= {0, 2, 3}


@pytest.mark.parametrize("broken", ["folder_without_config", "onnx_garbage", "onnx_without_card"])
def test_unusable_exports_are_one_line_errors(broken, exported, tmp_path, capsys):
    if broken == "folder_without_config":
        model_path = tmp_path / "folder"
        model_path.mkdir()
        (model_path / "model.safetensors").write_bytes((exported / "model.safetensors").read_bytes())
    elif broken == "onnx_garbage":
        model_path = tmp_path / "model.onnx"
        model_path.write_bytes(b"not onnx")
    else:
        import onnx

        proto = onnx.load(str(exported / "model.onnx"))
        del proto.metadata_props[:]
        model_path = tmp_path / "model.onnx"
        onnx.save(proto, str(model_path))
    with pytest.raises(SystemExit):
        predict.main(["--checkpoint", str(model_path), "--workers", "0", str(tmp_path)])
    error = capsys.readouterr().err.strip()
    assert error.startswith(f"error: {model_path}") and "\n" not in error and "Traceback" not in error


def one_line_error(capsys):
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and error.startswith("error: ") and "Traceback" not in error, error
    return error


def test_an_earlier_export_is_replaced_whole_and_only_with_overwrite(exported, checkpoint, data_dir, tmp_path,
                                                                     capsys):
    """Issue 34: a timm export into a folder holding an earlier --format all export must not leave that export's
    model.onnx beside the new model.safetensors (two models answering from one folder)."""
    earlier = tmp_path / "exported"
    shutil.copytree(exported, earlier)
    before = {path.name: path.read_bytes() for path in earlier.iterdir()}
    argv = ["--checkpoint", str(checkpoint), "--format", "timm", "--output", str(earlier), "--data-dir",
            str(data_dir), "--verify-count", "2"]
    with pytest.raises(SystemExit) as exit_info:
        export.main(argv)
    assert exit_info.value.code == 2
    error = one_line_error(capsys)
    assert str(earlier) in error and "model.onnx" in error and "--overwrite" in error
    assert {path.name: path.read_bytes() for path in earlier.iterdir()} == before
    export.main(argv + ["--overwrite"])
    assert sorted(path.name for path in earlier.iterdir()) == ["config.json", "model.safetensors",
                                                               "unknown.safetensors"]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["exported"], "no staging folder left"
    # A folder holding anything else is not an export folder: never replaced, --overwrite or not.
    (earlier / "notes.txt").write_text("mine")
    with pytest.raises(SystemExit):
        export.main(argv + ["--overwrite"])
    error = one_line_error(capsys)
    assert str(earlier) in error and "notes.txt" in error
    assert (earlier / "notes.txt").read_text() == "mine"


def test_a_read_only_output_folder_is_refused(checkpoint, data_dir, tmp_path, capsys):
    output = tmp_path / "read_only"
    output.mkdir()
    output.chmod(0o555)
    try:
        with pytest.raises(SystemExit) as exit_info:
            export.main(["--checkpoint", str(checkpoint), "--format", "onnx", "--output", str(output),
                         "--data-dir", str(data_dir), "--verify-count", "2"])
        assert exit_info.value.code == 2
        assert f"--output {output}: {output} is read-only" in one_line_error(capsys)
        assert not list(output.iterdir())
    finally:
        output.chmod(0o755)
