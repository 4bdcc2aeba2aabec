"""The label audit: audit_labels.py finds planted label errors, analyze_data.py --apply-audit applies a person's
decisions (logged, never silently) and refuses a bad CSV whole."""
import shutil

import cv2
import numpy as np
import pandas as pd
import pytest

import analyze_data
import audit_labels
from leafdisease.data import audit_decisions
from leafdisease.evaluation import label_audit
from leafdisease.utils.errors import UserError

COLOURS = {"red": (200, 30, 30), "green": (30, 190, 40), "blue": (30, 40, 200), "yellow": (210, 200, 30)}
COUNTS = {"red": 24, "green": 16, "blue": 10, "yellow": 6}
# (true colour, folder it is filed under): the planted label errors.
FLIPS = [("red", "green"), ("red", "blue"), ("green", "red"), ("blue", "yellow")]


def write_photo(path, colour, seed):
    noise = np.random.default_rng(seed).integers(0, 40, (40, 40, 3))
    rgb = np.clip(np.array(colour) + noise, 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


def write_source(root):
    """An ImageFolder train/ and val/ of flat colours, FLIPS filed under the wrong colour; {flipped path: true}."""
    seed = 0
    for split, scale in (("train", 1), ("val", 0)):
        for name, count in COUNTS.items():
            for index in range(max(2, count * scale)):
                seed += 1
                write_photo(root / split / name / f"{name}_{index:02d}.png", COLOURS[name], seed)
    flipped = {}
    for index, (true, filed) in enumerate(FLIPS):
        path = root / "train" / filed / f"flip_{index}.png"
        write_photo(path, COLOURS[true], 1000 + index)
        flipped[str(path)] = true
    return flipped


@pytest.fixture(scope="module")
def audited(tmp_path_factory):
    """(source, cleaned folder, audit folder, {flipped path: true colour}): field-like data cleaned and audited."""
    root = tmp_path_factory.mktemp("audit")
    source, cleaned, audit = root / "source", root / "cleaned", root / "audit"
    flipped = write_source(source)
    analyze_data.main(["--source", str(source), "--out", str(cleaned), "--workers", "1"])
    audit_labels.main(["--data-dir", str(cleaned), "--output", str(audit), "--model", "test_efficientnet",
                       "--no-pretrained", "--img-size", "32", "--folds", "3", "--top", "8",
                       "--many-threshold", "20", "--few-threshold", "12", "--device", "cpu"])
    return source, cleaned, audit, flipped


def read_csv(path):
    return pd.read_csv(path, keep_default_na=False)


def test_planted_flips_are_the_top_suspects_with_their_true_class(audited):
    _, _, audit, flipped = audited
    suspects = read_csv(audit / "label_audit.csv")
    assert list(suspects.columns) == list(audit_decisions.AUDIT_COLUMNS)
    found = suspects.loc[suspects["path"].isin(flipped)]
    assert set(found["path"]) == set(flipped)
    assert (found["kind"] == "another_class").all()
    assert dict(zip(found["path"], found["suggested_label"])) == flipped
    assert (suspects["decision"] == "").all()
    # the few-shot classes' suspects first (yellow: 7 photos, blue: 11), then medium, then many
    order = {"few": 0, "medium": 1, "many": 2}
    assert suspects["shot_group"].map(order).is_monotonic_increasing
    scores = read_csv(audit / "scores.csv")
    assert set(scores["path"].head(2 * len(flipped))) >= set(flipped)  # all in the top 2x-flips ranks
    assert (audit / "contact_sheet.png").stat().st_size > 10_000
    summary = pd.read_json(audit / "summary.json", typ="series")
    assert summary["photos"] == sum(COUNTS.values()) + len(FLIPS)


def clean(source, cleaned, *options, command_line=False):
    """analyze_data.py's cleaning; a UserError as it is raised, or with command_line as the script ends on it."""
    main = analyze_data.main if command_line else analyze_data.main.__wrapped__
    main(["--source", str(source), "--out", str(cleaned), "--workers", "1", *options])


def labels_of(cleaned):
    train = read_csv(cleaned / "metadata" / "train.csv")
    return dict(zip(train["source_path"], train["class_name"]))


def test_decisions_are_applied_logged_kept_and_cleared(audited, tmp_path, capsys):
    source, cleaned_once, audit, flipped = audited
    cleaned = tmp_path / "cleaned"
    shutil.copytree(cleaned_once, cleaned)
    suspects = read_csv(audit / "label_audit.csv")
    relabelled, dropped = list(flipped)[:3], list(flipped)[3]
    suspects.loc[suspects["path"].isin(relabelled), "decision"] = "relabel"
    suspects.loc[suspects["path"] == dropped, "decision"] = "Drop"
    edited = tmp_path / "edited.csv"
    suspects.to_csv(edited, index=False)
    clean(source, cleaned, "--apply-audit", str(edited))
    assert "3 photo(s) relabelled" in capsys.readouterr().out
    labels = labels_of(cleaned)
    assert {path: labels[path] for path in relabelled} == {path: flipped[path] for path in relabelled}
    assert dropped not in labels
    log = read_csv(cleaned / "metadata" / "relabel_log.csv")
    assert list(log.columns) == list(audit_decisions.RELABEL_LOG_COLUMNS)
    assert sorted(log["path"]) == sorted(relabelled) and set(log["split"]) == {"train"}
    assert log["decided_in"].str.startswith("edited.csv row ").all()
    rejected = read_csv(cleaned / "metadata" / "rejected.csv")
    assert rejected.loc[rejected["reason"] == audit_decisions.DROP_REASON, "path"].tolist() == [dropped]

    # cleaned again without --apply-audit (as train_fixed.sh does): the decisions stay, nothing is re-checked
    clean(source, cleaned)
    assert "up to date" in capsys.readouterr().out and labels_of(cleaned) == labels
    # a later audit's decision on top: relabel a photo the first one relabelled, made against its new label
    later = pd.DataFrame([{"decision": "relabel", "path": relabelled[0], "given_label": flipped[relabelled[0]],
                           "suggested_label": "yellow"}])
    later.to_csv(tmp_path / "later.csv", index=False)
    clean(source, cleaned, "--apply-audit", str(tmp_path / "later.csv"))
    assert labels_of(cleaned)[relabelled[0]] == "yellow" and dropped not in labels_of(cleaned)
    kept = read_csv(cleaned / "metadata" / audit_decisions.DECISION_FILE)
    assert len(kept) == 4 and "later.csv row 2" in set(kept["decided_in"])
    # --apply-audit none: every photo has its source label again
    clean(source, cleaned, "--apply-audit", "none")
    labels = labels_of(cleaned)
    assert dropped in labels and all(labels[path] != flipped[path] for path in flipped)
    assert not (cleaned / "metadata" / audit_decisions.DECISION_FILE).exists()


@pytest.mark.parametrize("problem, edit, message", [
    ("path", lambda t: t.assign(path=t["path"].where(t.index != 1, "/nowhere/photo.png")),
     "row 3: /nowhere/photo.png: not a photo of the dataset being cleaned"),
    ("class", lambda t: t.assign(suggested_label=t["suggested_label"].where(t.index != 0, "purple")),
     "row 2: suggested_label 'purple': no such class"),
    ("duplicate", lambda t: pd.concat([t, t.iloc[[0]]], ignore_index=True), "one row per photo"),
    ("decision", lambda t: t.assign(decision=t["decision"].where(t.index != 2, "maybe")),
     "row 4: decision 'maybe': must be keep, relabel, drop"),
])
def test_a_bad_csv_is_one_line_naming_the_row_and_nothing_is_applied(audited, tmp_path, problem, edit, message):
    source, cleaned_once, audit, _ = audited
    cleaned = tmp_path / "cleaned"
    shutil.copytree(cleaned_once, cleaned)
    before = (cleaned / "metadata" / "train.csv").read_text()
    table = read_csv(audit / "label_audit.csv").assign(decision="relabel")
    edit(table).to_csv(tmp_path / "edited.csv", index=False)
    with pytest.raises(UserError, match=message) as raised:
        clean(source, cleaned, "--apply-audit", str(tmp_path / "edited.csv"))
    assert "\n" not in str(raised.value)
    if problem == "duplicate":
        assert f"row {len(table) + 2}:" in str(raised.value) and "is also row 2" in str(raised.value)
    assert (cleaned / "metadata" / "train.csv").read_text() == before
    assert not (cleaned / "metadata" / "relabel_log.csv").exists()


def test_an_empty_or_header_only_csv_is_refused_from_the_command_line(audited, tmp_path, capsys):
    source, cleaned_once, _, _ = audited
    cleaned = tmp_path / "cleaned"
    shutil.copytree(cleaned_once, cleaned)
    for content, message in (("", "empty file"), ("decision,path,given_label,suggested_label\n", "no rows"),
                             ("decision,path\nrelabel,x.png\n", "row 1: missing column(s) given_label")):
        (tmp_path / "edited.csv").write_text(content)
        with pytest.raises(SystemExit) as exited:
            clean(source, cleaned, "--apply-audit", str(tmp_path / "edited.csv"), command_line=True)
        assert exited.value.code == 2
        error = capsys.readouterr().err.strip()
        assert message in error and len(error.splitlines()) == 1 and "Traceback" not in error


def test_a_given_label_the_data_no_longer_has_is_refused(audited, tmp_path):
    source, cleaned_once, audit, flipped = audited
    cleaned = tmp_path / "cleaned"
    shutil.copytree(cleaned_once, cleaned)
    path = list(flipped)[0]
    pd.DataFrame([{"decision": "drop", "path": path, "given_label": "yellow", "suggested_label": "red"}]).to_csv(
        tmp_path / "stale.csv", index=False)
    with pytest.raises(UserError, match="row 2: .* the audit is older than the data"):
        clean(source, cleaned, "--apply-audit", str(tmp_path / "stale.csv"))


def test_ranking_folds_outliers_and_one_photo_classes_on_separable_features():
    rng = np.random.default_rng(0)
    counts = [40, 20, 8, 3, 1]
    centres = rng.normal(0, 1, (len(counts), 16)) * 6
    labels = np.repeat(np.arange(len(counts)), counts)
    features = centres[labels] + rng.normal(0, 1, (len(labels), 16))
    given = labels.copy()
    flips = [0, 41, 61]  # a photo of classes 0, 1, 2 labelled as another class
    given[flips] = [1, 3, 0]
    features = np.vstack([features, np.full((1, 16), 60.0)])  # far from every photo
    given = np.append(given, 0)
    folds = label_audit.assign_folds(given, 5, seed=0)
    for label in range(len(counts)):
        members = folds[given == label]
        assert len(set(members)) == min(len(members), 5)  # a small class: at most one photo per fold
    table = label_audit.audit(features, given, len(counts), folds=5)
    top = set(label_audit.ranking(table)[:2 * len(flips)])
    assert set(flips) <= top
    assert table.loc[flips, "kind"].eq("another_class").all()
    assert table.loc[flips, "suggested"].tolist() == [0, 1, 2]
    assert table["kind"].iloc[-1] == "unusable"
    only = table.index[table["class_size"] == 1]
    assert table.loc[only, "kind"].eq("only_photo").all() and table.loc[only, "label_quality"].isna().all()
    wrong = given != np.append(labels, 0)
    assert label_audit.precision_recall_at(label_audit.ranking(table), wrong, 2 * len(flips)) == (0.5, 1.0)


def test_options_are_checked_before_any_work(tmp_path):
    inside = ["--data-dir", str(tmp_path), "--output", str(tmp_path / "audit")]
    for argv, message in ((["--folds", "1"], "--folds 1"), (inside, "lies inside --data-dir"),
                          (["--no-pretrained", "--pretrained-file", "w.pth"], "exclude each other")):
        with pytest.raises(UserError, match=message):
            audit_labels.parse_args(argv)
