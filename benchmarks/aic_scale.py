"""A full-scale rehearsal of the official AI Challenger 2018 download on a CPU: clean it, train one head and one
full epoch through train_fixed.sh, and measure time and peak memory.

    python benchmarks/aic_scale.py                        # 36,074 photos, as the official lists count them
    python benchmarks/aic_scale.py --scale 0.01 --img-size 32 --model test_efficientnet --no-pretrained   # a smoke run

The stand-in has the official layout and counts: AgriculturalDisease_trainingset/ and _validationset/ with images/,
the annotation JSONs (31,718 and 4,540 entries: ids repeated as in the real files, 172 training ids two or three
times, 19 of them with two labels, 7 validation ids twice) and the text lists (train_list.txt, ttest_list.txt: one
line per image, `images\\<id>.jpg <class>`). Class counts are aichallenger_classes.OFFICIAL_TRAIN_COUNTS and
OFFICIAL_VAL_COUNTS (class 45: one training photo, no validation photo). Photos are demo leaves of their class
(demo_data, a pool per class, each photo a different crop, flip, exposure and noise of one), JPEG at 256x256 or
1024x768 (LARGE_SHARE of them), so decoding costs what real photos of those sizes cost.

Steps, each timed, with the peak memory of its whole process tree (proportional set size summed over the
processes, sampled every 0.5 s): writing the stand-in (skipped when complete), `analyze_data.py` on the JSON layout
(cleaning every photo at its size), reading the text-list layout, and `train_fixed.sh` with one head epoch and one
full epoch at --img-size (calibration included). The report, OUT/aic_scale.md (default benchmarks/), holds the
figures, what cleaning rejected, and the 61-class plots the run wrote, copied beside it.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from benchmarks.report import ROOT, header_lines, markdown_table, start_snapshot  # noqa: E402
from leafdisease.data import sources  # noqa: E402
from leafdisease.data.aichallenger_classes import OFFICIAL_TRAIN_COUNTS, OFFICIAL_VAL_COUNTS  # noqa: E402
from leafdisease.data.demo_data import MIN_IMAGE_SIZE, render_leaf  # noqa: E402
from leafdisease.data.staged_output import map_parallel, staged_folder  # noqa: E402
from leafdisease.utils.atomic_io import write_text  # noqa: E402
from leafdisease.utils.errors import UserError, cli_entry  # noqa: E402

TRAIN_DIR, TRAIN_JSON = sources.AICHALLENGER_SPLITS["train"]
VAL_DIR, VAL_JSON = sources.AICHALLENGER_SPLITS["val"]
TRAIN_LIST, VAL_LIST = sources.AICHALLENGER_LISTS["train"][0], sources.AICHALLENGER_LISTS["val"][0]
# Repeated ids of the official JSONs (issue 20): training ids listed twice / three times with one label, training
# ids listed with two labels, validation ids listed twice.
OFFICIAL_REPEATS = {"train_twice": 148, "train_thrice": 5, "train_two_labels": 19, "val_twice": 7}
LARGE_SHARE = 0.3
SMALL_SIZE, LARGE_SIZE = (256, 256), (1024, 768)
LEAF_POOL, LEAF_RENDER_SIZE = 8, 320
TARGETS = {"cleaning_seconds": 180, "peak_gib": 4.0}
PLOTS = ("confusion_matrix.png", "per_class_recall.png")
COMPLETE_MARK = "standin_info.json"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", default="data/aic_standin", help="where the stand-in download is written")
    parser.add_argument("--data-dir", default="data/aic_scale", help="where it is cleaned")
    parser.add_argument("--runs", default="benchmarks/runs/aic_scale", help="train_fixed.sh's OUT_ROOT")
    parser.add_argument("--out", default="benchmarks/reports", help="folder for aic_scale.md and its plots")
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the official counts (tests)")
    parser.add_argument("--img-size", type=int, default=64, help="training resolution of the two epochs")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--model", default=None, help="train.py --model (default: its own)")
    parser.add_argument("--no-pretrained", action="store_true")
    parser.add_argument("--workers", type=int, default=None, help="processes for writing the stand-in")
    parser.add_argument("--photo-scale", type=float, default=1.0,
                        help="photo sides times this (tests: small photos write and decode faster)")
    parser.add_argument("--leaf-pool", type=int, default=LEAF_POOL, help="leaves drawn per class")
    args = parser.parse_args(argv)
    if not 0 < args.scale <= 1:
        parser.error(f"--scale {args.scale}: must be in (0, 1]")
    for name in ("source", "data_dir", "runs", "out"):  # the steps run from the repository root
        setattr(args, name, str(Path(getattr(args, name)).resolve()))
    return args


# ----------------------------------------------------------------------------------------------------
# The stand-in download
# ----------------------------------------------------------------------------------------------------
def scaled_counts(counts, scale):
    """Per-class counts times scale, a class that had photos keeps at least one (class 45 keeps its 0 in val)."""
    return [0 if count == 0 else max(1, round(count * scale)) for count in counts]


def plan_standin(scale, seed=2018):
    """The listing of the stand-in: images (id, split, label, size) and the JSON entries of each split, with
    the official repeats (scaled) drawn from classes with at least 3 photos, so no class loses its last one."""
    rng = np.random.default_rng(seed)
    images = []
    for split, counts in (("train", scaled_counts(OFFICIAL_TRAIN_COUNTS, scale)),
                          ("val", scaled_counts(OFFICIAL_VAL_COUNTS, scale))):
        for label, count in enumerate(counts):
            images += [(f"{split}_{label:02d}_{index:05d}.jpg", split, label) for index in range(count)]
    images = pd.DataFrame(images, columns=["image_id", "split", "label"])
    images["large"] = rng.random(len(images)) < LARGE_SHARE
    repeats = {name: max(1, round(count * scale)) for name, count in OFFICIAL_REPEATS.items()}
    entries = {"train": [], "val": []}
    for split in ("train", "val"):
        rows = images.loc[images["split"] == split]
        entries[split] = [{"image_id": row.image_id, "disease_class": int(row.label)} for row in rows.itertuples()]
    train_counts = scaled_counts(OFFICIAL_TRAIN_COUNTS, scale)
    common = images.loc[(images["split"] == "train") & images["label"].map(lambda label: train_counts[label] >= 3)]
    chosen = common.sample(sum(repeats[name] for name in ("train_twice", "train_thrice", "train_two_labels")),
                           random_state=seed)
    first_thrice = repeats["train_twice"]
    first_conflict = first_thrice + repeats["train_thrice"]
    twice, thrice, conflicts = chosen[:first_thrice], chosen[first_thrice:first_conflict], chosen[first_conflict:]
    extra = ([{"image_id": row.image_id, "disease_class": int(row.label)} for row in twice.itertuples()]
             + [{"image_id": row.image_id, "disease_class": int(row.label)} for row in thrice.itertuples()] * 2
             # the other label: the neighbouring class id (in the official table often the other severity)
             + [{"image_id": row.image_id, "disease_class": int(row.label) + (1 if row.label < 60 else -1)}
                for row in conflicts.itertuples()])
    order = rng.permutation(len(entries["train"]) + len(extra))
    entries["train"] = [(entries["train"] + extra)[index] for index in order]
    val_rows = images.loc[images["split"] == "val"].sample(repeats["val_twice"], random_state=seed)
    entries["val"] += [{"image_id": row.image_id, "disease_class": int(row.label)} for row in val_rows.itertuples()]
    return images, entries, repeats


_LEAVES = {}  # (class, pool size, render size) -> that class's leaves, drawn once per writer process


def _write_photo(task):
    """One stand-in photo: a random crop, flip and exposure of a pool leaf of its class, noise, at its size."""
    path, label, size, index, pool, render_size = task
    key = (label, pool, render_size)
    if key not in _LEAVES:
        leaf_rng = np.random.default_rng([2018, label])
        _LEAVES[key] = [render_leaf(label, leaf_rng, render_size) for _ in range(pool)]
    rng = np.random.default_rng([label, index])
    base = _LEAVES[key][int(rng.integers(pool))]
    side = int(render_size * rng.uniform(0.7, 1.0))
    top, left = rng.integers(0, render_size - side + 1, size=2)
    crop = base[top:top + side, left:left + side]
    crop = np.rot90(crop, int(rng.integers(4)))
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    photo = cv2.resize(np.ascontiguousarray(crop), size, interpolation=cv2.INTER_LINEAR).astype(np.float32)
    photo = photo * rng.uniform(0.8, 1.2) + rng.normal(0, 4, photo.shape)
    bgr = cv2.cvtColor(np.clip(photo, 0, 255).astype(np.uint8), cv2.COLOR_RGB2BGR)
    ok, data = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(85, 96))])
    Path(path).write_bytes(data.tobytes())


def photo_sizes(photo_scale):
    """(small, large) photo sizes (width, height) at `photo_scale`."""
    return tuple(tuple(max(MIN_IMAGE_SIZE, round(side * photo_scale)) for side in size)
                 for size in (SMALL_SIZE, LARGE_SIZE))


def write_standin(source, scale, workers, photo_scale=1.0, leaf_pool=LEAF_POOL):
    """Write the stand-in download into `source` (staged, renamed when complete); skipped when it is complete."""
    source = Path(source)
    sizes = photo_sizes(photo_scale)
    render_size = max(MIN_IMAGE_SIZE, round(LEAF_RENDER_SIZE * photo_scale))
    info = {"scale": scale, "large_share": LARGE_SHARE, "sizes": sizes, "repeats": OFFICIAL_REPEATS,
            "leaf_pool": leaf_pool, "render_size": render_size}
    if (source / COMPLETE_MARK).is_file() and json.loads((source / COMPLETE_MARK).read_text()) == json.loads(
            json.dumps(info)):
        return False
    images, entries, _ = plan_standin(scale)
    with staged_folder(source, "stand-in") as staging:
        for split, (folder, annotations, list_name) in {"train": (TRAIN_DIR, TRAIN_JSON, TRAIN_LIST),
                                                        "val": (VAL_DIR, VAL_JSON, VAL_LIST)}.items():
            (staging / folder / "images").mkdir(parents=True)
            (staging / folder / annotations).write_text(json.dumps(entries[split]))
            rows = images.loc[images["split"] == split]
            # The community's lists: Windows separators, one line per image (no repeats).
            (staging / folder / list_name).write_text("".join(f"images\\{row.image_id} {row.label}\n"
                                                              for row in rows.itertuples()))
        tasks = [(str(staging / (TRAIN_DIR if row.split == "train" else VAL_DIR) / "images" / row.image_id),
                  int(row.label), sizes[int(row.large)], index, leaf_pool, render_size)
                 for index, row in enumerate(images.itertuples())]
        map_parallel(_write_photo, tasks, workers or os.cpu_count(), "writing the stand-in")
        (staging / COMPLETE_MARK).write_text(json.dumps(info))
    return True


# ----------------------------------------------------------------------------------------------------
# Measuring a step
# ----------------------------------------------------------------------------------------------------
def _tree_pss_kib(root_pid):
    """Proportional set size (KiB) of a process and all its descendants (Linux /proc)."""
    children = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    total, stack = 0, [root_pid]
    while stack:
        pid = stack.pop()
        stack += children.get(pid, [])
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


def run_measured(command, env=None, log=None):
    """Run `command`; (seconds, peak GiB of its process tree, stdout). Stops the benchmark when it fails."""
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peak = [0]

    def sample():
        while process.poll() is None:
            peak[0] = max(peak[0], _tree_pss_kib(process.pid))
            time.sleep(0.5)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    lines = []
    for line in process.stdout:
        lines.append(line)
        if log is not None:
            log.write(line)
            log.flush()
    process.wait()
    sampler.join()
    output = "".join(lines)
    if process.returncode != 0:
        raise UserError(f"`{' '.join(map(str, command))}` stopped with exit status {process.returncode}: "
                        f"{output.strip().splitlines()[-1] if output.strip() else 'no output'}")
    return time.perf_counter() - started, peak[0] / 2 ** 20, output


# ----------------------------------------------------------------------------------------------------
# main
# ----------------------------------------------------------------------------------------------------
def stage_rows(runs):
    """One row per training stage from its history.csv: epoch and validation seconds, images/s."""
    rows = []
    for stage in ("task1_stage1", "task1_stage2"):
        history = pd.read_csv(Path(runs) / stage / "history.csv")
        last = history.iloc[-1]
        rows.append({"stage": stage, "epoch s": f"{last['epoch_seconds']:.0f}", "val s": f"{last['eval_seconds']:.0f}",
                     "img/s": f"{last['train_images_per_s']:.1f}",
                     "val bal. acc.": f"{last['val_balanced_acc']:.3f}", "val acc.": f"{last['val_acc']:.3f}"})
    return rows


def write_report(args, argv, started, steps, summary, list_rows, output, images, repeats):
    python = sys.executable
    lines = header_lines("The official AI Challenger 2018 layout at full scale, on this machine", started,
                         "benchmarks/aic_scale.py", argv)
    large = int(images["large"].sum())
    (small_width, small_height), (large_width, large_height) = photo_sizes(args.photo_scale)
    lines += [f"- Stand-in: {len(images)} photos ({(images['split'] == 'train').sum()} train, "
              f"{(images['split'] == 'val').sum()} val; {large} at {large_width}x{large_height}, the rest at "
              f"{small_width}x{small_height}, JPEG), scale {args.scale:g} of the official counts; repeated JSON "
              f"ids: {repeats}",
              f"- Python: `{python}`; the machine's other load is in the load average above: these are wall times.",
              "", "## Steps", ""]
    table = pd.DataFrame([{"step": name, "wall": f"{seconds:.0f} s",
                           "peak memory": "-" if np.isnan(peak) else f"{peak:.2f} GiB"}
                          for name, (seconds, peak) in steps.items()])
    lines += markdown_table(table)
    cleaning_seconds, cleaning_peak = steps["cleaning (analyze_data.py, JSON layout)"]
    lines += ["", f"Targets (issue 20): cleaning at most {TARGETS['cleaning_seconds']} s "
              f"({'met' if cleaning_seconds <= TARGETS['cleaning_seconds'] else 'missed'}: {cleaning_seconds:.0f} s); "
              f"peak memory under {TARGETS['peak_gib']:g} GiB in every step "
              f"({'met' if np.nanmax([peak for _, peak in steps.values()]) < TARGETS['peak_gib'] else 'missed'}; "
              f"cleaning {cleaning_peak:.2f} GiB).", "",
              "## Cleaning", "",
              f"- listed {summary['totals']['listed']}, kept {summary['totals']['kept']} ({summary['totals']['train']} "
              f"train, {summary['totals']['val']} val), {summary['totals']['classes']} classes, imbalance "
              f"{summary['imbalance_ratio']:.0f}:1",
              f"- rejected by reason: {summary['rejected_by_reason']}",
              f"- classes without a validation image: {summary['classes_without_val_images']}",
              f"- text-list layout read by sources.read_source: {list_rows}", "",
              "## Training (train_fixed.sh, one head epoch and one full epoch)", ""]
    lines += markdown_table(pd.DataFrame(stage_rows(args.runs)))
    named = [line for line in output.splitlines() if "no validation image for" in line]
    lines += ["", "train.py's setup said: " + (f"`{named[0]}`" if named else "(no class without validation images)"),
              "", "Plots of the 61 classes, from the run (copied beside this report): "
              + ", ".join(f"`aic_scale_{name}`" for name in PLOTS)]
    write_text(Path(args.out) / "aic_scale.md", "\n".join(lines) + "\n")


@cli_entry
def main(argv=None):
    args = parse_args(argv)
    argv = sys.argv[1:] if argv is None else argv
    started = start_snapshot()
    steps = {}
    python = sys.executable
    begun = time.perf_counter()
    wrote = write_standin(args.source, args.scale, args.workers, args.photo_scale, args.leaf_pool)
    if wrote:
        steps["writing the stand-in"] = (time.perf_counter() - begun, float("nan"))
    images, _, repeats = plan_standin(args.scale)
    Path(args.runs).parent.mkdir(parents=True, exist_ok=True)
    with open(Path(args.runs).with_suffix(".log"), "w") as log:
        steps.update(run_steps(args, python, log))
    summary = json.loads((Path(args.data_dir) / "metadata" / "summary.json").read_text())
    listed = sources.read_source(args.source, fmt="aichallenger-list")
    list_rows = (f"{len(listed.images)} images, {len(listed.rejected)} rejected, "
                 f"{listed.images['label'].nunique()} classes")
    stage2 = Path(args.runs) / "task1_stage2"
    for name in PLOTS:
        shutil.copyfile(stage2 / name, Path(args.out) / f"aic_scale_{name}")
    output = (stage2 / "train.log").read_text()
    write_report(args, argv, started, steps, summary, list_rows, output, images, repeats)
    print((Path(args.out) / "aic_scale.md").read_text())


def run_steps(args, python, log):
    """Clean, read the lists, train, plot: {step: (seconds, peak GiB)}; every step's output goes to `log`."""
    steps = {}
    shutil.rmtree(args.data_dir, ignore_errors=True)
    seconds, peak, _ = run_measured([python, "analyze_data.py", "--source", args.source, "--out", args.data_dir],
                                    log=log)
    steps["cleaning (analyze_data.py, JSON layout)"] = (seconds, peak)
    begun = time.perf_counter()
    sources.read_source(args.source, fmt="aichallenger-list")
    steps["reading the text lists"] = (time.perf_counter() - begun, float("nan"))
    shutil.rmtree(args.runs, ignore_errors=True)
    env = dict(os.environ, PYTHON=python, DATA_DIR=args.data_dir, OUT_ROOT=args.runs, STAGE1_EPOCHS="1",
               STAGE2_EPOCHS="1", WARMUP_EPOCHS="0", IMG_SIZE=str(args.img_size), BATCH_SIZE=str(args.batch_size))
    if args.model:
        env["MODEL"] = args.model
    if args.no_pretrained:
        env["PRETRAINED"] = "0"
    seconds, peak, _ = run_measured(["bash", "train_fixed.sh"], env=env, log=log)
    steps["train_fixed.sh: 1 head + 1 full epoch + calibration"] = (seconds, peak)
    seconds, peak, _ = run_measured([python, "visualize_training.py", "--checkpoint-dir",
                                     str(Path(args.runs) / "task1_stage2")], log=log)
    steps["visualize_training.py"] = (seconds, peak)
    return steps


if __name__ == "__main__":
    main()
