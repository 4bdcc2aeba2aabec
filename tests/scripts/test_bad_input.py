"""Issues 11 and 21: every bad argument, path, file and checkpoint of every script is one line on stderr naming
the culprit, exit code 2, no traceback, and nothing written, or a listed rejection. Scripts run in-process through
their main(argv)."""
import hashlib
import json
import os
import pickle
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import timm
import torch
from PIL import Image

import analyze_data
import dataset
import evaluate
import export
import predict
import train
import visualize_training
from conftest import write_cleaned_dataset
from leafdisease.data import cleaning, sources
from leafdisease.deployment import inference
from leafdisease.utils import atomic_io
from leafdisease.utils.errors import UserError
from tiny_run import TINY_ARGS


def snapshot(folder):
    """Every file under `folder` with its size and modification time."""
    return {str(path): (path.stat().st_size, path.stat().st_mtime_ns)
            for path in sorted(folder.rglob("*")) if path.is_file()}


def expect_one_line_error(main, argv, capsys, culprit, watch):
    """main(argv) exits 2 with one 'error: ...' line naming `culprit`, and changes nothing under `watch`."""
    capsys.readouterr()
    before = snapshot(watch)
    with pytest.raises(SystemExit) as exit_info:
        main([str(arg) for arg in argv])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert culprit in lines[0], lines[0]
    assert "Traceback" not in err
    assert snapshot(watch) == before, "something was written"
    return lines[0]


@pytest.fixture(scope="module")
def finished_run(tiny_cleaned, tmp_path_factory):
    """A finished 1-epoch run of the tiny model (best.pth, last.pth, history.csv)."""
    output = tmp_path_factory.mktemp("bad_input_runs") / "done"
    train.run(train.parse_args(["--data-dir", str(tiny_cleaned), "--output", str(output), "--epochs", "1", *TINY_ARGS]))
    return output


@pytest.fixture(scope="module")
def foreign_files(finished_run, tmp_path_factory):
    """Files that are not train.py checkpoints, or are another model's."""
    folder = tmp_path_factory.mktemp("foreign")
    model = timm.create_model("test_efficientnet", num_classes=4)
    torch.save(model.state_dict(), folder / "state_dict.pth")
    torch.save([1, 2, 3], folder / "list.pth")
    (folder / "pickled.pth").write_bytes(pickle.dumps({"epoch": 1}))
    (folder / "text.pth").write_text("not a checkpoint")
    other = torch.load(finished_run / "best.pth", weights_only=True)
    other["model_name"] = "test_vit"
    other["state_dict"] = timm.create_model("test_vit", num_classes=4).state_dict()
    torch.save(other, folder / "other_model.pth")
    return folder


# ----------------------------------------------------------------------------------------------------
# train.py
# ----------------------------------------------------------------------------------------------------
TRAIN_OPTION_CASES = [
    (["--img-size", "0"], "--img-size 0"),
    (["--img-size", "-32"], "--img-size -32"),
    (["--img-size", "1"], "--img-size 1"),
    (["--img-size", "abc"], "--img-size"),
    (["--epochs", "0"], "--epochs 0"),
    (["--lr", "-1"], "--lr"),
    (["--lr", "nan"], "--lr nan"),
    (["--workers", "-1"], "--workers -1"),
    (["--batch-size", "0"], "--batch-size 0"),
    (["--batch-size", "-4"], "--batch-size -4"),
    (["--drop-rate", "1.5"], "--drop-rate"),
    (["--label-smoothing", "1"], "--label-smoothing"),
    (["--ema-decay", "1"], "--ema-decay"),
    (["--warmup-epochs", "-1"], "--warmup-epochs"),
    (["--min-lr", "1", "--lr", "0.1"], "--min-lr"),
    (["--few-threshold", "200"], "--few-threshold 200"),
    (["--seed", "-1"], "--seed -1"),
    (["--rotate-limit", "400"], "--rotate-limit 400"),
    (["--min-samples", "0"], "--min-samples 0"),
    (["--stage", "middle"], "--stage"),
    (["--no-such-option"], "--no-such-option"),
    (["--device", "gpu"], "--device gpu"),
    (["--class-weights", "no_such_weights.csv"], "--class-weights no_such_weights.csv"),
]


@pytest.mark.parametrize("argv, culprit", TRAIN_OPTION_CASES, ids=[" ".join(case[0]) for case in TRAIN_OPTION_CASES])
def test_train_bad_option(tiny_cleaned, tmp_path, capsys, argv, culprit):
    message = expect_one_line_error(train.main, ["--data-dir", tiny_cleaned, "--output", tmp_path / "out", *TINY_ARGS, *argv],
                                    capsys, culprit, tmp_path)
    assert not (tmp_path / "out").exists()
    if "must be" in message:
        assert any(word in message for word in ("integer", "number")), "the allowed range is named"


def test_train_missing_pretrained_file(tiny_cleaned, tmp_path, capsys):
    with_pretrained = [arg for arg in TINY_ARGS if arg != "--no-pretrained"]
    expect_one_line_error(train.main, ["--data-dir", tiny_cleaned, "--output", tmp_path / "out", *with_pretrained,
                                       "--pretrained-file", "no_such_weights.pth"],
                          capsys, "--pretrained-file no_such_weights.pth: no such file", tmp_path)


def test_train_pretrained_file_with_no_pretrained(tiny_cleaned, tmp_path, capsys, foreign_files):
    expect_one_line_error(train.main, ["--data-dir", tiny_cleaned, "--output", tmp_path / "out", *TINY_ARGS,
                                       "--pretrained-file", foreign_files / "state_dict.pth"],
                          capsys, "--pretrained-file", tmp_path)


def test_train_output_is_a_file(tiny_cleaned, tmp_path, capsys):
    (tmp_path / "out").write_text("a file")
    expect_one_line_error(train.main, ["--data-dir", tiny_cleaned, "--output", tmp_path / "out", *TINY_ARGS],
                          capsys, f"--output {tmp_path / 'out'}", tmp_path)


def test_train_output_under_a_file(tiny_cleaned, tmp_path, capsys):
    (tmp_path / "blocker").write_text("a file")
    expect_one_line_error(train.main, ["--data-dir", tiny_cleaned, "--output", tmp_path / "blocker" / "run",
                                       *TINY_ARGS], capsys, "--output", tmp_path)


def test_train_output_where_nothing_can_be_written(tiny_cleaned, tmp_path, capsys):
    # /proc refuses new files even to root, unlike a chmod-ed folder.
    expect_one_line_error(train.main, ["--data-dir", tiny_cleaned, "--output", "/proc/self/no_such/run", *TINY_ARGS],
                          capsys, "--output /proc/self/no_such/run", tmp_path)


def test_train_output_inside_the_data_dir(tmp_path, capsys):
    data_dir = write_cleaned_dataset(tmp_path / "cleaned", [6, 4])
    expect_one_line_error(train.main, ["--data-dir", data_dir, "--output", data_dir / "run", *TINY_ARGS],
                          capsys, "--data-dir", tmp_path)


def test_train_refuses_an_existing_run_without_resume(tiny_cleaned, finished_run, capsys):
    message = expect_one_line_error(train.main, ["--data-dir", tiny_cleaned, "--output", finished_run, "--epochs", "1",
                                                 *TINY_ARGS], capsys, f"--output {finished_run}", finished_run)
    assert "--resume auto" in message and "fresh --output" in message


def test_train_refuses_to_resume_with_other_epochs(tiny_cleaned, finished_run, capsys):
    message = expect_one_line_error(train.main, ["--data-dir", tiny_cleaned, "--output", finished_run, "--epochs", "3",
                                                 "--resume", "auto", *TINY_ARGS], capsys, "--epochs 3", finished_run)
    assert "1-epoch run" in message and "--init-from" in message


def test_train_resume_from_a_missing_file(tiny_cleaned, tmp_path, capsys):
    expect_one_line_error(train.main, ["--data-dir", tiny_cleaned, "--output", tmp_path / "out", *TINY_ARGS,
                                       "--resume", tmp_path / "nope.pth"], capsys, "--resume", tmp_path)


@pytest.mark.parametrize("name, explanation", [("state_dict.pth", "bare state_dict"), ("list.pth", "holds a list"),
                                               ("pickled.pth", "not a readable checkpoint"),
                                               ("text.pth", "not a readable checkpoint")])
@pytest.mark.parametrize("option", ["--resume", "--init-from"])
def test_train_foreign_checkpoint(tiny_cleaned, tmp_path, capsys, foreign_files, option, name, explanation):
    message = expect_one_line_error(train.main, ["--data-dir", tiny_cleaned, "--output", tmp_path / "out", *TINY_ARGS,
                                                 option, foreign_files / name], capsys, str(foreign_files / name),
                                    tmp_path)
    assert explanation in message and "expected a train.py checkpoint" in message


def test_train_init_from_another_models_weights(tiny_cleaned, tmp_path, capsys, foreign_files):
    message = expect_one_line_error(train.main, ["--data-dir", tiny_cleaned, "--output", tmp_path / "out", *TINY_ARGS,
                                                 "--init-from", foreign_files / "other_model.pth"],
                                    capsys, str(foreign_files / "other_model.pth"), tmp_path)
    assert "do not fit" in message


@pytest.mark.parametrize("rows, culprit", [("id,weight\n0,1\n1,1\n2,1\n3,1\n7,2\n", "class id 7"),
                                           ("id,weight\n0,1\n1,1\n2,1\n3,1\n3,2\n", "class id 3 listed twice"),
                                           ("id,weight\n0,1\n1,1\n2,1\n3,-1\n", "weight"),
                                           ("id,weight\n0,1\n1,1\n2,1\n", "no weight for class id 3")])
def test_train_bad_class_weights_csv(tiny_cleaned, tmp_path, capsys, rows, culprit):
    (tmp_path / "weights.csv").write_text(rows)
    message = expect_one_line_error(train.main, ["--data-dir", tiny_cleaned, "--output", tmp_path / "out", *TINY_ARGS,
                                                 "--class-weights", tmp_path / "weights.csv"], capsys, culprit, tmp_path)
    assert str(tmp_path / "weights.csv") in message


def test_train_single_class_dataset(tmp_path, capsys):
    data_dir = write_cleaned_dataset(tmp_path / "one_class", [10])
    expect_one_line_error(train.main, ["--data-dir", data_dir, "--output", tmp_path / "out", *TINY_ARGS],
                          capsys, "at least 2 classes", tmp_path)


def test_train_min_samples_leaving_one_class(tiny_cleaned, tmp_path, capsys):
    expect_one_line_error(train.main, ["--data-dir", tiny_cleaned, "--output", tmp_path / "out", *TINY_ARGS,
                                       "--min-samples", "13"], capsys, "--min-samples 13", tmp_path)


def test_train_missing_data_dir(tmp_path, capsys):
    expect_one_line_error(train.main, ["--data-dir", tmp_path / "nowhere", "--output", tmp_path / "out", *TINY_ARGS],
                          capsys, str(tmp_path / "nowhere"), tmp_path)


def test_srun_without_torchrun_is_refused(tiny_cleaned, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SLURM_NTASKS", "8")
    monkeypatch.delenv("SLURM_STEP_NUM_TASKS", raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    message = expect_one_line_error(train.main, ["--data-dir", tiny_cleaned, "--output", tmp_path / "out", *TINY_ARGS],
                                    capsys, "SLURM started 8 tasks", tmp_path)
    assert "torch.distributed.run" in message


# ----------------------------------------------------------------------------------------------------
# predict.py and evaluate.py
# ----------------------------------------------------------------------------------------------------
PREDICT_OPTION_CASES = [
    (["--top-k", "0"], "--top-k 0"),
    (["--batch-size", "0"], "--batch-size 0"),
    (["--workers", "-1"], "--workers -1"),
    (["--tau", "nan"], "--tau nan"),
    (["--tau-step", "0"], "--tau-step 0"),
    (["--format", "xml"], "--format"),
    (["--device", "tpu:x"], "--device tpu:x"),
]


@pytest.mark.parametrize("argv, culprit", PREDICT_OPTION_CASES, ids=[" ".join(case[0]) for case in PREDICT_OPTION_CASES])
def test_predict_bad_option(finished_run, tiny_cleaned, tmp_path, capsys, argv, culprit):
    expect_one_line_error(predict.main, ["--checkpoint", finished_run / "best.pth", tiny_cleaned / "images",
                                         "--output", tmp_path / "p.csv", *argv], capsys, culprit, tmp_path)


def test_predict_without_images(finished_run, tmp_path, capsys):
    expect_one_line_error(predict.main, ["--checkpoint", finished_run / "best.pth"], capsys, "image files or folders",
                          tmp_path)


def test_predict_missing_image_path(finished_run, tmp_path, capsys):
    expect_one_line_error(predict.main, ["--checkpoint", finished_run / "best.pth", tmp_path / "no_photos",
                                         "--output", tmp_path / "p.csv"], capsys, str(tmp_path / "no_photos"), tmp_path)


def test_predict_output_is_a_folder(finished_run, tiny_cleaned, tmp_path, capsys):
    (tmp_path / "folder").mkdir()
    expect_one_line_error(predict.main, ["--checkpoint", finished_run / "best.pth", tiny_cleaned / "images",
                                         "--output", tmp_path / "folder"], capsys, "--output", tmp_path)


def test_predict_output_under_a_file(finished_run, tiny_cleaned, tmp_path, capsys):
    (tmp_path / "blocker").write_text("a file")
    expect_one_line_error(predict.main, ["--checkpoint", finished_run / "best.pth", tiny_cleaned / "images",
                                         "--output", tmp_path / "blocker" / "p.csv"], capsys, "--output", tmp_path)


@pytest.mark.parametrize("name", ["state_dict.pth", "list.pth", "pickled.pth", "text.pth", "missing.pth"])
def test_predict_foreign_checkpoint(foreign_files, tiny_cleaned, tmp_path, capsys, name):
    expect_one_line_error(predict.main, ["--checkpoint", foreign_files / name, tiny_cleaned / "images",
                                         "--output", tmp_path / "p.csv"], capsys, str(foreign_files / name), tmp_path)


EVALUATE_OPTION_CASES = [
    (["--batch-size", "0"], "--batch-size 0"),
    (["--workers", "-2"], "--workers -2"),
    (["--tau", "inf"], "--tau inf"),
    (["--format", "xml"], "--format"),
]


@pytest.mark.parametrize("argv, culprit", EVALUATE_OPTION_CASES, ids=[" ".join(case[0]) for case in EVALUATE_OPTION_CASES])
def test_evaluate_bad_option(finished_run, tiny_cleaned, tmp_path, capsys, argv, culprit):
    expect_one_line_error(evaluate.main, ["--checkpoint", finished_run / "best.pth", tiny_cleaned,
                                          "--output", tmp_path / "report", *argv], capsys, culprit, tmp_path)


def test_evaluate_bad_paths(finished_run, foreign_files, tiny_cleaned, tmp_path, capsys):
    checkpoint = finished_run / "best.pth"
    expect_one_line_error(evaluate.main, ["--checkpoint", checkpoint, tmp_path / "no_data"], capsys,
                          str(tmp_path / "no_data"), tmp_path)
    expect_one_line_error(evaluate.main, ["--checkpoint", foreign_files / "list.pth", tiny_cleaned,
                                          "--output", tmp_path / "r"], capsys, str(foreign_files / "list.pth"), tmp_path)
    (tmp_path / "report").write_text("a file")
    expect_one_line_error(evaluate.main, ["--checkpoint", checkpoint, tiny_cleaned, "--output", tmp_path / "report"],
                          capsys, "--output", tmp_path)


def test_evaluate_output_inside_the_data(finished_run, tmp_path, capsys):
    data_dir = write_cleaned_dataset(tmp_path / "data", [6, 4])
    expect_one_line_error(evaluate.main, ["--checkpoint", finished_run / "best.pth", data_dir,
                                          "--output", data_dir / "report"], capsys, "--output", tmp_path)


# ----------------------------------------------------------------------------------------------------
# visualize_training.py
# ----------------------------------------------------------------------------------------------------
def test_visualize_bad_arguments(finished_run, foreign_files, tmp_path, capsys):
    best = finished_run / "best.pth"
    cases = [(["--checkpoint-dir", best, "--worst", "0"], "--worst 0"),
             (["--compare", best], "--compare"), (["--checkpoint-dir", best, "--labels", "a"], "--labels"),
             (["--checkpoint-dir", tmp_path / "nope"], str(tmp_path / "nope")),
             (["--checkpoint-dir", foreign_files / "list.pth"], str(foreign_files / "list.pth")),
             (["--checkpoint-dir", foreign_files / "state_dict.pth"], str(foreign_files / "state_dict.pth"))]
    for argv, culprit in cases:
        expect_one_line_error(visualize_training.main, argv, capsys, culprit, tmp_path)
    (tmp_path / "file").write_text("a file")
    expect_one_line_error(visualize_training.main, ["--checkpoint-dir", best, "--out", tmp_path / "file"],
                          capsys, "--out", tmp_path)


# ----------------------------------------------------------------------------------------------------
# analyze_data.py
# ----------------------------------------------------------------------------------------------------
def image_folder(root, class_counts):
    from PIL import Image

    for name, count in class_counts.items():
        (root / name).mkdir(parents=True)
        for index in range(count):
            Image.new("RGB", (24, 24), (index * 40 % 255, sum(map(ord, name)) % 255, 90)).save(root / name / f"{index}.png")
    return root


ANALYZE_OPTION_CASES = [
    (["--val-fraction", "0"], "--val-fraction 0"),
    (["--val-fraction", "1.5"], "--val-fraction 1.5"),
    (["--max-side", "4"], "--max-side 4"),
    (["--workers", "0"], "--workers 0"),
    (["--seed", "-1"], "--seed -1"),
    (["--demo-scale", "0"], "--demo-scale 0"),
    (["--few-threshold", "500"], "--few-threshold 500"),
    (["--demo"], "--demo"),
    (["--recipe", "nosuch"], "--recipe nosuch"),
]


@pytest.mark.parametrize("argv, culprit", ANALYZE_OPTION_CASES, ids=[" ".join(case[0]) for case in ANALYZE_OPTION_CASES])
def test_analyze_bad_option(tmp_path, capsys, argv, culprit):
    source = image_folder(tmp_path / "source", {"a": 3, "b": 3})
    expect_one_line_error(analyze_data.main, ["--source", source, "--out", tmp_path / "cleaned", *argv],
                          capsys, culprit, tmp_path)


def test_analyze_bad_paths(tmp_path, capsys):
    source = image_folder(tmp_path / "source", {"a": 3, "b": 3})
    expect_one_line_error(analyze_data.main, ["--source", tmp_path / "nowhere", "--out", tmp_path / "c"], capsys,
                          "--source", tmp_path)
    (tmp_path / "a_file").write_text("x")
    expect_one_line_error(analyze_data.main, ["--source", source, "--out", tmp_path / "a_file"], capsys, "--out",
                          tmp_path)
    expect_one_line_error(analyze_data.main, ["--source", source, "--out", source / "cleaned"], capsys,
                          "--out", tmp_path)


def test_analyze_single_class_source(tmp_path, capsys):
    source = image_folder(tmp_path / "source", {"only": 4})
    expect_one_line_error(analyze_data.main, ["--source", source, "--out", tmp_path / "cleaned", "--workers", "1"],
                          capsys, "at least 2 classes", tmp_path)
    assert not (tmp_path / "cleaned").exists() and not list(tmp_path.glob(".cleaned*"))


def test_analyze_one_class_left_after_cleaning(tmp_path, capsys):
    source = image_folder(tmp_path / "source", {"good": 4, "broken": 0})
    (source / "broken" / "0.jpg").write_bytes(b"")
    expect_one_line_error(analyze_data.main, ["--source", source, "--out", tmp_path / "cleaned", "--workers", "1"],
                          capsys, "no training image", tmp_path)


def test_analyze_says_empty_class_folders_on_screen(tmp_path, capsys):
    source = image_folder(tmp_path / "source", {"a": 3, "b": 3, "empty": 0})
    analyze_data.main(["--source", str(source), "--out", str(tmp_path / "cleaned"), "--workers", "1"])
    out = capsys.readouterr().out
    assert "1 class(es) of the source have no image" in out and "'empty'" in out


def test_class_weight_csv_may_list_classes_left_out_by_min_samples(tiny_cleaned, tmp_path):
    (tmp_path / "w.csv").write_text("id,weight\n0,1\n1,2\n2,3\n3,4\n")
    args = train.parse_args(["--data-dir", str(tiny_cleaned), "--output", str(tmp_path / "out"), *TINY_ARGS,
                             "--class-weights", str(tmp_path / "w.csv"), "--min-samples", "2"])
    excluded = pd.DataFrame({"id": [3]})
    assert list(train.resolve_class_weights(args, [0, 1, 2], [24, 12, 4], excluded)) == [1, 2, 3]
    assert os.path.exists(tmp_path / "w.csv")


# ----------------------------------------------------------------------------------------------------
# Issue 21: paths outside the dataset, a damaged export, a binary recipe, image formats, read-only files,
# resuming a finished run, strict JSON, a killed cleaning's staging folder
# ----------------------------------------------------------------------------------------------------
def write_png(path, seed):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(path, "PNG")
    return path


@pytest.fixture
def opened_by_cleaning(monkeypatch):
    """The files cleaning opens (it decode-checks in this process with workers=1)."""
    opened = []
    original = cleaning.inspect_image

    def recording_inspect_image(path):
        opened.append(os.path.abspath(path))
        return original(path)

    monkeypatch.setattr(cleaning, "inspect_image", recording_inspect_image)
    return opened


@pytest.mark.parametrize("layout", ["list", "aichallenger-list"])
def test_list_paths_leaving_the_dataset_are_rejected_unopened(tmp_path, opened_by_cleaning, layout):
    outside = write_png(tmp_path / "outside.png", seed=99)
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
    root = tmp_path / "data" / "ds"
    if layout == "list":  # paths relative to the list's folder, root
        list_path, up = root / "train.txt", "..\\..\\"
    else:  # paths relative to the training set folder, one level below root
        list_path, up = root / sources.AICHALLENGER_SPLITS["train"][0] / "train_list.txt", "..\\..\\..\\"
    inside = [write_png(list_path.parent / "images" / f"{index}.png", seed=index) for index in range(4)]
    lines = [f"images\\{index}.png {index % 2}" for index in range(4)]
    lines += [f"{up}outside.png 1", f"{up}etc\\passwd 0"]
    list_path.write_text("\n".join(lines) + "\n")

    summary = cleaning.clean_dataset(list_path if layout == "list" else root, tmp_path / "cleaned", fmt=layout,
                                     workers=1, progress=False)
    rejected = pd.read_csv(tmp_path / "cleaned" / "metadata" / "rejected.csv")
    assert dict(zip(rejected["path"], rejected["reason"])) == {
        str(outside): "outside_dataset", str(tmp_path / "etc" / "passwd"): "outside_dataset"}
    assert summary["totals"]["kept"] == 4 and summary["rejected_by_reason"] == {"outside_dataset": 2}
    assert sorted(opened_by_cleaning) == sorted(map(str, inside)), "only the dataset's own files are opened"


def test_a_list_entirely_outside_its_folder_is_one_line(tmp_path, capsys):
    for index in range(2):
        write_png(tmp_path / "elsewhere" / f"{index}.png", seed=index)
    list_path = tmp_path / "lists" / "train.txt"
    list_path.parent.mkdir()
    list_path.write_text("../elsewhere/0.png 0\n../elsewhere/1.png 1\n")
    message = expect_one_line_error(analyze_data.main, ["--source", list_path, "--out", tmp_path / "cleaned",
                                                        "--workers", "1"], capsys, str(list_path), tmp_path)
    assert "outside the dataset folder" in message


def test_a_csv_names_images_anywhere(tmp_path):
    outside = write_png(tmp_path / "outside.png", seed=1)
    write_png(tmp_path / "ds" / "inside.png", seed=2)
    (tmp_path / "ds" / "labels.csv").write_text(f"path,label\ninside.png,0\n{outside},1\n")
    source = sources.read_source(tmp_path / "ds" / "labels.csv")
    assert sorted(source.images["path"]) == sorted([str(tmp_path / "ds" / "inside.png"), str(outside)])
    assert source.rejected.empty


def test_a_validation_list_keeps_to_its_own_folder(tmp_path):
    for index in range(2):
        write_png(tmp_path / "train" / f"{index}.png", seed=index)
        write_png(tmp_path / "val" / f"{index}.png", seed=10 + index)
    (tmp_path / "train" / "list.txt").write_text("0.png 0\n1.png 1\n")
    (tmp_path / "val" / "list.txt").write_text("0.png 0\n1.png 1\n../train/0.png 0\n")
    source = sources.read_source(tmp_path / "train" / "list.txt", val_list=tmp_path / "val" / "list.txt")
    assert sorted(source.images["path"]) == sorted(str(tmp_path / split / f"{index}.png")
                                                   for split in ("train", "val") for index in range(2))
    assert list(source.rejected["reason"]) == ["outside_dataset"]
    assert list(source.rejected["path"]) == [str(tmp_path / "train" / "0.png")]


@pytest.fixture(scope="module")
def exported_folder(finished_run, tiny_cleaned, tmp_path_factory):
    output = tmp_path_factory.mktemp("export") / "exported"
    export.main(["--checkpoint", str(finished_run / "best.pth"), "--format", "timm", "--output", str(output),
                 "--data-dir", str(tiny_cleaned)])
    return output


def test_truncated_weights_in_an_export_folder_are_one_line(exported_folder, tiny_cleaned, tmp_path, capsys):
    damaged = tmp_path / "damaged"
    shutil.copytree(exported_folder, damaged)
    weights = damaged / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    for main, argv in ((predict.main, [tiny_cleaned / "images", "--output", tmp_path / "p.csv"]),
                       (evaluate.main, [tiny_cleaned, "--output", tmp_path / "report"])):
        message = expect_one_line_error(main, ["--checkpoint", damaged, "--workers", "0", *argv], capsys,
                                        str(damaged), tmp_path)
        assert "cannot load the exported model" in message


@pytest.mark.parametrize("option", ["--config", "--profile"])
def test_a_binary_recipe_is_one_line(tiny_cleaned, tmp_path, capsys, option):
    recipe = tmp_path / "recipe.yaml"
    Image.new("RGB", (32, 32), (200, 30, 30)).save(recipe, format="JPEG")
    config = [] if option == "--config" else ["--config", "recipes/fixed_stage2.yaml"]
    message = expect_one_line_error(train.main, [*config, option, recipe, "--data-dir", tiny_cleaned,
                                                 "--output", tmp_path / "out", *TINY_ARGS],
                                    capsys, str(recipe), tmp_path)
    assert "not text" in message


def test_transparent_png_trains_on_the_pixels_predict_sees(tmp_path):
    source = image_folder(tmp_path / "source", {"a": 2, "b": 2})
    rgba = np.random.default_rng(3).integers(0, 256, (24, 24, 4), dtype=np.uint8)
    rgba[:, :8, 3] = 0  # transparent, hiding colour
    rgba[:, 8:16, 3] = 100  # half transparent: blended onto black
    original = source / "a" / "transparent.png"
    Image.fromarray(rgba, "RGBA").save(original)
    cleaning.clean_dataset(source, tmp_path / "cleaned", workers=1, progress=False)
    metadata = dataset.load_metadata(tmp_path / "cleaned")
    digest = hashlib.sha256(original.read_bytes()).hexdigest()[:20]
    copy = next(p for p in pd.concat([metadata.train, metadata.val])["path"] if digest in p)
    assert copy.endswith(".png")
    assert np.array_equal(dataset.read_image_rgb(copy), cleaning.read_checked_rgb(original))


def test_one_format_rule_for_cleaning_predict_and_evaluate(finished_run, tmp_path, capsys):
    """An image is what cleaning's decode check accepts, by content: a GIF is one everywhere, whatever its place;
    a PNG named .txt is one; text named .jpg is none."""
    photos = image_folder(tmp_path / "photos", {"class_0": 2, "class_1": 2})
    Image.new("RGB", (24, 24), (10, 200, 10)).save(photos / "class_0" / "leaf.gif")
    write_png(photos / "class_1" / "scan.txt", seed=5)
    (photos / "class_1" / "notes.jpg").write_text("not an image")
    images, not_images = {"0.png", "1.png", "leaf.gif", "scan.txt"}, {"notes.jpg"}

    summary = cleaning.clean_dataset(photos, tmp_path / "cleaned", workers=1, progress=False)
    rejected = pd.read_csv(tmp_path / "cleaned" / "metadata" / "rejected.csv")
    assert summary["totals"]["kept"] == 6 and {os.path.basename(p) for p in rejected["path"]} == not_images

    predict.main(["--checkpoint", str(finished_run / "best.pth"), "--workers", "0", str(photos),
                  "--output", str(tmp_path / "folder.csv")])
    assert {os.path.basename(p) for p in pd.read_csv(tmp_path / "folder.csv")["path"]} == images
    assert {os.path.basename(p) for p in pd.read_csv(tmp_path / "folder.rejected.csv")["path"]} == not_images
    predict.main(["--checkpoint", str(finished_run / "best.pth"), "--workers", "0",
                  str(photos / "class_0" / "leaf.gif"), "--output", str(tmp_path / "named.csv")])
    assert len(pd.read_csv(tmp_path / "named.csv")) == 1

    evaluate.main(["--checkpoint", str(finished_run / "best.pth"), "--workers", "0", "--no-explain", str(photos),
                   "--output", str(tmp_path / "report")])
    assert json.loads((tmp_path / "report" / "metrics.json").read_text())["images"] == 6
    assert {os.path.basename(p) for p in pd.read_csv(tmp_path / "report" / "unreadable.csv")["path"]} == not_images


def never_scores(*args, **kwargs):
    raise AssertionError("validation was scored before the checkpoint's writability was checked")


def test_calibrate_tau_refuses_a_read_only_checkpoint_before_any_work(finished_run, tiny_cleaned, tmp_path, capsys,
                                                                     monkeypatch):
    monkeypatch.setattr(inference, "predict_scores", never_scores)
    folder = tmp_path / "run"
    folder.mkdir()
    checkpoint_path = folder / "best.pth"
    shutil.copy(finished_run / "best.pth", checkpoint_path)
    argv = ["--checkpoint", checkpoint_path, "--calibrate-tau", "--data-dir", tiny_cleaned, "--workers", "0"]
    # Permission bits, not os.access: root (as in CI) may write any file, but a read-only one is never replaced.
    checkpoint_path.chmod(0o444)
    message = expect_one_line_error(predict.main, argv, capsys, f"--checkpoint {checkpoint_path}", tmp_path)
    assert "read-only" in message
    checkpoint_path.chmod(0o644)
    folder.chmod(0o555)
    try:
        message = expect_one_line_error(predict.main, argv, capsys, f"{folder} is read-only", tmp_path)
    finally:
        folder.chmod(0o755)


def test_a_read_only_file_is_never_replaced(tmp_path):
    path = tmp_path / "kept.txt"
    path.write_text("precious")
    path.chmod(0o444)
    with pytest.raises(UserError, match="read-only"):
        atomic_io.write_text(path, "overwritten")
    assert path.read_text() == "precious" and [p.name for p in tmp_path.iterdir()] == ["kept.txt"]


@pytest.mark.parametrize("change, culprit", [("classes", "trained on 4 classes, this run has 2"),
                                             ("dataset", "different dataset"),
                                             ("stage", "is a 'full' stage run, this run is 'head'")])
def test_resume_refuses_a_finished_run_of_other_data_or_stage(finished_run, tiny_cleaned, tmp_path, capsys,
                                                             change, culprit):
    data_dir, extra = tiny_cleaned, []
    if change == "classes":
        data_dir = write_cleaned_dataset(tmp_path / "two_classes", [6, 4])
    elif change == "dataset":
        data_dir = write_cleaned_dataset(tmp_path / "other_data", [20, 12, 4, 1])
    else:
        extra = ["--stage", "head"]
    message = expect_one_line_error(train.main, ["--data-dir", data_dir, "--output", finished_run, "--epochs", "1",
                                                 "--resume", "auto", *TINY_ARGS, *extra], capsys, culprit, finished_run)
    assert str(finished_run / "last.pth") in message


def refuse_constant(name):
    raise ValueError(f"{name} is not JSON")


def test_every_json_is_strict(finished_run, tiny_cleaned, tmp_path):
    evaluate.main(["--checkpoint", str(finished_run / "best.pth"), "--workers", "0", "--no-explain", str(tiny_cleaned),
                   "--output", str(tmp_path / "report")])
    metrics = json.loads((tmp_path / "report" / "metrics.json").read_text(), parse_constant=refuse_constant)
    assert metrics["many_acc"] is None  # no class has more than 100 training images
    atomic_io.write_json(tmp_path / "values.json", {"nan": float("nan"), "inf": (float("inf"), -np.inf),
                                                    "float32": np.float32(0.5), "int64": np.int64(3), "path": tmp_path})
    assert json.loads((tmp_path / "values.json").read_text(), parse_constant=refuse_constant) == {
        "nan": None, "inf": [None, None], "float32": 0.5, "int64": 3, "path": str(tmp_path)}


def test_an_up_to_date_cleaning_sweeps_a_killed_runs_staging_folder(tmp_path, capsys):
    source = image_folder(tmp_path / "source", {"a": 3, "b": 3})
    cleaning.clean_dataset(source, tmp_path / "cleaned", workers=1, progress=False)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    abandoned = tmp_path / f".cleaned.staging-{dead.stdout.strip()}-x1y2"
    (abandoned / "images").mkdir(parents=True)
    (abandoned / "images" / "half_written.png").write_bytes(b"\x89PNG")
    assert cleaning.clean_dataset(source, tmp_path / "cleaned", workers=1, progress=False)["reused"] is True
    assert not abandoned.exists()
    assert f"removed {abandoned}" in capsys.readouterr().out


# ----------------------------------------------------------------------------------------------------
# Issue 34: a dangling link, a nonsense cache size, a cache smaller than training, a Windows drive path
# ----------------------------------------------------------------------------------------------------
def folder_with_links(root):
    """An ImageFolder whose class folders hold, besides their photos, a link to nowhere, a link loop and a link
    to a folder; {link name: its expected rejection reason}."""
    source = image_folder(root, {"a": 3, "b": 3})
    write_png(root.parent / "elsewhere" / "x.png", seed=50)
    (source / "a" / "dangling.jpg").symlink_to(root.parent / "nowhere" / "gone.jpg")
    (source / "b" / "loop.jpg").symlink_to(source / "b" / "loop.jpg")
    (source / "a" / "folder_link").symlink_to(root.parent / "elsewhere", target_is_directory=True)
    return source, {"dangling.jpg": "missing_file", "loop.jpg": "unreadable_file", "folder_link": "unreadable_file"}


def test_links_that_are_not_files_are_rejected_by_cleaning_not_dropped(tmp_path, capsys):
    source, expected = folder_with_links(tmp_path / "source")
    analyze_data.main(["--source", str(source), "--out", str(tmp_path / "cleaned"), "--workers", "1"])
    metadata_dir = tmp_path / "cleaned" / "metadata"
    rejected = pd.read_csv(metadata_dir / "rejected.csv", keep_default_na=False)
    reasons = {os.path.basename(path): reason for path, reason in zip(rejected["path"], rejected["reason"])}
    assert reasons == expected
    assert "gone.jpg" in rejected.set_index("reason").loc["missing_file", "detail"]
    listed = set(rejected["path"])
    for split in ("train", "val"):
        listed |= set(pd.read_csv(metadata_dir / f"{split}.csv")["path"])
    assert {os.path.basename(path) for path in listed} == {"0.png", "1.png", "2.png", *expected}
    assert len(listed) == 6 + len(expected), "every entry of the class folders is in train, val or rejected"


def test_links_that_are_not_files_are_rejected_by_predict(finished_run, tmp_path):
    source, expected = folder_with_links(tmp_path / "photos")
    output = tmp_path / "p.csv"
    predict.main(["--checkpoint", str(finished_run / "best.pth"), "--workers", "0", str(source),
                  "--output", str(output)])
    assert len(pd.read_csv(output)) == 6
    rejected = pd.read_csv(tmp_path / "p.rejected.csv")
    reasons = {os.path.basename(path): reason.split(":")[0] for path, reason in zip(rejected["path"], rejected["reason"])}
    assert reasons == expected


def test_analyze_uses_train_py_image_size_range(tmp_path, capsys):
    assert analyze_data.OPTION_RULES["img_size"] is train.OPTION_RULES["img_size"]
    source = image_folder(tmp_path / "source", {"a": 3, "b": 3})
    for size in ("1", "31", "5000"):
        expect_one_line_error(analyze_data.main, ["--source", source, "--out", tmp_path / "cleaned", "--max-side",
                                                  "auto", "--img-size", size], capsys, f"--img-size {size}", tmp_path)


def large_photo_folder(root, side=256):
    """Two classes of side x side JPEGs: large enough that --max-side auto caches them for a small model."""
    rng = np.random.default_rng(4)
    for name in ("a", "b"):
        (root / name).mkdir(parents=True)
        for index in range(4):
            pixels = rng.integers(0, 256, (side // 8, side // 8, 3), dtype=np.uint8).repeat(8, 0).repeat(8, 1)
            Image.fromarray(pixels).save(root / name / f"{index}.jpg", quality=90)
    return root


@pytest.fixture(scope="module")
def cached_for_32(tmp_path_factory):
    """(source, cleaned): 256 px photos cleaned with --max-side auto --img-size 32 (copies of 64 px)."""
    root = tmp_path_factory.mktemp("small_cache")
    source = large_photo_folder(root / "source")
    analyze_data.main(["--source", str(source), "--out", str(root / "cleaned"), "--max-side", "auto", "--img-size",
                       "32", "--workers", "1"])
    assert cleaning.read_summary(root / "cleaned")["cache"]["short_side"] == 46
    return source, root / "cleaned"


def test_train_refuses_a_cache_made_for_a_smaller_model(cached_for_32, tmp_path, capsys):
    source, cleaned = cached_for_32
    argv = ["--data-dir", cleaned, "--output", tmp_path / "run", *TINY_ARGS, "--img-size", "64", "--epochs", "1"]
    message = expect_one_line_error(train.main, argv, capsys, str(cleaned), tmp_path)
    assert "46 px" in message and "91 px" in message
    assert message.endswith(f"python analyze_data.py --source {source} --out {cleaned} --max-side auto "
                            f"--img-size 64")
    assert not (tmp_path / "run").exists()


def test_evaluate_and_calibration_refuse_a_cache_made_for_a_smaller_model(cached_for_32, finished_run, tmp_path,
                                                                          capsys):
    source, cleaned = cached_for_32
    checkpoint = torch.load(finished_run / "best.pth", map_location="cpu", weights_only=True)
    checkpoint["img_size"] = 64  # the tiny test model takes any input size
    larger = tmp_path / "larger.pth"
    torch.save(checkpoint, larger)
    command = f"python analyze_data.py --source {source} --out {cleaned} --max-side auto --img-size 64"
    message = expect_one_line_error(evaluate.main, ["--checkpoint", larger, cleaned, "--workers", "0",
                                                    "--output", tmp_path / "report"], capsys, str(cleaned), tmp_path)
    assert message.endswith(command)
    message = expect_one_line_error(predict.main, ["--checkpoint", larger, "--calibrate-tau", "--data-dir", cleaned,
                                                   "--workers", "0"], capsys, str(cleaned), tmp_path)
    assert message.endswith(command)


@pytest.mark.parametrize("written", ["C:\\photos\\leaf.jpg", "d:/photos/leaf.jpg", "\\\\nas\\photos\\leaf.jpg"])
def test_a_windows_drive_path_in_a_list_is_outside_the_dataset(tmp_path, written):
    for index in range(4):
        write_png(tmp_path / "ds" / "images" / f"{index}.png", seed=index)
    list_path = tmp_path / "ds" / "train.txt"
    list_path.write_text("".join(f"images\\{index}.png {index % 2}\n" for index in range(4)) + f"{written} 0\n")
    source = sources.read_source(list_path)
    assert list(source.rejected["reason"]) == ["outside_dataset"]
    assert list(source.rejected["path"]) == [written]
    assert len(source.images) == 4


def test_analyze_refuses_an_out_in_a_read_only_folder(tmp_path, capsys):
    """Cleaning stages its output beside --out and renames it in: the folder holding --out must be writable."""
    source = image_folder(tmp_path / "source", {"a": 3, "b": 3})
    parent = tmp_path / "locked"
    (parent / "cleaned").mkdir(parents=True)
    parent.chmod(0o555)
    try:
        expect_one_line_error(analyze_data.main, ["--source", source, "--out", parent / "cleaned", "--workers", "1"],
                              capsys, f"--out {parent / 'cleaned'}: {parent} is read-only", tmp_path)
    finally:
        parent.chmod(0o755)
