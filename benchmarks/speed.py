"""Where the training time goes: data pipeline against model compute, head stage against full stage.

    python benchmarks/speed.py                          # demo profile: tf_efficientnet_lite0, 128 px, batch 32
    python benchmarks/speed.py --steps 5 --pipeline-seconds 3    # a quick look

1. Data pipeline: images/s of read + decode + strong augmentation at --img-size through a real DataLoader, per
   worker count, from large photos (synthetic --photo-size JPEGs standing in for AI Challenger's camera photos)
   against the same photos re-encoded by cleaning.py's --max-side logic (cleaning.reencode_image).
2. Training on --data-dir (the cleaned demo dataset by default): train.py's loop (engine.train_one_epoch) fed by a real
   DataLoader against the same function stepping on random tensors already in memory (the compute limit),
   for the full stage and the head stage (frozen backbone); evaluation images/s; peak memory.
3. On CUDA (the default device when there is one): the same at --gpu-img-size with bf16 AMP and channels_last, and how many loader workers it takes
   to keep the GPU fed. --gpu-only measures just this part (benchmarks/gpu_check.sh; with --device cpu, the same
   rows on the CPU, which is how that script's CPU mode tests it).
Writes OUT/speed.md with the issue's targets marked met or missed.
"""
import argparse
import gc
import os
import resource
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

# runtime first: it sets OMP_WAIT_POLICY before torch loads, so this measures the loop as a real run executes it.
from leafdisease.utils import runtime  # noqa: E402, I001

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
from timm.data import resolve_data_config  # noqa: E402

from leafdisease.data import cleaning  # noqa: E402
import dataset  # noqa: E402
from leafdisease.data import longtail  # noqa: E402
from leafdisease.training import models  # noqa: E402
from leafdisease.training import recipe  # noqa: E402
from leafdisease.training import engine  # noqa: E402
from leafdisease.utils.atomic_io import write_text  # noqa: E402
from benchmarks.photos import render_photo  # noqa: E402
from benchmarks.report import header_lines, markdown_table, start_snapshot  # noqa: E402
from leafdisease.utils.errors import UserError, cli_entry  # noqa: E402

DEMO_STAGE2 = recipe.settings(recipe.path_of("fixed_stage2"), recipe.path_of("demo"))
TARGET_LOOP_RATIO = 0.90
TARGET_HEAD_SPEEDUP = 3.0
TARGET_CLEANED_SPEEDUP = 5.0
WARMUP_STEPS = 2
ROUNDS = 2


def default_worker_counts():
    """0, 1, 2, 4, ... up to the available cores, and that count itself."""
    cores = runtime.available_cores()
    counts = {0, cores}
    count = 1
    while count < cores:
        counts.add(count)
        count *= 2
    return sorted(counts)


def photo_size(text):
    try:
        width, height = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}': expected WIDTHxHEIGHT, e.g. 3000x2000") from None
    return width, height


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default="data/cleaned", help="cleaned dataset for the training measurements")
    parser.add_argument("--model", default=models.DEFAULT_MODEL)
    parser.add_argument("--img-size", type=int, default=DEMO_STAGE2["img_size"],
                        help="training resolution (default: the demo profile's)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=20,
                        help=f"timed steps per training measurement, in {ROUNDS} alternating rounds")
    parser.add_argument("--workers", type=int, default=None,
                        help="loader processes of the training loop (default: train.py's, nproc - 1)")
    parser.add_argument("--pipeline-workers", type=int, nargs="+", default=None,
                        help="worker counts of the pipeline measurement (default: 0 1 2 4 ... nproc)")
    parser.add_argument("--pipeline-seconds", type=float, default=8.0, help="duration of each pipeline measurement")
    parser.add_argument("--photos", type=int, default=24, help="distinct large photos (the loader loops over them)")
    parser.add_argument("--photo-size", type=photo_size, default=(3000, 2000), help="WIDTHxHEIGHT of a large photo")
    parser.add_argument("--max-side", type=int, default=512, help="cleaning's --max-side for the re-encoded copies")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads of the main process (default: torch's own, = nproc)")
    parser.add_argument("--gpu-img-size", type=int, default=recipe.settings(recipe.path_of("fixed_stage2"))["img_size"],
                        help="resolution of the CUDA measurements (default: recipes/fixed_stage2.yaml's)")
    parser.add_argument("--gpu-only", action="store_true",
                        help="only the GPU part (at --gpu-img-size, bf16, channels_last), on --device")
    parser.add_argument("--out", default="benchmarks/reports")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.batch_size < 1 or args.photos < 1:
        parser.error("--steps, --batch-size and --photos must be positive")
    args.workers = runtime.default_workers() if args.workers is None else args.workers
    args.pipeline_workers = sorted(set(args.pipeline_workers or default_worker_counts()) | {args.workers})
    return args


# ----------------------------------------------------------------------------------------------------
# Data pipeline
# ----------------------------------------------------------------------------------------------------
def make_photo_sets(folder, args):
    """(large photo paths, their cleaned re-encodings) in `folder`."""
    rng = np.random.default_rng(0)
    large, cleaned = [], []
    for index in range(args.photos):
        source = folder / "large" / f"photo_{index:03d}.jpg"
        source.parent.mkdir(parents=True, exist_ok=True)
        render_photo(source, *args.photo_size, rng)
        target = folder / "cleaned" / source.name
        cleaning.reencode_image((str(source), str(target), False, False, args.max_side, None))
        large.append(str(source))
        cleaned.append(str(target))
    return large, cleaned


def pipeline_rate(paths, transform, short_side, workers, batch_size, seconds):
    """Images/s of read + decode + augment through a DataLoader, timed from its start (worker start-up
    included, as at the start of training) until `seconds` have passed. Photos are read at their working size for
    short_side, as train.py reads them."""
    repeats = 10 ** 5 // len(paths) + 1
    images = dataset.LeafDataset(paths * repeats, np.zeros(len(paths) * repeats, np.int64), transform,
                                 short_side=short_side)
    loader = torch.utils.data.DataLoader(images, batch_size=batch_size, num_workers=workers,
                                         worker_init_fn=dataset.worker_init)
    started = time.perf_counter()
    count = 0
    for batch, _ in loader:
        count += len(batch)
        if time.perf_counter() - started >= seconds:
            break
    return count / (time.perf_counter() - started)


def measure_pipeline(sources, img_size, args):
    """One row per worker count: images/s per source."""
    transform = dataset.build_transform("strong", img_size)
    rows = []
    for workers in args.pipeline_workers:
        row = {"workers": workers}
        for name, paths in sources.items():
            row[name] = pipeline_rate(paths, transform, dataset.short_side_for_crops(img_size), workers,
                                      args.batch_size, args.pipeline_seconds)
        print(f"pipeline {img_size}px, {workers} workers: "
              + ", ".join(f"{name} {row[name]:.1f} img/s" for name in sources), flush=True)
        rows.append(row)
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------------------------------
# Training and evaluation
# ----------------------------------------------------------------------------------------------------
class TimedLoader:
    """Passes a loader through, recording how long the consumer waits for each batch and how long each step
    (wait + work on the batch) takes."""

    def __init__(self, loader):
        self.loader = loader
        self.wait_seconds = 0.0
        self.step_rates = []

    def __len__(self):
        return len(self.loader)

    def __iter__(self):
        requested = time.perf_counter()
        for batch in self.loader:
            delivered = time.perf_counter()
            self.wait_seconds += delivered - requested
            yield batch
            finished = time.perf_counter()
            self.step_rates.append(len(batch[1]) / (finished - requested))
            requested = finished


@dataclass
class Loop:
    """One stage's training loop as train.py sets it up, and what engine.train_one_epoch is called with."""
    state: engine.TrainingState
    criterion: torch.nn.Module
    stage: str
    model_input: dataset.ModelInput
    amp_dtype: torch.dtype | None

    @property
    def device(self):
        return self.model_input.device


def training_loop(args, stage, img_size, amp, channels_last, num_classes, train_counts, device):
    """The loop of a default train.py run of `stage`, built with engine's builders (AdamW at the stage recipe's LR,
    cosine schedule, sqrt-weighted CE with label smoothing, frozen backbone and HeadOnly for the head stage)."""
    model = models.create_model(args.model, num_classes, pretrained=False)
    data_config = resolve_data_config(model=model)
    if stage == "head":
        models.freeze_backbone(model)
    use_channels_last = runtime.use_channels_last(channels_last, device)
    model = model.to(device, memory_format=runtime.memory_format(use_channels_last))
    optimizer = engine.build_optimizer(model, recipe.settings(recipe.path_of(recipe.STAGE_RECIPES[stage]))["lr"])
    autocast_dtype = runtime.amp_dtype(amp, device)
    state = engine.TrainingState(
        model=model, trainable=models.HeadOnly(model) if stage == "head" else model, optimizer=optimizer,
        scheduler=engine.build_scheduler(optimizer, epochs=1, steps_per_epoch=10 ** 6),
        scaler=torch.amp.GradScaler(device.type, enabled=autocast_dtype == torch.float16))
    criterion = engine.build_criterion("ce", longtail.compute_class_weights(train_counts, "sqrt"),
                                       train_counts).to(device)
    model_input = dataset.ModelInput.for_config(data_config, device, use_channels_last)
    return Loop(state, criterion, stage, model_input, autocast_dtype), data_config


def reset_peak_memory(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_gib(device):
    return torch.cuda.max_memory_allocated(device) / 2 ** 30 if device.type == "cuda" else float("nan")


def time_training(loop, batches):
    """One pass of engine.train_one_epoch over `batches`."""
    timed = TimedLoader(batches)
    reset_peak_memory(loop.device)
    progress = engine.train_one_epoch(loop.state, loop.criterion, timed, loop.model_input, 1,
                                      engine.new_epoch_progress(), epochs=1, backbone_frozen=loop.stage == "head",
                                      amp_dtype=loop.amp_dtype)
    return timed, progress["images"], progress["seconds"], peak_memory_gib(loop.device)


def time_evaluation(loop, batches):
    """One pass of engine.evaluate over `batches`."""
    timed = TimedLoader(batches)
    reset_peak_memory(loop.device)
    started = time.perf_counter()
    _, targets = engine.evaluate(loop.state.model, timed, loop.model_input, loop.amp_dtype)
    return timed, len(targets), time.perf_counter() - started, peak_memory_gib(loop.device)


def compare(timer, loop, sources):
    """Times every (label, batches) source ROUNDS times, alternating, so a change in the machine's load hits
    them alike. Per source: images/s of the median step, of the whole passes, share of time waiting for data."""
    passes = {label: [] for label, _ in sources}
    for _ in range(ROUNDS):
        for label, batches in sources:
            passes[label].append(timer(loop, batches))
    results = {}
    for label, runs in passes.items():
        seconds = sum(run[2] for run in runs)
        results[label] = {"images_per_s": float(np.median([rate for run in runs for rate in run[0].step_rates])),
                          "pass_images_per_s": sum(run[1] for run in runs) / seconds,
                          "wait_share": sum(run[0].wait_seconds for run in runs) / seconds,
                          "gpu_peak_gib": max(run[3] for run in runs)}
    return results


def random_batches(count, batch_size, img_size, num_classes, device):
    """The compute limit's input: one batch of random uint8 images already on the device (as a loader's batch
    arrives there; normalising it is part of the timed step, as in train.py), served `count` times."""
    images = torch.randint(0, 256, (batch_size, 3, img_size, img_size), dtype=torch.uint8, device=device)
    targets = torch.randint(0, num_classes, (batch_size,), device=device)
    return [(images, targets)] * count


def sample(table, count, seed):
    """`count` rows of `table` (with replacement when it has fewer)."""
    rng = np.random.default_rng(seed)
    return table.iloc[rng.choice(len(table), count, replace=len(table) < count)]


def measure_training(args, metadata, img_size, amp, channels_last, device):
    """Rows: full and head stage, each on random in-memory tensors and through the real DataLoader; evaluation
    both ways. The same loader (persistent workers, as train.py) feeds both stages."""
    class_ids = [int(class_id) for class_id in metadata.classes["id"]]
    index_of = dataset.label_to_index(class_ids)
    train_counts = np.bincount(metadata.train["label"].map(index_of), minlength=len(class_ids))
    steps_per_round = -(-args.steps // ROUNDS)
    train_rows = sample(metadata.train, steps_per_round * args.batch_size, seed=0)
    val_rows = sample(metadata.val, steps_per_round * args.batch_size, seed=1)
    loader_options = dict(runtime.loader_options(args.workers, device.type), worker_init_fn=dataset.worker_init)
    in_memory, through_loader = "random tensors in memory", f"DataLoader, {args.workers} workers"
    rows, loaders = [], {}
    for stage in ("full", "head"):
        loop, data_config = training_loop(args, stage, img_size, amp, channels_last, len(class_ids),
                                          train_counts, device)
        if not loaders:
            short_side = dataset.short_side_for_crops(img_size)  # as train.py reads photos
            train_set = dataset.LeafDataset(train_rows["path"], train_rows["label"].map(index_of),
                                            dataset.build_transform("strong", img_size), short_side=short_side)
            val_set = dataset.LeafDataset(val_rows["path"], val_rows["label"].map(index_of),
                                          dataset.build_transform("eval", img_size, crop_pct=data_config["crop_pct"]),
                                          short_side=short_side)
            loaders["train"] = torch.utils.data.DataLoader(train_set, batch_size=args.batch_size, shuffle=True,
                                                           drop_last=True, **loader_options)
            loaders["val"] = torch.utils.data.DataLoader(val_set, batch_size=args.batch_size * 2, **loader_options)
            next(iter(loaders["train"]))  # starts the persistent workers outside the timed loop
        random_input = random_batches(steps_per_round, args.batch_size, img_size, len(class_ids), device)
        time_training(loop, random_input[:WARMUP_STEPS])
        results = compare(time_training, loop, [(in_memory, random_input), (through_loader, loaders["train"])])
        rows += [{"measurement": f"{stage} stage training", "data": data, **result} for data, result in results.items()]
    random_input = random_batches(-(-steps_per_round // 2), args.batch_size * 2, img_size, len(class_ids), device)
    results = compare(time_evaluation, loop, [(in_memory, random_input), (through_loader, loaders["val"])])
    rows += [{"measurement": "evaluation", "data": data, **result} for data, result in results.items()]
    for row in rows:
        print(f"{row['measurement']}, {row['data']}: {row['images_per_s']:.1f} img/s", flush=True)
    loaders.clear()
    gc.collect()  # ends the persistent loader workers, so their peak memory is counted below
    return pd.DataFrame(rows)


def rate(table, measurement, in_memory):
    chosen = table.loc[(table["measurement"] == measurement)
                       & ((table["data"] == "random tensors in memory") == in_memory), "images_per_s"]
    return float(chosen.iloc[0])


# ----------------------------------------------------------------------------------------------------
# Report
# ----------------------------------------------------------------------------------------------------
def pipeline_table(pipeline):
    return pd.DataFrame({"loader workers": pipeline["workers"],
                         "large photos (img/s)": pipeline["large"].map("{:.1f}".format),
                         "cleaned (img/s)": pipeline["cleaned"].map("{:.1f}".format),
                         "cleaned / large": (pipeline["cleaned"] / pipeline["large"]).map("{:.1f}x".format)})


def training_table(training, with_gpu_memory):
    table = pd.DataFrame({"measurement": training["measurement"], "data": training["data"],
                          "images/s (median step)": training["images_per_s"].map("{:.1f}".format),
                          "images/s (whole pass)": training["pass_images_per_s"].map("{:.1f}".format),
                          "waiting for data": training["wait_share"].map("{:.0%}".format)})
    if with_gpu_memory:
        table["peak GPU memory"] = training["gpu_peak_gib"].map("{:.2f} GiB".format)
    return table


def ratio_lines(training):
    full_loop, full_compute = rate(training, "full stage training", False), rate(training, "full stage training", True)
    head_loop, head_compute = rate(training, "head stage training", False), rate(training, "head stage training", True)
    return [f"- Whole loop / model-only: full stage {full_loop / full_compute:.2f}, head stage "
            f"{head_loop / head_compute:.2f}",
            f"- Head stage / full stage: {head_loop / full_loop:.2f}x through the loader, "
            f"{head_compute / full_compute:.2f}x on in-memory tensors"]


def targets_table(training, pipeline, workers):
    full_ratio = rate(training, "full stage training", False) / rate(training, "full stage training", True)
    head_speedup = rate(training, "head stage training", False) / rate(training, "full stage training", False)
    at_workers = pipeline.loc[pipeline["workers"] == workers].iloc[0]
    cleaned_speedup = at_workers["cleaned"] / at_workers["large"]
    rows = [("whole training loop >= 0.90 x model-only (full stage)", f"{full_ratio:.2f}", full_ratio >= TARGET_LOOP_RATIO),
            ("head stage >= 3x full stage (through the loader)", f"{head_speedup:.2f}x", head_speedup >= TARGET_HEAD_SPEEDUP),
            (f"cleaned images >= 5x faster than large photos ({workers} workers, as training)",
             f"{cleaned_speedup:.1f}x", cleaned_speedup >= TARGET_CLEANED_SPEEDUP)]
    return pd.DataFrame([{"target": target, "measured": value, "status": "met" if met else "MISSED"}
                         for target, value, met in rows])


def diagnosis_lines(training, args):
    """Why the whole loop is slower than the model alone: starved of data, or sharing the CPU."""
    loop = training.loc[(training["measurement"] == "full stage training")
                        & (training["data"] != "random tensors in memory")].iloc[0]
    ratio = loop["images_per_s"] / rate(training, "full stage training", True)
    if ratio >= TARGET_LOOP_RATIO:
        return []
    if loop["wait_share"] >= 1 - TARGET_LOOP_RATIO:
        return [f"- The full-stage loop waits for data {loop['wait_share']:.0%} of its time: the loader is too slow "
                f"({args.workers} worker(s)); more workers, or smaller re-encoded images (cleaning's --max-side)."]
    return [f"- The full-stage loop waits for data only {loop['wait_share']:.0%} of its time, so the loader keeps up; "
            f"the gap is slower compute: the loader worker(s) ({args.workers}) and any other processes share the "
            f"{runtime.available_cores()} cores with torch's {torch.get_num_threads()} intra-op threads, and one preempted "
            f"thread stalls them all at every synchronisation point (see the load average above). Compare with "
            f"`OMP_WAIT_POLICY=PASSIVE python benchmarks/speed.py ...` (waiting threads sleep instead of spinning) "
            f"and with `--workers 0`."]


def workers_to_feed(pipeline, source, gpu_rate):
    """Fewest measured loader workers whose pipeline rate reaches the GPU's training rate."""
    enough = pipeline.loc[pipeline[source] >= gpu_rate, "workers"]
    if len(enough):
        return f"{int(enough.min())}"
    with_workers = pipeline.loc[pipeline["workers"] > 0]
    if with_workers.empty:
        return "not measured (no worker count above 0)"
    busiest = with_workers.iloc[-1]
    per_worker = busiest[source] / busiest["workers"]
    return f"more than {int(busiest['workers'])} (~{int(np.ceil(gpu_rate / per_worker))} at {per_worker:.0f} img/s each)"


def photo_lines(sources, args):
    sizes = {name: np.mean([os.path.getsize(path) for path in paths]) / 2 ** 20 for name, paths in sources.items()}
    height, width = cv2.imread(sources["cleaned"][0]).shape[:2]
    return [f"Compared: {args.photos} synthetic {args.photo_size[0]}x{args.photo_size[1]} JPEG photos (q92, "
            f"{sizes['large']:.2f} MiB on average; stand-ins for AI Challenger's camera photos) against the same "
            f"photos re-encoded by `cleaning.reencode_image` with --max-side {args.max_side} ({width}x{height}, "
            f"{sizes['cleaned'] * 1024:.0f} KiB on average), each read with OpenCV and put through the strong "
            f"augmentation and normalisation by a DataLoader with batch {args.batch_size}, looping over the photos, "
            f"{args.pipeline_seconds:g} s per measurement, worker start-up included. Worker count 0 = in the main "
            f"process.", ""]


def memory_lines():
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return [f"- Peak resident memory (`ru_maxrss`): main process {own:.0f} MiB; largest child process (a loader "
            f"worker; forked, so this counts pages it shares with the main process) {children:.0f} MiB"]


def write_report(path, args, argv, started, device, sections):
    lines = header_lines("Speed: data pipeline against model compute", started, "benchmarks/speed.py", argv)
    lines += [f"- Settings: model `{args.model}` (random init), "
              f"{args.gpu_img_size if args.gpu_only else args.img_size} px, batch {args.batch_size}, "
              f"{args.steps} timed steps per training measurement, device {device}, training loader "
              f"{args.workers} worker(s) (train.py's default), torch {torch.get_num_threads()} threads "
              f"in the main process, OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')} (as train.py sets it)",
              ""]
    for title, body in sections:
        lines += [f"## {title}", "", *body, ""]
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    lines += [f"Load average at the end: {load}."]
    write_text(path, "\n".join(lines) + "\n")


def gpu_section(args, metadata, sources, device):
    pipeline = measure_pipeline(sources, args.gpu_img_size, args)
    training = measure_training(args, metadata, args.gpu_img_size, "bf16", "on", device)
    gpu_rate = rate(training, "full stage training", True)
    table = pipeline_table(pipeline)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{device} (no autocast on the CPU)"
    loop_ratio = rate(training, "full stage training", False) / gpu_rate
    body = [f"{name}, {args.gpu_img_size} px, bf16 autocast, channels_last, batch {args.batch_size}, training loader "
            f"{args.workers} worker(s).", "",
            f"`engine.train_one_epoch` and `engine.evaluate` on a sample of `{args.data_dir}` through the DataLoader "
            f"(strong augmentation) against the same calls on random tensors already on the device, {args.steps} "
            f"steps each in {ROUNDS} alternating rounds; median step and whole pass:",
            "", *markdown_table(training_table(training, with_gpu_memory=device.type == "cuda")), "",
            *ratio_lines(training),
            f"- Target: whole loop >= {TARGET_LOOP_RATIO:.2f} x model-only (full stage): {loop_ratio:.2f}, "
            f"{'met' if loop_ratio >= TARGET_LOOP_RATIO else 'MISSED'}", "",
            f"Data pipeline at {args.gpu_img_size} px against the GPU's model-only full-stage rate "
            f"({gpu_rate:.0f} img/s):", "", *markdown_table(table), "",
            f"- Loader workers that keep the GPU fed (pipeline >= {gpu_rate:.0f} img/s): cleaned images "
            f"{workers_to_feed(pipeline, 'cleaned', gpu_rate)}; large photos {workers_to_feed(pipeline, 'large', gpu_rate)}"]
    return f"GPU: {args.gpu_img_size} px, bf16, channels_last", body


@cli_entry
def main(argv=None):
    args = parse_args(argv)
    argv = sys.argv[1:] if argv is None else argv
    if args.threads:
        torch.set_num_threads(args.threads)
    started = start_snapshot()
    if not (Path(args.data_dir) / "metadata" / "classes.csv").exists():
        raise UserError(f"{args.data_dir}: no cleaned dataset here; run `python analyze_data.py` to build and clean "
                        f"the demo dataset (or pass --data-dir)")
    metadata = dataset.load_metadata(args.data_dir)
    if metadata.val.empty:
        raise UserError(f"{Path(args.data_dir) / 'metadata' / 'val.csv'}: no validation images")
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {args.device}: CUDA is not available on this machine")
    with tempfile.TemporaryDirectory(prefix="speed_photos_") as folder:
        print(f"rendering {args.photos} photos of {args.photo_size[0]}x{args.photo_size[1]} ...", flush=True)
        sources = dict(zip(("large", "cleaned"), make_photo_sets(Path(folder), args)))
        if args.gpu_only:
            sections = [gpu_section(args, metadata, sources, device), ("Memory", memory_lines())]
            out = Path(args.out) / "speed.md"
            write_report(out, args, argv, started, device, sections)
            print(out.read_text())
            return
        pipeline = measure_pipeline(sources, args.img_size, args)
        training = measure_training(args, metadata, args.img_size, "auto", "auto", device)
        sections = [
            (f"Data pipeline: read + decode + strong augmentation at {args.img_size} px",
             [*photo_lines(sources, args), *markdown_table(pipeline_table(pipeline))]),
            (f"Training and evaluation on {device}",
             [f"`engine.train_one_epoch` and `engine.evaluate` on a sample of `{args.data_dir}` (strong augmentation; "
              f"evaluation: resize + centre crop, batch {2 * args.batch_size}) against the same calls on random "
              f"tensors already in memory, {args.steps} training steps each, timed in {ROUNDS} alternating rounds "
              f"(in memory, loader, in memory, loader) so that other load on the machine hits both alike. The median "
              f"step resists such load; 'whole pass' includes everything, such as each pass's wait for its first "
              f"batch. 'Waiting for data' is the share of the loop spent waiting for the next batch.", "",
              *markdown_table(training_table(training, with_gpu_memory=device.type == "cuda")), "",
              *ratio_lines(training)]),
            ("Targets", markdown_table(targets_table(training, pipeline, args.workers))
             + [line for diagnosis in diagnosis_lines(training, args) for line in ("", diagnosis)]),
        ]
        if device.type == "cuda":
            sections.append(gpu_section(args, metadata, sources, device))
    sections.append(("Memory", memory_lines()))
    out = Path(args.out) / "speed.md"
    write_report(out, args, argv, started, device, sections)
    print(out.read_text())


if __name__ == "__main__":
    main()
