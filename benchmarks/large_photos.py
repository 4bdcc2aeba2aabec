"""Large photos: `train_fixed.sh` against a plain fine-tune at equal epochs, one after the other.

    python benchmarks/large_photos.py --reference-code /tmp/before      # 5 + 15 against 20 epochs, 128 px
    python benchmarks/large_photos.py --head-epochs 1 --full-epochs 3 --train-share 0.3 --variants plain fixed

The photos: field13 (../shared/realdata/field13, 256 px) upscaled so that each photo's long side is --photo-side
px (bicubic, then sensor-like noise of standard deviation 4 so that decoding costs what a camera photo's does;
JPEG quality 90), written once into WORK/photos (train/, val/, test/; --train-share of each training class, at
least 2 photos). Each round runs the variants one after the other:

- `plain`: a plain fine-tune, cpu_gap.py's plain recipe (`train.py --stage full`, plain augmentation, no gradient
  clipping, plain cross-entropy without class weights), head + full epochs in one stage on the photos as they
  are (cleaned without copies beforehand, untimed: a plain fine-tune reads the photos themselves). From
  --reference-code when given, a checkout from before this change whose loader decodes every photo in full, as
  timm's train.py does (this checkout's loader reads large photos reduced).
- `fixed`: `bash train_fixed.sh` as a new user runs it (DATA_SOURCE=WORK/photos, IMG_SIZE, STAGE1_EPOCHS,
  STAGE2_EPOCHS, WARMUP_EPOCHS), cleaning into a fresh folder, both stages and calibration timed together.
- `fixed-before`: the same from --reference-code (the code before the large-photo changes).

Per run: wall seconds, CPU seconds (RUSAGE_CHILDREN: the script and every process it waited for, loader workers
included; other tenants of a shared machine move the wall time far more than the CPU time), each stage's training
images/s (history.csv, the mean over epochs after the first), and test balanced accuracy (its own code's
evaluate.py on WORK/photos/test, after the timing). Writes OUT/large_photos.md and .csv.
"""
import argparse
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from benchmarks.cpu_gap import VARIANTS as CPU_GAP_VARIANTS  # noqa: E402
from benchmarks.report import header_lines, markdown_table, start_snapshot  # noqa: E402
from leafdisease.training import recipe  # noqa: E402
from leafdisease.utils.atomic_io import write_csv, write_text  # noqa: E402
from leafdisease.utils.errors import UserError, cli_entry  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SOURCE = ROOT.parent / "shared" / "realdata" / "field13"
PLAIN_RECIPE = CPU_GAP_VARIANTS["plain-recipe"][0]
FULL_LR = recipe.settings(recipe.path_of("fixed_stage2"))["lr"]
RUNS = ("plain", "fixed", "fixed-before")
NOISE_STD = 4
JPEG_QUALITY = 90


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", default=str(DEFAULT_SOURCE), help="field13 root (train/, val/, test/)")
    parser.add_argument("--work", default="/tmp/large_photos", help="folder for the photos, cleaned data and runs")
    parser.add_argument("--photo-side", type=int, default=1024, help="long side of the upscaled photos")
    parser.add_argument("--train-share", type=float, default=1.0, help="share of each training class used")
    parser.add_argument("--img-size", type=int, default=128)
    parser.add_argument("--head-epochs", type=int, default=5)
    parser.add_argument("--full-epochs", type=int, default=15)
    parser.add_argument("--warmup-epochs", type=float, default=2)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--variants", nargs="+", choices=RUNS, default=list(RUNS))
    parser.add_argument("--reference-code", default=None,
                        help="a checkout of the code before the change (with its .venv), for plain and fixed-before")
    parser.add_argument("--out", default="benchmarks/reports")
    args = parser.parse_args(argv)
    if not (Path(args.source) / "train").is_dir():
        raise UserError(f"--source {args.source}: no train/ folder (expected field13's train/, val/, test/)")
    if "fixed-before" in args.variants and not args.reference_code:
        raise UserError("--variants fixed-before needs --reference-code (the code before the change)")
    return args


# ----------------------------------------------------------------------------------------------------
# The photos
# ----------------------------------------------------------------------------------------------------
def write_large_photos(source, target, long_side, train_share):
    """field13 upscaled into `target` (see the module docstring); skipped when `target` already holds it."""
    done = target / "done.json"
    settings = {"source": str(source), "long_side": long_side, "train_share": train_share,
                "noise_std": NOISE_STD, "quality": JPEG_QUALITY}
    if done.exists() and json.loads(done.read_text()) == settings:
        return
    rng = np.random.default_rng(0)
    for class_dir in sorted(path for path in Path(source).glob("*/*") if path.is_dir()):
        photos = sorted(class_dir.glob("*.jpg"))
        if class_dir.parent.name == "train":
            photos = photos[:max(2, math.ceil(train_share * len(photos)))]
        out_dir = target / class_dir.relative_to(source)
        out_dir.mkdir(parents=True, exist_ok=True)
        for photo in photos:
            image = cv2.imread(str(photo))
            scale = long_side / max(image.shape[:2])
            size = (round(image.shape[1] * scale), round(image.shape[0] * scale))
            large = cv2.resize(image, size, interpolation=cv2.INTER_CUBIC).astype(np.float32)
            large += rng.normal(0, NOISE_STD, large.shape).astype(np.float32)
            cv2.imwrite(str(out_dir / photo.name), np.clip(large, 0, 255).astype(np.uint8),
                        [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    done.write_text(json.dumps(settings))


# ----------------------------------------------------------------------------------------------------
# Runs
# ----------------------------------------------------------------------------------------------------
def timed(command, cwd, env):
    """Run `command`; (wall seconds, CPU seconds of it and every process it waited for). A failure stops here."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode != 0:
        raise UserError(f"`{' '.join(map(str, command))}` (in {cwd}) failed: "
                        f"{(result.stderr.strip() or result.stdout.strip()).splitlines()[-1]}")
    return wall, after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime


def fresh(folder):
    """`folder`, emptied: every run starts from nothing (train_fixed.sh would otherwise resume a finished run)."""
    shutil.rmtree(folder, ignore_errors=True)
    return folder


def python_of(code):
    return str(Path(code) / ".venv" / "bin" / "python")


def stage_rate(run_dir):
    """Mean training images/s of a stage over its epochs after the first (the first starts the loader workers)."""
    history = pd.read_csv(run_dir / "history.csv")
    rates = history["train_images_per_s"].iloc[1:] if len(history) > 1 else history["train_images_per_s"]
    return float(rates.mean())


def test_scores(code, checkpoint, photos, output):
    """evaluate.py's metrics of `checkpoint` on the test photos, run with the code that trained it."""
    subprocess.run([python_of(code), "evaluate.py", "--checkpoint", str(checkpoint), str(photos / "test"),
                    "--no-explain", "--output", str(fresh(output))], cwd=code, check=True, capture_output=True)
    return json.loads((output / "metrics.json").read_text())


def run_plain(args, code, work, round_index, env):
    cleaned = work / "cleaned_originals"
    subprocess.run([python_of(code), "analyze_data.py", "--source", str(work / "photos"), "--out", str(cleaned)],
                   cwd=code, check=True, capture_output=True, env=env)
    output = fresh(work / "runs" / f"plain_{round_index}")
    epochs = args.head_epochs + args.full_epochs
    command = [python_of(code), "train.py", "--data-dir", str(cleaned), "--output", str(output), "--stage", "full",
               "--epochs", str(epochs), "--lr", f"{FULL_LR:g}", "--warmup-epochs", f"{args.warmup_epochs:g}",
               "--img-size", str(args.img_size), *PLAIN_RECIPE]
    wall, cpu = timed(command, code, env)
    return {"wall_s": wall, "cpu_s": cpu, "stage1_img_s": math.nan, "full_img_s": stage_rate(output),
            "checkpoint": output / "best.pth"}


def run_fixed(args, code, work, name, round_index, env):
    out_root = fresh(work / "runs" / f"{name}_{round_index}")
    data_dir = fresh(work / f"cleaned_{name}_{round_index}")
    script_env = dict(env, DATA_SOURCE=str(work / "photos"), DATA_DIR=str(data_dir), OUT_ROOT=str(out_root),
                      IMG_SIZE=str(args.img_size), STAGE1_EPOCHS=str(args.head_epochs),
                      STAGE2_EPOCHS=str(args.full_epochs), WARMUP_EPOCHS=f"{args.warmup_epochs:g}")
    wall, cpu = timed(["bash", "train_fixed.sh"], code, script_env)
    summary = json.loads((data_dir / "metadata" / "summary.json").read_text())
    return {"wall_s": wall, "cpu_s": cpu, "stage1_img_s": stage_rate(out_root / "task1_stage1"),
            "full_img_s": stage_rate(out_root / "task1_stage2"), "cleaning_s": summary["seconds"],
            "cached": (summary.get("cache") or {}).get("reduced"),
            "checkpoint": out_root / "task1_stage2" / "best.pth"}


# ----------------------------------------------------------------------------------------------------
# main
# ----------------------------------------------------------------------------------------------------
def write_report(args, rows, started, argv):
    runs = pd.DataFrame(rows)
    write_csv(Path(args.out) / "large_photos.csv", runs)
    reference = runs.loc[runs["variant"] == "plain"].set_index("round") if (runs["variant"] == "plain").any() else None
    table = []
    for run in runs.itertuples():
        cells = {"round": run.round + 1, "variant": run.variant, "code": run.code,
                 "wall": f"{run.wall_s:.0f} s", "CPU": f"{run.cpu_s:.0f} s"}
        if reference is not None and run.round in reference.index:
            cells["wall / plain"] = f"{run.wall_s / reference.loc[run.round, 'wall_s']:.2f}x"
            cells["CPU / plain"] = f"{run.cpu_s / reference.loc[run.round, 'cpu_s']:.2f}x"
        cached = getattr(run, "cached", None)
        cells.update({"stage 1 img/s": "–" if math.isnan(run.stage1_img_s) else f"{run.stage1_img_s:.1f}",
                      "full stage img/s": f"{run.full_img_s:.1f}",
                      "cleaning": "–" if pd.isna(getattr(run, "cleaning_s", math.nan)) else f"{run.cleaning_s:.0f} s",
                      "photos cached": "–" if cached is None or pd.isna(cached) else f"{int(cached)}",
                      "test bal. acc.": f"{100 * run.test_balanced_acc:.1f}",
                      "test many / medium / few": " / ".join(f"{100 * value:.1f}" for value in
                                                            (run.test_many_acc, run.test_medium_acc, run.test_few_acc))})
        table.append(cells)
    lines = header_lines("Large photos: train_fixed.sh against a plain fine-tune at equal epochs", started,
                         "benchmarks/large_photos.py", argv)
    lines += [f"- Photos: `{args.source}` upscaled to a long side of {args.photo_side} px (noise σ {NOISE_STD}, "
              f"JPEG q{JPEG_QUALITY}), {args.train_share:g} of each training class; {args.img_size} px training, "
              f"{args.head_epochs} + {args.full_epochs} epochs (`train_fixed.sh`) against "
              f"{args.head_epochs + args.full_epochs} full epochs (plain), run one after the other.",
              f"- Code: `this` is this checkout; `reference` is `{args.reference_code}`."
              if args.reference_code else "- Code: this checkout.",
              f"- Load average at the end: {', '.join(f'{value:.2f}' for value in os.getloadavg())}.", "",
              *markdown_table(pd.DataFrame(table)), ""]
    write_text(Path(args.out) / "large_photos.md", "\n".join(lines) + "\n")


@cli_entry
def main(argv=None):
    args = parse_args(argv)
    argv = sys.argv[1:] if argv is None else argv
    started = start_snapshot()
    work = Path(args.work)
    write_large_photos(Path(args.source), work / "photos", args.photo_side, args.train_share)
    env = dict(os.environ)
    rows = []
    for round_index in range(args.rounds):
        for variant in args.variants:
            code = args.reference_code if variant == "fixed-before" or (variant == "plain" and args.reference_code) \
                else str(ROOT)
            print(f"round {round_index + 1}/{args.rounds}: {variant} ({code})", flush=True)
            result = (run_plain(args, code, work, round_index, env) if variant == "plain"
                      else run_fixed(args, code, work, variant, round_index, env))
            scores = test_scores(code, result.pop("checkpoint"), work / "photos",
                                 work / "runs" / f"eval_{variant}_{round_index}")
            rows.append({"round": round_index, "variant": variant,
                         "code": "reference" if code != str(ROOT) else "this", **result,
                         **{f"test_{key}": scores[key] for key in ("balanced_acc", "many_acc", "medium_acc",
                                                                   "few_acc")}})
            print(f"  {rows[-1]}", flush=True)
            write_report(args, rows, started, argv)
    print((Path(args.out) / "large_photos.md").read_text())


if __name__ == "__main__":
    main()
