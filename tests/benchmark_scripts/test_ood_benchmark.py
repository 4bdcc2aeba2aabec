"""benchmarks/ood.py on a tiny generated field13-like set: leave-one-crop-out runs, every method scored, resume."""
import pandas as pd
import pytest
from test_realdata_benchmark import write_image_folder

from benchmarks import ood, realdata
from leafdisease.deployment import unknown


@pytest.fixture()
def tiny_profile(monkeypatch):
    monkeypatch.setitem(realdata.PROFILES, "screen", realdata.Profile(
        img_size=32, baseline_img_size=32, epochs=2, head_epochs=1, warmup_epochs=0, crt_epochs=1))


def test_a_crop_left_out_is_trained_and_every_method_scored(tmp_path, tiny_profile, capsys):
    source = write_image_folder(tmp_path / "field", {"train": [8, 6, 6, 4], "val": [2, 2, 2, 2], "test": [3, 3, 3, 3]})
    for index, name in enumerate(("bean_rust", "bean_healthy", "citrus_canker", "citrus_healthy")):
        for split in ("train", "val", "test"):
            (source / split / f"leaf_{index}").rename(source / split / name)
    chilli = write_image_folder(tmp_path / "chilli", {"test": [3, 3]}, seed=5) / "test"
    argv = ["--source", str(source), "--chilli", str(chilli), "--crops", "citrus", "--profile", "screen",
            "--noleaf-count", "3", "--model", "test_efficientnet", "--no-pretrained", "--workers", "0",
            "--work", str(tmp_path / "work"), "--out", str(tmp_path / "out")]
    ood.main(argv)
    runs = pd.read_csv(tmp_path / "out" / "ood.csv")
    assert set(runs["crop_left_out"]) == {"citrus"}
    assert sorted(set(runs["method"])) == sorted(unknown.METHODS)
    assert (runs["near_photos"] == 6).all() and (runs["chilli_photos"] == 6).all()
    assert (runs["noleaf_photos"] == 3 + 4 * len(ood.PACKAGE_PHOTOS)).all()
    assert runs[["near_auroc", "chilli_auroc", "noleaf_auroc", "known_coverage"]].apply(
        lambda column: column.between(0, 1)).all().all()
    report = (tmp_path / "out" / "ood.md").read_text()
    assert "| knn (default) |" in report and "python benchmarks/ood.py" in report
    capsys.readouterr()
    ood.main(argv)  # every run finished: nothing is trained again
    assert "== without" not in capsys.readouterr().out
