"""predict.py --min-confidence and --explain (Grad-CAM), and explain.py's maps."""
import cv2
import numpy as np
import pandas as pd
import pytest
import torch

import dataset
import export
import predict
import train
from conftest import write_cleaned_dataset
from leafdisease.data import hierarchy
from leafdisease.deployment import explain, inference
from leafdisease.training import checkpoint as checkpoint_format
from tiny_run import TINY_ARGS


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_cleaned_dataset(tmp_path_factory.mktemp("options_data"), [24, 12, 4])


@pytest.fixture(scope="module")
def checkpoint(data_dir, tmp_path_factory):
    output = tmp_path_factory.mktemp("options_run") / "full"
    train.run(train.parse_args(["--data-dir", str(data_dir), "--output", str(output), *TINY_ARGS, "--epochs", "2",
                                "--lr", "1e-2", "--warmup-epochs", "0"]))
    return output / "best.pth"


@pytest.fixture(scope="module")
def val_paths(data_dir):
    return dataset.load_metadata(data_dir).val["path"].tolist()


def run_predict(model_path, output, paths, *options):
    predict.main(["--checkpoint", str(model_path), "--workers", "0", "--top-k", "3", "--output", str(output),
                  *map(str, options), *map(str, paths)])
    return pd.read_csv(output, keep_default_na=False)


def test_min_confidence_labels_unsure_photos_unknown_and_keeps_top_k(checkpoint, val_paths, tmp_path, capsys):
    plain = run_predict(checkpoint, tmp_path / "plain.csv", val_paths)
    # Without --min-confidence the label is the top class, or 'unknown' for a photo the unknown-photo score flags.
    assert plain.columns.tolist()[:4] == ["path", "label", "unknown_score", "unknown"]
    # Between two of the printed probabilities, so their rounding in the CSV can't put an image on either side.
    ordered = np.sort(plain["pred_1_prob"].to_numpy())
    threshold = float(ordered[len(ordered) // 2 - 1:len(ordered) // 2 + 1].mean())
    table = run_predict(checkpoint, tmp_path / "sure.csv", val_paths, "--min-confidence", threshold)
    assert table.columns.tolist()[:2] == ["path", "label"]
    below = plain["pred_1_prob"] < threshold
    assert 0 < below.sum() < len(plain)
    assert (table.loc[below, "label"] == hierarchy.UNKNOWN_LABEL).all()
    known = ~below & ~plain["unknown"]
    assert (table.loc[known, "label"] == plain.loc[known, "pred_1_name"]).all()
    pd.testing.assert_frame_equal(table.drop(columns="label"), plain.drop(columns="label"))
    assert f"{int(below.sum())} of {len(plain)} image(s) below --min-confidence" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["--min-confidence", "1.5"], "--min-confidence 1.5: must be a number in [0, 1]"),
    (["--min-confidence", "0.5", "--format", "aichallenger"], "needs a class for every image"),
])
def test_min_confidence_bad_values(argv, message, checkpoint, val_paths, capsys):
    with pytest.raises(SystemExit) as exit_info:
        predict.main(["--checkpoint", str(checkpoint), *argv, val_paths[0]])
    assert exit_info.value.code != 0 and message in capsys.readouterr().err


def test_explain_writes_one_overlay_per_photo(checkpoint, val_paths, data_dir, tmp_path):
    # The same file name in two folders must give two overlays, not one overwritten.
    other = tmp_path / "other"
    other.mkdir()
    clash = other / data_dir.joinpath(val_paths[0]).name
    clash.write_bytes(data_dir.joinpath(val_paths[0]).read_bytes())
    paths = [data_dir / path for path in val_paths] + [clash]
    table = run_predict(checkpoint, tmp_path / "out.csv", paths, "--explain")
    written = table["gradcam"].tolist()
    assert len(set(written)) == len(paths)
    assert all(path.startswith(str(tmp_path / "out_gradcam")) for path in written)
    for path in written:
        image = cv2.imread(path)
        assert image.shape == (32, 64, 3)
        assert not np.array_equal(image[:, :32], image[:, 32:])  # the heat map is blended onto the right half
    crop = inference.eval_crop_transform(checkpoint_format.load(checkpoint))
    expected_left = crop(image=dataset.read_image_rgb(paths[0]))["image"]
    got_left = cv2.cvtColor(cv2.imread(written[0]), cv2.COLOR_BGR2RGB)[:, :32]
    assert np.abs(got_left.astype(int) - expected_left.astype(int)).max() <= 2  # PNG is lossless; resize rounding


def test_explain_refuses_onnx(checkpoint, val_paths, data_dir, tmp_path, capsys):
    export.main(["--checkpoint", str(checkpoint), "--format", "onnx", "--output", str(tmp_path),
                 "--data-dir", str(data_dir), "--verify-count", "2"])
    with pytest.raises(SystemExit):
        predict.main(["--checkpoint", str(tmp_path / "model.onnx"), "--explain", str(data_dir / val_paths[0])])
    error = capsys.readouterr().err.strip()
    assert "Grad-CAM needs the PyTorch weights" in error and "\n" not in error


class SpotModel(torch.nn.Module):
    """Class 0's logit is the mean red response: Grad-CAM for class 0 must light up where the red is."""

    feature_info = [{"module": "features", "num_chs": 1, "reduction": 1}]

    def __init__(self):
        super().__init__()
        self.features = torch.nn.Conv2d(3, 1, kernel_size=1, bias=False)
        self.head = torch.nn.Linear(1, 2)
        with torch.no_grad():
            self.features.weight.copy_(torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1))
            self.head.weight.copy_(torch.tensor([[1.0], [-1.0]]))
            self.head.bias.zero_()

    def forward(self, images):
        return self.head(torch.relu(self.features(images)).mean(dim=(2, 3)))


def test_grad_cam_points_at_the_evidence():
    images = torch.zeros(2, 3, 16, 16)
    images[0, 0, :6, :6] = 1.0     # red square top left
    images[1, 0, 10:, 9:] = 1.0    # red square bottom right
    cam = explain.GradCam(SpotModel())
    maps = cam.maps(images, [0, 0])
    cam.close()
    assert maps.shape == (2, 16, 16)
    assert maps[0, :6, :6].mean() > 0.9 and maps[0, 8:, 8:].max() < 0.1
    assert maps[1, 10:, 9:].mean() > 0.9 and maps[1, :6, :6].max() < 0.1
