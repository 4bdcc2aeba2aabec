"""benchmarks/ood.py on a tiny generated field13-like set: leave-one-crop-out runs, plain and with outlier exposure,
every method scored, resume."""
import shutil

import pandas as pd
import pytest
from test_realdata_benchmark import write_image_folder

from benchmarks import ood, ood_variants
from leafdisease.deployment import unknown


def test_a_crop_left_out_is_trained_plain_and_with_outlier_exposure_and_every_method_scored(tmp_path, tiny_profile,
                                                                                               capsys):
    source = write_image_folder(tmp_path / "field", {"train": [8, 6, 6, 4], "val": [2, 2, 2, 2], "test": [3, 3, 3, 3]})
    for index, name in enumerate(("bean_rust", "bean_healthy", "citrus_canker", "citrus_healthy")):
        for split in ("train", "val", "test"):
            (source / split / f"leaf_{index}").rename(source / split / name)
    chilli = write_image_folder(tmp_path / "chilli", {"train": [4, 4], "test": [3, 3]}, seed=5)
    argv = ["--source", str(source), "--chilli", str(chilli / "test"), "--crops", "citrus", "--profile", "screen",
            "--training", "plain", "outlier_exposure", "mixed_outlier_exposure", "background_class",
            "--outlier-leaves", str(chilli / "train"), "--outlier-scenes", "4",
            "--noleaf-count", "3", "--model", "test_efficientnet", "--no-pretrained", "--workers", "0",
            "--work", str(tmp_path / "work"), "--out", str(tmp_path / "out")]
    ood.main(argv)
    runs = pd.read_csv(tmp_path / "out" / "ood.csv")
    assert set(runs["crop_left_out"]) == {"citrus"}
    assert sorted(runs.groupby("training")["method"].apply(sorted).to_dict().items()) == [
        ("background_class", sorted(unknown.METHODS + ood.BACKGROUND_METHODS)),
        ("mixed_outlier_exposure", sorted(unknown.METHODS)), ("outlier_exposure", sorted(unknown.METHODS)),
        ("plain", sorted(unknown.METHODS))]
    exposed = tmp_path / "work" / "citrus" / "outlier_exposure"
    train_log = next(exposed.rglob("full/train.log")).read_text()
    assert "outlier exposure: 12 photos of none of the classes" in train_log  # 8 chilli leaves + 4 scenes
    assert "(cutmix)" not in train_log
    mixed = tmp_path / "work" / "citrus" / "mixed_outlier_exposure"
    assert "(cutmix)" in next(mixed.rglob("full/train.log")).read_text()
    with_background = tmp_path / "work" / "citrus" / "background_class" / "source"
    assert len(list((with_background / "train" / ood.BACKGROUND_CLASS).iterdir())) == 10  # the same 12, 1 in 5 in val
    assert len(list((with_background / "val" / ood.BACKGROUND_CLASS).iterdir())) == 2
    assert set(runs[runs.training == "background_class"]["known_photos"]) == {6}  # background is no known photo
    assert (runs["near_photos"] == 6).all() and (runs["chilli_photos"] == 6).all()
    assert (runs["noleaf_photos"] == 3 + 4 * len(ood.PACKAGE_PHOTOS)).all()
    assert runs[["near_auroc", "chilli_auroc", "noleaf_auroc", "known_coverage"]].apply(
        lambda column: column.between(0, 1)).all().all()
    report = (tmp_path / "out" / "ood.md").read_text()
    assert "| plain | knn (default) |" in report and "| outlier exposure | msp |" in report
    assert "| background class | background |" in report and "| background class | knn+background |" in report
    assert "python benchmarks/ood.py" in report
    [ended] = [line for line in report.splitlines() if line.startswith("- When the runs ended")]
    assert "plain: 20" in ended and "outlier exposure: 20" in ended and "as each ended" in ended, ended
    variants_argv = ["--source", str(source), "--chilli", str(chilli / "test"), "--crops", "citrus", "--profile",
                     "screen", "--no-pretrained", "--work", str(tmp_path / "work"), "--out", str(tmp_path / "out")]
    ood_variants.main(variants_argv)
    variants = pd.read_csv(tmp_path / "out" / "ood_variants.csv")
    assert set(variants["training"]) == {"plain", "outlier_exposure"}
    assert {"knn1", "knn5", "mahalanobis_normed", "vim", "knn_blocks", "knn_imagenet", "knn+msp"} <= set(
        variants["variant"])
    for training in ("plain", "outlier_exposure"):  # the same scores as ood.py's where the method is the same
        for method, variant in (("msp", "msp"), ("knn", "knn1"), ("mahalanobis", "mahalanobis")):
            expected = runs[(runs.training == training) & (runs.method == method)].iloc[0]
            got = variants[(variants.training == training) & (variants.variant == variant)].iloc[0]
            assert got["near_auroc"] == pytest.approx(expected["near_auroc"], abs=1e-6)
            assert got["noleaf_diagnosed"] == pytest.approx(expected["noleaf_diagnosed"], abs=1e-6)
    capsys.readouterr()
    ood.main(argv)  # every run finished: nothing is trained again
    assert "== " not in capsys.readouterr().out
    shutil.rmtree(tmp_path / "work")
    ood.main(argv)  # a new machine: the runs the report holds count as finished
    assert "== " not in capsys.readouterr().out
    assert len(pd.read_csv(tmp_path / "out" / "ood.csv")) == len(runs)
