"""Classify leaf photos with a trained checkpoint, optionally correcting the long tail at inference.

  python predict.py --checkpoint checkpoints/task1_stage2/best.pth photos/ more.jpg
  python predict.py --checkpoint ... --format aichallenger --output submission.json AgriculturalDisease_testA/images
  python predict.py --checkpoint ... --calibrate-tau --data-dir data/cleaned      # once; stores tau in the checkpoint
  python predict.py --checkpoint ... --fit-unknown --data-dir data/cleaned        # a checkpoint from before the
                                                                                  # unknown-photo score: adds it

Everything (model, classes, image size, normalisation) comes from the checkpoint; images go through the same
eval transform as training-time validation. Post-hoc logit adjustment subtracts tau x log(training class prior)
from the logits (Menon et al., ICLR 2021); tau defaults to the one --calibrate-tau stored, else 0 (off).

Outputs: --format csv (default predictions.csv): path, then pred_1_id, pred_1_name, pred_1_prob, ... for the
top-k classes (ids are the dataset's original class ids). --format aichallenger (default predictions.json): the
AI Challenger 2018 submission, a JSON list of {"image_id": <file name>, "disease_class": <original id>}.
--min-confidence P adds a 'label' column after path: the top class's name, or 'unknown' when its probability is
below P. With a label hierarchy in the checkpoint (hierarchy.py) the CSV also gives each photo's most probable crop
and disease with their probabilities (the sums over their classes), and --min-confidence answers at the level the
model is sure of: a photo whose top class is below P but whose disease reaches it is labelled '<disease>, severity
uncertain', one whose crop does '<crop>, disease uncertain', and only one below P at every level 'unknown'; a
'level' column (class, disease, crop, unknown) follows 'label'. The AI Challenger JSON is the same either way.
Unknown photos: a model trained since the unknown-photo score (or given it by --fit-unknown) scores how unlike its
own classes each photo is (leafdisease/deployment/unknown.py); the CSV's 'unknown_score' and 'unknown' columns follow
'label', which says 'unknown' for a photo above the threshold (set on the stored validation scores to keep the
model's share of new photos of its classes answered; give --unknown-keep to move it). A model without the record
leaves both columns empty and says which command fills them.
--explain writes <explain-dir>/<photo stem>.png (the model's input crop beside the Grad-CAM heat map of the
predicted class) and adds a 'gradcam' column naming it. --checkpoint also takes an export.py folder or model.onnx
(ONNX: no --explain, no --calibrate-tau).
Every file given or found in the given folders is decoded with cleaning's checks and conversions (an image is
any format Pillow decodes, told by content, not name; transparency flattened the same way). Unreadable files and
non-images go to <output stem>.rejected.csv (path,reason, with cleaning's reasons: truncated, corrupt, not_image,
empty_file...; always written, header-only when none); the rest are still predicted, and the exit code is 0 as
long as one image was. --calibrate-tau refuses a read-only checkpoint or folder before it scores anything.
"""
from leafdisease.utils import runtime  # noqa: I001  (first: it sets OMP_WAIT_POLICY before anything loads torch)

import argparse
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

import dataset
from leafdisease.data import hierarchy
from leafdisease.data.metadata import rows_of_classes
from leafdisease.deployment import explain, formats, inference, unknown
from leafdisease.evaluation import metrics, plots
from leafdisease.training import checkpoint as checkpoint_format
from leafdisease.utils import cli
from leafdisease.utils.atomic_io import atomic_path, write_csv, write_json
from leafdisease.utils.errors import UserError, cli_entry

DEFAULT_OUTPUT = {"csv": "predictions.csv", "aichallenger": "predictions.json"}
OPTION_RULES = {"min_confidence": cli.Range(0, 1), "top_k": cli.POSITIVE_INT, "tau": cli.FINITE,
                "tau_min": cli.Range(high=0), "tau_max": cli.NON_NEGATIVE,
                "tau_step": cli.POSITIVE, "batch_size": cli.POSITIVE_INT, "workers": cli.NON_NEGATIVE_INT,
                "unknown_keep": cli.SHARE}


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
                        help=f"CSV: a 'label' column, '{hierarchy.UNKNOWN_LABEL}' where the top probability is below "
                             f"this (with a label hierarchy: the disease or crop where that reaches it; 0 = off; "
                             f"evaluate.py's coverage table helps pick it); the top-k stay")
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

    unknown_photos = parser.add_argument_group("unknown photos (not a leaf the model knows)")
    unknown_photos.add_argument("--unknown-keep", type=float, default=None,
                                help="the share of new photos of the model's classes the unknown-photo threshold "
                                     "keeps answered (default: the model's stored share)")
    unknown_photos.add_argument("--fit-unknown", action="store_true",
                                help="fit the unknown-photo score on --data-dir (training features, validation "
                                     "threshold) and store it in --checkpoint (for checkpoints from before it)")

    runtime_options = parser.add_argument_group("runtime")
    runtime_options.add_argument("--batch-size", type=int, default=64)
    runtime_options.add_argument("--workers", type=int, default=None,
                                 help="image-loading processes (default: available cores - 1)")
    runtime_options.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    runtime_options.add_argument("--amp", choices=runtime.AMP_CHOICES, default="off", help="mixed precision on CUDA")
    args = parser.parse_args(argv)
    if not args.paths and not args.calibrate_tau and not args.fit_unknown:
        parser.error("give image files or folders to predict (or --calibrate-tau, --fit-unknown)")
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
    return (f"balanced acc {row['balanced_acc']:.4f}, acc {row['acc']:.4f}, acc at train prior "
            f"{row['prior_acc']:.4f}, many/medium/few {row['many_acc']:.3f}/{row['medium_acc']:.3f}/{row['few_acc']:.3f}")


def calibration_curve_path(checkpoint_path):
    return Path(checkpoint_path).with_name("tau_calibration.png")


def calibrate_tau(args, checkpoint, score_images):
    """Grid-search tau on the validation set, print before/after and the tau curve, store tau and the report in
    the checkpoint, and plot the curve next to it (tau_calibration.png)."""
    dataset.check_cache_covers(args.data_dir, checkpoint["img_size"],
                               f"the checkpoint's {checkpoint['img_size']} px model")
    metadata = dataset.load_metadata(args.data_dir)
    index_of = dataset.label_to_index(checkpoint["class_ids"])
    val = rows_of_classes(metadata.val, checkpoint["class_ids"])
    left_out = sorted(set(metadata.val["label"].astype(int)) - set(index_of))
    if left_out:
        print(f"{len(metadata.val) - len(val)} validation images of classes the checkpoint was not trained on left out "
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
    target = metrics.calibration_target(checkpoint.get("select_metric") or metrics.DEFAULT_TARGET_METRIC)
    search = inference.search_tau(scores, targets, checkpoint["train_counts"], grid, many, few, target)
    before, after = search.row(0.0), search.row(search.tau)
    val_counts = np.bincount(targets, minlength=len(checkpoint["class_ids"]))
    absent = int((val_counts == 0).sum())
    print(f"tau calibration for validation {target} (the run's --select-metric) on {len(targets)} validation images"
          f"{' with TTA' if args.tta else ''}; images per class: min {val_counts[val_counts > 0].min()}, median "
          f"{int(np.median(val_counts))}, max {val_counts.max()}"
          + (f"; {absent} class(es) have none: class averages are over the {len(val_counts) - absent} that do"
             if absent else ""))
    for row in search.rows:
        print(f"  tau {row['tau']:<5g} {metric_line(row)}" + ("  <- chosen" if row["tau"] == search.tau else ""))
    if search.tau != search.best_tau:
        print(f"tau {search.best_tau:g} scored best, but its gain over tau 0 "
              f"({search.row(search.best_tau)[target] - before[target]:+.4f} {target}) is within what one "
              f"validation image can change ({search.margin:.4f}): keeping tau 0")
    print(f"before: tau {0:<5g} {metric_line(before)}")
    print(f"after:  tau {search.tau:<5g} {metric_line(after)}")
    curve_path = calibration_curve_path(args.checkpoint)
    plots.plot_tau_curve(search.rows, search.tau, search.margin, target, curve_path,
                         title=f"Post-hoc logit adjustment on {len(targets)} validation images ({Path(args.checkpoint).name})")
    checkpoint["logit_adjust_tau"] = search.tau
    checkpoint["logit_adjust_report"] = {
        "tau": search.tau, "best_tau": search.best_tau, "margin": search.margin, "metric": target,
        "before": before, "after": after,
        "grid": search.rows, "data_dir": str(args.data_dir), "val_images": int(len(targets)),
        "val_counts": val_counts.tolist(), "tta": bool(args.tta), "many_threshold": many, "few_threshold": few,
        "left_out_class_ids": left_out, "unreadable": [{"path": path, "reason": reason} for path, reason in unreadable],
    }
    checkpoint_format.save(args.checkpoint, checkpoint)
    print(f"stored logit_adjust_tau = {search.tau:g} in {args.checkpoint}; tau curve: {curve_path}")
    return search.tau


def fit_unknown(args, checkpoint, model, device, score_options):
    """Fit the unknown-photo record on --data-dir and store it in the checkpoint."""
    keep = args.unknown_keep or unknown.DEFAULT_KEEP
    checkpoint["unknown"] = inference.fit_unknown_record(model, checkpoint, args.data_dir, device, keep=keep,
                                                         **score_options)
    checkpoint_format.save(args.checkpoint, checkpoint)
    record = checkpoint["unknown"]
    print(f"stored the unknown-photo score ({record['method']}, fitted on {record['train_photos']} training photos; "
          f"threshold {unknown.threshold(record):.4g} keeps {keep:.0%} of new photos of its classes answered) in "
          f"{args.checkpoint}")


def add_unknown_columns(table, predictions, checkpoint, args):
    """'unknown_score' and 'unknown' after the label (and level) columns, and 'unknown' as the label of a photo
    above the threshold; empty columns and one line naming the command that fills them for a model without the
    record."""
    position = 1 + ("label" in table) + ("level" in table)
    if predictions.unknown_scores is None:
        table.insert(position, "unknown_score", np.nan)
        table.insert(position + 1, "unknown", pd.NA)
        if formats.kind_of(args.checkpoint) == "onnx":
            print(f"unknown_score and unknown left empty: an ONNX file gives no features to score; use the "
                  f"checkpoint or the exported folder")
        else:
            print(f"unknown_score and unknown left empty: {args.checkpoint} carries no unknown-photo score; add it "
                  f"with `python predict.py --checkpoint {args.checkpoint} --fit-unknown --data-dir DATA_DIR` "
                  f"(the cleaned dataset it was trained on)")
        return table
    flagged = predictions.unknown
    if "label" not in table:
        table.insert(1, "label", table["pred_1_name"])
        position += 1
    table.loc[flagged, "label"] = hierarchy.UNKNOWN_LABEL
    table.insert(position, "unknown_score", predictions.unknown_scores.round(metrics.PROBABILITY_DECIMALS))
    table.insert(position + 1, "unknown", flagged)
    record = checkpoint["unknown"]
    print(f"{int(flagged.sum())} of {len(flagged)} photo(s) do not look like a leaf this model knows ({record['method']} "
          f"score above {unknown.threshold(record, args.unknown_keep):.4g}, the threshold that keeps "
          f"{args.unknown_keep or record['keep']:.0%} of new photos of its classes answered): labelled "
          f"'{hierarchy.UNKNOWN_LABEL}'")
    return table


def predictions_table(paths, probabilities, checkpoint, top_k, class_hierarchy=None):
    ids, names, top_probabilities = inference.top_classes(probabilities, checkpoint, top_k)
    table = {"path": [str(path) for path in paths]}
    for rank in range(ids.shape[1]):
        table[f"pred_{rank + 1}_id"] = ids[:, rank]
        table[f"pred_{rank + 1}_name"] = names[:, rank]
        table[f"pred_{rank + 1}_prob"] = top_probabilities[:, rank]
    if class_hierarchy is not None:
        table.update(hierarchy.top_group_columns(probabilities.numpy(), class_hierarchy))
    return pd.DataFrame(table)


def add_level_answers(table, probabilities, checkpoint, class_hierarchy, min_confidence):
    """The 'label' column after path (hierarchy.level_answers), and with a hierarchy the 'level' column after it;
    prints how many photos each level answered."""
    answers = hierarchy.level_answers(probabilities.numpy(), checkpoint["class_names"], class_hierarchy,
                                      min_confidence)
    table.insert(1, "label", [answer.label for answer in answers])
    unknown = sum(answer.level == hierarchy.UNKNOWN_LABEL for answer in answers)
    if class_hierarchy is None:
        print(f"{unknown} of {len(answers)} image(s) below --min-confidence {min_confidence:g}: labelled "
              f"'{hierarchy.UNKNOWN_LABEL}'")
        return table
    table.insert(2, "level", [answer.level for answer in answers])
    by_level = {level: sum(answer.level == level for answer in answers) for level in hierarchy.LEVELS}
    print(f"--min-confidence {min_confidence:g}: of {len(answers)} image(s), {by_level['class']} answered with a "
          f"class, {by_level['disease']} with a disease (severity uncertain), {by_level['crop']} with a crop (disease "
          f"uncertain); {unknown} below it at every level: labelled '{hierarchy.UNKNOWN_LABEL}'")
    return table


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
    if args.calibrate_tau and formats.kind_of(args.checkpoint) != "checkpoint":
        raise UserError(f"--calibrate-tau {args.checkpoint}: stores tau in a train.py .pth checkpoint; calibrate "
                        f"the checkpoint, then export it again")
    if args.fit_unknown and formats.kind_of(args.checkpoint) != "checkpoint":
        raise UserError(f"--fit-unknown {args.checkpoint}: stores the unknown-photo score in a train.py .pth "
                        f"checkpoint; fit the checkpoint, then export it again")
    if args.fit_unknown:
        cli.check_output_file("--checkpoint", args.checkpoint)
    if args.calibrate_tau:  # both are rewritten after scoring all of validation: refuse now, not then
        cli.check_output_file("--checkpoint", args.checkpoint)
        cli.check_output_file("--calibrate-tau", calibration_curve_path(args.checkpoint))
    checkpoint, model = formats.load_model(args.checkpoint)
    if args.explain and formats.kind_of(args.checkpoint) == "onnx":
        raise UserError(f"--explain {args.checkpoint}: Grad-CAM needs the PyTorch weights (the .pth or the exported "
                        f"folder), not the ONNX file")
    images = inference.find_images(args.paths) if args.paths else []
    device = runtime.resolve_device(args.device)
    amp_dtype = runtime.amp_dtype(args.amp, device)

    score_options = {"batch_size": args.batch_size, "workers": args.workers, "tta": args.tta, "amp_dtype": amp_dtype}

    def score_images(paths, desc):
        return inference.predict_scores(model, paths, checkpoint, device, desc=desc, **score_options)

    if args.fit_unknown:
        fit_unknown(args, checkpoint, model, device, score_options)
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

    predictions = inference.predict_probabilities(model, images, checkpoint, device, tau,
                                                  unknown_keep=args.unknown_keep, **score_options)
    output = Path(args.output)
    report_rejected(predictions.rejected, output)
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
        class_hierarchy = hierarchy.from_checkpoint(checkpoint, args.checkpoint)
        table = predictions_table(predicted, probabilities, checkpoint, args.top_k, class_hierarchy)
        if args.min_confidence > 0:
            table = add_level_answers(table, probabilities, checkpoint, class_hierarchy, args.min_confidence)
        table = add_unknown_columns(table, predictions, checkpoint, args)
        if explained:
            table["gradcam"] = explained
        write_csv(output, table)
    print(f"predicted {len(predicted)} image(s) with {checkpoint['model_name']} from {args.checkpoint} "
          f"(tau {tau:g}, {tau_source}; TTA {'on' if args.tta else 'off'}; {device}) -> {output}")


if __name__ == "__main__":
    main()
