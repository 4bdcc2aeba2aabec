"""Can the CPU side feed a fast GPU at 320 px? The cost of one training image on one core, by stage.

    python benchmarks/feeding.py                  # 320 px, writes benchmarks/reports/feeding.md
    python benchmarks/feeding.py --repeats 40 --img-size 128

One process, one thread (as a DataLoader worker runs: OpenCV single-threaded), so the figures are the cost per
core. For each source (a large camera-like photo, and the copies cleaning.py's --max-side writes) and each
decoding (full size, or OpenCV's IMREAD_REDUCED_COLOR_2/4 for the large photo), the median time of: read +
decode, the strong augmentation up to the crop at --img-size, what the worker then does to the crop (now: to a
uint8 tensor, normalised later on the device by dataset.ModelInput; before: Normalize to float + to tensor, kept
as the reference), collating a batch of them (per image; uint8 now, float32 before), and the evaluation
transform. Medians over --repeats images resist other load on the machine; the load average is recorded.
The report turns the per-core cost into the loader's rate on a machine with N cores and into the time of the
AI Challenger-scale job, as formulas in the GPU's still-unmeasured model-only rate.
"""
import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import albumentations as A  # noqa: E402
import cv2  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from albumentations.pytorch import ToTensorV2  # noqa: E402
from torch.utils.data import default_collate  # noqa: E402

import dataset  # noqa: E402
from benchmarks.report import header_lines, markdown_table, start_snapshot  # noqa: E402
from benchmarks.speed import render_photo  # noqa: E402
from leafdisease.data import cleaning  # noqa: E402
from leafdisease.utils.atomic_io import write_text  # noqa: E402
from leafdisease.utils.errors import cli_entry  # noqa: E402

TRAIN_IMAGES, HEAD_EPOCHS, FULL_EPOCHS = 31_718, 10, 40  # AI Challenger 2018's training split; the seed's stages
TARGET_SECONDS = 15 * 60
LOOP_RATIO = 0.90


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--img-size", type=int, default=320)
    parser.add_argument("--repeats", type=int, default=60, help="images timed per (source, decoding)")
    parser.add_argument("--photo-size", default="3000x2000", help="WIDTHxHEIGHT of the large photo")
    parser.add_argument("--max-sides", type=int, nargs="+", default=[512, 1024],
                        help="cleaning --max-side values whose re-encoded copies are measured")
    parser.add_argument("--cores", type=int, default=16, help="cores of the GPU machine in the estimate")
    parser.add_argument("--out", default="benchmarks/reports")
    return parser.parse_args(argv)


STAGES = ("read + decode", "strong augmentation", "to tensor, uint8 (now)", "collate, uint8 (now)",
          "normalize + to tensor, float (before)", "collate, float32 (before)", "evaluation transform")
NOW = STAGES[:4]
BEFORE = STAGES[:2] + STAGES[4:6]
COLLATED = 64  # images per collated batch; its cost is reported per image


def cpu_ms(function):
    """CPU time of this process for one call, in ms: unlike wall time, it does not grow when other processes
    take the core away (the machine this runs on may be shared)."""
    started = time.process_time()
    function()
    return 1000 * (time.process_time() - started)


def stage_functions(path, flag, img_size):
    """The stages of one training image, for one file decoded with one OpenCV flag."""
    augment = A.Compose(dataset.build_transform("strong", img_size, to_tensor=False).transforms)  # up to the crop
    to_tensor = A.Compose([ToTensorV2()])
    # What the workers did before dataset.ModelInput normalised on the device: the pretrained normalisation of
    # tf_efficientnet_lite0 (0.5, 0.5, 0.5) in float, per image.
    normalize_to_tensor = A.Compose([A.Normalize(mean=(0.5,) * 3, std=(0.5,) * 3, max_pixel_value=255.0), ToTensorV2()])
    evaluate = dataset.build_transform("eval", img_size)
    augment.set_random_seed(0)
    image = cv2.cvtColor(cv2.imread(path, flag), cv2.COLOR_BGR2RGB)
    crop = augment(image=image)["image"]
    batch_uint8 = [(to_tensor(image=crop)["image"], 0)] * COLLATED
    batch_float = [(normalize_to_tensor(image=crop)["image"], 0)] * COLLATED
    functions = dict(zip(STAGES, (lambda: cv2.cvtColor(cv2.imread(path, flag), cv2.COLOR_BGR2RGB),
                                  lambda: augment(image=image), lambda: to_tensor(image=crop),
                                  lambda: default_collate(batch_uint8), lambda: normalize_to_tensor(image=crop),
                                  lambda: default_collate(batch_float), lambda: evaluate(image=image))))
    return f"{image.shape[1]}x{image.shape[0]}", functions


def measure(cases, img_size, repeats):
    """Median CPU ms per image of every stage of every case, the cases interleaved repeat by repeat so that
    a change in the machine's load hits them alike."""
    prepared = [stage_functions(path, flag, img_size) for _, path, _, flag in cases]
    times = [{stage: [] for stage in STAGES} for _ in cases]
    for _ in range(repeats):
        for (_, functions), case_times in zip(prepared, times):
            for stage, function in functions.items():
                case_times[stage].append(cpu_ms(function))
    medians = []
    for (size, _), case_times in zip(prepared, times):
        row = {stage: statistics.median(values) for stage, values in case_times.items()}
        for stage in ("collate, uint8 (now)", "collate, float32 (before)"):
            row[stage] /= COLLATED
        medians.append({"decoded size": size, **row})
    return medians


def sources(folder, args):
    rng = np.random.default_rng(0)
    width, height = (int(part) for part in args.photo_size.split("x"))
    large = str(folder / "large.jpg")
    render_photo(large, width, height, rng)
    rows = [(f"{width}x{height} photo", large, "full", cv2.IMREAD_COLOR),
            (f"{width}x{height} photo", large, "reduced 1/2", cv2.IMREAD_REDUCED_COLOR_2),
            (f"{width}x{height} photo", large, "reduced 1/4", cv2.IMREAD_REDUCED_COLOR_4)]
    for max_side in args.max_sides:
        target = str(folder / f"cleaned_{max_side}.jpg")
        cleaning.reencode_image((large, target, False, False, max_side, None))
        rows.append((f"cleaned, --max-side {max_side}", target, "full", cv2.IMREAD_COLOR))
    return rows


def estimate_lines(table, args):
    """Per-core cost -> loader rate on args.cores cores -> the job's time, as formulas in the GPU's rates."""
    workers = args.cores - 1
    lines = [f"Loader rate on a machine with C = {args.cores} cores: W = C - 1 = {workers} workers (the main process "
             f"drives the GPU), each delivering 1000 / t images/s, t the per-image cost in ms from the table: now "
             f"read + decode + augmentation + to uint8 tensor + its collation; before, with float normalisation and "
             f"collation in the worker instead:", "",
             "| source, decoding | t before (ms) | P before (img/s) | t now (ms) | P now (img/s) | P now / before |",
             "|---|---|---|---|---|---|"]
    rates = {}
    for row in table.to_dict("records"):
        before, now = sum(row[stage] for stage in BEFORE), sum(row[stage] for stage in NOW)
        rates[f"{row['source']}, {row['decoding']}"] = workers * 1000 / now
        lines.append(f"| {row['source']}, {row['decoding']} | {before:.2f} | {workers * 1000 / before:,.0f} | "
                     f"{now:.2f} | {workers * 1000 / now:,.0f} | {before / now:.2f}x |")
    images = TRAIN_IMAGES * (HEAD_EPOCHS + FULL_EPOCHS)
    lines += ["", "With R_full and R_head the GPU's model-only training rates (img/s, random tensors already on "
              "the GPU; `benchmarks/gpu_check.sh` measures them, they are not known yet), the training loop runs "
              "at about min(P, R) and:",
              "",
              f"- loop / model-only (full stage) = min(1, P / R_full) >= {LOOP_RATIO} exactly when "
              f"R_full <= P / {LOOP_RATIO};",
              f"- the job's training time T = {TRAIN_IMAGES:,} x ({HEAD_EPOCHS} / min(P, R_head) + {FULL_EPOCHS} / "
              f"min(P, R_full)) s, plus evaluation (50 passes over the validation split, through the cheaper "
              f"evaluation transform) and start-up;",
              f"- whatever the GPU, T >= {images:,} / P: the loader alone sets a floor. T <= {TARGET_SECONDS} s "
              f"needs P >= {images / TARGET_SECONDS:,.0f} img/s, and with a GPU no faster than the loader "
              f"(R >= P) the time is {images:,} / P.", ""]
    for name, rate in rates.items():
        floor = images / rate
        lines.append(f"- {name}: P = {rate:,.0f} img/s, so the training time is at least {floor / 60:.1f} min; "
                     f"loop/model-only >= {LOOP_RATIO} holds for any GPU with R_full <= {rate / LOOP_RATIO:,.0f} img/s.")
    return lines


@cli_entry
def main(argv=None):
    args = parse_args(argv)
    argv = sys.argv[1:] if argv is None else argv
    started = start_snapshot()
    cv2.setNumThreads(0)  # as dataset.worker_init: one core per worker
    rows = []
    with tempfile.TemporaryDirectory(prefix="feeding_") as folder:
        cases = sources(Path(folder), args)
        for (name, path, decoding, _), result in zip(cases, measure(cases, args.img_size, args.repeats)):
            print(f"{name}, {decoding}: " + ", ".join(f"{key} {value if isinstance(value, str) else f'{value:.2f}'}"
                                                       for key, value in result.items()), flush=True)
            rows.append({"source": name, "decoding": decoding, **result,
                         "file KiB": os.path.getsize(path) / 1024})
    table = pd.DataFrame(rows)[["source", "decoding", "decoded size", *STAGES, "file KiB"]]
    shown = table.copy()
    for column in STAGES:
        shown[column] = shown[column].map("{:.2f}".format)
    shown["file KiB"] = shown["file KiB"].map("{:.0f}".format)
    lines = header_lines(f"Feeding a GPU at {args.img_size} px: CPU cost per training image", started,
                         "benchmarks/feeding.py", argv)
    lines += [f"Median CPU milliseconds per image (process CPU time, so other load on a shared machine does not "
              f"inflate it; one process, OpenCV single-threaded, as a loader worker), {args.repeats} repeats, the "
              f"cases interleaved; the strong augmentation ends in the {args.img_size} px crop; collation is "
              f"default_collate of {COLLATED} images, per image. The photo is a synthetic camera-like JPEG (`speed.render_photo`); the "
              f"cleaned copies are written by `cleaning.reencode_image`.", "", *markdown_table(shown), "",
              "## From per-core cost to the job's time", "", *estimate_lines(table, args)]
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    lines += ["", f"Load average at the end: {load}."]
    out = Path(args.out) / "feeding.md"
    write_text(out, "\n".join(lines) + "\n")
    print(out.read_text())


if __name__ == "__main__":
    main()
