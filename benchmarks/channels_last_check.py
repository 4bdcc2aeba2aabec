"""Does channels_last change what training learns? Paired NCHW and channels_last runs of benchmarks/resolution.py.

    python benchmarks/channels_last_check.py --nchw RUNS_A --channels-last RUNS_B

RUNS_A and RUNS_B are two `resolution.py --out` folders that trained the same rows and seeds, one in each memory
format (train.py --channels-last off / the CPU default). Two parts:

- Precision: a lite0 training step (ImageNet weights; forward, loss, backward, train-mode BatchNorm) and a lone
  BatchNorm2d layer in float32 in each format, against the same computation in float64: relative error of the
  outputs and of the gradients (median over parameter tensors). In float64 both formats compute the same function.
- Runs: for every row and seed trained in both folders (same seed: the same images, augmentations and order), the
  epoch validation chose, val and test balanced accuracy at that checkpoint (as resolution.py scored it) and test
  balanced accuracy of the last epoch (scored here, with the run's tau); and one checkpoint's test scores evaluated
  in both formats (evaluation alone should not move them).

Writes OUT/channels_last_check.md.
"""
import argparse
import copy
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

# runtime first: it sets OMP_WAIT_POLICY before torch loads, as train.py runs.
from leafdisease.utils import runtime  # noqa: E402, I001

import pandas as pd  # noqa: E402
import torch  # noqa: E402

from leafdisease.training import checkpoint as checkpoint_format  # noqa: E402
from leafdisease.evaluation import reports  # noqa: E402
from leafdisease.deployment import inference  # noqa: E402
from leafdisease.training import models  # noqa: E402
from leafdisease.utils.atomic_io import write_text  # noqa: E402
from benchmarks.report import header_lines, markdown_table, start_snapshot  # noqa: E402
from benchmarks.resolution import RESULT_FILE  # noqa: E402
from leafdisease.utils.errors import UserError, cli_entry  # noqa: E402

FORMATS = {"NCHW": False, "channels_last": True}
SETTINGS = {False: "off", True: "on"}  # train.py --channels-last


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nchw", required=True, help="resolution.py --out folder of the NCHW runs")
    parser.add_argument("--channels-last", required=True, help="resolution.py --out folder of the channels_last runs")
    parser.add_argument("--test", default="../shared/realdata/field13/test", help="the test split the runs scored")
    parser.add_argument("--img-size", type=int, default=128, help="the precision part's input size")
    parser.add_argument("--out", default="benchmarks/reports")
    return parser.parse_args(argv)


# ----------------------------------------------------------------------------------------------------
# Precision
# ----------------------------------------------------------------------------------------------------
def relative_error(value, reference):
    return ((value.double() - reference).norm() / reference.norm()).item()


def model_step(model, images, targets, dtype, channels_last):
    """Logits and {parameter: gradient} of one training-mode step of a copy of `model` in this dtype and format."""
    layout = runtime.memory_format(channels_last)
    step_model = copy.deepcopy(model).to(dtype).to(memory_format=layout).train()
    logits = step_model(images.to(dtype).contiguous(memory_format=layout))
    torch.nn.functional.cross_entropy(logits, targets).backward()
    # a parameter whose gradient is zero in float64 (a bias in front of BatchNorm) has no relative error
    return logits.double(), {name: p.grad.double() for name, p in step_model.named_parameters()}


def model_step_errors(img_size, seed=0):
    torch.manual_seed(seed)
    # ImageNet weights (as training starts), no dropout: both formats must see the same network
    model = models.create_model(models.DEFAULT_MODEL, num_classes=13, drop_rate=0.0)
    images, targets = torch.randn(16, 3, img_size, img_size), torch.randint(0, 13, (16,))
    logits64, grads64 = model_step(model, images, targets, torch.float64, False)
    lines = []
    for name, channels_last in FORMATS.items():
        logits, grads = model_step(model, images, targets, torch.float32, channels_last)
        grad_errors = [relative_error(grads[p], grads64[p]) for p in grads if grads64[p].norm() > 0]
        lines.append({"computation": f"lite0 training step (ImageNet weights), {img_size} px, batch 16", "format": name,
                      "output error": relative_error(logits, logits64),
                      "gradient error (median tensor)": statistics.median(grad_errors)})
    logits_other, grads_other = model_step(model, images, targets, torch.float64, True)
    lines.append({"computation": "the same step in float64", "format": "channels_last against NCHW",
                  "output error": relative_error(logits_other, logits64),
                  "gradient error (median tensor)": statistics.median(
                      relative_error(grads_other[p], grads64[p]) for p in grads64 if grads64[p].norm() > 0)})
    return lines


def batchnorm_errors(mean, seed=0):
    """A lone train-mode BatchNorm2d on inputs whose channel mean is `mean` (activations are rarely centred)."""
    torch.manual_seed(seed)
    inputs = torch.randn(16, 64, 32, 32, dtype=torch.float64) + mean
    upstream = torch.randn_like(inputs)

    def run(dtype, channels_last):
        layout = runtime.memory_format(channels_last)
        x = inputs.to(dtype).contiguous(memory_format=layout).detach().requires_grad_()
        out = torch.nn.BatchNorm2d(64).to(dtype).to(memory_format=layout).train()(x)
        out.backward(upstream.to(dtype).contiguous(memory_format=layout))
        return out.double(), x.grad.double()

    out64, grad64 = run(torch.float64, False)
    lines = []
    for name, channels_last in FORMATS.items():
        out, grad = run(torch.float32, channels_last)
        lines.append({"computation": f"BatchNorm2d, 64 channels, input mean {mean:g}", "format": name,
                      "output error": relative_error(out, out64),
                      "gradient error (median tensor)": relative_error(grad, grad64)})
    return lines


# ----------------------------------------------------------------------------------------------------
# Paired runs
# ----------------------------------------------------------------------------------------------------
def test_balanced_acc(checkpoint_path, test, tau, channels_last):
    """Balanced accuracy of the checkpoint on `test` with this tau, the model and its inputs in this format."""
    checkpoint = checkpoint_format.load(checkpoint_path, need="weights")
    model = inference.build_model(checkpoint, checkpoint_path)
    labelled = reports.read_labelled_set(test, checkpoint)
    scores, indices, _ = inference.predict_scores(model, labelled.paths, checkpoint, torch.device("cpu"),
                                                  batch_size=64, channels_last=SETTINGS[channels_last],
                                                  desc=f"scoring {checkpoint_path.parent.parent.name}")
    values, _, _ = reports.score_metrics(scores, labelled.targets[indices.numpy()], checkpoint, tau)
    return values["balanced_acc"], scores


def paired_runs(folders):
    """{(run folder name): {format: run folder}} for runs scored in every folder."""
    found = {name: {path.parent.name: path.parent for path in
                    (Path(folder) / "runs" / "resolution").glob(f"*/{RESULT_FILE}")}
             for name, folder in folders.items()}
    shared = sorted(set.intersection(*(set(runs) for runs in found.values())))
    if not shared:
        raise UserError(f"--nchw {folders['NCHW']} and --channels-last {folders['channels_last']}: no row and seed "
                        f"was scored in both")
    return {run: {name: found[name][run] for name in folders} for run in shared}


def compare_runs(pairs, test):
    lines = []
    for run, by_format in pairs.items():
        line = {"run": run}
        for name, folder in by_format.items():
            scored = json.loads((folder / RESULT_FILE).read_text())[0]  # the training-size scoring
            best = checkpoint_format.load(folder / "full" / "best.pth", need="result")
            last_acc, _ = test_balanced_acc(folder / "full" / "last.pth", test, scored["tau"], FORMATS[name])
            line.update({f"{name} chosen epoch": best["best_epoch"], f"{name} val": 100 * scored["val_balanced_acc"],
                         f"{name} test": 100 * scored["test_balanced_acc"], f"{name} test, last epoch": 100 * last_acc})
        lines.append(line)
    return pd.DataFrame(lines)


def evaluation_formats(folder, test):
    """One checkpoint's test scores evaluated in each format: the largest score difference and both accuracies."""
    tau = json.loads((folder / RESULT_FILE).read_text())[0]["tau"]
    (acc_nchw, scores_nchw), (acc_last, scores_last) = (
        test_balanced_acc(folder / "full" / "best.pth", test, tau, channels_last) for channels_last in FORMATS.values())
    return (f"{folder.name}'s best.pth evaluated in both formats: test balanced accuracy {100 * acc_nchw:.2f} (NCHW) "
            f"and {100 * acc_last:.2f} (channels_last), largest score difference "
            f"{(scores_nchw - scores_last).abs().max().item():.1e}")


def write_markdown(path, precision, runs, evaluation_line, started, argv):
    shown = precision.copy()
    for column in ("output error", "gradient error (median tensor)"):
        shown[column] = shown[column].map("{:.1e}".format)
    runs = runs.assign(row=runs["run"].str.replace(r"_seed\d+$", "", regex=True))
    table = []
    for row, group in runs.groupby("row", sort=False):
        means = group.drop(columns=["run", "row"]).mean()
        table += [{"run": line["run"]} | {column: f"{value:.0f}" if column.endswith("chosen epoch") else f"{value:.1f}"
                                          for column, value in line.items() if column not in ("run", "row")}
                  for line in group.to_dict("records")]
        table.append({"run": f"{row}, mean"} | {column: ("" if column.endswith("chosen epoch") else f"{value:.1f}")
                                                for column, value in means.items()})
    table = pd.DataFrame(table)
    lines = header_lines("channels_last against NCHW: float32 precision and paired field13 runs", started,
                         "benchmarks/channels_last_check.py", argv)
    lines += ["", "## Precision (float32 against float64, relative error)", "", *markdown_table(shown), "",
              "## Paired runs (balanced accuracy, %)", "",
              "`chosen epoch`: the full-stage epoch whose checkpoint validation chose; `val`, `test`: that checkpoint, as "
              "resolution.py scored it; `test, last epoch`: the final epoch's checkpoint with the same tau.", "",
              *markdown_table(table), "", f"- {evaluation_line}"]
    write_text(path, "\n".join(lines) + "\n")


@cli_entry
def main(argv=None):
    args = parse_args(argv)
    started = start_snapshot()
    precision = pd.DataFrame(model_step_errors(args.img_size) + batchnorm_errors(0) + batchnorm_errors(10)
                             + batchnorm_errors(100))
    print(precision.to_string(index=False))
    pairs = paired_runs({"NCHW": args.nchw, "channels_last": args.channels_last})
    runs = compare_runs(pairs, args.test)
    print(runs.round(1).to_string(index=False))
    evaluation_line = evaluation_formats(next(iter(pairs.values()))["channels_last"], args.test)
    print(evaluation_line)
    path = Path(args.out) / "channels_last_check.md"
    write_markdown(path, precision, runs, evaluation_line, started, sys.argv[1:] if argv is None else argv)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
