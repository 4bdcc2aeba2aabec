"""Classify leaf photos with a trained checkpoint, optionally correcting the long tail at inference.

  python predict.py --checkpoint checkpoints/task1_stage2/best.pth photos/ more.jpg
  python predict.py --checkpoint ... --format aichallenger --output submission.json AgriculturalDisease_testA/images
  python predict.py --checkpoint ... --calibrate-tau --data-dir data/cleaned      # once; stores tau in the checkpoint

Everything (model, classes, image size, normalisation) comes from the checkpoint; images go through the same
eval transform as training-time validation. Post-hoc logit adjustment subtracts tau x log(training class prior)
from the logits (Menon et al., ICLR 2021); tau defaults to the one --calibrate-tau stored, else 0 (off).

Outputs: --format csv (default predictions.csv): path, then pred_1_id, pred_1_name, pred_1_prob, ... for the
top-k classes (ids are the dataset's original class ids). --format aichallenger (default predictions.json): the
AI Challenger 2018 submission, a JSON list of {"image_id": <file name>, "disease_class": <original id>}.
--min-confidence P adds a 'label' column after path: the top class's name, or 'unknown' when its probability is
below P. --explain writes <explain-dir>/<photo stem>.png (the model's input crop beside the Grad-CAM heat map of
the predicted class) and adds a 'gradcam' column naming it. --checkpoint also takes an export.py folder or
model.onnx (ONNX: no --explain, no --calibrate-tau).
Unreadable images, and other files found in the given folders, go to <output stem>.rejected.csv (path,reason,
with cleaning's reasons: truncated, corrupt, not_image, empty_file...; always written, header-only when none).
Photos are decoded with cleaning's checks and conversions (transparency flattened the same way); the rest are
still predicted, and the exit code is 0 as long as one image was.
"""
import runtime  # noqa: I001  (first: it sets OMP_WAIT_POLICY before anything loads torch)

import argparse
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

import checkpoint as checkpoint_format
import cli
import dataset
import deployment
import explain
import inference
import plots
from atomic_io import atomic_path, write_csv, write_json
from errors import UserError, cli_entry

DEFAULT_OUTPUT = {"csv": "predictions.csv", "aichallenger": "predictions.json"}
OPTION_RULES = {"min_confidence": cli.Range(0, 1), "top_k": cli.POSITIVE_INT, "tau": cli.FINITE,
                "tau_min": cli.Range(high=0), "tau_max": cli.NON_NEGATIVE,
                "tau_step": cli.POSITIVE, "batch_size": cli.POSITIVE_INT, "workers": cli.NON_NEGATIVE_INT}


def parse_args(argv=None):
    parser = cli.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="*", help="image files and/or folders (searched recursively)")
    parser.add_argument("--checkpoint", required=True,
                        help="a train.py best.pth (or last.pth), or an export.py folder or its model.onnx")
    parser.add_argument("--output", default=None, help="default predictions.csv / predictions.json by --format")
    parser.add_argument("--format", choices=tuple(DEFAULT_OUTPUT), default="csv")
    parser.add_argument("--top-k", type=int, default=5, help="classes per image in the CSV")
    parser.add_argument("--tta", action="store_true", help="average the softmax of each image and its mirror image")
    parser.add_argument("--min-confidence", type=float, default=0.0,
                        help=f"CSV: a 'label' column, '{inference.UNKNOWN_LABEL}' where the top probability is below "
                             f"this (0 = off; evaluate.py's coverage table helps pick it); the top-k stay")
    parser.add_argument("--explain", action="store_true",
                        help="write a Grad-CAM overlay per photo (needs a .pth or an exported folder)")
    parser.add_argument("--explain-dir", default=None, help="where the overlays go (default: <output stem>_gradcam/)")

    adjustment = parser.add_argument_group("long-tail correction (post-hoc logit adjustment)")
    tau = adjustment.add_mutually_exclusive_group()
    tau.add_argument("--tau", type=float, default=None,
                     help="logits - tau x log(prior); default: the checkpoint's calibrated tau, else 0 (off)")
    tau.add_argument("--calibrate-tau", action="store_true",
                     help="pick tau by validation balanced accuracy and store it in --checkpoint")
    adjustment.add_argument("--data-dir", default="data/cleaned", help="cleaned dataset whose val.csv calibrates tau")
    adjustment.add_argument("--tau-min", type=float, default=-2.0,
                            help="most negative tau tried (adds the prior back: for logit-adjusted or over-weighted runs)")
    adjustment.add_argument("--tau-max", type=float, default=2.0)
    adjustment.add_argument("--tau-step", type=float, default=0.25)

    runtime_options = parser.add_argument_group("runtime")
    runtime_options.add_argument("--batch-size", type=int, default=64)
    runtime_options.add_argument("--workers", type=int, default=None,
                                 help="image-loading processes (default: available cores - 1)")
    runtime_options.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    runtime_options.add_argument("--amp", choices=runtime.AMP_CHOICES, default="off", help="mixed precision on CUDA")
    args = parser.parse_args(argv)
    if not args.paths and not args.calibrate_tau:
        parser.error("give image files or folders to predict (or --calibrate-tau)")
    cli.check_options(parser, args, OPTION_RULES)
    cli.check_device("--device", args.device)
    if not Path(args.checkpoint).exists():
        raise UserError(f"--checkpoint {args.checkpoint}: no such file or folder")
    if args.min_confidence > 0 and args.format == "aichallenger":
        parser.error("--min-confidence: an AI Challenger submission needs a class for every image; use --format csv")
    if args.output is None:
        args.output = DEFAULT_OUTPUT[args.format]
    if args.paths:
        cli.check_output_file("--output", args.output)
        missing = [path for path in args.paths if not Path(path).exists()]
        if missing:
            raise UserError(f"{missing[0]}: no such file or folder")
    if args.explain_dir is None:
        output = Path(args.output)
        args.explain_dir = str(output.with_name(f"{output.stem}_gradcam"))
    if args.workers is None:
        args.workers = runtime.default_workers()
    return args


def rejected_path(output):
    output = Path(output)
    return output.with_name(f"{output.stem}.rejected.csv")


def report_rejected(rejected, output):
    """Write <stem>.rejected.csv (always, so no stale list survives) and name the first few on screen."""
    path = rejected_path(output)
    write_csv(path, pd.DataFrame(rejected, columns=["path", "reason"]))
    if rejected:
        shown = "; ".join(f"{image}: {reason}" for image, reason in rejected[:5])
        more = f" (and {len(rejected) - 5} more)" if len(rejected) > 5 else ""
        print(f"{len(rejected)} file(s) skipped (unreadable or not images), listed in {path}: {shown}{more}")
    return path


def metric_line(row):
    return (f"balanced acc {row['balanced_acc']:.4f}, acc {row['acc']:.4f}, many/medium/few "
            f"{row['many_acc']:.3f}/{row['medium_acc']:.3f}/{row['few_acc']:.3f}")


def calibrate_tau(args, checkpoint, score_images):
    """Grid-search tau on the validation set, print before/after and the tau curve, store tau and the report in
    the checkpoint, and plot the curve next to it (tau_calibration.png)."""
    metadata = dataset.load_metadata(args.data_dir)
    index_of = dataset.label_to_index(checkpoint["class_ids"])
    known = metadata.val["label"].isin(index_of.keys())
    val = metadata.val.loc[known].reset_index(drop=True)
    left_out = sorted(int(label) for label in metadata.val.loc[~known, "label"].unique())
    if left_out:
        print(f"{(~known).sum()} validation images of classes the checkpoint was not trained on left out "
              f"(ids {', '.join(map(str, left_out))})")
    if val.empty:
        raise UserError(f"{Path(args.data_dir) / 'metadata' / 'val.csv'}: no validation image of the checkpoint's classes")
    scores, indices, unreadable = score_images(list(val["path"]), desc="validation")
    if unreadable:
        print(f"{len(unreadable)} unreadable validation image(s) left out of calibration: "
              + "; ".join(f"{path}: {reason}" for path, reason in unreadable))
    if not len(indices):
        raise UserError(f"{Path(args.data_dir) / 'metadata' / 'val.csv'}: none of its images could be read")
    targets = val["label"].iloc[indices.numpy()].map(index_of).to_numpy()
    many, few = checkpoint_format.shot_thresholds(checkpoint)
    grid = inference.tau_grid(args.tau_min, args.tau_max, args.tau_step)
    search = inference.search_tau(scores, targets, checkpoint["train_counts"], grid, many, few)
    before, after = search.row(0.0), search.row(search.tau)
    val_counts = np.bincount(targets, minlength=len(checkpoint["class_ids"]))
    print(f"tau calibration on {len(targets)} validation images{' with TTA' if args.tta else ''}; images per class: "
          f"min {val_counts.min()}, median {int(np.median(val_counts))}, max {val_counts.max()}"
          + (f" ({(val_counts == 0).sum()} classes have none)" if (val_counts == 0).any() else ""))
    for row in search.rows:
        print(f"  tau {row['tau']:<5g} {metric_line(row)}" + ("  <- chosen" if row["tau"] == search.tau else ""))
    if search.tau != search.best_tau:
        print(f"tau {search.best_tau:g} scored best, but its gain over tau 0 "
              f"({search.row(search.best_tau)['balanced_acc'] - before['balanced_acc']:+.4f}) is within what one "
              f"validation image can change ({search.margin:.4f}): keeping tau 0")
    print(f"before: tau {0:<5g} {metric_line(before)}")
    print(f"after:  tau {search.tau:<5g} {metric_line(after)}")
    curve_path = Path(args.checkpoint).with_name("tau_calibration.png")
    plots.plot_tau_curve(search.rows, search.tau, search.margin, curve_path,
                         title=f"Post-hoc logit adjustment on {len(targets)} validation images ({Path(args.checkpoint).name})")
    checkpoint["logit_adjust_tau"] = search.tau
    checkpoint["logit_adjust_report"] = {
        "tau": search.tau, "best_tau": search.best_tau, "margin": search.margin, "before": before, "after": after,
        "grid": search.rows, "data_dir": str(args.data_dir), "val_images": int(len(targets)),
        "val_counts": val_counts.tolist(), "tta": bool(args.tta), "many_threshold": many, "few_threshold": few,
        "left_out_class_ids": left_out, "unreadable": [{"path": path, "reason": reason} for path, reason in unreadable],
    }
    checkpoint_format.save(args.checkpoint, checkpoint)
    print(f"stored logit_adjust_tau = {search.tau:g} in {args.checkpoint}; tau curve: {curve_path}")
    return search.tau


def predictions_table(paths, probabilities, checkpoint, top_k):
    ids, names, top_probabilities = inference.top_classes(probabilities, checkpoint, top_k)
    table = {"path": [str(path) for path in paths]}
    for rank in range(ids.shape[1]):
        table[f"pred_{rank + 1}_id"] = ids[:, rank]
        table[f"pred_{rank + 1}_name"] = names[:, rank]
        table[f"pred_{rank + 1}_prob"] = top_probabilities[:, rank]
    return pd.DataFrame(table)


def aichallenger_entries(paths, probabilities, checkpoint):
    """The submission list; two files with the same name would make an ambiguous image_id, so that is an error."""
    path_of_name = {}
    for path in paths:
        name = Path(path).name
        if name in path_of_name:
            raise UserError(f"{path}: same file name as {path_of_name[name]}; AI Challenger image_ids must be unique")
        path_of_name[name] = path
    predicted_ids = np.asarray(checkpoint["class_ids"])[probabilities.argmax(dim=1).numpy()]
    return [{"image_id": Path(path).name, "disease_class": int(class_id)}
            for path, class_id in zip(paths, predicted_ids)]


def overlay_names(paths):
    """<stem>.png per photo; a stem seen before gets _2, _3, ... so no overlay overwrites another."""
    names, seen = [], {}
    for path in paths:
        stem = Path(path).stem
        seen[stem] = seen.get(stem, 0) + 1
        names.append(f"{stem}.png" if seen[stem] == 1 else f"{stem}_{seen[stem]}.png")
    return names


def write_explanations(model, checkpoint, paths, probabilities, out_dir, device, batch_size):
    """One PNG per photo, the model's input crop beside its Grad-CAM overlay for the predicted class."""
    out_dir = Path(out_dir)
    written = []
    overlays = explain.explained_images(model, checkpoint, paths, probabilities.argmax(dim=1).tolist(), device,
                                        batch_size=batch_size)
    for name, (_, cropped, overlay) in zip(overlay_names(paths), overlays):
        target = out_dir / name
        with atomic_path(target) as tmp:
            if not cv2.imwrite(str(tmp), cv2.cvtColor(np.hstack([cropped, overlay]), cv2.COLOR_RGB2BGR)):
                raise UserError(f"{target}: cannot write the Grad-CAM overlay")
        written.append(str(target))
    return written


@cli_entry
def main(argv=None):
    args = parse_args(argv)
    if args.calibrate_tau and deployment.kind_of(args.checkpoint) != "checkpoint":
        raise UserError(f"--calibrate-tau {args.checkpoint}: stores tau in a train.py .pth checkpoint; calibrate "
                        f"the checkpoint, then export it again")
    checkpoint, model = deployment.load_model(args.checkpoint)
    if args.explain and deployment.kind_of(args.checkpoint) == "onnx":
        raise UserError(f"--explain {args.checkpoint}: Grad-CAM needs the PyTorch weights (the .pth or the exported "
                        f"folder), not the ONNX file")
    images, skipped = inference.find_images(args.paths) if args.paths else ([], [])
    device = runtime.resolve_device(args.device)
    amp_dtype = runtime.amp_dtype(args.amp, device)

    score_options = {"batch_size": args.batch_size, "workers": args.workers, "tta": args.tta, "amp_dtype": amp_dtype}

    def score_images(paths, desc):
        return inference.predict_scores(model, paths, checkpoint, device, desc=desc, **score_options)

    if args.calibrate_tau:
        tau, tau_source = calibrate_tau(args, checkpoint, score_images), "calibrated now"
    elif args.tau is not None:
        tau, tau_source = args.tau, "--tau"
    elif inference.calibrated_tau(checkpoint) is not None:
        tau, tau_source = inference.calibrated_tau(checkpoint), "stored in the checkpoint"
    else:
        tau, tau_source = 0.0, "default, no adjustment"
    if not images:
        return

    predictions = inference.predict_probabilities(model, images, checkpoint, device, tau, **score_options)
    output = Path(args.output)
    report_rejected(skipped + predictions.rejected, output)
    if not predictions.paths:
        raise UserError(f"none of the {len(images)} images could be read; see {rejected_path(output)}")
    predicted, probabilities = predictions.paths, predictions.probabilities
    explained = []
    if args.explain:
        explained = write_explanations(model, checkpoint, predicted, probabilities, args.explain_dir, device,
                                       args.batch_size)
        print(f"{len(explained)} Grad-CAM overlay(s) (input crop | heat map for the predicted class) in "
              f"{args.explain_dir}/")
    if args.format == "aichallenger":
        write_json(output, aichallenger_entries(predicted, probabilities, checkpoint))
    else:
        table = predictions_table(predicted, probabilities, checkpoint, args.top_k)
        if args.min_confidence > 0:
            labels = inference.confident_labels(probabilities, checkpoint["class_names"], args.min_confidence)
            table.insert(1, "label", labels)
            print(f"{int((labels == inference.UNKNOWN_LABEL).sum())} of {len(labels)} image(s) below "
                  f"--min-confidence {args.min_confidence:g}: labelled '{inference.UNKNOWN_LABEL}'")
        if explained:
            table["gradcam"] = explained
        write_csv(output, table)
    print(f"predicted {len(predicted)} image(s) with {checkpoint['model_name']} from {args.checkpoint} "
          f"(tau {tau:g}, {tau_source}; TTA {'on' if args.tta else 'off'}; {device}) -> {output}")


if __name__ == "__main__":
    main()
