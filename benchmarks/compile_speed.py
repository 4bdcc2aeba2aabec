"""train.py --compile against eager: one full-stage training step (forward, backward, clipping, AdamW).

    python benchmarks/compile_speed.py                       # CPU, tf_efficientnet_lite0, 128 px, batch 32
    python benchmarks/compile_speed.py --device cuda --img-size 320

The first step of the compiled model includes the compilation. Then the two models step alternately, so load
from other processes hits both alike; the report gives the median wall time and, on the CPU, the process CPU
time per step (which other load does not inflate). Writes OUT/compile.md.
"""
import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as train.py, before torch loads

import argparse  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

import models  # noqa: E402
from atomic_io import write_text  # noqa: E402
from benchmarks.report import header_lines, start_snapshot  # noqa: E402
from errors import cli_entry  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=models.DEFAULT_MODEL)
    parser.add_argument("--img-size", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=6, help="timed steps per model, alternating")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default="benchmarks")
    return parser.parse_args(argv)


def timed(function, device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    wall, cpu = time.perf_counter(), time.process_time()
    function()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - wall, time.process_time() - cpu


@cli_entry
def main(argv=None):
    args = parse_args(argv)
    argv = sys.argv[1:] if argv is None else argv
    started = start_snapshot()
    device = torch.device(args.device)
    images = torch.randn(args.batch_size, 3, args.img_size, args.img_size, device=device)
    targets = torch.randint(0, 61, (args.batch_size,), device=device)
    runs = {}
    for name in ("eager", "compiled"):
        torch.manual_seed(0)
        model = models.create_model(args.model, 61, pretrained=False).to(device).train()
        if name == "compiled":
            model.compile()  # as train.py --compile
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

        def step(model=model, optimizer=optimizer):
            optimizer.zero_grad(set_to_none=True)
            loss = torch.nn.functional.cross_entropy(model(images), targets, label_smoothing=0.1)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()

        runs[name] = {"step": step, "first": timed(step, device), "times": []}
        print(f"{name}: first step {runs[name]['first'][0]:.1f} s wall, {runs[name]['first'][1]:.1f} s CPU", flush=True)
    for _ in range(args.steps):
        for run in runs.values():
            run["times"].append(timed(run["step"], device))
    lines = header_lines("torch.compile against eager: one full-stage training step", started,
                         "benchmarks/compile_speed.py", argv)
    lines += [f"Model `{args.model}` (random init), {args.img_size} px, batch {args.batch_size}, device {device}, "
              f"{torch.get_num_threads()} intra-op threads; {args.steps} timed steps each after the first, alternating.",
              "", "| model | first step, wall (s) | first step, CPU (s) | median step, wall (s) | images/s (median step) "
              "| median step, CPU (s) |", "|---|---|---|---|---|---|"]
    for name, run in runs.items():
        wall = statistics.median(time_pair[0] for time_pair in run["times"])
        cpu = statistics.median(time_pair[1] for time_pair in run["times"])
        lines.append(f"| {name} | {run['first'][0]:.1f} | {run['first'][1]:.1f} | {wall:.2f} | "
                     f"{args.batch_size / wall:.1f} | {cpu:.2f} |")
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    lines += ["", f"Load average at the end: {load}. On a GPU the CPU column is the host's time only."]
    out = Path(args.out) / "compile.md"
    write_text(out, "\n".join(lines) + "\n")
    print(out.read_text())


if __name__ == "__main__":
    main()
