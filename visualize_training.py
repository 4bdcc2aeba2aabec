"""Look at training runs from their checkpoint files alone: one run in detail, or several side by side.

    python visualize_training.py --checkpoint-dir checkpoints/task1_stage2/
    python visualize_training.py                   # the same: train_fixed.sh's stage 2 run
    python visualize_training.py --compare checkpoints/task1_stage1/best.pth checkpoints/task1_stage2/best.pth

One run (--checkpoint-dir: a run folder or a checkpoint file). From a folder, best.pth is read when present,
else last.pth. Writes into the checkpoint's folder (or --out):
  training_curves.png               loss, accuracy and learning rate per epoch
  per_class_recall.png              validation recall per class, head to tail, coloured by many/medium/few-shot
  confusion_matrix_normalized.png   rows normalised: where each true class's validation images went (classes
                                    ordered by crop, in blocks, when the run has a label hierarchy)
and prints the best epoch, its metrics (with a label hierarchy also crop and disease accuracy and where the errors
lie), and the classes that still fail (lowest recall) with their training images and the class each is most often
mistaken for. Only best.pth holds per-class results: from last.pth the two per-class figures are not made.

Several runs (--compare: two or more checkpoint files or run folders; the first is the baseline). Writes into
--out, by default a 'comparison' folder beside the run folders (checkpoints/comparison/ for the example):
  comparison_curves.png        validation balanced accuracy, accuracy and loss per epoch, all runs overlaid;
                               a run initialised from another (train.py --init-from) continues after its
                               parent's epochs
  comparison.csv, .md          each run's metrics at its best epoch (also printed)
  shot_group_accuracy.png      many/medium/few-shot accuracy side by side
  per_class_recall_change.png  per-class recall of the last run minus the first, sorted by change
  per_class_recall_change.csv  the recalls and the change per class
Runs are labelled by their folder name (--labels to choose). Runs with different class lists are compared
per class on the class ids they share.
"""
import argparse
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from leafdisease.data import hierarchy
from leafdisease.data.longtail import SHOT_GROUPS, shot_group_captions, shot_groups
from leafdisease.evaluation import metrics, plots
from leafdisease.training import checkpoint as checkpoint_format
from leafdisease.utils import cli
from leafdisease.utils.atomic_io import write_csv, write_text
from leafdisease.utils.errors import UserError, cli_entry

CHECKPOINT_NAMES = ("best.pth", "last.pth")
HISTORY_COLUMNS = ("epoch", "train_loss", "val_loss", "val_acc", "val_balanced_acc", "val_macro_f1", "lr")
TABLE_METRICS = ("val_balanced_acc", "val_acc", "val_prior_acc", "val_macro_f1", "val_top5", "val_many_acc",
                 "val_medium_acc", "val_few_acc", "val_zero_recall_classes", "val_loss", "train_loss")
# Runs with a label hierarchy (hierarchy.py) also have these; the table shows them when one of the runs does.
LEVEL_TABLE_METRICS = tuple(f"val_{name}" for name in hierarchy.LEVEL_METRIC_NAMES)
TOP_CHANGES = 5
# train_fixed.sh's stage 2 output with its default OUT_ROOT and RUN_NAME (a test keeps the two in step)
DEFAULT_RUN = "checkpoints/task1_stage2"


def parse_args(argv=None):
    parser = cli.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--checkpoint-dir", help="one run: its folder (best.pth, else last.pth) or a checkpoint file "
                                               f"(default, without --compare: {DEFAULT_RUN}, train_fixed.sh's stage 2)")
    mode.add_argument("--compare", nargs="+", metavar="CHECKPOINT",
                      help="two or more checkpoint files or run folders, the baseline first")
    parser.add_argument("--out", help="output folder (default: the run's folder; with --compare a 'comparison' "
                                      "folder beside the run folders)")
    parser.add_argument("--labels", nargs="+", help="with --compare: one name per run (default: run folder names)")
    parser.add_argument("--worst", type=int, default=10, help="how many of the lowest-recall classes to list")
    args = parser.parse_args(argv)
    if args.compare is None and args.checkpoint_dir is None:
        if not Path(DEFAULT_RUN).exists():
            raise UserError(f"no --checkpoint-dir or --compare given, and {DEFAULT_RUN} (train_fixed.sh's stage 2, "
                            f"the default) does not exist: run `bash train_fixed.sh` first or name a run")
        args.checkpoint_dir = DEFAULT_RUN
    if args.compare is not None and len(args.compare) < 2:
        parser.error("--compare needs two or more checkpoints")
    if args.labels and args.compare is None:
        parser.error("--labels goes with --compare")
    if args.labels and len(args.labels) != len(args.compare):
        parser.error(f"--labels: {len(args.labels)} names for {len(args.compare)} runs")
    cli.check_options(parser, args, {"worst": cli.POSITIVE_INT})
    if args.out is not None:
        cli.check_output_dir("--out", args.out)
    return args


# ----------------------------------------------------------------------------------------------------
# Reading checkpoints
# ----------------------------------------------------------------------------------------------------
@dataclass
class Run:
    """A checkpoint and what the figures need from it."""
    path: Path
    label: str
    checkpoint: dict
    history: pd.DataFrame
    classes: pd.DataFrame  # id, name, train_count, group; plus recall, support, correct, mistaken_for... from best.pth
    best_row: pd.Series
    has_per_class: bool

    @property
    def ancestors(self):
        """Runs this one was initialised from, nearest first (train.py nests each parent in its child)."""
        found, parent = [], self.checkpoint.get("parent")
        while parent:
            found.append(parent)
            parent = parent.get("parent")
        return found

    @property
    def group_labels(self):
        return shot_group_captions(*checkpoint_format.shot_thresholds(self.checkpoint))


def resolve_checkpoint(text):
    path = Path(text)
    if path.is_dir():
        for name in CHECKPOINT_NAMES:
            if (path / name).is_file():
                return path / name
        raise UserError(f"{path}: no best.pth or last.pth in this folder")
    if not path.is_file():
        raise UserError(f"{path}: no such checkpoint file or run folder")
    return path


def load_run(path, label):
    checkpoint = checkpoint_format.load(path, need="history")
    history = pd.DataFrame(checkpoint["history"])
    if history.empty:
        raise UserError(f"{path}: no finished epoch recorded yet")
    missing_columns = [column for column in HISTORY_COLUMNS if column not in history]
    if missing_columns:
        raise UserError(f"{path}: its history has no {', '.join(missing_columns)}")
    best_epoch = checkpoint.get("best_epoch", checkpoint.get("epoch"))
    best_rows = history[history["epoch"] == best_epoch]
    if best_rows.empty:
        raise UserError(f"{path}: best epoch {best_epoch} is not in its history (epochs {history['epoch'].tolist()})")
    classes = class_table(path, checkpoint)
    return Run(path=path, label=label, checkpoint=checkpoint, history=history, classes=classes,
               best_row=best_rows.iloc[-1], has_per_class="recall" in classes)


def class_table(path, checkpoint):
    """One row per class: training images and shot group, and from best.pth the best epoch's recall, how many
    validation images it got right, and the class it is most often mistaken for."""
    ids, names, counts = checkpoint["class_ids"], checkpoint["class_names"], checkpoint["train_counts"]
    classes = pd.DataFrame({"id": [int(i) for i in ids], "name": [str(n) for n in names],
                            "train_count": [int(c) for c in counts]})
    classes["group"] = shot_groups(classes["train_count"], *checkpoint_format.shot_thresholds(checkpoint))
    per_class, confusion = checkpoint.get("per_class"), checkpoint.get("confusion_matrix")
    if per_class is None or confusion is None:
        return classes
    confusion = np.asarray(confusion, dtype=np.int64)
    if confusion.shape != (len(ids), len(ids)) or len(per_class.get("recall", [])) != len(ids):
        raise UserError(f"{path}: per-class results do not match its {len(ids)} classes "
                        f"(confusion matrix {confusion.shape})")
    support = confusion.sum(axis=1)
    classes["support"] = support
    classes["correct"] = np.diag(confusion)
    classes["recall"] = np.where(support > 0, np.asarray(per_class["recall"], dtype=np.float64), np.nan)
    mistakes = confusion.copy()
    np.fill_diagonal(mistakes, 0)
    classes["mistaken_count"] = mistakes.max(axis=1)
    classes["mistaken_for"] = np.where(classes["mistaken_count"] > 0,
                                       classes["name"].to_numpy()[mistakes.argmax(axis=1)], "")
    return classes


def same_run_folder(recorded_path, run):
    """A parent recorded by train.py is matched to a compared run by its run folder's name, so runs moved or
    recorded with paths relative to another working directory still match."""
    return Path(recorded_path).parent.name == run.path.parent.name


# ----------------------------------------------------------------------------------------------------
# One run
# ----------------------------------------------------------------------------------------------------
def describe_run(run):
    checkpoint = run.checkpoint
    text = (f"{run.label} ({run.path}): {checkpoint.get('model_name', '?')}, stage {checkpoint.get('stage', '?')}, "
            f"{len(run.history)} epochs, {len(run.classes)} classes")
    if run.ancestors:
        parent = run.ancestors[0]
        text += (f"; initialised from {parent.get('path')} ({parent.get('stage')} stage, "
                 f"{len(parent.get('history') or [])} epochs)")
    return text


def print_best_epoch(run):
    row, checkpoint = run.best_row, run.checkpoint
    print(f"best epoch {int(row['epoch'])} of {len(run.history)} (chosen by validation "
          f"{checkpoint.get('select_metric', 'balanced_acc')}):")
    print(f"  balanced accuracy {row['val_balanced_acc']:.3f} | accuracy {row['val_acc']:.3f} | accuracy at the "
          f"training prior {row.get('val_prior_acc', np.nan):.3f} | macro-F1 {row['val_macro_f1']:.3f} | top-5 "
          f"{row.get('val_top5', np.nan):.3f}")
    without = len(run.classes) - present_classes(run)
    if without:
        print(f"  class averages are over the {present_classes(run)} classes with validation images ({without} "
              f"without: " + ", ".join(f"{class_id} '{name}'" for class_id, name in zip(
                  run.classes.loc[run.classes["support"] == 0, "id"], run.classes.loc[run.classes["support"] == 0, "name"]))
              + ")")
    print(f"  many/medium/few-shot accuracy {row.get('val_many_acc', np.nan):.3f} / "
          f"{row.get('val_medium_acc', np.nan):.3f} / {row.get('val_few_acc', np.nan):.3f} | "
          f"val loss {row['val_loss']:.3f} | train loss {row['train_loss']:.3f}")
    if "val_crop_acc" in row:
        print(f"  crop accuracy {row['val_crop_acc']:.3f} | disease accuracy {row['val_disease_acc']:.3f} | errors: "
              f"severity only {row['val_err_severity']:.3f}, another disease of the same crop "
              f"{row['val_err_disease']:.3f}, another crop {row['val_err_crop']:.3f} (shares of validation images)")
    if "val_zero_recall_classes" in row:
        print(f"  classes with zero recall: {int(row['val_zero_recall_classes'])} of {present_classes(run)}"
              + (" with validation images" if run.has_per_class else ""))
        warning = metrics.collapse_warning({"acc": row["val_acc"], "balanced_acc": row["val_balanced_acc"],
                                            "zero_recall_classes": int(row["val_zero_recall_classes"])},
                                           present_classes(run))
        if warning:
            print(f"WARNING: {warning}")


def present_classes(run):
    return int((run.classes["support"] > 0).sum()) if run.has_per_class else len(run.classes)


def print_worst_classes(run, count):
    present = run.classes[run.classes["support"] > 0]
    worst = present.sort_values(["recall", "train_count"], kind="stable").head(count)
    table = pd.DataFrame({
        "id": worst["id"], "class": worst["name"], "train images": worst["train_count"], "group": worst["group"],
        "recall": worst["recall"].map("{:.3f}".format),
        "correct": [f"{c}/{s}" for c, s in zip(worst["correct"], worst["support"])],
        "most often mistaken for": [f"{name} ({n}/{s})" if n else "-"
                                    for name, n, s in zip(worst["mistaken_for"], worst["mistaken_count"],
                                                          worst["support"])],
    })
    without = len(run.classes) - len(present)
    zero = int((present["recall"] == 0).sum())
    print(f"worst {len(worst)} of {len(present)} classes by validation recall at the best epoch"
          + (f" ({without} without validation images)" if without else "")
          + (f"; {zero} have zero recall, those with the fewest training images listed" if zero > count else "")
          + ":")
    print(table.to_string(index=False))


def visualize_run(run, out_dir, worst_count):
    written = [out_dir / "training_curves.png"]
    plots.plot_training_curves(run.history, written[0], title=f"{run.label}: {run.checkpoint.get('model_name', '')}, "
                                                              f"stage {run.checkpoint.get('stage', '')}")
    print(describe_run(run))
    print_best_epoch(run)
    if not run.has_per_class:
        print(f"{run.path.name} holds no per-class results (only best.pth does): per_class_recall.png and "
              f"confusion_matrix_normalized.png not made")
        return written
    print_worst_classes(run, worst_count)
    epoch = int(run.best_row["epoch"])
    written.append(out_dir / "per_class_recall.png")
    plots.plot_per_class_recall(run.classes, run.group_labels, written[-1],
                                title=f"{run.label}: per-class validation recall at best epoch {epoch}, "
                                      f"classes from most to fewest training images")
    labels = [f"{class_id} {plots.abbreviate(name, 32)}"
              for class_id, name in zip(run.classes["id"], run.classes["name"])]
    row_labels = [f"{label} ({support})" for label, support in zip(labels, run.classes["support"])]
    written.append(out_dir / "confusion_matrix_normalized.png")
    plots.plot_confusion_matrix(run.checkpoint["confusion_matrix"], labels, written[-1],
                                      title=f"{run.label}: confusion matrix at best epoch {epoch}, rows normalised "
                                            f"to recall", row_labels=row_labels,
                                      hierarchy=hierarchy.from_checkpoint(run.checkpoint, run.path))
    return written


# ----------------------------------------------------------------------------------------------------
# Several runs
# ----------------------------------------------------------------------------------------------------
def default_labels(paths):
    """Run folder names; folder/file when two checkpoints share a folder, the whole path when still ambiguous."""
    for make_label in (lambda p: p.parent.name, lambda p: f"{p.parent.name}/{p.stem}", str):
        labels = [make_label(path.absolute()) for path in paths]
        if len(set(labels)) == len(labels):
            return labels
    raise UserError(f"{paths[0]}: given twice to --compare")


def default_comparison_dir(paths):
    """'comparison' beside the run folders: checkpoints/a/best.pth and checkpoints/b/ give checkpoints/comparison."""
    common = Path(os.path.commonpath([os.path.abspath(path.parent.parent) for path in paths]))
    if common == Path(common.anchor):
        return Path("comparison")
    try:
        return common.relative_to(Path.cwd()) / "comparison"
    except ValueError:
        return common / "comparison"


def shared_class_ids(runs):
    """Class ids every run has; says so when the class lists differ, refuses when none is shared."""
    id_sets = [set(run.classes["id"]) for run in runs]
    shared = set.intersection(*id_sets)
    if all(ids == id_sets[0] for ids in id_sets):
        return sorted(shared)
    sizes = ", ".join(f"{run.label}: {len(ids)}" for run, ids in zip(runs, id_sets))
    if not shared:
        raise UserError(f"{runs[-1].path}: shares no class id with {runs[0].path} ({sizes} classes); "
                        f"nothing to compare per class")
    left_out = "; ".join(f"only in {run.label}: {', '.join(map(str, sorted(ids - shared)))}"
                         for run, ids in zip(runs, id_sets) if ids - shared)
    print(f"note: the runs have different class lists ({sizes} classes); per-class results are compared on the "
          f"{len(shared)} class ids all share and 'val_balanced_acc_shared_classes' is the mean recall over them "
          f"({left_out})")
    return sorted(shared)


def curve_data(runs):
    """Each run on a common epoch axis: a run initialised from another starts after all its ancestors' epochs.
    Ancestors that are not compared themselves are drawn faint under the run."""
    curves = []
    for run in runs:
        ancestors = run.ancestors
        start = sum(len(ancestor.get("history") or []) for ancestor in ancestors)
        inherited = []
        for depth, ancestor in enumerate(ancestors):
            if any(same_run_folder(ancestor.get("path", ""), other) for other in runs):
                break
            history = pd.DataFrame(ancestor.get("history") or [])
            if history.empty or any(column not in history for column in HISTORY_COLUMNS):
                continue
            history["x"] = history["epoch"] + sum(len(a.get("history") or []) for a in ancestors[depth + 1:])
            inherited.append((f"{run.label}'s parent {Path(ancestor.get('path', '?')).parent.name} "
                              f"({ancestor.get('stage')} stage)", history))
        history = run.history.assign(x=run.history["epoch"] + start)
        curves.append({"label": run.label, "history": history, "start_x": start, "inherited": inherited,
                       "best_x": int(run.best_row["epoch"]) + start})
    return curves


def comparison_table(runs, shared_ids, class_sets_differ):
    rows = []
    shown = TABLE_METRICS + tuple(metric for metric in LEVEL_TABLE_METRICS
                                  if any(metric in run.best_row for run in runs))
    for run in runs:
        checkpoint, parent = run.checkpoint, run.checkpoint.get("parent")
        row = {"run": run.label, "checkpoint": str(run.path), "model": checkpoint.get("model_name"),
               "stage": checkpoint.get("stage"), "classes": len(run.classes), "epochs": len(run.history),
               "best_epoch": int(run.best_row["epoch"]), "select_metric": checkpoint.get("select_metric")}
        row.update({metric: run.best_row.get(metric, np.nan) for metric in shown})
        if class_sets_differ:
            shared = run.classes[run.classes["id"].isin(shared_ids)]
            row["val_balanced_acc_shared_classes"] = (shared.loc[shared["support"] > 0, "recall"].mean()
                                                      if run.has_per_class else np.nan)
        compared_parent = [other.label for other in runs if parent and same_run_folder(parent.get("path", ""), other)]
        row["initialised_from"] = (compared_parent or [parent.get("path")])[0] if parent else ""
        rows.append(row)
    return pd.DataFrame(rows)


def markdown_table(frame):
    """Runs as columns, fields as rows: reads well for the usual two or three runs."""
    def cell(value):
        if isinstance(value, (float, np.floating)):
            return "n/a" if np.isnan(value) else f"{value:.4f}"
        return str(value).replace("|", "\\|")

    columns = ["field"] + list(frame["run"])
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for field in frame.columns.drop("run"):
        lines.append("| " + " | ".join([field] + [cell(value) for value in frame[field]]) + " |")
    return "\n".join(lines) + "\n"


def recall_change_table(first, last, shared_ids):
    columns = ["id", "name", "train_count", "group", "recall"]
    before = first.classes.loc[first.classes["id"].isin(shared_ids), ["id", "recall"]]
    after = last.classes.loc[last.classes["id"].isin(shared_ids), columns]
    table = after.merge(before, on="id", suffixes=("_last", "_first"))
    table = table[["id", "name", "train_count", "group", "recall_first", "recall_last"]]
    table["change"] = table["recall_last"] - table["recall_first"]
    return table


def print_top_changes(table, first, last):
    ranked = table.dropna(subset=["change"]).sort_values("change", ascending=False, kind="stable")
    for title, part in ((f"largest recall gains, {last.label} over {first.label}:", ranked[ranked["change"] > 0]),
                        (f"largest recall losses, {last.label} against {first.label}:",
                         ranked[ranked["change"] < 0].iloc[::-1])):
        print(title if len(part) else title.rstrip(":") + ": none")
        for row in part.head(TOP_CHANGES).itertuples():
            print(f"  {row.id} {row.name} ({row.train_count} training images, {row.group}-shot): "
                  f"{row.recall_first:.3f} -> {row.recall_last:.3f} ({row.change:+.3f})")


def compare_runs(runs, out_dir):
    for run in runs:
        print(describe_run(run))
    shared_ids = shared_class_ids(runs)
    class_sets_differ = any(len(run.classes) != len(shared_ids) for run in runs)
    colors = plots.run_colors(len(runs))

    curves = curve_data(runs)
    for curve, color in zip(curves, colors):
        curve["color"] = color
    written = [out_dir / "comparison_curves.png"]
    plots.plot_compared_curves(curves, written[-1], title=f"{len(runs)} runs compared: "
                               + ", ".join(run.label for run in runs) + " (stars: best epochs)")

    table = comparison_table(runs, shared_ids, class_sets_differ)
    written += [out_dir / "comparison.csv", out_dir / "comparison.md"]
    write_csv(written[-2], table)
    write_text(written[-1], f"# Best-epoch validation metrics of {len(runs)} runs\n\n{markdown_table(table)}")
    print("best-epoch validation metrics:")
    print(table.set_index("run").T.to_string(float_format=lambda value: f"{value:.4f}"))

    group_sizes = ["/".join(str(int((run.classes["group"] == group).sum())) for group in SHOT_GROUPS) for run in runs]
    group_values = pd.DataFrame([[run.best_row.get(f"val_{group}_acc", np.nan) for group in SHOT_GROUPS] for run in runs],
                                columns=list(SHOT_GROUPS),
                                index=[f"{run.label} ({sizes} classes)" for run, sizes in zip(runs, group_sizes)])
    written.append(out_dir / "shot_group_accuracy.png")
    plots.plot_group_accuracy(group_values, colors, runs[0].group_labels, written[-1],
                              title="Accuracy by training-set size at each run's best epoch "
                                    "(mean per-class recall; legend: many/medium/few classes)")

    first, last = runs[0], runs[-1]
    without = [run for run in (first, last) if not run.has_per_class]
    if without:
        print(f"per-class recall change not made: {', '.join(str(run.path) for run in without)} holds no per-class "
              f"results (only best.pth does)")
        return written
    change = recall_change_table(first, last, shared_ids)
    written.append(out_dir / "per_class_recall_change.csv")
    write_csv(written[-1], change)
    plotted = change.dropna(subset=["change"])
    if len(plotted) < len(change):
        print(f"classes without validation images in {first.label} or {last.label}: {len(change) - len(plotted)}, "
              f"left out of the chart (empty in per_class_recall_change.csv)")
    print_top_changes(change, first, last)
    written.append(out_dir / "per_class_recall_change.png")
    plots.plot_recall_change(plotted, first.label, last.label, colors[0], colors[-1], written[-1],
                             title=f"Per-class validation recall, {last.label} against {first.label} (best epochs), "
                                   f"{len(plotted)} classes sorted by change")
    return written


@cli_entry
def main(argv=None):
    args = parse_args(argv)
    if args.compare is None:
        path = resolve_checkpoint(args.checkpoint_dir)
        run = load_run(path, path.absolute().parent.name)
        written = visualize_run(run, Path(args.out) if args.out else path.parent, args.worst)
    else:
        paths = [resolve_checkpoint(text) for text in args.compare]
        labels = args.labels or default_labels(paths)
        runs = [load_run(path, label) for path, label in zip(paths, labels)]
        written = compare_runs(runs, Path(args.out) if args.out else default_comparison_dir(paths))
    print("wrote " + ", ".join(str(path) for path in written))


if __name__ == "__main__":
    main()
