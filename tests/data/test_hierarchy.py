"""Issue 22: the label hierarchy (crop, disease, severity): parsing, level metrics, level-aware answers, the
hierarchy loss, and the hierarchy carried from cleaning through training to predict.py, evaluate.py and exports."""
import json
import re

import numpy as np
import pandas as pd
import pytest
import torch
from test_cleaning import write_image, write_imagefolder

import analyze_data
import dataset
import evaluate
import export
import predict
import train
import visualize_training
from conftest import write_cleaned_dataset
from dataset import load_metadata
from leafdisease.data import hierarchy
from leafdisease.data.aichallenger_classes import AICHALLENGER_CLASS_NAMES
from leafdisease.data.cleaning import clean_dataset
from leafdisease.training import checkpoint as checkpoint_format
from leafdisease.training import losses
from leafdisease.utils.errors import UserError
from tiny_run import TINY_ARGS

FIELD13 = ["bean_angular_leaf_spot", "bean_healthy", "bean_rust", "blackgram_anthracnose", "blackgram_healthy",
           "blackgram_leaf_crinckle", "blackgram_powdery_mildew", "blackgram_yellow_mosaic", "citrus_black_spot",
           "citrus_canker", "citrus_greening", "citrus_healthy", "citrus_melanose"]


# ----------------------------------------------------------------------------------------------------
# Where the hierarchy comes from
# ----------------------------------------------------------------------------------------------------
def test_official_table_for_the_aichallenger_names():
    levels, note = hierarchy.for_classes(AICHALLENGER_CLASS_NAMES)
    assert note == "the official AI Challenger 2018 table"
    crops, crop_of = levels.groups("crop")
    diseases, disease_of = levels.groups("disease")
    assert len(crops) == 10 and len(diseases) == 37 and levels.has_severity
    # The seed's two 1-photo classes are the two severities of one disease.
    assert AICHALLENGER_CLASS_NAMES[44] == "Tomato_bacterial_spot_general"
    assert disease_of[44] == disease_of[45] and diseases[disease_of[44]] == "Tomato bacterial spot"
    assert (levels.severities[44], levels.severities[45]) == ("general", "serious")
    # Apple scab and Pepper scab are two diseases; healthy is a disease without severity.
    assert disease_of[1] != disease_of[31] and levels.diseases[0] == "healthy" and levels.severities[0] == ""
    assert levels.training_levels() == ["disease", "crop"]
    # A subset (train.py --min-samples) keeps each class's place.
    subset = levels.subset(list(AICHALLENGER_CLASS_NAMES[40:46]))
    assert subset.crops == ("Strawberry",) + ("Tomato",) * 5


def test_plantvillage_names_parse_at_the_first_triple_underscore():
    names = ["Apple___Apple_scab", "Apple___healthy", "Corn_(maize)___Common_rust_",
             "Orange___Haunglongbing_(Citrus_greening)"]
    levels, note = hierarchy.for_classes(names)
    assert note == "parsed from the class names"
    assert levels.crops == ("Apple", "Apple", "Corn_(maize)", "Orange")
    assert levels.diseases[1] == "healthy" and not levels.has_severity
    assert levels.groups("crop")[0] == ["Apple", "Corn (maize)", "Orange"]  # a crop of one class is fine here
    assert hierarchy.for_classes(names + ["Tomato_healthy"])[0] is None


def test_crop_disease_names_parse_with_a_shared_crop_prefix():
    levels, _ = hierarchy.for_classes(FIELD13)
    assert levels.groups("crop")[0] == ["bean", "blackgram", "citrus"]
    assert levels.diseases[:3] == ("angular_leaf_spot", "healthy", "rust")
    assert levels.training_levels() == ["crop"]  # no severity: each disease is one class


@pytest.mark.parametrize("names, named", [
    (["bean_rust", "bean_healthy", "citrus_canker", "citrus_healthy", "mango"], "'mango' does not parse"),
    (["bean_rust", "bean_healthy", "citrus_canker"], "no other class shares its prefix 'citrus'"),
    (["class_0", "class_1", "class_2"], "one crop, no crop level"),
    (["bean_rust", "bean_"], "'bean_' does not parse"),
])
def test_names_that_do_not_all_parse_leave_the_dataset_flat(names, named):
    levels, note = hierarchy.for_classes(names)
    assert levels is None and named in note and hierarchy.HIERARCHY_FILE in note


def write_hierarchy_csv(folder, rows, header="class,crop,disease,severity"):
    (folder / hierarchy.HIERARCHY_FILE).write_text("\n".join([header] + rows) + "\n")
    return folder / hierarchy.HIERARCHY_FILE


def test_hierarchy_csv_beside_the_source_overrides_names_and_the_official_table(tmp_path):
    names = ["Apple_healthy", "Apple_scab_general", "Apple_scab_serious"]
    write_hierarchy_csv(tmp_path, ["Apple_healthy,Malus,healthy,", "Apple_scab_general,Malus,scab,mild",
                                   "Apple_scab_serious,Malus,scab,severe", "unused_class,Pear,rust,"])
    levels, note = hierarchy.for_classes(names, tmp_path, declared_names=names + ["unused_class"])
    assert str(tmp_path / hierarchy.HIERARCHY_FILE) in note
    assert levels.class_names == tuple(names) and set(levels.crops) == {"Malus"}
    assert levels.severities == ("", "mild", "severe")
    # The severity column is optional.
    write_hierarchy_csv(tmp_path, ["Apple_healthy,Malus,healthy", "Apple_scab_general,Malus,scab",
                                   "Apple_scab_serious,Malus,scab"], header="class,crop,disease")
    assert hierarchy.for_classes(names, tmp_path)[0].severities == ("", "", "")


@pytest.mark.parametrize("rows, message", [
    (["a_x,A,x,", "a_y,A,y,", "b_z,B,z,", "a_x,B,x,"], "line 5: class 'a_x' listed again as B/x (line 2: A/x)"),
    (["a_x,A,x,", "a_y,A,y,", "b_z,B,z,", "a_x,A,x,"], "line 5: class 'a_x' listed twice"),
    (["a_x,A,x,", "a_y,A,y,"], "class 'b_z' is not listed"),
    (["a_x,A,x,", "a_y,A,y,", "b_z,B,z,", "c_w,C,w,"], "line 5: 'c_w' is not a class of this dataset"),
    (["a_x,A,x,", "a_y,,y,", "b_z,B,z,"], "line 3: empty crop"),
    # Issue 34: a ragged row names the fields it lacks, not "empty".
    (["a_x,A,x,", "a_y", "b_z,B,z,"], "line 3: no crop, disease (1 of the header's 4 fields"),
    (["a_x,A,x,", "a_y,A", "b_z,B,z,"], "line 3: no disease (2 of the header's 4 fields"),
    (["a_x,A,x,", "", "a_y,A,y,,mild", "b_z,B,z,"], "line 4: 5 fields, the header has 4"),
])
def test_a_wrong_hierarchy_csv_is_a_one_line_error_naming_the_line(tmp_path, rows, message):
    path = write_hierarchy_csv(tmp_path, rows)
    with pytest.raises(UserError, match="^" + re.escape(f"{path}: ")) as error:
        hierarchy.for_classes(["a_x", "a_y", "b_z"], tmp_path)
    assert message in str(error.value)


def test_hierarchy_csv_columns_are_checked(tmp_path):
    write_hierarchy_csv(tmp_path, ["a_x,A,x"], header="class,crop,diesase")
    with pytest.raises(UserError, match="no column disease; expected columns class,crop,disease"):
        hierarchy.for_classes(["a_x"], tmp_path)


def test_cleaning_records_the_hierarchy_and_a_later_hierarchy_csv_updates_it_without_rechecking(tmp_path):
    source = write_imagefolder(tmp_path / "src", {"bean_rust": 2, "bean_healthy": 2, "citrus_canker": 2,
                                                  "citrus_healthy": 2})
    out = tmp_path / "cleaned"
    summary = clean_dataset(source, out, progress=False)
    assert summary["hierarchy"] == {"how": "parsed from the class names", "crops": 2, "diseases": 4,
                                    "severities": False}
    written = pd.read_csv(out / "metadata" / hierarchy.HIERARCHY_FILE, keep_default_na=False)
    assert written.columns.tolist() == list(hierarchy.CSV_COLUMNS)
    assert written.set_index("class").loc["citrus_canker", "crop"] == "citrus"
    # A hierarchy.csv added later: no image is checked again, the metadata follow it.
    write_hierarchy_csv(source, ["bean_rust,bean,rust,serious", "bean_healthy,bean,healthy,",
                                 "citrus_canker,citrus,canker,", "citrus_healthy,citrus,healthy,"])
    summary = clean_dataset(source, out, progress=False)
    assert summary["reused"] and summary["hierarchy"]["severities"] is True
    assert load_metadata(out).hierarchy.as_table()["bean_rust"] == ("bean", "rust", "serious")
    assert json.loads((out / "metadata" / "summary.json").read_text())["hierarchy"]["how"].startswith("from ")
    # A wrong one stops cleaning before any image is opened, and leaves the output as it was.
    write_hierarchy_csv(source, ["bean_rust,bean,rust,"])
    with pytest.raises(UserError, match="is not listed"):
        clean_dataset(source, out, progress=False)
    assert (out / "metadata" / hierarchy.HIERARCHY_FILE).is_file()


def test_analyze_data_prints_the_hierarchy_once_to_check(tmp_path, capsys):
    source = write_imagefolder(tmp_path / "src", {"bean_rust": 2, "bean_healthy": 2, "citrus_canker": 2,
                                                  "citrus_healthy": 2})
    analyze_data.main(["--source", str(source), "--out", str(tmp_path / "cleaned"), "--workers", "1"])
    out = capsys.readouterr().out
    assert "Label hierarchy (parsed from the class names): 2 crops, 4 diseases, 4 classes\n" in out
    assert "  bean (2 classes): healthy; rust\n" in out and out.count("Label hierarchy") == 1


def test_a_flat_dataset_writes_no_hierarchy(tmp_path):
    source = write_imagefolder(tmp_path / "src", {"rust": 2, "healthy": 2})
    summary = clean_dataset(source, tmp_path / "cleaned", progress=False)
    assert summary["hierarchy"]["how"].startswith("none")
    assert not (tmp_path / "cleaned" / "metadata" / hierarchy.HIERARCHY_FILE).exists()
    write_image(source / "rust" / "more.png", seed=50)  # stays flat on the next cleaning too
    assert clean_dataset(source, tmp_path / "cleaned", progress=False)["hierarchy"]["how"].startswith("none")


# ----------------------------------------------------------------------------------------------------
# Metrics at each level, on hand-made confusion matrices
# ----------------------------------------------------------------------------------------------------
# Classes: 0 A scab general, 1 A scab serious, 2 A healthy, 3 B rust.
HANDMADE = hierarchy.Hierarchy(("A_scab_general", "A_scab_serious", "A_healthy", "B_rust"), ("A", "A", "A", "B"),
                               ("scab", "scab", "healthy", "rust"), ("general", "serious", "", ""))


def test_level_metrics_split_errors_by_the_level_where_they_go_wrong():
    confusion = np.array([[5, 3, 1, 1],    # 5 right, 3 severity only, 1 another disease of A, 1 another crop
                          [0, 0, 0, 0],    # no image: changes nothing
                          [0, 2, 6, 2],    # 2 another disease of A, 2 another crop
                          [0, 0, 0, 10]])
    result = hierarchy.level_metrics(confusion, HANDMADE)
    assert result == pytest.approx({"crop_acc": 27 / 30, "disease_acc": 24 / 30, "err_severity": 3 / 30,
                                    "err_disease": 3 / 30, "err_crop": 3 / 30})
    assert result["err_severity"] + result["err_disease"] + result["err_crop"] == pytest.approx(1 - 21 / 30)
    table = hierarchy.level_table(confusion, HANDMADE).set_index("level")
    assert table["groups"].tolist() == [4, 3, 2]
    assert table["accuracy"].tolist() == pytest.approx([21 / 30, 24 / 30, 27 / 30])
    assert table.loc["class", "balanced_acc"] == pytest.approx((5 / 10 + 6 / 10 + 1) / 3)
    assert table.loc["disease", "balanced_acc"] == pytest.approx((8 / 10 + 6 / 10 + 1) / 3)
    assert table.loc["crop", "balanced_acc"] == pytest.approx((17 / 20 + 1) / 2)
    assert table["errors"].tolist() == pytest.approx([3 / 30, 3 / 30, 3 / 30])
    assert table.loc["class", "error_kind"] == "severity only"
    assert all(np.isnan(value) for value in hierarchy.level_metrics(np.zeros((4, 4)), HANDMADE).values())


def test_confusion_matrix_order_groups_classes_by_crop():
    levels = hierarchy.Hierarchy(("a1", "b1", "a2", "c1", "b2"), ("A", "B", "A", "C", "B"),
                                 ("x", "y", "z", "w", "y"), ("", "general", "", "", "serious"))
    order, blocks = hierarchy.crop_blocks(levels)
    assert order.tolist() == [0, 2, 1, 4, 3]
    assert blocks == [("A", 0, 2), ("B", 2, 4), ("C", 4, 5)]


# ----------------------------------------------------------------------------------------------------
# Answers at the level the model is sure of, on hand-made probabilities
# ----------------------------------------------------------------------------------------------------
def test_level_answer_falls_back_to_the_disease_then_the_crop_then_unknown():
    names = HANDMADE.class_names
    cases = [([0.70, 0.10, 0.10, 0.10], ("class", "A_scab_general", "A_scab_general", 0.70)),
             ([0.35, 0.30, 0.05, 0.30], ("disease", "A scab", "A scab, severity uncertain", 0.65)),
             ([0.20, 0.10, 0.30, 0.40], ("crop", "A", "A, disease uncertain", 0.60)),
             ([0.25, 0.05, 0.21, 0.49], ("crop", "A", "A, disease uncertain", 0.51)),
             ([0.30, 0.00, 0.15, 0.55], ("unknown", "", "unknown", 0.55))]  # 0.55 is the best crop: B
    for probabilities, expected in cases[:4]:
        answer = hierarchy.level_answer(np.array(probabilities), names, HANDMADE, min_confidence=0.5)
        assert (answer.level, answer.name, answer.label) == expected[:3]
        assert answer.probability == pytest.approx(expected[3])
    answer = hierarchy.level_answer(np.array(cases[4][0]), names, HANDMADE, min_confidence=0.6)
    assert (answer.level, answer.label, answer.probability) == ("unknown", "unknown", pytest.approx(0.55))
    # min_confidence 0 always names the top class; several photos at once give the same answers.
    assert hierarchy.level_answer(np.array(cases[2][0]), names, HANDMADE).level == "class"
    batch = hierarchy.level_answers(np.array([case[0] for case in cases[:4]]), names, HANDMADE, 0.5)
    assert [answer.level for answer in batch] == ["class", "disease", "crop", "crop"]


def test_level_answer_without_a_hierarchy_is_the_top_class_or_unknown():
    names = ["rust", "healthy"]
    assert hierarchy.level_answer(np.array([0.6, 0.4]), names, None, 0.5).label == "rust"
    unsure = hierarchy.level_answer(np.array([0.45, 0.55]), names, None, 0.6)
    assert (unsure.level, unsure.label, unsure.probability) == ("unknown", "unknown", pytest.approx(0.55))


def test_group_probabilities_and_level_coverage():
    probabilities = np.array([[0.70, 0.10, 0.10, 0.10],    # class 0, right
                              [0.35, 0.30, 0.05, 0.30],    # disease A scab (true 1): right
                              [0.20, 0.10, 0.30, 0.40],    # crop A (true 3): wrong
                              [0.05, 0.05, 0.05, 0.85]])   # class 3, right
    targets = np.array([0, 1, 3, 3])
    groups = hierarchy.level_probabilities(probabilities, HANDMADE)
    assert groups["disease"][1].tolist() == pytest.approx([0.65, 0.05, 0.30])
    assert groups["crop"][2].tolist() == pytest.approx([0.60, 0.40])
    columns = hierarchy.top_group_columns(probabilities, HANDMADE)
    assert columns["disease"].tolist() == ["A scab", "A scab", "B rust", "B rust"]
    assert columns["crop_prob"].tolist() == pytest.approx([0.9, 0.7, 0.6, 0.85])
    rows = hierarchy.coverage_by_level(probabilities, targets, HANDMADE, (0.0, 0.5, 0.88))
    assert rows[0] == pytest.approx({"min_confidence": 0.0, "answered": 1.0, "answered_class": 1.0,
                                     "answered_disease": 0.0, "answered_crop": 0.0, "answered_correct": 0.75})
    assert rows[1] == pytest.approx({"min_confidence": 0.5, "answered": 1.0, "answered_class": 0.5,
                                     "answered_disease": 0.25, "answered_crop": 0.25, "answered_correct": 0.75})
    assert rows[2]["answered"] == 0.25 and rows[2]["answered_crop"] == 0.25  # only photo 0's crop reaches 0.88


# ----------------------------------------------------------------------------------------------------
# The hierarchy loss
# ----------------------------------------------------------------------------------------------------
def test_hierarchy_loss_adds_group_cross_entropy_from_the_class_logits():
    logits = torch.tensor([[2.0, 0.5, -1.0, 0.0], [0.1, 0.2, 0.3, 0.4]], requires_grad=True)
    targets = torch.tensor([0, 3])
    base = torch.nn.CrossEntropyLoss()
    _, disease = HANDMADE.groups("disease")
    _, crop = HANDMADE.groups("crop")
    criterion = losses.HierarchyLoss(base, [torch.as_tensor(disease), torch.as_tensor(crop)], weight=0.5)
    probabilities = torch.softmax(logits, dim=1)
    by_hand = base(logits, targets) + 0.5 * (
        -torch.log(torch.stack([probabilities[0, :2].sum(), probabilities[1, 3]])).mean()
        - torch.log(torch.stack([probabilities[0, :3].sum(), probabilities[1, 3]])).mean())
    assert criterion(logits, targets).item() == pytest.approx(by_hand.item(), rel=1e-6)
    # A photo of one severity: cross-entropy pushes its sibling severity down, the disease term pulls it up (and
    # the class of another disease down), so the sibling learns from the photo.
    def no_loss(logits, targets):
        return logits.sum() * 0

    gradients = {}
    for name, loss in (("ce", base), ("disease term", losses.HierarchyLoss(no_loss, [torch.as_tensor(disease)], 1.0))):
        logits.grad = None
        loss(logits[:1], targets[:1]).backward()
        gradients[name] = logits.grad[0].tolist()
    assert gradients["ce"][1] > 0 > gradients["disease term"][1]
    assert gradients["disease term"][2] > 0 and gradients["disease term"][3] > 0
    # Class weights weight each photo's group terms as they weight its class term.
    weighted = losses.HierarchyLoss(torch.nn.CrossEntropyLoss(weight=torch.tensor([1.0, 1.0, 1.0, 3.0])),
                                    [torch.as_tensor(crop)], 1.0, torch.tensor([1.0, 1.0, 1.0, 3.0]))
    crop_terms = -torch.log(torch.stack([probabilities[0, :3].sum(), probabilities[1, 3]]))
    expected = (torch.nn.CrossEntropyLoss(weight=torch.tensor([1.0, 1.0, 1.0, 3.0]))(logits, targets)
                + (crop_terms[0] + 3 * crop_terms[1]) / 4)
    assert weighted(logits, targets).item() == pytest.approx(expected.item(), rel=1e-6)


# ----------------------------------------------------------------------------------------------------
# From training to predictions
# ----------------------------------------------------------------------------------------------------
# The tiny cleaned dataset's classes class_0..class_3 as two crops, one disease with two severities.
TINY_HIERARCHY = ["class_0,leafy,rust,general", "class_1,leafy,rust,serious", "class_2,leafy,healthy,",
                  "class_3,root,blight,"]


@pytest.fixture(scope="module")
def hierarchical_data(tmp_path_factory):
    root = write_cleaned_dataset(tmp_path_factory.mktemp("hierarchical"), [24, 12, 4, 1])
    write_hierarchy_csv(root / "metadata", TINY_HIERARCHY)
    return root


@pytest.fixture(scope="module")
def hierarchical_run(hierarchical_data, tmp_path_factory):
    output = tmp_path_factory.mktemp("hierarchical_run") / "full"
    train.run(train.parse_args(["--data-dir", str(hierarchical_data), "--output", str(output), *TINY_ARGS,
                                "--epochs", "2", "--lr", "1e-2", "--warmup-epochs", "0", "--hierarchy-loss", "0.5"]))
    return output


def test_min_samples_keeps_the_hierarchy_of_the_classes_left(hierarchical_data):
    metadata, excluded = dataset.select_classes(load_metadata(hierarchical_data), min_samples=2)
    assert excluded["name"].tolist() == ["class_3"]
    assert metadata.hierarchy.class_names == ("class_0", "class_1", "class_2")
    assert metadata.hierarchy.training_levels() == ["disease"]  # one crop left: nothing to learn at that level


def test_training_reports_every_level_each_epoch_and_records_the_hierarchy(hierarchical_run):
    history = pd.read_csv(hierarchical_run / "history.csv")
    for name in hierarchy.LEVEL_METRIC_NAMES:
        assert history[f"val_{name}"].between(0, 1).all(), name
    assert (history["val_crop_acc"] >= history["val_disease_acc"]).all()
    assert (history["val_disease_acc"] >= history["val_acc"]).all()
    log = (hierarchical_run / "train.log").read_text()
    assert "label hierarchy (metadata/hierarchy.csv): 2 crops, 3 diseases with severities" in log
    assert "+ 0.5 x cross-entropy at the disease and crop level" in log
    assert log.count("| crop/disease ") == 2
    saved = checkpoint_format.load(hierarchical_run / "best.pth")
    levels = hierarchy.from_checkpoint(saved)
    assert levels.crops == ("leafy", "leafy", "leafy", "root") and levels.severities[1] == "serious"


def test_visualize_training_shows_the_levels(hierarchical_run, trained_checkpoint, tmp_path, capsys):
    visualize_training.main(["--checkpoint-dir", str(hierarchical_run), "--out", str(tmp_path / "one")])
    assert "  crop accuracy " in capsys.readouterr().out
    assert (tmp_path / "one" / "confusion_matrix_normalized.png").stat().st_size > 0
    visualize_training.main(["--compare", str(trained_checkpoint), str(hierarchical_run / "best.pth"),
                             "--labels", "flat", "levels", "--out", str(tmp_path / "both")])
    table = pd.read_csv(tmp_path / "both" / "comparison.csv").set_index("run")
    assert np.isnan(table.loc["flat", "val_crop_acc"]) and 0 <= table.loc["levels", "val_crop_acc"] <= 1


def test_hierarchy_loss_needs_a_hierarchy(tiny_cleaned, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        train.main(["--data-dir", str(tiny_cleaned), "--output", str(tmp_path / "run"), *TINY_ARGS, "--epochs", "1",
                    "--hierarchy-loss", "0.5"])
    assert exit_info.value.code == 2
    assert "--hierarchy-loss 0.5: " in capsys.readouterr().err and not (tmp_path / "run").exists()


def test_older_checkpoints_without_a_hierarchy_are_flat(trained_checkpoint):
    saved = checkpoint_format.load(trained_checkpoint)
    assert hierarchy.from_checkpoint(saved) is None
    saved.pop("hierarchy", None)
    assert hierarchy.from_checkpoint(saved) is None


def test_predict_answers_at_the_level_it_is_sure_of(hierarchical_run, hierarchical_data, tmp_path, capsys):
    paths = sorted(str(path) for path in (hierarchical_data / "images").glob("val_*.png"))
    output = tmp_path / "predictions.csv"
    predict.main(["--checkpoint", str(hierarchical_run / "best.pth"), "--workers", "0", "--output", str(output),
                  *paths])
    plain = pd.read_csv(output, keep_default_na=False)
    assert {"crop", "crop_prob", "disease", "disease_prob"} <= set(plain.columns)
    assert (plain["crop_prob"] >= plain["disease_prob"] - 1e-6).all()
    assert (plain["disease_prob"] >= plain["pred_1_prob"] - 1e-6).all()
    # A threshold between the top class's and its disease's probability for some photo answers it at the disease
    # level at least; one above every crop's probability answers nothing.
    # Half a unit of the CSV's 6th decimal off, so no rounded probability ties it one way in the CSV and the other
    # inside predict.py.
    threshold = float((plain["pred_1_prob"] + plain["crop_prob"]).max() / 2) - 5e-7
    predict.main(["--checkpoint", str(hierarchical_run / "best.pth"), "--workers", "0", "--output", str(output),
                  "--min-confidence", f"{threshold}", *paths])
    table = pd.read_csv(output, keep_default_na=False)
    assert table.columns.tolist()[:3] == ["path", "label", "level"]
    expected = np.where(plain["pred_1_prob"] >= threshold, "class",
                        np.where(plain["disease_prob"] >= threshold, "disease",
                                 np.where(plain["crop_prob"] >= threshold, "crop", "unknown")))
    assert table["level"].tolist() == expected.tolist() and set(expected) - {"class"}
    at_disease = table["level"] == "disease"
    assert (table.loc[at_disease, "label"] == plain.loc[at_disease, "disease"] + ", severity uncertain").all()
    assert "with a disease (severity uncertain)" in capsys.readouterr().out


def test_evaluate_writes_the_level_table_and_exports_carry_the_hierarchy(hierarchical_run, hierarchical_data,
                                                                         tmp_path):
    exported = tmp_path / "exported"
    export.main(["--checkpoint", str(hierarchical_run / "best.pth"), "--output", str(exported), "--format", "timm",
                 "--data-dir", str(hierarchical_data)])
    card = json.loads((exported / "config.json").read_text())["leaf_disease"]
    assert card["hierarchy"]["crop"] == ["leafy", "leafy", "leafy", "root"]
    for name, model in (("pth", hierarchical_run / "best.pth"), ("exported", exported)):
        evaluate.main(["--checkpoint", str(model), str(hierarchical_data), "--workers", "0", "--no-explain",
                       "--output", str(tmp_path / name)])
    result = json.loads((tmp_path / "pth" / "metrics.json").read_text())
    levels = pd.read_csv(tmp_path / "pth" / "levels.csv")
    assert levels["level"].tolist() == list(hierarchy.LEVELS)
    assert levels["accuracy"].tolist() == pytest.approx([result["acc"], result["disease_acc"], result["crop_acc"]])
    coverage = pd.read_csv(tmp_path / "pth" / "coverage.csv")
    assert coverage["answered"].iloc[0] == 1.0 and (coverage["answered"] >= coverage["coverage"] - 1e-9).all()
    predictions = pd.read_csv(tmp_path / "pth" / "predictions.csv", keep_default_na=False)
    assert {"true_name", "pred_name", "crop", "disease_prob"} <= set(predictions.columns)
    assert json.loads((tmp_path / "exported" / "metrics.json").read_text())["crop_acc"] == pytest.approx(
        result["crop_acc"])
