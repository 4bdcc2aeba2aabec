"""Resolution and backbone on real photos: test balanced accuracy against training CPU time (issue 23).

    python benchmarks/resolution.py                                   # screen: every row, seed 0
    python benchmarks/resolution.py --seeds 0 1 2 --rows lite0@128 ROW ROW   # today's default and the best two

A row is MODEL@SIZE (lite0, lite1, lite2 name tf_efficientnet_lite0/1/2, whose ImageNet weights load offline; any
other timm model name goes to timm's hub). Every row trains today's default recipe, realdata.py's `sampler` row (the
seed's fix + class-aware sqrt sampling, two stages), with the same epochs (realdata.py's --profile, default
`final`: 5 head + 15 full epochs), at its own size, on field13's train split cleaned into --data-dir. Each run's
checkpoint is chosen on validation, tau is calibrated on validation at the training size (as train_fixed.sh does),
and test is then scored four ways: at the training size and at --test-scale times it (a model trained on
random-resized crops often scores higher a little above its training size), each without and with TTA (the mean of
the image and its mirror image, predict.py --tta). field13's photos are 256 px: a test size above 256 upsamples them.

Each run records its training CPU minutes (train.py and its loader workers, both stages, benchmarks/runner.py) and
wall minutes, the machine and the date. Runs resume like realdata.py's (OUT/runs/resolution/<row>_seed<k>/);
results are written after every run: OUT/resolution.md, .csv (one line per run and scoring) and .png (the frontier:
test balanced accuracy and few-shot recall against CPU minutes). The reports cover every run finished under OUT, so
a second call with more seeds for some rows adds to the screening's table and plot instead of replacing them.
"""
import argparse
import datetime
import json
import platform
import sys
import time
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

from benchmarks import realdata  # noqa: E402
from benchmarks.report import header_lines, machine_lines, markdown_table, start_snapshot  # noqa: E402
from benchmarks.runner import format_percent, mean_and_spread, run_stages  # noqa: E402
from leafdisease.deployment import inference  # noqa: E402
from leafdisease.evaluation import metrics, reports  # noqa: E402
from leafdisease.training import checkpoint as checkpoint_format  # noqa: E402
from leafdisease.utils.atomic_io import save_figure, write_csv, write_json, write_text  # noqa: E402
from leafdisease.utils.errors import UserError, cli_entry  # noqa: E402

MODEL_ALIASES = {f"lite{k}": f"tf_efficientnet_lite{k}" for k in range(3)}
DEFAULT_ROWS = ("lite0@128", "lite0@192", "lite0@256", "lite2@128", "lite2@192")
RECIPE_ROW = "sampler"  # realdata.py's row for today's default recipe (train_fixed.sh without calibration)
# name: (test size as a multiple of the training size, TTA)
SCORINGS = {"train px": (False, False), "train px + TTA": (False, True), "test px": (True, False),
            "test px + TTA": (True, True)}
TARGET = 0.90  # issue 23: field13 test balanced accuracy
RESULT_FILE = "result.json"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    realdata.add_run_options(parser)
    parser.add_argument("--data-dir", default="data/field13", help="where its train and val splits are cleaned")
    parser.add_argument("--rows", nargs="+", default=list(DEFAULT_ROWS), metavar="MODEL@SIZE")
    parser.add_argument("--profile", choices=tuple(realdata.PROFILES), default="final",
                        help="realdata.py's profile whose epochs every row gets (its image size is the row's)")
    parser.add_argument("--test-scale", type=float, default=1.25, help="test size / training size (1.15-1.3)")
    args = realdata.complete_run_options(parser.parse_args(argv))
    for row in args.rows:
        parse_row(row)
    # realdata.prepare_data's and stage_commands': field13's train split as it is, checkpoints chosen by the default
    args.variant, args.suffix, args.select_metric = "as-is", "", metrics.DEFAULT_TARGET_METRIC
    return args


def parse_row(row):
    """'lite0@128' -> ('tf_efficientnet_lite0', 128)."""
    model, _, size = row.partition("@")
    if not model or not size.isdigit() or int(size) < 32:
        raise UserError(f"--rows {row}: expected MODEL@SIZE, e.g. lite0@128 or convnext_nano@160 (size >= 32)")
    return MODEL_ALIASES.get(model, model), int(size)


def test_size(args, img_size):
    return int(round(img_size * args.test_scale))


# ----------------------------------------------------------------------------------------------------
# Training and scoring one run
# ----------------------------------------------------------------------------------------------------
def run_dir(args, row, seed):
    return Path(args.out) / "runs" / "resolution" / f"{row.replace('@', '_')}_seed{seed}"


def stage_commands(args, row, seed):
    """[(stage directory, train.py arguments)]: the head stage, then the full stage from its best.pth."""
    model, img_size = parse_row(row)
    recipe, profile = realdata.ROWS[RECIPE_ROW], realdata.PROFILES[args.profile]
    folder = run_dir(args, row, seed)
    common = ["--data-dir", str(args.data_dir), "--model", model, "--batch-size", str(args.batch_size),
              "--img-size", str(img_size), "--seed", str(seed), "--resume", "auto", *recipe.common]
    if args.no_pretrained:
        common.append("--no-pretrained")
    if args.workers is not None:
        common += ["--workers", str(args.workers)]
    return [
        (folder / "head", ["--stage", "head", "--epochs", str(profile.head_epochs), "--lr", f"{realdata.HEAD_LR:g}",
                           "--output", str(folder / "head"), *common]),
        (folder / "full", ["--stage", "full", "--epochs", str(profile.epochs - profile.head_epochs),
                           "--lr", f"{realdata.FULL_LR:g}", "--warmup-epochs", f"{profile.warmup_epochs:g}",
                           "--init-from", str(folder / "head" / "best.pth"), "--output", str(folder / "full"),
                           *common, *recipe.full]),
    ]


def train_run(args, row, seed):
    """Train (or resume) the run's stages; wall and CPU seconds over both, and a divergence message."""
    return run_stages(stage_commands(args, row, seed))


def scores_at(args, model, checkpoint, img_size, tta):
    """{split: (scores, targets)} of val and test with the checkpoint's evaluation at `img_size` (the model is
    convolutional: any size runs), with or without TTA."""
    resized = dict(checkpoint, img_size=img_size)
    scored = {}
    for split, data in (("val", args.data_dir), ("test", args.test)):
        labelled = reports.read_labelled_set(data, checkpoint)
        scores, indices, unreadable = inference.predict_scores(model, labelled.paths, resized, torch.device("cpu"),
                                                               batch_size=64, tta=tta, desc=f"scoring {split}")
        if unreadable:
            raise UserError(f"{data}: {len(unreadable)} unreadable image(s), e.g. {unreadable[0][0]}")
        scored[split] = (scores, labelled.targets[indices.numpy()])
    return scored


def score_run(args, row, seed, record):
    """One line per scoring (SCORINGS) of the run's final checkpoint; tau chosen on val at the training size."""
    model_name, img_size = parse_row(row)
    checkpoint_path = stage_commands(args, row, seed)[-1][0] / "best.pth"
    base = {"row": row, "model": model_name, "train_px": img_size, "seed": seed,
            "cpu_minutes": record["cpu_seconds"] / 60, "wall_minutes": record["wall_seconds"] / 60,
            "diverged": record["diverged"], "date": f"{datetime.datetime.now():%Y-%m-%d %H:%M}",
            "machine": f"{platform.node()}: {machine_lines()[0].removeprefix('- CPU: ').split('; load')[0]}"}
    if record["diverged"] or not checkpoint_path.exists():
        return [dict(base, scoring=name) for name in SCORINGS]
    checkpoint = checkpoint_format.load(checkpoint_path, need="weights")
    model = inference.build_model(checkpoint, checkpoint_path)
    many, few = checkpoint_format.shot_thresholds(checkpoint)
    lines, tau = [], None
    for name, (larger, tta) in SCORINGS.items():
        eval_px = test_size(args, img_size) if larger else img_size
        scored = scores_at(args, model, checkpoint, eval_px, tta)
        if tau is None:  # the first scoring is at the training size without TTA: calibration's, train_fixed.sh's
            tau = inference.search_tau(scored["val"][0], scored["val"][1], checkpoint["train_counts"],
                                       realdata.TAU_GRID, many, few).tau
        line = dict(base, scoring=name, eval_px=eval_px, tta=tta, tau=tau)
        for split, (scores, targets) in scored.items():
            values, _, _ = reports.score_metrics(scores, targets, checkpoint, tau)
            # realdata's per-run extras (the 1-2 photo classes, crop and disease accuracy) may be absent
            line.update({f"{split}_{metric}": values.get(metric, float("nan")) for metric in realdata.METRICS})
        lines.append(line)
    return lines


# ----------------------------------------------------------------------------------------------------
# Report
# ----------------------------------------------------------------------------------------------------
def finished_runs(args):
    """Every scored run under OUT (any call's), ordered by model and size."""
    lines = [line for path in sorted((Path(args.out) / "runs" / "resolution").glob(f"*/{RESULT_FILE}"))
             for line in json.loads(path.read_text())]
    return pd.DataFrame(lines).sort_values(["model", "train_px", "seed"], kind="stable").reset_index(drop=True)


def summary_table(runs):
    table = []
    for row in runs["row"].unique():
        several = runs.loc[runs["row"] == row, "seed"].nunique() > 1
        for scoring in SCORINGS:
            results = runs.loc[(runs["row"] == row) & (runs["scoring"] == scoring)]
            if results.empty or "test_balanced_acc" not in results:
                continue
            cpu, cpu_spread = mean_and_spread(results["cpu_minutes"])
            table.append({
                "row": row, "scoring": scoring, "eval px": " ".join(str(int(v)) for v in results["eval_px"].unique()),
                "seeds": len(results), "CPU min / run": f"{cpu:.1f}" + (f" ± {cpu_spread:.1f}" if several and
                                                                        not np.isnan(cpu_spread) else ""),
                "wall min / run": f"{results['wall_minutes'].mean():.1f}",
                "val bal. acc.": format_percent(results["val_balanced_acc"], several),
                "test bal. acc.": format_percent(results["test_balanced_acc"], several),
                "test many / medium / few": " / ".join(format_percent(results[f"test_{group}_acc"], several)
                                                      for group in ("many", "medium", "few"))})
    return pd.DataFrame(table)


def write_markdown(path, runs, args, started, argv):
    profile = realdata.PROFILES[args.profile]
    lines = header_lines("Resolution and backbone on field13: test balanced accuracy against training CPU time",
                         started, "benchmarks/resolution.py", argv)
    lines += [f"- Data: `{args.source}`: train and val cleaned into `{args.data_dir}`, test `{args.test}` (256 px "
              f"photos; never trained or tuned on)",
              f"- Recipe for every row: realdata.py's `{RECIPE_ROW}` row ({realdata.ROWS[RECIPE_ROW].title}), "
              f"{profile.head_epochs} head + {profile.epochs - profile.head_epochs} full epochs "
              f"({profile.warmup_epochs:g} warmup), batch {args.batch_size}, ImageNet weights"
              + (" (here: random initialisation)" if args.no_pretrained else "") + ", at the row's size.",
              f"- Scoring: checkpoint chosen on val; tau calibrated on val at the training size without TTA, then "
              f"applied to all four scorings; `test px` = {args.test_scale:g} x the training size.",
              "- CPU min: training CPU time of both stages (train.py and its loader workers), scoring excluded. "
              "Wall minutes move with other load on a shared machine; CPU minutes much less.",
              "", "## Results", "", *markdown_table(summary_table(runs)), "",
              "Balanced accuracy = mean per-class recall; many/medium/few = mean recall of each shot group; ± is "
              "the standard deviation over a row's seeds (one seed: a few points may be noise). The table covers "
              "every run finished under this folder, whichever call ran it.",
              "", "## Runs: commands, machine, date", ""]
    for row in runs["row"].unique():
        done = runs.loc[(runs["row"] == row) & (runs["scoring"] == "train px")]
        for run in done.itertuples():
            lines.append(f"- `{row}` seed {run.seed}: {run.date}, {run.machine}, {run.cpu_minutes:.1f} CPU min, "
                         f"{run.wall_minutes:.1f} wall min" + (f", diverged: {run.diverged}" if run.diverged else ""))
        if len(done):
            for _, argv_stage in stage_commands(args, row, "<k>"):
                lines.append(f"  - `python train.py {' '.join(argv_stage)}`")
    write_text(path, "\n".join(lines) + "\n")


def plot_frontier(path, runs, args):
    """Test balanced accuracy and few-shot recall against training CPU minutes, one point per row and scoring
    (mean over seeds, standard deviation as error bars), the 90 % target drawn."""
    fig, axes = plt.subplots(1, 2, figsize=(14, 5.5))
    markers = dict(zip(SCORINGS, ("o", "s", "^", "D")))
    rows = runs["row"].unique()
    colours = dict(zip(rows, plt.cm.tab10.colors))
    for axis, metric, title in ((axes[0], "test_balanced_acc", "Test balanced accuracy"),
                                (axes[1], "test_few_acc", "Test few-shot recall")):
        for row in rows:
            for scoring in SCORINGS:
                results = runs.loc[(runs["row"] == row) & (runs["scoring"] == scoring)]
                if results.empty or metric not in results or results[metric].isna().all():
                    continue
                x, x_spread = mean_and_spread(results["cpu_minutes"])
                y, y_spread = mean_and_spread(results[metric])
                axis.errorbar(x, 100 * y, xerr=np.nan_to_num(x_spread), yerr=np.nan_to_num(100 * y_spread),
                              marker=markers[scoring], color=colours[row], capsize=3, linestyle="none",
                              label=f"{row}, {scoring} ({len(results)} seed{'s' if len(results) > 1 else ''})")
        axis.axhline(100 * TARGET, color="gray", linestyle="--", linewidth=1)
        axis.set(title=title, xlabel="training CPU minutes per run (both stages)", ylabel="%")
        axis.grid(alpha=0.3)
    axes[0].legend(fontsize=7, ncol=2)
    profile = realdata.PROFILES[args.profile]
    fig.suptitle(f"field13: {profile.head_epochs} + {profile.epochs - profile.head_epochs} epochs per run, mean "
                 f"over seeds (bars: standard deviation); dashed: the {100 * TARGET:.0f} % target")
    save_figure(fig, path)


def write_reports(args, started, argv):
    runs = finished_runs(args)
    out = Path(args.out)
    write_csv(out / "resolution.csv", runs)
    write_markdown(out / "resolution.md", runs, args, started, argv)
    plot_frontier(out / "resolution.png", runs, args)
    return runs


# ----------------------------------------------------------------------------------------------------
# main
# ----------------------------------------------------------------------------------------------------
@cli_entry
def main(argv=None):
    args = parse_args(argv)
    argv = sys.argv[1:] if argv is None else argv
    started = start_snapshot()
    realdata.prepare_data(args)
    plan = [(row, seed) for seed in args.seeds for row in args.rows]  # every row's first seed before any second
    for number, (row, seed) in enumerate(plan, 1):
        result_path = run_dir(args, row, seed) / RESULT_FILE
        if result_path.exists():
            continue
        print(f"== [{number}/{len(plan)}] {row}, seed {seed}", flush=True)
        started_run = time.perf_counter()
        run_lines = score_run(args, row, seed, train_run(args, row, seed))
        write_json(result_path, run_lines)
        write_reports(args, started, argv)
        print("   " + "; ".join(f"{line['scoring']}: test {line.get('test_balanced_acc', float('nan')):.3f}"
                                for line in run_lines) + f" ({time.perf_counter() - started_run:.0f} s, "
              f"{run_lines[0]['cpu_minutes']:.1f} CPU min)", flush=True)
    runs = write_reports(args, started, argv)
    print("\n".join(markdown_table(summary_table(runs))))
    print(f"wrote {Path(args.out) / 'resolution.md'}")


if __name__ == "__main__":
    main()
