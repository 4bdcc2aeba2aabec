"""The seed's before/after table as an experiment: each fix alone, all together, and long-tail methods on top.

    python benchmarks/ablation.py                      # demo profile: 8 epochs, 128 px fixed / 96 px baseline
    python benchmarks/ablation.py --seeds 0 1 2        # mean and spread over three seeds
    python benchmarks/ablation.py --rows baseline fixed --epochs 50 --img-size 320 --baseline-img-size 224 \
        --warmup-epochs 5                               # the seed's own profile on a real dataset

Every row gets the same epoch budget. Single-stage rows train the whole model for --epochs at the seed's
baseline LR (recipes/baseline.yaml); two-stage rows split the same budget into a frozen-backbone head stage
(--head-fraction of it, recipes/fixed_stage1.yaml's LR) and a full stage (the rest, recipes/fixed_stage2.yaml's LR
with --warmup-epochs), as train_fixed.sh does. The defaults are the demo profile (recipes/demo.yaml).
Each run goes to OUT/runs/<row>_seed<k>/ and is resumable: re-running skips finished runs and continues
interrupted ones. The reported numbers are the final stage's best epoch by validation balanced accuracy.
Writes OUT/ablation.md, OUT/ablation.png and OUT/ablation.csv (one line per run).
"""
import argparse
import json
import math
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
import dataset  # noqa: E402
from benchmarks.runner import (  # noqa: E402
    format_minutes,
    format_percent,
    is_complete,
    load_record,
    mean_and_spread,
    option_value,
    run_stage,
    settings_key,
)
from leafdisease.data import longtail  # noqa: E402
from leafdisease.training import checkpoint as checkpoint_format  # noqa: E402
from leafdisease.training import models, recipe  # noqa: E402
from leafdisease.utils import cli  # noqa: E402
from leafdisease.utils.atomic_io import save_figure, write_csv, write_text  # noqa: E402
from leafdisease.utils.errors import UserError, cli_entry  # noqa: E402

BASELINE, HEAD, FULL = (recipe.settings(recipe.path_of(name)) for name in ("baseline", "fixed_stage1", "fixed_stage2"))
DEMO = {name: recipe.settings(recipe.path_of(name), recipe.path_of("demo"))
        for name in ("baseline", "fixed_stage1", "fixed_stage2")}
BASELINE_LR, HEAD_LR, FULL_LR = BASELINE["lr"], HEAD["lr"], FULL["lr"]
METRICS = {"acc": "accuracy", "balanced_acc": "balanced acc.", "macro_f1": "macro-F1",
           "many_acc": "many-shot", "medium_acc": "medium-shot", "few_acc": "few-shot"}
SHOT_COLORS = {"many_acc": "tab:blue", "medium_acc": "tab:orange", "few_acc": "tab:red"}
IMG_SIZES = models.IMG_SIZE_RANGE
# What train.py would refuse in a row's stages, refused here before any stage trains.
OPTION_RULES = {"epochs": cli.POSITIVE_INT, "batch_size": cli.POSITIVE_INT, "img_size": IMG_SIZES,
                "baseline_img_size": IMG_SIZES, "warmup_epochs": cli.NON_NEGATIVE, "workers": cli.NON_NEGATIVE_INT}


@dataclass(frozen=True)
class Recipe:
    title: str
    class_weights: str = BASELINE["class_weights"]
    augment: str = BASELINE["augment"]
    high_resolution: bool = False
    two_stage: bool = False
    extra: tuple = ()


FIXED = dict(class_weights=FULL["class_weights"], augment=FULL["augment"], high_resolution=True, two_stage=True)
RECIPES = {
    "baseline": Recipe(f"seed baseline: inverse weights, weak aug., low res., one stage, LR {BASELINE_LR:g}"),
    "sqrt_weights": Recipe("baseline + sqrt class weights", class_weights="sqrt"),
    "strong_aug": Recipe("baseline + strong augmentation", augment="strong"),
    "resolution": Recipe("baseline + higher resolution", high_resolution=True),
    "two_stage": Recipe(f"baseline + two stages (head LR {HEAD_LR:g}, then full LR {FULL_LR:g} + warmup)",
                        two_stage=True),
    "fixed": Recipe("all four fixes (train_fixed.sh)", **FIXED),
    "logit_adjusted": Recipe("fixed + logit-adjusted loss, no class weights",
                             **dict(FIXED, class_weights="none"), extra=("--loss", "logit-adjusted")),
    "sqrt_sampler": Recipe("fixed + class-aware sqrt sampling (sqrt weights kept)", **FIXED,
                           extra=("--sampler", "sqrt")),
    "focal": Recipe("fixed + focal loss (sqrt weights kept)", **FIXED, extra=("--loss", "focal")),
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default="data/cleaned", help="cleaned dataset (default: the demo one)")
    parser.add_argument("--rows", nargs="+", choices=list(RECIPES), default=list(RECIPES), metavar="ROW",
                        help=f"rows to run, in this order (default: all: {' '.join(RECIPES)})")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0], help="one run per seed; >1 reports mean ± std")
    parser.add_argument("--epochs", type=int, default=DEMO["fixed_stage1"]["epochs"] + DEMO["fixed_stage2"]["epochs"],
                        help="epoch budget of every row (default: the demo profile's two stages together)")
    parser.add_argument("--head-fraction", type=float, default=0.5,
                        help="share of the budget for the head stage of two-stage rows (0.5: 4 + 4 of 8)")
    parser.add_argument("--warmup-epochs", type=float, default=DEMO["fixed_stage2"]["warmup_epochs"],
                        help="warmup of the full stage of two-stage rows (default: the demo profile's)")
    parser.add_argument("--img-size", type=int, default=DEMO["fixed_stage2"]["img_size"],
                        help="resolution with the resolution fix (default: the demo profile's)")
    parser.add_argument("--baseline-img-size", type=int, default=DEMO["baseline"]["img_size"],
                        help="resolution without it (default: the demo profile's)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--model", default=models.DEFAULT_MODEL)
    parser.add_argument("--no-pretrained", action="store_true", help="random initialisation")
    parser.add_argument("--pretrained-file", default=None, help="local weights file for --model")
    parser.add_argument("--workers", type=int, default=None, help="data-loading processes (default: train.py's)")
    parser.add_argument("--out", default="benchmarks/reports", help="folder for runs/ and the reports")
    args = parser.parse_args(argv)
    cli.check_options(parser, args, OPTION_RULES)
    if any(RECIPES[row].two_stage for row in args.rows) and args.epochs < 2:
        parser.error("--epochs: two-stage rows need at least 2 epochs (one per stage)")
    if not 0 < args.head_fraction < 1:
        parser.error("--head-fraction must be between 0 and 1")
    args.rows = list(dict.fromkeys(args.rows))
    args.seeds = list(dict.fromkeys(args.seeds))
    return args


# ----------------------------------------------------------------------------------------------------
# The train.py commands of a row
# ----------------------------------------------------------------------------------------------------
def stage_epochs(args):
    """(head, full) epochs of a two-stage row: the same budget as a single-stage row."""
    head = min(max(1, round(args.epochs * args.head_fraction)), args.epochs - 1)
    return head, args.epochs - head


def stage_commands(args, row, seed):
    """[(stage directory, train.py arguments)] for one row and seed, in order."""
    recipe = RECIPES[row]
    run_dir = Path(args.out) / "runs" / f"{row}_seed{seed}"
    common = ["--data-dir", str(args.data_dir), "--model", args.model, "--batch-size", str(args.batch_size),
              "--img-size", str(args.img_size if recipe.high_resolution else args.baseline_img_size),
              "--class-weights", recipe.class_weights, "--augment", recipe.augment, "--seed", str(seed),
              "--resume", "auto", *recipe.extra]
    if args.no_pretrained:
        common.append("--no-pretrained")
    if args.pretrained_file:
        common += ["--pretrained-file", args.pretrained_file]
    if args.workers is not None:
        common += ["--workers", str(args.workers)]
    if not recipe.two_stage:
        return [(run_dir / "full", ["--stage", "full", "--epochs", str(args.epochs), "--lr", f"{BASELINE_LR:g}",
                                    "--warmup-epochs", "0", "--output", str(run_dir / "full"), *common])]
    head_epochs, full_epochs = stage_epochs(args)
    return [
        (run_dir / "head", ["--stage", "head", "--epochs", str(head_epochs), "--lr", f"{HEAD_LR:g}",
                            "--output", str(run_dir / "head"), *common]),
        (run_dir / "full", ["--stage", "full", "--epochs", str(full_epochs), "--lr", f"{FULL_LR:g}",
                            "--warmup-epochs", f"{args.warmup_epochs:g}", "--init-from",
                            str(run_dir / "head" / "best.pth"), "--output", str(run_dir / "full"), *common]),
    ]


# ----------------------------------------------------------------------------------------------------
# Running and reading runs
# ----------------------------------------------------------------------------------------------------
def read_result(stage_dirs, records):
    """One run's numbers: the final stage's best epoch, its epoch counted over all stages, wall time."""
    final = stage_dirs[-1] / "best.pth"
    result = {"wall_seconds": sum(record["wall_seconds"] for record in records),
              "diverged": next((record["diverged"] for record in records if record["diverged"]), None)}
    if not final.exists():
        return result
    checkpoint = checkpoint_format.load(final, need="result")
    best = checkpoint["history"][checkpoint["best_epoch"] - 1]
    earlier_epochs = len(checkpoint["parent"]["history"]) if checkpoint.get("parent") else 0
    result.update({name: best[f"val_{name}"] for name in METRICS})
    result.update({"best_epoch": earlier_epochs + checkpoint["best_epoch"],
                   "epochs": earlier_epochs + len(checkpoint["history"])})
    return result


# ----------------------------------------------------------------------------------------------------
# Time estimate
# ----------------------------------------------------------------------------------------------------
def calibrate_step_seconds(args, num_classes, img_size):
    """Seconds for one full-model training step on random tensors (a lower bound: no data loading)."""
    model = models.create_model(args.model, num_classes, pretrained=False)
    optimizer = torch.optim.AdamW(model.parameters())
    images = torch.randn(args.batch_size, 3, img_size, img_size)
    targets = torch.randint(0, num_classes, (args.batch_size,))
    timings = []
    for _ in range(3):
        started = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(model(images), targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        timings.append(time.perf_counter() - started)
    return min(timings[1:])


def estimate_seconds(args, pending, metadata):
    """Compute-only estimate of the pending stages: full step ~ 3 forwards, head step and eval ~ 1 forward."""
    stages = [(option_value(argv, "--stage"), int(option_value(argv, "--img-size")), int(option_value(argv, "--epochs")))
              for _, argv in pending]
    step_seconds = {size: calibrate_step_seconds(args, len(metadata.classes), size) for _, size, _ in stages}
    total = 0.0
    for stage, img_size, epochs in stages:
        seconds = step_seconds[img_size]
        train_seconds = len(metadata.train) // args.batch_size * seconds * (1 / 3 if stage == "head" else 1)
        eval_seconds = len(metadata.val) / args.batch_size * seconds / 3
        total += epochs * (train_seconds + eval_seconds)
    return total


# ----------------------------------------------------------------------------------------------------
# Report
# ----------------------------------------------------------------------------------------------------
def summary_table(runs, args):
    several = len(args.seeds) > 1
    rows = []
    for row in args.rows:
        results = runs.loc[runs["row"] == row]
        cells = {"row": row}
        cells.update({label: format_percent(results[name], several) for name, label in METRICS.items()})
        mean_epoch, spread_epoch = mean_and_spread(results["best_epoch"])
        cells["best epoch"] = ("–" if math.isnan(mean_epoch) else
                               (f"{mean_epoch:.1f} ± {spread_epoch:.1f}" if several and not math.isnan(spread_epoch)
                                else f"{mean_epoch:.0f}") + f" / {args.epochs}")
        cells["wall time / run"] = format_minutes(results["wall_seconds"].mean())
        diverged = int(results["diverged"].notna().sum())
        cells["diverged runs"] = f"{diverged} / {len(results)}"
        rows.append(cells)
    return pd.DataFrame(rows)


def dataset_lines(metadata, data_dir):
    counts = metadata.classes["train_count"].to_numpy()
    groups = longtail.shot_groups(counts)
    captions = longtail.shot_group_captions()
    summary_path = Path(data_dir) / "metadata" / "summary.json"
    source = (f" (cleaned from `{json.loads(summary_path.read_text()).get('source')}`)" if summary_path.exists()
              else "")
    return [f"- Dataset: `{Path(data_dir).resolve()}`{source}: {len(metadata.train)} training / "
            f"{len(metadata.val)} validation images, {len(counts)} classes, imbalance {counts.max()}:{counts.min()}; "
            + ", ".join(f"{(groups == group).sum()} {caption}" for group, caption in captions.items()) + " classes"]


def write_markdown(path, runs, args, metadata, started, argv):
    head_epochs, full_epochs = stage_epochs(args)
    lines = header_lines("Ablation: the seed's fixes one at a time, together, and long-tail methods on top", started,
                         "benchmarks/ablation.py", argv)
    lines += dataset_lines(metadata, args.data_dir)
    lines += [f"- Budget per row: {args.epochs} epochs, batch {args.batch_size}, model `{args.model}` "
              f"({'random init' if args.no_pretrained else 'pretrained'}); seeds {' '.join(map(str, args.seeds))}. "
              f"Single-stage rows: LR {BASELINE_LR:g}, no warmup. Two-stage rows: {head_epochs} head epoch(s) "
              f"(frozen backbone, LR {HEAD_LR:g}) + {full_epochs} full epoch(s) (LR {FULL_LR:g}, "
              f"{args.warmup_epochs:g} warmup). Resolution {args.baseline_img_size} px, {args.img_size} px with the fix.",
              "", "## Results", ""]
    lines += markdown_table(summary_table(runs, args))
    lines += ["", "Scores are percentages on the validation split at the final stage's best epoch, chosen by balanced "
              "accuracy (mean per-class recall); many/medium/few-shot = mean recall of the classes of each group ("
              + ", ".join(longtail.shot_group_captions().values())
              + "). Best epoch counts both stages of two-stage rows."
              + (" ± is the sample standard deviation over seeds." if len(args.seeds) > 1 else
                 " One seed: differences of a few points may be noise; use --seeds 0 1 2."), "", "## Rows", ""]
    for row in args.rows:
        lines.append(f"- `{row}`: {RECIPES[row].title}")
        for stage_dir, argv in stage_commands(args, row, "<k>"):
            lines.append(f"  - `python train.py {' '.join(settings_key(argv))}`")
    diverged = runs.loc[runs["diverged"].notna()]
    if len(diverged):
        lines += ["", "## Diverged runs", ""]
        lines += [f"- `{run.row}` seed {run.seed}: {run.diverged}" for run in diverged.itertuples()]
    write_text(path, "\n".join(lines) + "\n")


def plot(path, runs, args):
    fig, (balanced_ax, groups_ax) = plt.subplots(1, 2, figsize=(15, 5.5))
    positions = np.arange(len(args.rows))
    stats = {name: [mean_and_spread(runs.loc[runs["row"] == row, name]) for row in args.rows]
             for name in ("balanced_acc", *SHOT_COLORS)}
    means, spreads = (np.array(values) * 100 for values in zip(*stats["balanced_acc"]))
    bars = balanced_ax.bar(positions, means, yerr=np.nan_to_num(spreads), capsize=4, color="tab:green")
    balanced_ax.bar_label(bars, fmt="%.1f", padding=2)
    balanced_ax.set(title="Validation balanced accuracy per row" + (" (mean ± std over seeds)" if len(args.seeds) > 1
                                                                     else ""), ylabel="balanced accuracy (%)")
    width = 0.27
    for offset, (name, color) in zip((-width, 0, width), SHOT_COLORS.items()):
        group_means, group_spreads = (np.array(values) * 100 for values in zip(*stats[name]))
        groups_ax.bar(positions + offset, group_means, width, yerr=np.nan_to_num(group_spreads), capsize=2,
                      color=color, label=METRICS[name])
    groups_ax.set(title="Accuracy by shot group (mean per-class recall)", ylabel="accuracy (%)")
    groups_ax.legend(fontsize=8)
    for axis in (balanced_ax, groups_ax):
        axis.set_xticks(positions, args.rows, rotation=30, ha="right")
        axis.set_ylim(0, 100)
        axis.grid(axis="y", alpha=0.3)
    fig.suptitle(f"Ablation, {args.epochs} epochs per row, {args.model}")
    save_figure(fig, path)


# ----------------------------------------------------------------------------------------------------
# main
# ----------------------------------------------------------------------------------------------------
def load_dataset(data_dir):
    if not (Path(data_dir) / "metadata" / "classes.csv").exists():
        raise UserError(f"{data_dir}: no cleaned dataset here; run `python analyze_data.py` to build and clean the "
                        f"demo dataset, or `python analyze_data.py --source PATH --out {data_dir}` for your own")
    return dataset.load_metadata(data_dir)


@cli_entry
def main(argv=None):
    args = parse_args(argv)
    started = start_snapshot()
    metadata = load_dataset(args.data_dir)
    plan = [(row, seed, stage_commands(args, row, seed)) for row in args.rows for seed in args.seeds]
    for _, _, stages in plan:
        for stage_dir, stage_argv in stages:
            load_record(stage_dir, stage_argv)
    pending = [(stage_dir, stage_argv) for _, _, stages in plan for stage_dir, stage_argv in stages
               if not is_complete(stage_dir, stage_argv)]
    estimate = estimate_seconds(args, pending, metadata) if pending else 0.0
    print(f"ablation: {len(plan)} runs ({len(args.rows)} row(s) x {len(args.seeds)} seed(s)), {len(pending)} stages to "
          f"train; estimate ~{estimate / 60:.0f} min (model compute only, from a 3-step calibration; data loading "
          f"on a busy or few-core machine adds to it)", flush=True)
    results = []
    for number, (row, seed, stages) in enumerate(plan, 1):
        print(f"== [{number}/{len(plan)}] {row}, seed {seed}: {RECIPES[row].title}", flush=True)
        records = []
        for stage_dir, stage_argv in stages:
            # A finished stage is not started again: its record holds its result and wall time.
            records.append(load_record(stage_dir, stage_argv) if is_complete(stage_dir, stage_argv)
                           else run_stage(stage_dir, stage_argv))
            if records[-1]["diverged"]:
                break
        results.append({"row": row, "seed": seed, **read_result([stage_dir for stage_dir, _ in stages], records)})
    runs = pd.DataFrame(results)
    for name in (*METRICS, "best_epoch", "epochs"):
        if name not in runs:
            runs[name] = float("nan")
    out = Path(args.out)
    write_csv(out / "ablation.csv", runs)
    write_markdown(out / "ablation.md", runs, args, metadata, started, sys.argv[1:] if argv is None else argv)
    plot(out / "ablation.png", runs, args)
    print("\n".join(markdown_table(summary_table(runs, args))))
    print(f"wrote {out / 'ablation.md'}, {out / 'ablation.png'}, {out / 'ablation.csv'}")


if __name__ == "__main__":
    main()
