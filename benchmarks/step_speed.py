"""The model's step on this device: eager (NCHW), channels_last, and train.py --compile, side by side.

    python benchmarks/step_speed.py                                   # CPU, tf_efficientnet_lite0, 128 px, batch 32
    python benchmarks/step_speed.py --variants eager channels_last --img-size 128 192   # no compiling (slow cold)
    python benchmarks/step_speed.py --device cuda --img-size 320

Each variant times a full-stage training step (forward, backward, clipping, AdamW) and an evaluation forward pass
(no_grad, eval mode: what validation, prediction and the frozen-backbone head stage run). The first training step
of the compiled model includes the compilation. Then the variants step alternately, so load from other processes
hits them alike; the report gives the median wall time and, on the CPU, the process CPU time per step (which other
load does not inflate). Writes OUT/step_speed.md.
"""
import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

# runtime first: it sets OMP_WAIT_POLICY before torch loads, as train.py runs.
from leafdisease.utils import runtime  # noqa: E402, I001

import torch  # noqa: E402

from leafdisease.training import models  # noqa: E402
from leafdisease.utils.atomic_io import write_text  # noqa: E402
from benchmarks.report import header_lines, start_snapshot  # noqa: E402
from leafdisease.utils.errors import cli_entry  # noqa: E402

# name: (channels_last, compiled), as train.py --channels-last on / --compile set them
VARIANTS = {"eager": (False, False), "channels_last": (True, False), "compiled": (False, True)}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=models.DEFAULT_MODEL)
    parser.add_argument("--img-size", type=int, nargs="+", default=[128], help="one row per variant and size")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=6, help="timed steps per variant, alternating")
    parser.add_argument("--variants", nargs="+", choices=tuple(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default="benchmarks/reports")
    return parser.parse_args(argv)


def timed(function, device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    wall, cpu = time.perf_counter(), time.process_time()
    function()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - wall, time.process_time() - cpu


def build_variant(name, model_name, images, targets, device):
    """(training step, evaluation pass) of a freshly seeded model set up as the variant says."""
    channels_last, compiled = VARIANTS[name]
    torch.manual_seed(0)
    memory_format = runtime.memory_format(channels_last)
    model = models.create_model(model_name, 61, pretrained=False).to(device, memory_format=memory_format)
    if compiled:
        model.compile()  # as train.py --compile
    images = images.contiguous(memory_format=memory_format)  # as dataset.ModelInput hands batches over
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def train_step():
        model.train()
        optimizer.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(model(images), targets, label_smoothing=0.1)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()

    def evaluate():
        model.eval()
        with torch.no_grad():
            model(images)

    return train_step, evaluate


def median_pair(pairs):
    return statistics.median(pair[0] for pair in pairs), statistics.median(pair[1] for pair in pairs)


@cli_entry
def main(argv=None):
    args = parse_args(argv)
    argv = sys.argv[1:] if argv is None else argv
    started = start_snapshot()
    device = torch.device(args.device)
    targets = torch.randint(0, 61, (args.batch_size,), device=device)
    runs = {}
    for size in args.img_size:
        images = torch.randn(args.batch_size, 3, size, size, device=device)
        for name in args.variants:
            train_step, evaluate = build_variant(name, args.model, images, targets, device)
            first_train, first_eval = timed(train_step, device), timed(evaluate, device)
            runs[name, size] = {"train": train_step, "eval": evaluate, "first": first_train, "train_times": [],
                                "eval_times": []}
            print(f"{name}, {size} px: first training step {first_train[0]:.1f} s wall, {first_train[1]:.1f} s CPU; "
                  f"first evaluation pass {first_eval[0]:.1f} s wall", flush=True)
    for _ in range(args.steps):
        for run in runs.values():
            run["train_times"].append(timed(run["train"], device))
            run["eval_times"].append(timed(run["eval"], device))
    lines = header_lines("The model's step: eager, channels_last and torch.compile", started,
                         "benchmarks/step_speed.py", argv)
    lines += [f"Model `{args.model}` (random init), batch {args.batch_size}, device {device}, "
              f"{torch.get_num_threads()} intra-op threads; {args.steps} timed steps each after the first, "
              f"alternating.", "",
              "| variant | px | first training step, wall (s) | first training step, CPU (s) | training step, wall (s) | "
              "training images/s | training step, CPU (s) | evaluation pass, wall (s) | evaluation pass, CPU (s) |",
              "|---|---|---|---|---|---|---|---|---|"]
    for (name, size), run in runs.items():
        train_wall, train_cpu = median_pair(run["train_times"])
        eval_wall, eval_cpu = median_pair(run["eval_times"])
        lines.append(f"| {name} | {size} | {run['first'][0]:.1f} | {run['first'][1]:.1f} | {train_wall:.2f} | "
                     f"{args.batch_size / train_wall:.1f} | {train_cpu:.2f} | {eval_wall:.2f} | {eval_cpu:.2f} |")
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    lines += ["", f"Medians over the timed steps. Load average at the end: {load}. On a GPU the CPU columns are the "
                  f"host's time only."]
    out = Path(args.out) / "step_speed.md"
    write_text(out, "\n".join(lines) + "\n")
    print(out.read_text())


if __name__ == "__main__":
    main()
