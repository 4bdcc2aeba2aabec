"""Large photos, measured on real large photos: how a photo is read, its accuracy beside its speed (issue 31).

    python benchmarks/large_photos_real.py                          # chilli5, 128 and 192 px, seeds 0-4
    python benchmarks/large_photos_real.py --sizes 128 --seeds 0 --head-epochs 1 --full-epochs 2   # a quick look

Real photos (../shared/realdata/chilli5: handheld field photos up to 1600 px, train/, val/, test/), three readings,
each a whole `bash train_fixed.sh` run as a new user starts it (DATA_SOURCE=the photos, a fresh DATA_DIR and
OUT_ROOT, IMG_SIZE, STAGE1_EPOCHS, STAGE2_EPOCHS, WARMUP_EPOCHS, EXTRA_ARGS="--seed K ..."): cleaning, both stages
(best.pth chosen on val) and calibration timed together, then evaluate.py on the full-size test photos:

- `full`: every photo decoded in full (MAX_SIDE=off, train.py --photo-reading full): the augmentation's crop and
  the evaluation's resize do all the reducing, as timm's train.py does.
- `reduced`: the default reading without a cache (MAX_SIDE=off): a JPEG decoded at 1/2, 1/4 or 1/8 so that its
  short side is 1-2x dataset.short_side_for_crops.
- `cached`: the default reading with train_fixed.sh's default cache (MAX_SIDE unset: --max-side auto), copies at
  that working size written once while cleaning.

Runs go seed by seed, each seed's rows one after the other, so paired differences (same seed, reading against
`full`) come early. Each finished run is written to WORK/results/ and skipped when the benchmark runs again
(resume); OUT/large_photos_real.md and .csv are rewritten after every run from every finished run under WORK, and
the runs OUT's CSV already holds count as finished on a new machine too.
"""
import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from benchmarks.large_photos import fresh, stage_rate, test_scores, timed  # noqa: E402
from benchmarks.report import (header_lines, markdown_table, run_end_stamp, runs_ended_line,  # noqa: E402
                               start_snapshot)
from benchmarks.runner import mean_and_spread, mean_and_standard_error  # noqa: E402
from leafdisease.utils.atomic_io import write_csv, write_json, write_text  # noqa: E402
from leafdisease.utils.errors import UserError, cli_entry  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SOURCE = ROOT.parent / "shared" / "realdata" / "chilli5"
# reading: (MAX_SIDE for train_fixed.sh, extra train.py arguments)
READINGS = {"full": ("off", ["--photo-reading", "full"]), "reduced": ("off", []), "cached": (None, [])}
REFERENCE = "full"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", default=str(DEFAULT_SOURCE), help="a photo set with train/, val/, test/")
    parser.add_argument("--work", default="/tmp/large_photos_real", help="folder for cleaned data, runs, results")
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 192])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--readings", nargs="+", choices=tuple(READINGS), default=list(READINGS))
    parser.add_argument("--head-epochs", type=int, default=5)
    parser.add_argument("--full-epochs", type=int, default=15)
    parser.add_argument("--warmup-epochs", type=float, default=2)
    parser.add_argument("--out", default="benchmarks/reports")
    args = parser.parse_args(argv)
    for split in ("train", "val", "test"):
        if not (Path(args.source) / split).is_dir():
            raise UserError(f"--source {args.source}: no {split}/ folder (expected train/, val/, test/)")
    return args


def run_name(reading, size, seed):
    return f"{reading}_{size}px_seed{seed}"


def run_once(args, reading, size, seed):
    """One train_fixed.sh run and its test scores, as a result row."""
    work, name = Path(args.work), run_name(reading, size, seed)
    max_side, extra = READINGS[reading]
    env = dict(os.environ, DATA_SOURCE=str(Path(args.source).resolve()), DATA_DIR=str(fresh(work / "data" / name)),
               OUT_ROOT=str(fresh(work / "runs" / name)), IMG_SIZE=str(size), STAGE1_EPOCHS=str(args.head_epochs),
               STAGE2_EPOCHS=str(args.full_epochs), WARMUP_EPOCHS=f"{args.warmup_epochs:g}",
               EXTRA_ARGS=" ".join(["--seed", str(seed), *extra]))
    env.pop("MAX_SIDE", None)
    if max_side is not None:
        env["MAX_SIDE"] = max_side
    wall, cpu = timed(["bash", "train_fixed.sh"], str(ROOT), env)
    runs = work / "runs" / name
    summary = json.loads((work / "data" / name / "metadata" / "summary.json").read_text())
    scores = test_scores(str(ROOT), runs / "task1_stage2" / "best.pth", Path(args.source), work / "eval" / name)
    return {"reading": reading, "img_size": size, "seed": seed, "wall_s": wall, "cpu_s": cpu,
            "cleaning_s": summary["seconds"], "cached": (summary.get("cache") or {}).get("reduced", 0),
            "full_img_s": stage_rate(runs / "task1_stage2"), "stage1_img_s": stage_rate(runs / "task1_stage1"),
            **run_end_stamp(),
            **{f"test_{key}": scores[key] for key in ("balanced_acc", "many_acc", "medium_acc", "few_acc")}}


def summary_rows(runs):
    """Per (size, reading): test balanced accuracy over seeds, the paired difference to `full` seed by seed (its
    mean and standard error), wall time and its ratio to `full`, full-stage images/s."""
    rows = []
    for (size, reading), group in runs.groupby(["img_size", "reading"], sort=True):
        reference = runs[(runs.img_size == size) & (runs.reading == REFERENCE)].set_index("seed")
        group = group.set_index("seed").sort_index()
        paired = group.index.intersection(reference.index)
        differences = 100 * (group.loc[paired, "test_balanced_acc"] - reference.loc[paired, "test_balanced_acc"])
        wall_ratio = group.loc[paired, "wall_s"] / reference.loc[paired, "wall_s"]
        cpu_ratio = group.loc[paired, "cpu_s"] / reference.loc[paired, "cpu_s"]
        mean, spread = mean_and_spread(100 * group["test_balanced_acc"].to_numpy())
        difference, standard_error = mean_and_standard_error(differences)
        rows.append({
            "size": f"{size} px", "reading": reading, "seeds": len(group),
            "test bal. acc. (mean ± sd)": f"{mean:.1f} ± {spread:.1f}",
            "per seed": " / ".join(f"{100 * value:.0f}" for value in group["test_balanced_acc"]),
            f"- {REFERENCE}, per seed": "–" if reading == REFERENCE else
            " / ".join(f"{value:+.0f}" for value in differences),
            f"- {REFERENCE} (mean ± se)": "–" if reading == REFERENCE or not len(differences) else
            f"{difference:+.1f} ± {standard_error:.1f}",
            "wall": f"{group['wall_s'].mean() / 60:.1f} min",
            f"wall / {REFERENCE}": "–" if not len(paired) else f"{wall_ratio.mean():.2f}x",
            f"CPU / {REFERENCE}": "–" if not len(paired) else f"{cpu_ratio.mean():.2f}x",
            "full stage img/s": f"{group['full_img_s'].mean():.1f}",
            "cleaning": f"{group['cleaning_s'].mean():.0f} s",
        })
    return pd.DataFrame(rows)


def write_reports(args, started, argv):
    results = sorted((Path(args.work) / "results").glob("*.json"))
    runs = pd.DataFrame([json.loads(path.read_text()) for path in results])
    out = Path(args.out)
    write_csv(out / "large_photos_real.csv", runs)
    lines = header_lines("Large photos on real large photos: full decode, reduced read, reduced read with a cache",
                         started, "benchmarks/large_photos_real.py", argv)
    lines += [f"- Photos: `{args.source}` (train/ for training, val/ chooses best.pth and tau, test/ is scored at "
              f"full size by evaluate.py). Each run is `bash train_fixed.sh` ({args.head_epochs} + "
              f"{args.full_epochs} epochs, warmup {args.warmup_epochs:g}), cleaning and calibration included in "
              "its wall time; runs one after the other.",
              f"- Readings: `full` (MAX_SIDE=off, --photo-reading full), `reduced` (MAX_SIDE=off), `cached` "
              f"(MAX_SIDE unset: --max-side auto). Differences are paired: the same seed read `{REFERENCE}`.",
              "- Load average when each run ended is in the CSV (load_average): other work on the 2 cores slows the "
              "wall time of the runs it overlaps; the CPU time (train_fixed.sh and every process it waited for, "
              "loader workers included) moves far less with it."]
    lines += [runs_ended_line(runs, "seed"), ""] if len(runs) else [""]
    lines += markdown_table(summary_rows(runs)) if len(runs) else ["(no finished run yet)"]
    write_text(out / "large_photos_real.md", "\n".join(lines) + "\n")


def restore_finished_runs(args):
    """The runs OUT's CSV already holds (a report committed by an earlier session) count as finished: their result
    files are written back into WORK/results, so a new machine resumes instead of training them again."""
    report = Path(args.out) / "large_photos_real.csv"
    if not report.is_file():
        return
    for row in pd.read_csv(report).to_dict("records"):
        path = Path(args.work) / "results" / f"{run_name(row['reading'], int(row['img_size']), int(row['seed']))}.json"
        if not path.exists():
            write_json(path, {key: (None if pd.isna(value) else value) for key, value in row.items()})


@cli_entry
def main(argv=None):
    args = parse_args(argv)
    argv = sys.argv[1:] if argv is None else argv
    started = start_snapshot()
    restore_finished_runs(args)
    plan = [(reading, size, seed) for seed in args.seeds for size in args.sizes for reading in args.readings]
    for number, (reading, size, seed) in enumerate(plan, 1):
        result_path = Path(args.work) / "results" / f"{run_name(reading, size, seed)}.json"
        if result_path.exists():
            continue
        print(f"== [{number}/{len(plan)}] {reading}, {size} px, seed {seed}", flush=True)
        write_json(result_path, run_once(args, reading, size, seed))
        write_reports(args, started, argv)
    write_reports(args, started, argv)
    print((Path(args.out) / "large_photos_real.md").read_text())


if __name__ == "__main__":
    main()
