"""Issue 24: the diagnosis page (app.py) answers as predict.py does for the same checkpoint, through its API, and
keeps serving after bad files."""
import os
import shutil
import socket
import struct
import subprocess
import sys
import time
import urllib.request
import zlib

import cv2
import gradio_client
import pandas as pd
import pytest
import torch

import app
import dataset
import predict
from conftest import ROOT
from leafdisease.data import hierarchy
from leafdisease.deployment import diagnosis
from leafdisease.utils.errors import UserError

MIN_CONFIDENCE = 0.4


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def png_claiming(path, width, height):
    """A PNG whose header claims width x height pixels and holds none: a decompression bomb's first bytes."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunks = chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunks)
    return path


@pytest.fixture(scope="module")
def photos(tiny_cleaned, tmp_path_factory):
    """(readable photos, unreadable files): three validation images, and a truncated JPEG, a text file named
    .jpg and a PNG claiming 20000 x 20000 pixels."""
    folder = tmp_path_factory.mktemp("app_photos")
    good = []
    for index, path in enumerate(dataset.load_metadata(tiny_cleaned).val["path"].iloc[::4][:3]):
        good.append(folder / f"leaf_{index}.png")
        shutil.copy(path, good[-1])
    ok, encoded = cv2.imencode(".jpg", cv2.imread(str(good[0])))
    truncated = folder / "truncated.jpg"
    truncated.write_bytes(encoded.tobytes()[: len(encoded) // 2])
    not_image = folder / "notes.jpg"
    not_image.write_text("not a photo")
    return good, [truncated, not_image, png_claiming(folder / "huge.png", 20000, 20000)]


@pytest.fixture(scope="module")
def app_log(tmp_path_factory):
    """Where the served app.py's console (stdout and stderr) goes."""
    return tmp_path_factory.mktemp("app_log") / "app.log"


@pytest.fixture(scope="module")
def served(trained_checkpoint, app_log, tmp_path_factory):
    """app.py serving the tiny checkpoint on a free loopback port, as a user starts it; its URL."""
    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GRADIO_TEMP_DIR": str(tmp_path_factory.mktemp("gradio"))}
    log = open(app_log, "w+")
    process = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--checkpoint", str(trained_checkpoint),
                                "--port", str(port), "--device", "cpu"], cwd=ROOT, env=env, stdout=log,
                               stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                urllib.request.urlopen(url, timeout=2)
                break
            except OSError:
                log.seek(0)
                assert process.poll() is None, f"app.py stopped: {log.read()}"
                assert time.monotonic() < deadline, f"app.py did not serve {url} in 180 s: {log.read()}"
                time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def diagnose(url, paths, min_confidence=MIN_CONFIDENCE):
    client = gradio_client.Client(url, verbose=False)
    return client.predict([gradio_client.handle_file(str(path)) for path in paths], min_confidence,
                          api_name="/diagnose")


def test_the_page_answers_as_predict_py_does_and_names_bad_files(served, trained_checkpoint, photos, tmp_path):
    good, bad = photos
    files = [good[0], bad[0], good[1], bad[1], good[2], bad[2]]
    answers = diagnose(served, files)

    output = tmp_path / "predictions.csv"
    predict.main(["--checkpoint", str(trained_checkpoint), "--workers", "0", "--min-confidence", str(MIN_CONFIDENCE),
                  "--output", str(output), *map(str, files)])
    expected = pd.read_csv(output, keep_default_na=False)
    rejected = pd.read_csv(tmp_path / "predictions.rejected.csv")

    assert [answer["file"] for answer in answers] == [path.name for path in files]
    problems = {answer["file"]: answer["problem"] for answer in answers if "problem" in answer}
    assert problems == {os.path.basename(path): reason for path, reason in zip(rejected["path"], rejected["reason"])}
    assert problems["huge.png"].startswith("corrupt: DecompressionBombError")
    assert problems["truncated.jpg"].startswith("truncated") and problems["notes.jpg"].startswith("not_image")
    diagnosed = [answer for answer in answers if "problem" not in answer]
    assert len(diagnosed) == len(expected) == 3
    for answer, (_, row) in zip(diagnosed, expected.iterrows()):
        assert answer["file"] == os.path.basename(row["path"])
        top = answer["top"]
        assert len(top) == 4  # the tiny model's 4 classes (the page shows up to diagnosis.TOP_K)
        assert [entry["id"] for entry in top] == [row[f"pred_{rank}_id"] for rank in range(1, 5)]
        assert [entry["name"] for entry in top] == [row[f"pred_{rank}_name"] for rank in range(1, 5)]
        assert [entry["probability"] for entry in top] == [row[f"pred_{rank}_prob"] for rank in range(1, 5)]
        [level] = answer["reading"]
        assert level["level"] == "class" and level["answer"] == row["label"]
        assert level["best_guess"] == row["pred_1_name"] and level["probability"] == row["pred_1_prob"]
        assert answer["heat_map"] is True
    # The server kept serving after the bad files.
    assert [answer["top"] for answer in diagnose(served, good[:1])] == [diagnosed[0]["top"]]


def test_a_file_of_another_type_gets_a_message_and_the_server_keeps_serving(served, app_log, photos, tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("not a photo")
    console_before = app_log.read_text()
    with pytest.raises(gradio_client.exceptions.AppError, match="Invalid file type"):
        diagnose(served, [text])
    assert diagnose(served, photos[0][:1])[0]["reading"][0]["level"] == "class"
    # Issue 34: app.py's console says so in one line, not with Gradio's 30-line traceback.
    console = app_log.read_text()[len(console_before):]
    assert "Traceback" not in console
    refused = [line for line in console.splitlines() if "notes.txt" in line]
    assert len(refused) == 1 and "Invalid file type" in refused[0], console


def test_reading_says_unknown_below_the_threshold_and_keeps_the_best_guess(trained_checkpoint):
    card = torch.load(trained_checkpoint, map_location="cpu", weights_only=True)
    probabilities = torch.tensor([0.1, 0.55, 0.3, 0.05])
    [sure] = diagnosis.reading(probabilities, card, 0.5)
    [unsure] = diagnosis.reading(probabilities, card, 0.6)
    assert sure == {"level": "class", "answer": card["class_names"][1], "best_guess": card["class_names"][1],
                    "probability": 0.55}
    assert unsure["answer"] == hierarchy.UNKNOWN_LABEL and unsure["best_guess"] == card["class_names"][1]


def test_reading_with_a_hierarchy_answers_at_the_level_the_model_is_sure_of():
    """Two severities split the probability: neither class reaches 0.5, their disease does (0.7), the crop more."""
    names = ["Tomato_bacterial_spot_general", "Tomato_bacterial_spot_serious", "Tomato_healthy", "Apple_healthy"]
    card = {"class_names": names,
            "hierarchy": hierarchy.for_classes(names)[0].to_record()}
    levels = diagnosis.reading(torch.tensor([0.35, 0.35, 0.2, 0.1]), card, 0.5)
    assert [level["level"] for level in levels] == ["diagnosis", "crop", "disease", "class"]
    assert levels[0] == {"level": "diagnosis", "answer": "Tomato bacterial spot, severity uncertain",
                         "answered_at": "disease", "best_guess": "Tomato bacterial spot", "probability": 0.7}
    assert (levels[1]["answer"], levels[1]["probability"]) == ("Tomato", 0.9)
    assert (levels[2]["answer"], levels[2]["probability"]) == ("Tomato bacterial spot", 0.7)
    assert levels[3]["answer"] == hierarchy.UNKNOWN_LABEL and levels[3]["best_guess"] == names[0]
    # Below every level: unknown, the best guess is the crop that came closest.
    unsure = diagnosis.reading(torch.tensor([0.35, 0.35, 0.2, 0.1]), card, 0.95)[0]
    assert (unsure["answer"], unsure["best_guess"], unsure["probability"]) == (hierarchy.UNKNOWN_LABEL, "Tomato", 0.9)
    markdown = app.reading_markdown(levels, 0.5)
    assert "### Diagnosis: Tomato bacterial spot, severity uncertain" in markdown
    assert "### Class (with severity): not sure" in markdown


def test_model_facts_come_from_the_checkpoint(trained_checkpoint):
    card = torch.load(trained_checkpoint, map_location="cpu", weights_only=True)
    facts = diagnosis.model_facts(card)
    best = next(row for row in card["history"] if row["epoch"] == card["best_epoch"])
    assert facts["model"] == "test_efficientnet" and facts["classes"] == 4 and facts["image_size"] == 32
    assert facts["balanced_accuracy"] == best["val_balanced_acc"] and facts["tau"] is None
    assert facts["trained"] == card["trained_at"][:10]
    # An export's card keeps the selection metric but no history; a checkpoint from before dates were kept has none.
    export_card = {key: value for key, value in card.items() if key not in ("history", "trained_at")}
    assert diagnosis.model_facts(export_card)["balanced_accuracy"] == card["best_metric"]
    assert diagnosis.model_facts(export_card)["trained"] is None


def test_bad_options_are_one_line_errors(tmp_path, trained_checkpoint, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no checkpoints/ here
    with pytest.raises(UserError, match="best.pth: no such file or folder; train one with `bash train_fixed.sh`"):
        app.parse_args([])
    with pytest.raises(UserError, match="--checkpoint .*missing.pth: no such file or folder$"):
        app.parse_args(["--checkpoint", str(tmp_path / "missing.pth")])
    with pytest.raises(UserError, match="--port 70000: must be an integer in"):
        app.parse_args(["--checkpoint", str(trained_checkpoint), "--port", "70000"])
    with pytest.raises(UserError, match="--min-confidence 1.5"):
        app.parse_args(["--checkpoint", str(trained_checkpoint), "--min-confidence", "1.5"])


def test_without_grad_cam_the_page_still_shows_the_crop_the_model_saw(trained_checkpoint, photos):
    """An ONNX model has no PyTorch weights for Grad-CAM: photos get their crop and answers but no heat map."""
    diagnoser = diagnosis.Diagnoser(trained_checkpoint, torch.device("cpu"))
    diagnoser.explains = False
    good, bad = photos
    shown = diagnoser.diagnose([good[0], bad[0]], ["a.png", "b.jpg"])
    size = diagnoser.card["img_size"]
    assert shown[0].crop.shape == (size, size, 3) and shown[0].overlay is None and not shown[0].problem
    assert shown[1].problem.startswith("truncated") and shown[1].crop is None
    answers = diagnosis.answers(shown, diagnoser.card, 0.0)
    assert answers[0]["heat_map"] is False and answers[0]["reading"][0]["answer"] != hierarchy.UNKNOWN_LABEL
    assert answers[1] == {"file": "b.jpg", "problem": shown[1].problem}


def test_a_port_in_use_is_one_line_naming_the_port_option(trained_checkpoint, capsys):
    """Issue 34: not Gradio's advice (GRADIO_SERVER_PORT, launch()'s server_port), but app.py's own --port."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(SystemExit) as exit_info:
            app.main(["--checkpoint", str(trained_checkpoint), "--port", str(port), "--device", "cpu"])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and error.startswith(f"error: --port {port}: ") and "in use" in error, error
    assert "GRADIO_SERVER_PORT" not in error and "server_port" not in error and "Traceback" not in error
