"""Where the full stage loses speed against a plain fine-tune on a CPU: the cost of each component, then one
setting changed at a time.

    python benchmarks/cpu_gap.py                     # demo data, 128 px, batch 32, 2 rounds -> benchmarks/reports/cpu_gap.md
    python benchmarks/cpu_gap.py --rounds 3 --variants as-is no-clip plain-aug
    python benchmarks/cpu_gap.py --rounds 0          # the components only (a few seconds of CPU)

Components: the CPU time (process time, so other load on a shared machine does not inflate it) of one training
step's parts in this process: forward + backward, gradient clipping, the AdamW update, the loss's `.item()`, and
one batch of images through read + decode + augmentation + normalisation (strong against plain), which a loader
worker spends on another core.

Each variant runs `train.py --stage full` (the real command, in its own process, so environment settings such
as OMP_WAIT_POLICY take effect before torch loads) for 2 epochs on the same sample of --data-dir, and reads the
second epoch's training images/s from history.csv (the first includes the loader workers' start-up), and the
CPU time of the whole run (train.py and its loader workers, start-up and validation included). Images/s is what a
user waits for, but on a shared machine it moves with other tenants' load; the CPU time tells whether a variant
does less work. Variants run in alternating rounds (A, B, C, A, B, C, ...), so load from other processes on a
shared machine hits them alike; the report gives each variant's median and spread, and its rate and CPU time
relative to `as-is` within each round.
"""
import os

# As train.py, before torch loads: waiting OpenMP threads sleep, so the CPU times below count work, not spinning.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import resource  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pandas as pd  # noqa: E402
import torch  # noqa: E402

import dataset  # noqa: E402
from benchmarks.feeding import cpu_ms  # noqa: E402
from benchmarks.report import header_lines, markdown_table, start_snapshot  # noqa: E402
from leafdisease.training import models  # noqa: E402
from leafdisease.utils.atomic_io import write_text  # noqa: E402
from leafdisease.utils.errors import UserError, cli_entry  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
# name: (extra train.py arguments, environment changes, what it tests)
VARIANTS = {
    "as-is": ([], {}, "train.py's defaults: strong augmentation, clipping at 1.0, default workers, PASSIVE"),
    "no-clip": (["--clip-grad", "0"], {}, "gradient clipping off"),
    "plain-aug": (["--augment", "plain"], {}, "timm's default training augmentation instead of the strong one"),
    "workers-0": (["--workers", "0"], {}, "images prepared in the training process, between steps"),
    "workers-2": (["--workers", "2"], {}, "two loader processes"),
    "omp-active": ([], {"OMP_WAIT_POLICY": "ACTIVE"}, "OpenMP threads spin while waiting (train.py sets PASSIVE)"),
    "threads-1": ([], {"OMP_NUM_THREADS": "1"}, "one intra-op thread, leaving a core to the loader"),
    "plain-recipe": (["--augment", "plain", "--clip-grad", "0", "--label-smoothing", "0", "--class-weights", "none"],
                     {}, "a plain fine-tune's recipe through train.py: plain augmentation, no clipping, plain CE"),
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default="data/cleaned")
    parser.add_argument("--model", default="tf_efficientnet_lite0")
    parser.add_argument("--img-size", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--train-images", type=int, default=640, help="training images sampled per epoch")
    parser.add_argument("--val-images", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--out", default="benchmarks/reports")
    args = parser.parse_args(argv)
    if "as-is" not in args.variants:
        args.variants.insert(0, "as-is")
    return args


def sampled_dataset(data_dir, folder, train_images, val_images):
    """A cleaned-dataset folder with a fixed sample of data_dir's rows (the images are not copied)."""
    source = Path(data_dir).resolve()
    if not (source / "metadata" / "classes.csv").exists():
        raise UserError(f"{data_dir}: no cleaned dataset; run `python analyze_data.py` first")
    target = Path(folder) / "sample"
    (target / "metadata").mkdir(parents=True)
    for split, count in (("train", train_images), ("val", val_images)):
        table = pd.read_csv(source / "metadata" / f"{split}.csv", keep_default_na=False)
        table = table.sample(n=min(count, len(table)), random_state=0)
        table.assign(path=[str(source / path) for path in table["path"]]).to_csv(
            target / "metadata" / f"{split}.csv", index=False)
    classes = pd.read_csv(source / "metadata" / "classes.csv", keep_default_na=False)
    train = pd.read_csv(target / "metadata" / "train.csv")
    classes = classes.loc[classes["id"].isin(set(train["label"]))]  # every class keeps a training image
    classes.to_csv(target / "metadata" / "classes.csv", index=False)
    for split in ("train", "val"):
        table = pd.read_csv(target / "metadata" / f"{split}.csv")
        table.loc[table["label"].isin(set(classes["id"]))].to_csv(target / "metadata" / f"{split}.csv", index=False)
    return target


def component_costs(args, data_dir, repeats=5):
    """Median CPU ms per training step of each component (see the module docstring)."""
    metadata = dataset.load_metadata(data_dir)
    paths = list(metadata.train["path"][: args.batch_size])
    costs = {}
    for kind in ("strong", "plain"):
        transform = dataset.build_transform(kind, args.img_size)
        transform.set_random_seed(0)
        costs[f"one batch through {kind} augmentation (loader worker)"] = statistics.median(
            cpu_ms(lambda: [transform(image=dataset.read_image_rgb(path)) for path in paths]) for _ in range(repeats))
    torch.manual_seed(0)
    model = models.create_model(args.model, len(metadata.classes), pretrained=False).train()
    parameters = list(model.parameters())
    optimizer = torch.optim.AdamW(parameters, lr=1e-4)
    images = torch.randn(args.batch_size, 3, args.img_size, args.img_size)
    targets = torch.randint(0, len(metadata.classes), (args.batch_size,))
    loss = None

    def forward_backward():
        nonlocal loss
        optimizer.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(model(images), targets, label_smoothing=0.1)
        loss.backward()

    parts = {"forward + backward (training process)": forward_backward,
             "gradient clipping at 1.0": lambda: torch.nn.utils.clip_grad_norm_(parameters, 1.0),
             "AdamW update": optimizer.step, "loss.item()": lambda: loss.item()}
    measured = {name: [] for name in parts}
    for _ in range(repeats + 1):  # the first round warms up
        for name, function in parts.items():
            measured[name].append(cpu_ms(function))
    costs.update({name: statistics.median(values[1:]) for name, values in measured.items()})
    return costs, torch.get_num_threads()


def run_variant(name, data_dir, output, args):
    extra, environment, _ = VARIANTS[name]
    command = [sys.executable, str(ROOT / "train.py"), "--data-dir", str(data_dir), "--output", str(output),
               "--stage", "full", "--epochs", "2", "--warmup-epochs", "0", "--model", args.model, "--no-pretrained",
               "--img-size", str(args.img_size), "--batch-size", str(args.batch_size), *extra]
    env = dict(os.environ, **environment)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)  # includes the loader workers train.py waited for
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_seconds = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    if result.returncode != 0:
        raise UserError(f"variant {name}: train.py failed: {result.stderr.strip().splitlines()[-1]}")
    history = pd.read_csv(Path(output) / "history.csv")
    return float(history["train_images_per_s"].iloc[-1]), cpu_seconds


@cli_entry
def main(argv=None):
    args = parse_args(argv)
    argv = sys.argv[1:] if argv is None else argv
    started = start_snapshot()
    rows = []
    costs, threads = component_costs(args, args.data_dir)
    for name, value in costs.items():
        print(f"{name}: {value:.1f} CPU ms per step", flush=True)
    with tempfile.TemporaryDirectory(prefix="cpu_gap_") as folder:
        data_dir = sampled_dataset(args.data_dir, folder, args.train_images, args.val_images)
        for round_index in range(args.rounds):
            for name in args.variants:
                began = time.perf_counter()
                rate, cpu_seconds = run_variant(name, data_dir, Path(folder) / f"{name}_{round_index}", args)
                rows.append({"round": round_index, "variant": name, "images_per_s": rate, "cpu_s": cpu_seconds})
                print(f"round {round_index + 1}/{args.rounds} {name}: {rate:.1f} img/s, {cpu_seconds:.0f} CPU s "
                      f"({time.perf_counter() - began:.0f} s)", flush=True)
    step = costs["forward + backward (training process)"] + costs["gradient clipping at 1.0"] + costs["AdamW update"]
    lines = header_lines("The CPU gap: the full stage against a plain fine-tune, one setting at a time", started,
                         "benchmarks/cpu_gap.py", argv)
    lines += ["## Components", "",
              f"CPU time per training step (model `{args.model}`, random init, {args.img_size} px, batch "
              f"{args.batch_size}, {threads} intra-op threads; median of 5, process CPU time):", "",
              "| component | CPU ms per step | share of the training process's step |", "|---|---|---|"]
    lines += [f"| {name} | {value:.1f} | {value / step:.1%} |" for name, value in costs.items()]
    lines.append("")
    if not rows:
        write_text(Path(args.out) / "cpu_gap.md", "\n".join(lines) + "\n")
        print((Path(args.out) / "cpu_gap.md").read_text())
        return
    results = pd.DataFrame(rows)
    reference = results.loc[results["variant"] == "as-is"].set_index("round")
    results["relative"] = results["images_per_s"] / results["round"].map(reference["images_per_s"])
    results["cpu_relative"] = results["cpu_s"] / results["round"].map(reference["cpu_s"])
    summary = []
    for name in args.variants:
        chosen = results.loc[results["variant"] == name]
        summary.append({"variant": name, "what changes": VARIANTS[name][2],
                        "images/s (median)": f"{chosen['images_per_s'].median():.1f}",
                        "images/s per round": " / ".join(f"{value:.1f}" for value in chosen["images_per_s"]),
                        "vs as-is, same round (median)": f"{chosen['relative'].median():.3f}",
                        "CPU s per run (median)": f"{chosen['cpu_s'].median():.0f}",
                        "CPU s per round": " / ".join(f"{value:.0f}" for value in chosen["cpu_s"]),
                        "CPU vs as-is, same round (median)": f"{chosen['cpu_relative'].median():.3f}"})
    lines += ["## One setting at a time", "", f"`train.py --stage full`, model `{args.model}` (random init), {args.img_size} px, batch "
              f"{args.batch_size}, {args.train_images} training / {args.val_images} validation images sampled from "
              f"`{args.data_dir}`, 2 epochs; the second epoch's training images/s (history.csv) and the CPU "
              f"seconds of the whole run (train.py and its loader workers). {args.rounds} alternating rounds. "
              f"Load average at the end: "
              f"{', '.join(f'{value:.2f}' for value in os.getloadavg())}.", "", *markdown_table(pd.DataFrame(summary))]
    out = Path(args.out) / "cpu_gap.md"
    write_text(out, "\n".join(lines) + "\n")
    print(out.read_text())


if __name__ == "__main__":
    main()
