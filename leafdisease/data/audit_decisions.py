"""The label audit's CSV (audit_labels.py writes it, a person edits its `decision` column) and the decisions in it,
which cleaning applies (analyze_data.py --apply-audit FILE).

The file: AUDIT_COLUMNS, one row per suspect photo. `path` is the photo in the source (what cleaning lists),
`given_label` its label there (a class name), `suggested_label` the class the audit suggests. The person writes in
`decision` one of DECISIONS: keep (or empty: not looked at, nothing changes), relabel (to `suggested_label`: edit
that cell to choose another class), drop (the photo is not a usable training photo). Other columns are for reading
and are ignored when applying.

Applying is all or nothing: the whole file is checked first (read_decisions), and its first problem is a one-line
UserError naming the row (spreadsheet numbering: the header is row 1) and what is wrong: an empty file, a missing
column, a path that is not a photo of the dataset, an unknown class name, a decision that is not one of DECISIONS,
the same photo in two rows, a given label the dataset no longer has (the audit is older than the data). Only then is
anything changed (apply), and every change is listed: a dropped photo is a row of rejected.csv (reason
DROP_REASON), a relabelled one a row of metadata/relabel_log.csv.

Decisions last: cleaning keeps the applied ones in metadata/label_decisions.csv (DECISION_FILE, in this format, each
relative to the source's labels) and applies them again when the same source is cleaned again into the same
folder (train_fixed.sh re-runs cleaning), and a later audit's decisions are added on top (merge): `--apply-audit
none` cleans without them.
"""
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from leafdisease.utils.errors import UserError

AUDIT_COLUMNS = ("decision", "kind", "shot_group", "path", "given_label", "suggested_label", "score", "given_prob",
                 "suggested_prob", "class_size", "distance_ratio")
REQUIRED_COLUMNS = ("decision", "path", "given_label", "suggested_label")
# another_class: the photos say its label is wrong; unusable: unlike every other photo (probably not a leaf);
# only_photo: the only photo of its class, which no other photo can confirm.
KINDS = ("another_class", "only_photo", "unusable")
DECISIONS = ("keep", "relabel", "drop")
DROP_REASON = "audit_drop"
DECISION_FILE = "label_decisions.csv"
RELABEL_LOG = "relabel_log.csv"
RELABEL_LOG_COLUMNS = ("path", "split", "old_label", "old_name", "new_label", "new_name", "decided_in")
NONE = "none"  # --apply-audit none: clean without the kept decisions


@dataclass
class Decision:
    path: str
    decision: str  # relabel | drop
    given: int  # the label the decision was made against (the source's, for kept decisions)
    new_label: int  # relabel's target; the given label for drop
    kind: str
    decided_in: str  # "<file> row <n>"


def _read_table(path):
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise UserError(f"{path}: cannot read it ({type(error).__name__}: {error})") from None
    if not text.strip():
        raise UserError(f"{path}: empty file: an audit CSV has a header row ({', '.join(REQUIRED_COLUMNS)}, ...) "
                        f"and one row per photo")
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise UserError(f"{path}: not a readable CSV ({' '.join(str(error).split())})") from None
    missing = [column for column in REQUIRED_COLUMNS if column not in table.columns]
    if missing:
        raise UserError(f"{path}: row 1: missing column(s) {', '.join(missing)} (an audit CSV from audit_labels.py "
                        f"has {', '.join(AUDIT_COLUMNS)})")
    if table.empty:
        raise UserError(f"{path}: a header and no rows: no decision to apply")
    return table


def read_decisions(path, labels, class_names):
    """The relabel and drop decisions of an audit CSV, every row checked first (see the module docstring).

    labels: {absolute source path: current label id} of every photo of the dataset; class_names: {id: name}.
    Returns [Decision], in file order.
    """
    path = Path(path)
    table = _read_table(path)
    id_of = {str(name): class_id for class_id, name in class_names.items()}
    known = ", ".join(sorted(id_of)) if len(id_of) <= 20 else f"{len(id_of)} classes, see classes.csv"
    seen, decisions = {}, []
    for index, row in enumerate(table.itertuples(index=False)):
        number = index + 2
        where = f"{path}: row {number}"
        decision = (row.decision or "").strip().lower() or "keep"
        if decision not in DECISIONS:
            raise UserError(f"{where}: decision '{row.decision}': must be {', '.join(DECISIONS)} (empty: keep)")
        raw = (row.path or "").strip()
        if not raw:
            raise UserError(f"{where}: empty path")
        photo = os.path.abspath(raw if os.path.isabs(raw) else path.parent / raw)
        if photo in seen:
            raise UserError(f"{where}: {raw} is also row {seen[photo]}: one row per photo")
        seen[photo] = number
        if photo not in labels:
            raise UserError(f"{where}: {raw}: not a photo of the dataset being cleaned")
        given = row.given_label.strip()
        if given not in id_of:
            raise UserError(f"{where}: given_label '{given}': no such class ({known})")
        if id_of[given] != labels[photo]:
            raise UserError(f"{where}: {raw} is labelled '{class_names[labels[photo]]}' in the dataset, the audit "
                            f"says '{given}': the audit is older than the data; audit the dataset again")
        kind = str(getattr(row, "kind", "") or "")
        if decision == "keep":
            continue
        new_label = id_of[given]
        if decision == "relabel":
            target = row.suggested_label.strip()
            if target not in id_of:
                raise UserError(f"{where}: suggested_label '{target}': no such class ({known}); relabel needs one "
                                f"of the dataset's class names")
            if id_of[target] == id_of[given]:
                raise UserError(f"{where}: relabel to its own label '{target}': choose another class, or keep")
            new_label = id_of[target]
        decisions.append(Decision(photo, decision, id_of[given], new_label, kind, f"{path.name} row {number}"))
    return decisions


def read_kept(path, labels, class_names):
    """The decisions a previous cleaning kept (DECISION_FILE; against the source's labels), each still with the
    file and row it was made in."""
    decisions = read_decisions(path, labels, class_names)
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    if "decided_in" in table.columns:
        origin = {os.path.abspath(p): where for p, where in zip(table["path"], table["decided_in"]) if where}
        for decision in decisions:
            decision.decided_in = origin.get(decision.path, decision.decided_in)
    return decisions


def current_labels(source_labels, kept):
    """{path: label} after the kept relabels (dropped photos keep theirs: a later row may name them)."""
    labels = dict(source_labels)
    for decision in kept:
        labels[decision.path] = decision.new_label
    return labels


def merge(kept, new, source_labels):
    """The decisions to apply, against the source's labels: the kept ones, then the new ones (made against the
    labels the kept ones gave) over them, photo by photo. A relabel back to the source's label is no decision."""
    merged = {decision.path: decision for decision in kept}
    for decision in new:
        source_label = source_labels[decision.path]
        if decision.decision == "relabel" and decision.new_label == source_label:
            merged.pop(decision.path, None)
            continue
        merged[decision.path] = Decision(decision.path, decision.decision, source_label,
                                         decision.new_label if decision.decision == "relabel" else source_label,
                                         decision.kind, decision.decided_in)
    return list(merged.values())


def fingerprint(decisions):
    """What the cleaned output depends on (None: no decisions, so outputs cleaned before them stay up to date)."""
    if not decisions:
        return None
    canonical = sorted((d.path, d.decision, int(d.new_label)) for d in decisions)
    return hashlib.sha256(json.dumps(canonical).encode()).hexdigest()


def apply(images, decisions, class_names):
    """(images without the dropped photos and with the relabelled ones' new labels, rejected rows of the dropped
    ones (REJECTED_COLUMNS), the relabel log (RELABEL_LOG_COLUMNS)). images: the source's table (path, label,
    split, ...)."""
    by_path = {decision.path: decision for decision in decisions}
    chosen = [by_path[path].decision if path in by_path else "" for path in images["path"]]
    dropped = images.loc[[decision == "drop" for decision in chosen]]
    relabelled = images.loc[[decision == "relabel" for decision in chosen]]
    rejected = pd.DataFrame({
        "path": dropped["path"], "split": dropped["split"], "reason": DROP_REASON,
        "detail": [_drop_detail(by_path[p]) for p in dropped["path"]], "label": dropped["label"]})
    log = pd.DataFrame({
        "path": relabelled["path"], "split": relabelled["split"], "old_label": relabelled["label"],
        "old_name": relabelled["label"].map(class_names),
        "new_label": [by_path[p].new_label for p in relabelled["path"]],
        "new_name": [class_names[by_path[p].new_label] for p in relabelled["path"]],
        "decided_in": [by_path[p].decided_in for p in relabelled["path"]]}, columns=list(RELABEL_LOG_COLUMNS))
    images = images.copy()
    images.loc[relabelled.index, "label"] = log["new_label"].to_numpy()
    images = images.drop(index=dropped.index).reset_index(drop=True)
    return images, rejected.reset_index(drop=True), log.sort_values("path").reset_index(drop=True)


def _drop_detail(decision):
    what = {"unusable": "probably not a leaf or not a usable photo",
            "another_class": "its label was doubted", "only_photo": "the only photo of its class"}.get(decision.kind)
    return f"label audit ({decision.decided_in})" + (f": {what}" if what else "")


def kept_table(decisions, class_names):
    """The decisions as DECISION_FILE holds them: the audit format, against the source's labels, with decided_in."""
    rows = [{"decision": d.decision, "kind": d.kind, "path": d.path, "given_label": class_names[d.given],
             "suggested_label": class_names[d.new_label], "decided_in": d.decided_in}
            for d in sorted(decisions, key=lambda d: d.path)]
    return pd.DataFrame(rows, columns=["decision", "kind", "path", "given_label", "suggested_label", "decided_in"])
