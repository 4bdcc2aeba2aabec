"""Recipes compared on real field photos: choose on validation, report on test.

    python benchmarks/realdata.py --profile screen                     # every row, one seed, 96 px, 12 epochs
    python benchmarks/realdata.py --profile final --seeds 0 1 2 \
        --rows plain baseline fixed sampler                             # leading rows and references, 128 px, 20 ep.
    python benchmarks/realdata.py --profile final --variant seed-shaped --seeds 0 1 2 \
        --rows fixed sampler sampler_unweighted                         # the same at the seed's imbalance

The bench is ../shared/realdata/field13 (13 classes of real leaf photos, long-tailed train, val and test splits;
see its README). Its train and val splits are cleaned once into --data-dir; test/ is never trained or tuned on.
Every row of a profile gets the same epoch budget. Two-stage rows split it into frozen-backbone head epochs and
full fine-tune epochs (as train_fixed.sh does); single-stage rows train the whole model for all of it. Rows with
post-hoc logit adjustment pick tau on validation only (inference.search_tau) and apply it to test.

`--variant seed-shaped` trains on a subsample of field13's train split shaped like the seed's AI Challenger
distribution (seed_shaped_counts: largest class 300 photos, two classes with one photo and one with two; val and test
unchanged), written once into OUT/sources/ and cleaned into its own --data-dir.

Each run goes to OUT/runs/<profile>/<row>_seed<k>/ and is resumable: re-running skips finished runs and
continues interrupted ones (train.py --resume auto). Results are written after every run, so the report grows
while the benchmark runs: OUT/realdata_<profile>.md, .csv (one line per run) and .png.
"""
import argparse
import json
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

# runtime first: it sets OMP_WAIT_POLICY before torch loads, as the training runs it starts expect.
from leafdisease.utils import runtime  # noqa: E402, F401, I001

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

from benchmarks.report import header_lines, markdown_table, start_snapshot  # noqa: E402
from benchmarks.runner import format_minutes, format_percent, mean_and_spread, run_stages  # noqa: E402
from leafdisease.data import cleaning, longtail  # noqa: E402
from leafdisease.data.aichallenger_classes import OFFICIAL_TRAIN_COUNTS  # noqa: E402
from leafdisease.deployment import inference  # noqa: E402
from leafdisease.evaluation import metrics, reports  # noqa: E402
from leafdisease.training import checkpoint as checkpoint_format  # noqa: E402
from leafdisease.training import models, recipe  # noqa: E402
from leafdisease.utils.atomic_io import save_figure, save_torch, write_csv, write_json, write_text  # noqa: E402
from leafdisease.utils.errors import UserError, cli_entry  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SOURCE = ROOT.parent / "shared" / "realdata" / "field13"
HEAD_LR, FULL_LR, BASELINE_LR = (recipe.settings(recipe.path_of(name))["lr"]
                                for name in ("fixed_stage1", "fixed_stage2", "baseline"))
TAU_GRID = inference.tau_grid(-2.0, 2.0, 0.25)
RESULT_FILE = "result.json"


@dataclass(frozen=True)
class Profile:
    img_size: int
    baseline_img_size: int  # the seed's baseline trains at 224 px against the fix's 320 (0.7x)
    epochs: int
    head_epochs: int
    warmup_epochs: float
    crt_epochs: int


PROFILES = {
    "screen": Profile(img_size=96, baseline_img_size=64, epochs=12, head_epochs=3, warmup_epochs=1, crt_epochs=2),
    "final": Profile(img_size=128, baseline_img_size=96, epochs=20, head_epochs=5, warmup_epochs=2, crt_epochs=3),
}


@dataclass(frozen=True)
class Row:
    title: str
    kind: str = "two_stage"  # two_stage | single | crt
    common: tuple = ()  # train.py flags for every stage
    full: tuple = ()  # train.py flags for the full stage only
    posthoc_tau: bool = False  # pick tau on validation, apply it on test
    runs_of: str = ""  # evaluate another row's runs instead of training new ones


FIX = ("--class-weights", "sqrt", "--augment", "strong")
ROWS = {
    "plain": Row("generic fine-tune (timm train.py's recipe): one stage, CE + label smoothing, no class weights, "
                 "random-resized crop + flip + colour jitter, AdamW, warmup + cosine, no gradient clipping",
                 kind="single", common=("--class-weights", "none", "--augment", "plain", "--clip-grad", "0")),
    "baseline": Row("the seed's baseline (train_baseline.sh): inverse weights, weak aug., 0.7x resolution, one stage, "
                    "LR 1e-4, no warmup", kind="single", common=("--class-weights", "inverse", "--augment", "weak")),
    "fixed": Row("the seed's fix (train_fixed.sh): sqrt weights, strong aug., full resolution, two stages", common=FIX),
    "fixed_tau": Row("fixed + post-hoc logit adjustment (tau chosen on val)", posthoc_tau=True, runs_of="fixed"),
    "sampler": Row("fixed + class-aware sqrt sampler", common=FIX + ("--sampler", "sqrt")),
    "sampler_unweighted": Row("class-aware sqrt sampler without class weights (sqrt balance instead of the full "
                              "balance sampler x weights give)",
                              common=("--class-weights", "none", "--augment", "strong", "--sampler", "sqrt")),
    "sampler_tau": Row("sampler + post-hoc logit adjustment (tau chosen on val)", posthoc_tau=True,
                       runs_of="sampler"),
    "hierarchy": Row("sampler + hierarchy loss: cross-entropy at the crop and disease levels, weight 0.5",
                     common=FIX + ("--sampler", "sqrt", "--hierarchy-loss", "0.5")),
    "logit_adjusted": Row("fixed with logit-adjusted loss instead of class weights, + tau chosen on val",
                          common=("--class-weights", "none", "--augment", "strong", "--loss", "logit-adjusted"),
                          posthoc_tau=True),
    "ema": Row("fixed + EMA of weights in the full stage (decay 0.99)", common=FIX, full=("--ema-decay", "0.99")),
    "backbone_lr": Row("fixed + backbone LR x0.1 in the full stage", common=FIX, full=("--backbone-lr-scale", "0.1")),
    "crt": Row("fixed, then classifier re-balancing (cRT, Kang et al. 2020): frozen backbone, class-balanced "
               "sampling, no class weights, last epochs of the budget", kind="crt", common=FIX),
    "targeted": Row("fixed + heavy augmentation for few-shot classes (< 20 images)", common=FIX,
                    full=("--targeted-aug-below", "20")),
}
# --select-metric: what a run's checkpoint and tau are chosen by (train.py's and calibration's target metric).
SELECT_METRICS = ("balanced_acc", "acc", "prior_acc", "macro_f1")
METRICS = {"balanced_acc": "bal. acc.", "acc": "accuracy", "prior_acc": "acc. at train prior",
           "macro_f1": "macro-F1", "many_acc": "many", "medium_acc": "medium", "few_acc": "few",
           "tiny_acc": "1-2 photo classes", "crop_acc": "crop", "disease_acc": "disease"}
TINY_CLASS_MAX_IMAGES = 2  # the seed's classes 44 and 45 have one training photo each
VARIANTS = ("as-is", "seed-shaped")
SEED_SHAPED_LARGEST, SEED_SHAPED_TAIL, SEED_SHAPED_SEED = 300, (2, 1, 1), 2018
SHOT_COLORS = {"many_acc": "tab:blue", "medium_acc": "tab:orange", "few_acc": "tab:red"}


def add_run_options(parser):
    """The options of every field13 study (this script's and resolution.py's): data, seeds, batch, workers, output."""
    parser.add_argument("--source", default=str(DEFAULT_SOURCE), help="field13 root (train/, val/, test/)")
    parser.add_argument("--test", default=None, help="labelled test folder (default SOURCE/test)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--no-pretrained", action="store_true", help="random initialisation (tests)")
    parser.add_argument("--workers", type=int, default=None, help="data-loading processes (default: train.py's)")
    parser.add_argument("--out", default="benchmarks/reports", help="folder for runs/ and the reports")


def complete_run_options(args):
    """add_run_options' values completed: rows and seeds without repeats, the test folder."""
    args.rows = list(dict.fromkeys(args.rows))
    args.seeds = list(dict.fromkeys(args.seeds))
    args.test = args.test or str(Path(args.source) / "test")
    return args


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_options(parser)
    parser.add_argument("--data-dir", default=None,
                        help="where its train and val splits are cleaned (default data/field13[_seed_shaped])")
    parser.add_argument("--variant", choices=VARIANTS, default="as-is",
                        help="train split as it is, or subsampled to the seed's imbalance (test and val unchanged)")
    parser.add_argument("--profile", choices=tuple(PROFILES), default="screen")
    parser.add_argument("--rows", nargs="+", choices=list(ROWS), default=list(ROWS), metavar="ROW",
                        help=f"rows, in this order (default all: {' '.join(ROWS)})")
    parser.add_argument("--model", default=models.DEFAULT_MODEL)
    parser.add_argument("--select-metric", choices=SELECT_METRICS, default=metrics.DEFAULT_TARGET_METRIC,
                        help="validation metric each run's checkpoint (train.py --select-metric) and post-hoc tau "
                             "are chosen by; runs and reports of another than the default get their own names")
    args = complete_run_options(parser.parse_args(argv))
    args.data_dir = args.data_dir or ("data/field13" if args.variant == "as-is" else "data/field13_seed_shaped")
    args.suffix = "" if args.variant == "as-is" else "_" + args.variant.replace("-", "_")
    if args.select_metric != metrics.DEFAULT_TARGET_METRIC:
        args.suffix += f"_select_{args.select_metric}"
    return args


# ----------------------------------------------------------------------------------------------------
# The seed-shaped variant
# ----------------------------------------------------------------------------------------------------
def seed_shaped_counts(available):
    """Training images per class (by the classes' order in `available`) for a subsample shaped like the seed's
    distribution: classes ranked by their available photos take the seed's counts at evenly spaced ranks, scaled
    so the largest is SEED_SHAPED_LARGEST (capped by what the class has); the smallest classes get
    SEED_SHAPED_TAIL (the seed's 1-photo classes 44 and 45, and a 2-photo one)."""
    available = np.asarray(available)
    order = np.argsort(-available, kind="stable")
    seed_sorted = np.sort(OFFICIAL_TRAIN_COUNTS)[::-1]
    ranks = np.linspace(0, len(seed_sorted) - 1, len(available)).round().astype(int)
    targets = np.maximum(1, np.round(seed_sorted[ranks] * SEED_SHAPED_LARGEST / seed_sorted[0])).astype(int)
    targets[-len(SEED_SHAPED_TAIL):] = SEED_SHAPED_TAIL
    counts = np.zeros(len(available), dtype=int)
    counts[order] = np.minimum(targets, available[order])
    return counts


def write_seed_shaped_source(source, out):
    """OUT/sources/<name>_seed_shaped: train/ subsampled by seed_shaped_counts (seeded), val/ copied; returns it
    and the {class: (available, kept)} table. Written once (to a temporary name, then renamed)."""
    target = Path(out) / "sources" / f"{Path(source).name}_seed_shaped"
    classes = sorted(folder.name for folder in (Path(source) / "train").iterdir() if folder.is_dir())
    photos = {name: sorted((Path(source) / "train" / name).iterdir()) for name in classes}
    counts = seed_shaped_counts([len(photos[name]) for name in classes])
    table = {name: (len(photos[name]), int(count)) for name, count in zip(classes, counts)}
    if target.exists():
        return target, table
    staging = target.with_name(target.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    rng = np.random.default_rng(SEED_SHAPED_SEED)
    for name, count in zip(classes, counts):
        (staging / "train" / name).mkdir(parents=True)
        for index in sorted(rng.choice(len(photos[name]), size=count, replace=False)):
            shutil.copy2(photos[name][index], staging / "train" / name / photos[name][index].name)
    shutil.copytree(Path(source) / "val", staging / "val")
    staging.rename(target)
    return target, table


# ----------------------------------------------------------------------------------------------------
# The train.py commands of a run
# ----------------------------------------------------------------------------------------------------
def run_dir(args, row, seed):
    return Path(args.out) / "runs" / (args.profile + args.suffix) / f"{ROWS[row].runs_of or row}_seed{seed}"


def stage_commands(args, row, seed):
    """[(stage directory, train.py arguments)] for one row and seed, in order; the last stage is the result."""
    recipe, profile = ROWS[ROWS[row].runs_of or row], PROFILES[args.profile]
    folder = run_dir(args, row, seed)
    img_size = profile.baseline_img_size if row == "baseline" else profile.img_size
    base = ["--data-dir", str(args.data_dir), "--model", args.model, "--batch-size", str(args.batch_size),
            "--img-size", str(img_size), "--seed", str(seed), "--resume", "auto"]
    if args.no_pretrained:
        base.append("--no-pretrained")
    if args.workers is not None:
        base += ["--workers", str(args.workers)]
    if args.select_metric != metrics.DEFAULT_TARGET_METRIC:
        base += ["--select-metric", args.select_metric]  # only then, so runs made before the option still resume
    common = base + list(recipe.common)
    if recipe.kind == "single":
        lr, warmup = (BASELINE_LR, 0) if row == "baseline" else (FULL_LR, profile.warmup_epochs)
        return [(folder / "full", ["--stage", "full", "--epochs", str(profile.epochs), "--lr", f"{lr:g}",
                                   "--warmup-epochs", f"{warmup:g}", "--output", str(folder / "full"), *common,
                                   *recipe.full])]
    crt_epochs = profile.crt_epochs if recipe.kind == "crt" else 0
    full_epochs = profile.epochs - profile.head_epochs - crt_epochs
    stages = [
        (folder / "head", ["--stage", "head", "--epochs", str(profile.head_epochs), "--lr", f"{HEAD_LR:g}",
                           "--output", str(folder / "head"), *common]),
        (folder / "full", ["--stage", "full", "--epochs", str(full_epochs), "--lr", f"{FULL_LR:g}",
                           "--warmup-epochs", f"{profile.warmup_epochs:g}", "--init-from",
                           str(folder / "head" / "best.pth"), "--output", str(folder / "full"), *common,
                           *recipe.full]),
    ]
    if crt_epochs:
        balanced = base + ["--class-weights", "none", "--augment", "strong", "--sampler", "inverse"]
        stages.append((folder / "crt", ["--stage", "head", "--epochs", str(crt_epochs), "--lr", f"{HEAD_LR:g}",
                                         "--init-from", str(folder / "full" / "best.pth"),
                                         "--output", str(folder / "crt"), *balanced]))
    return stages


# ----------------------------------------------------------------------------------------------------
# Training and scoring one run
# ----------------------------------------------------------------------------------------------------
def train_run(args, row, seed):
    """Train (or resume) the run's stages; the record of wall and CPU seconds and divergence."""
    return run_stages(stage_commands(args, row, seed))


def score_run(args, checkpoint_path, checkpoint):
    """Validation and test scores of a run's final checkpoint (loaded from checkpoint_path), cached beside it
    (scores.pt)."""
    cache = checkpoint_path.with_name("scores.pt")
    if cache.exists() and cache.stat().st_mtime >= checkpoint_path.stat().st_mtime:
        return torch.load(cache, weights_only=True)
    model = inference.build_model(checkpoint, checkpoint_path)
    scored = {}
    for split, data in (("val", args.data_dir), ("test", args.test)):
        labelled = reports.read_labelled_set(data, checkpoint)
        scores, indices, unreadable = inference.predict_scores(
            model, labelled.paths, checkpoint, torch.device("cpu"), batch_size=64,
            workers=0, desc=f"scoring {split}")
        if unreadable:
            raise UserError(f"{data}: {len(unreadable)} unreadable image(s), e.g. {unreadable[0][0]}")
        scored[split] = {"scores": scores, "targets": torch.as_tensor(labelled.targets[indices.numpy()])}
    save_torch(scored, cache)
    return scored


def run_result(args, row, seed, record):
    """One run's numbers on val and test (tau chosen on val for post-hoc rows)."""
    checkpoint_path = stage_commands(args, row, seed)[-1][0] / "best.pth"
    result = {"row": row, "seed": seed, **record}
    if record["diverged"] or not checkpoint_path.exists():
        return result
    checkpoint = checkpoint_format.load(checkpoint_path, need="weights")
    scored = score_run(args, checkpoint_path, checkpoint)
    tau = 0.0
    if ROWS[row].posthoc_tau:
        many, few = checkpoint_format.shot_thresholds(checkpoint)
        tau = inference.search_tau(scored["val"]["scores"], scored["val"]["targets"].numpy(),
                                   checkpoint["train_counts"], TAU_GRID, many, few,
                                   metric=metrics.calibration_target(args.select_metric)).tau
    result["tau"] = tau
    tiny = np.asarray(checkpoint["train_counts"]) <= TINY_CLASS_MAX_IMAGES
    for split in ("val", "test"):
        values, per_class, _ = reports.score_metrics(scored[split]["scores"], scored[split]["targets"].numpy(),
                                                        checkpoint, tau)
        present_tiny = tiny & (per_class["support"] > 0).to_numpy()
        values["tiny_acc"] = float(per_class["recall"][present_tiny].mean()) if present_tiny.any() else float("nan")
        # crop/disease accuracy exist for checkpoints with a label hierarchy only
        result.update({f"{split}_{name}": values.get(name, float("nan")) for name in METRICS})
        result[f"{split}_recall"] = dict(zip(checkpoint["class_names"], map(float, per_class["recall"])))
    return result


# ----------------------------------------------------------------------------------------------------
# Report
# ----------------------------------------------------------------------------------------------------
def summary_table(runs, args):
    several = len(args.seeds) > 1
    table = []
    fixed_wall = runs.loc[runs["row"] == "fixed", "wall_seconds"].mean() if "fixed" in set(runs["row"]) else np.nan
    for row in args.rows:
        results = runs.loc[runs["row"] == row]
        if results.empty:
            continue
        cells = {"row": row, "seeds done": len(results),
                 f"val {METRICS[args.select_metric]}": format_percent(results[f"val_{args.select_metric}"], several)}
        # results written before a metric existed lack its column: shown as "–"
        cells.update({f"test {label}": format_percent(results.get(f"test_{name}", pd.Series([np.nan])), several)
                      for name, label in METRICS.items()})
        cells["tau (val)"] = "–" if not ROWS[row].posthoc_tau else " ".join(f"{tau:g}" for tau in results["tau"])
        wall = results["wall_seconds"].mean()
        cells["wall / run"] = format_minutes(wall) + ("" if np.isnan(fixed_wall) else f" ({wall / fixed_wall:.2f}x)")
        table.append(cells)
    return pd.DataFrame(table)


def variant_lines(args):
    if args.variant_table is None:
        return []
    kept = {name: counts[1] for name, counts in args.variant_table.items()}
    return [f"- Seed-shaped train split (`seed_shaped_counts`, sampling seed {SEED_SHAPED_SEED}): "
            + ", ".join(f"{name} {count}/{available}" for name, (available, count) in args.variant_table.items())
            + f" (kept/available; {sum(kept.values())} photos, imbalance {max(kept.values())}:{min(kept.values())}; "
              f"\"1-2 photo classes\" is their mean recall)"]


def write_markdown(path, runs, args, started, argv):
    profile = PROFILES[args.profile]
    lines = header_lines(f"{Path(args.source).name}: recipes chosen on validation, reported on test ({args.profile} "
                         f"profile)", started, "benchmarks/realdata.py", argv)
    lines += [f"- Data: `{args.source}`: train and val cleaned into `{args.data_dir}`, test `{args.test}` "
              f"(never trained or tuned on)",
              *variant_lines(args),
              f"- Budget per row: {profile.epochs} epochs at {profile.img_size} px (the seed's baseline at "
              f"{profile.baseline_img_size} px), batch {args.batch_size}, `{args.model}` with ImageNet weights. "
              f"Two-stage rows: {profile.head_epochs} head epochs (frozen backbone, LR {HEAD_LR:g}) + the rest full "
              f"(LR {FULL_LR:g}, {profile.warmup_epochs:g} warmup); cRT takes its {profile.crt_epochs} epochs from the "
              f"full stage. Single-stage rows: all epochs full (plain LR {FULL_LR:g} with warmup, the seed's baseline "
              f"{BASELINE_LR:g} without).",
              f"- Seeds: {' '.join(map(str, args.seeds))}. Wall time is training only (scoring excluded), on a machine "
              f"shared with other jobs while it ran: compare it between rows of the same table only.",
              "", "## Results", ""]
    lines += markdown_table(summary_table(runs, args))
    lines += ["", "Percentages: balanced accuracy = mean per-class recall; many/medium/few = mean recall of the "
              "classes of each group (" + ", ".join(longtail.shot_group_captions().values()) + "). Each run's checkpoint is its final stage's best epoch by "
              f"validation {METRICS[args.select_metric]} (`--select-metric {args.select_metric}`); post-hoc rows pick tau on validation (grid -2..2, kept at 0 unless it "
              "gains more than one validation image)" + (", ± is the standard deviation over seeds." if len(args.seeds) > 1
                                                          else "; one seed: a few points may be noise."),
              "", "## Rows", ""]
    for row in args.rows:
        lines.append(f"- `{row}`: {ROWS[row].title}")
        if not ROWS[row].runs_of:
            for _, argv in stage_commands(args, row, "<k>"):
                lines.append(f"  - `python train.py {' '.join(part for part in argv)}`")
    diverged = runs.loc[runs["diverged"].notna()] if "diverged" in runs else runs.iloc[:0]
    if len(diverged):
        lines += ["", "## Diverged runs", ""] + [f"- `{run.row}` seed {run.seed}: {run.diverged}"
                                                  for run in diverged.itertuples()]
    write_text(path, "\n".join(lines) + "\n")


def plot(path, runs, args):
    rows = [row for row in args.rows if (runs["row"] == row).any()]
    fig, (balanced_ax, groups_ax) = plt.subplots(1, 2, figsize=(15, 5.5))
    positions = np.arange(len(rows))
    for offset, split, color in ((-0.2, "val", "tab:gray"), (0.2, "test", "tab:green")):
        stats = [mean_and_spread(runs.loc[runs["row"] == row, f"{split}_balanced_acc"]) for row in rows]
        means, spreads = (np.array(values) * 100 for values in zip(*stats))
        bars = balanced_ax.bar(positions + offset, means, 0.4, yerr=np.nan_to_num(spreads), capsize=3, color=color,
                               label=split)
        balanced_ax.bar_label(bars, fmt="%.1f", padding=2, fontsize=7)
    balanced_ax.set(title="Balanced accuracy (chosen on val, reported on test)", ylabel="balanced accuracy (%)")
    balanced_ax.legend(fontsize=8)
    for offset, (name, color) in zip((-0.27, 0, 0.27), SHOT_COLORS.items()):
        stats = [mean_and_spread(runs.loc[runs["row"] == row, f"test_{name}"]) for row in rows]
        means, spreads = (np.array(values) * 100 for values in zip(*stats))
        groups_ax.bar(positions + offset, means, 0.27, yerr=np.nan_to_num(spreads), capsize=2, color=color,
                      label=f"test {METRICS[name]}-shot")
    groups_ax.set(title="Test accuracy by shot group (mean per-class recall)", ylabel="accuracy (%)")
    groups_ax.legend(fontsize=8)
    for axis in (balanced_ax, groups_ax):
        axis.set_xticks(positions, rows, rotation=30, ha="right")
        axis.set_ylim(0, 105)
        axis.grid(axis="y", alpha=0.3)
    profile = PROFILES[args.profile]
    fig.suptitle(f"{Path(args.source).name} ({args.variant}), {args.profile} profile: {profile.epochs} epochs at {profile.img_size} px, "
                 f"seeds {' '.join(map(str, args.seeds))}")
    save_figure(fig, path)


def write_reports(args, results, started, argv):
    runs = pd.DataFrame(results)
    out = Path(args.out)
    stem = f"realdata_{args.profile}{args.suffix}"
    write_csv(out / f"{stem}.csv", runs.drop(columns=[column for column in runs if column.endswith("_recall")]))
    write_markdown(out / f"{stem}.md", runs, args, started, argv)
    plot(out / f"{stem}.png", runs, args)
    return runs


# ----------------------------------------------------------------------------------------------------
# main
# ----------------------------------------------------------------------------------------------------
def prepare_data(args):
    source, args.variant_table = args.source, None
    if args.variant == "seed-shaped":
        source, args.variant_table = write_seed_shaped_source(args.source, args.out)
    summary = cleaning.clean_dataset(source, args.data_dir, progress=False)
    print(f"data: {source} -> {args.data_dir} ({'reused' if summary['reused'] else 'cleaned'}); "
          f"test: {args.test}", flush=True)


@cli_entry
def main(argv=None):
    args = parse_args(argv)
    argv = sys.argv[1:] if argv is None else argv
    started = start_snapshot()
    prepare_data(args)
    results = []
    # Seed-major order: every row gets its first seed before any row gets a second one.
    plan = [(row, seed) for seed in args.seeds for row in args.rows]
    for number, (row, seed) in enumerate(plan, 1):
        result_path = run_dir(args, row, seed) / f"{row}_{RESULT_FILE}"
        if result_path.exists():
            results.append(json.loads(result_path.read_text()))
            continue
        print(f"== [{number}/{len(plan)}] {row}, seed {seed}: {ROWS[row].title}", flush=True)
        started_run = time.perf_counter()
        record = train_run(args, ROWS[row].runs_of or row, seed)
        results.append(run_result(args, row, seed, record))
        write_json(result_path, results[-1])
        runs = write_reports(args, results, started, argv)
        print(f"   {row} seed {seed}: val {args.select_metric} "
              f"{results[-1].get(f'val_{args.select_metric}', float('nan')):.3f}; val "
              f"{results[-1].get('val_balanced_acc', float('nan')):.3f} test "
              f"{results[-1].get('test_balanced_acc', float('nan')):.3f} balanced accuracy "
              f"({time.perf_counter() - started_run:.0f} s)", flush=True)
    runs = write_reports(args, results, started, argv)
    print("\n".join(markdown_table(summary_table(runs, args))))
    print(f"wrote {Path(args.out) / f'realdata_{args.profile}{args.suffix}.md'}")


if __name__ == "__main__":
    main()
