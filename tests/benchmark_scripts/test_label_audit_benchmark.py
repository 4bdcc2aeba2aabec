"""benchmarks/label_audit.py on a tiny generated field13-like set: planted flips audited, the report written, the
retraining option trains noisy, reviewed and clean, results resume."""
import pandas as pd
from test_realdata_benchmark import write_image_folder

from benchmarks import label_audit as benchmark

NAMES = ("bean_rust", "bean_healthy", "citrus_canker", "citrus_healthy")


def test_flips_stay_in_or_leave_the_crop_and_keep_half_of_each_class():
    labels = [0] * 30 + [1] * 10 + [2] * 4 + [3] * 2
    for mode in benchmark.MODES:
        flipped = benchmark.flip_labels(labels, NAMES, 0.2, mode, seed=1)
        changed = [(a, b) for a, b in zip(labels, flipped) if a != b]
        assert len(changed) == round(0.2 * len(labels))
        same_crop = [NAMES[a].split("_")[0] == NAMES[b].split("_")[0] for a, b in changed]
        assert all(same_crop) if mode == "within" else not any(same_crop)
        for label, count in ((0, 30), (1, 10), (2, 4), (3, 2)):
            kept = sum(a == label and b == label for a, b in zip(labels, flipped))
            assert kept >= count / 2
    assert (benchmark.flip_labels(labels, NAMES, 0.2, "across", 1) == flipped).all()  # seeded
    assert (benchmark.flip_labels(labels, NAMES, 0.2, "across", 2) != flipped).any()


def test_the_audit_part_and_the_retraining_are_reported_and_resumed(tmp_path, tiny_profile, capsys):
    source = write_image_folder(tmp_path / "field", {"train": [16, 12, 8, 6], "val": [2, 2, 2, 2],
                                                     "test": [3, 3, 3, 3]})
    for index, name in enumerate(NAMES):
        for split in ("train", "val", "test"):
            (source / split / f"leaf_{index}").rename(source / split / name)
    argv = ["--source", str(source), "--seeds", "0", "--rates", "0.1", "--modes", "across", "--noleaf", "2",
            "--img-size", "32", "--folds", "3", "--model", "test_efficientnet", "--no-pretrained", "--retrain",
            "--profile", "screen", "--workers", "0", "--work", str(tmp_path / "work"), "--out", str(tmp_path / "out")]
    benchmark.main(argv)
    runs = pd.read_csv(tmp_path / "out" / "label_audit_32px.csv")
    flips = runs.loc[runs["kind"] == "flips"].iloc[0]
    assert flips["flips"] == 4 and 0 <= flips["recall_at_2k"] <= 1
    assert all(0 <= flips[f"retrain_{variant}"] <= 1 for variant in ("noisy", "reviewed", "clean"))
    noleaf = runs.loc[runs["kind"] == "noleaf"].iloc[0]
    assert noleaf["planted_noleaf"] == 2
    report = (tmp_path / "out" / "label_audit_32px.md").read_text()
    assert "python benchmarks/label_audit.py" in report and "| 10 % across |" in report
    assert "End to end, `python audit_labels.py" in report and "What fixing gives back: retraining" in report
    reviewed = pd.read_csv(tmp_path / "work" / "reviewed" / "flip10_across_seed0.csv", keep_default_na=False)
    assert set(reviewed["decision"]) <= {"keep", "relabel"}
    capsys.readouterr()
    benchmark.main(argv)  # everything done: nothing audited or trained again
    assert "recall @2k" not in capsys.readouterr().out.split("# The label audit")[0]
