"""Score a labelled test set with a trained checkpoint, the way training scored its validation set.

  python evaluate.py --checkpoint checkpoints/task1_stage2/best.pth ../shared/realdata/field13/test
  python evaluate.py --checkpoint checkpoints/task1_stage2/best.pth data/cleaned          # its val split
  python evaluate.py --checkpoint ... --tta --tau 0.5 --output reports/test /data/ai_challenger_2018

DATA is any layout analyze_data.py reads (its val split when it has one), a plain ImageFolder test folder, or a
cleaned dataset folder (its val split). Classes are matched to the checkpoint's by name (ImageFolder) or id
(annotated layouts); a class the checkpoint does not know is an error; classes absent from DATA are reported and
not averaged in. Shot groups come from the checkpoint's training counts and thresholds.

Writes into --output (default <checkpoint folder>/eval_<dataset name>/): metrics.json, per_class.csv,
predictions.csv (per photo: true and predicted class, probability), confusion_matrix.png (row-normalised),
misclassified.png (the worst classes' errors, each photo beside its Grad-CAM heat map for the predicted class unless
--no-explain or an ONNX model), coverage.csv and coverage_accuracy.png (coverage and accuracy at each
metrics.CONFIDENCE_THRESHOLDS value of predict.py --min-confidence) and unreadable.csv. With a label hierarchy in the
checkpoint (hierarchy.py) also levels.csv (accuracy and balanced accuracy at the class, disease and crop levels and
where the errors lie), crop and disease accuracy in metrics.json and on screen, each photo's most probable crop and
disease in predictions.csv, the level-aware answers in coverage.csv, and the confusion matrix ordered by crop.
--checkpoint also takes an export.py folder or model.onnx.

Unknown photos: --ood DIR [DIR ...] names folders of photos the model should NOT know (another crop, no leaf at
all). With a model that carries the unknown-photo score (leafdisease/deployment/unknown.py), unknown_photos.csv and
the screen give, per folder and per score method: AUROC against DATA's photos, the share of the folder's photos
still diagnosed at the stored threshold and at the threshold keeping 95 % of DATA's photos (FPR at 95 % TPR), and
DATA's coverage and accuracy at the stored threshold.
"""
from leafdisease.utils import runtime  # noqa: I001  (first: it sets OMP_WAIT_POLICY before anything loads torch)

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from leafdisease.data import sources
from leafdisease.deployment import explain, formats, inference, unknown
from leafdisease.evaluation import reports
from leafdisease.training import checkpoint as checkpoint_format
from leafdisease.utils import cli
from leafdisease.utils.atomic_io import write_csv
from leafdisease.utils.errors import UserError, cli_entry


OPTION_RULES = {"tau": cli.FINITE, "batch_size": cli.POSITIVE_INT, "workers": cli.NON_NEGATIVE_INT}
UNKNOWN_REPORT = "unknown_photos.csv"


def parse_args(argv=None):
    parser = cli.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", help="labelled images: a dataset layout, an ImageFolder folder or a cleaned dataset")
    parser.add_argument("--checkpoint", required=True,
                        help="a train.py best.pth (or last.pth), or an export.py folder or its model.onnx")
    parser.add_argument("--output", default=None, help="report folder (default <checkpoint folder>/eval_<data name>)")
    parser.add_argument("--format", choices=("auto", *sources.FORMATS), default="auto", help="layout of DATA")
    parser.add_argument("--tta", action="store_true", help="average the softmax of each image and its mirror image")
    parser.add_argument("--tau", type=float, default=None,
                        help="logits - tau x log(prior); default: the checkpoint's calibrated tau, else 0 (off)")
    parser.add_argument("--no-explain", action="store_true",
                        help="misclassified.png without Grad-CAM (the default shows photo | heat map; ONNX: never)")
    parser.add_argument("--ood", nargs="+", default=[], metavar="DIR",
                        help="folders of photos the model should not know: how many it would still diagnose")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=None, help="image-loading processes (default: available cores - 1)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--amp", choices=runtime.AMP_CHOICES, default="off", help="mixed precision on CUDA")
    args = parser.parse_args(argv)
    cli.check_options(parser, args, OPTION_RULES)
    cli.check_device("--device", args.device)
    if not Path(args.checkpoint).exists():
        raise UserError(f"--checkpoint {args.checkpoint}: no such file or folder")
    if not Path(args.data).exists():
        raise UserError(f"{args.data}: no such file or folder")
    for folder in args.ood:
        if not Path(folder).is_dir():
            raise UserError(f"--ood {folder}: no such folder")
    if args.output is not None:
        cli.check_output_dir("--output", args.output)
        cli.check_not_inside("--output", args.output, "DATA", args.data if Path(args.data).is_dir() else None)
    if args.workers is None:
        args.workers = runtime.default_workers()
    return args


def gradcam_explainer(args, model, checkpoint, device):
    """Grad-CAM panels (image | overlay) for the misclassified grid; None for an ONNX model (no gradients)."""
    if formats.kind_of(args.checkpoint) == "onnx":
        return None

    def explain_images(paths, class_indices):
        return [np.hstack([cropped, overlay]) for _, cropped, overlay in explain.explained_images(
            model, checkpoint, paths, class_indices, device, batch_size=args.batch_size)]
    return explain_images


@cli_entry
def main(argv=None):
    args = parse_args(argv)
    checkpoint, model = formats.load_model(args.checkpoint)
    labelled = reports.read_labelled_set(args.data, checkpoint, args.format)
    output = Path(args.output) if args.output else Path(args.checkpoint).parent / f"eval_{labelled.name}"
    cli.check_output_dir("--output", output)
    if args.tau is not None:
        tau, tau_source = args.tau, "--tau"
    else:
        tau = float(checkpoint.get("logit_adjust_tau", 0.0))
        tau_source = "stored by calibration" if "logit_adjust_tau" in checkpoint else "default, no adjustment"
    device = runtime.resolve_device(args.device)
    amp_dtype = runtime.amp_dtype(args.amp, device)
    score_options = {"batch_size": args.batch_size, "workers": args.workers, "tta": args.tta, "amp_dtype": amp_dtype}
    scores, indices, unreadable, features = inference.predict_scores_and_features(
        model, labelled.paths, checkpoint, device, desc="evaluate", features="unknown" in checkpoint, **score_options)
    write_csv(output / "unreadable.csv", pd.DataFrame(unreadable, columns=["path", "reason"]))
    if unreadable:
        print(f"{len(unreadable)} unreadable image(s) not scored, listed in {output / 'unreadable.csv'}: "
              + "; ".join(f"{path}: {reason}" for path, reason in unreadable[:5]))
    if not len(indices):
        raise UserError(f"{args.data}: none of its {len(labelled.paths)} images could be read")
    kept = indices.numpy()
    labelled = reports.LabelledSet(labelled.name, labelled.description, [labelled.paths[i] for i in kept],
                                      labelled.targets[kept], labelled.absent)
    result, per_class, confusion = reports.score_metrics(scores, labelled.targets, checkpoint, tau)
    probabilities = torch.softmax(inference.adjust_scores(scores, checkpoint["train_counts"], tau), dim=1).numpy()
    many, few = checkpoint_format.shot_thresholds(checkpoint)
    extra = {"checkpoint": str(args.checkpoint), "data": str(args.data), "images": len(labelled.targets),
             "unreadable": len(unreadable), "tau": tau, "tau_source": tau_source, "tta": bool(args.tta),
             "many_threshold": many, "few_threshold": few,
             "absent_classes": [checkpoint["class_names"][index] for index in labelled.absent]}
    explainer = None if args.no_explain else gradcam_explainer(args, model, checkpoint, device)
    coverage = reports.write_evaluation_report(output, result, per_class, confusion, probabilities, labelled,
                                                  checkpoint, extra, explainer=explainer)
    print("\n".join(reports.summary_lines(result, per_class, labelled, checkpoint)))
    print("coverage / accuracy by --min-confidence: " + "; ".join(
        f"{row['min_confidence']:g}: {row['coverage']:.0%} / {row['accuracy']:.3f}" for row in coverage if row["images"]))
    if "answered" in coverage[0]:
        print("answers at the level the model is sure of, by --min-confidence (answered: at class / disease / crop "
              "level; right): " + "; ".join(
                  f"{row['min_confidence']:g}: {row['answered']:.0%} ({row['answered_class']:.0%} / "
                  f"{row['answered_disease']:.0%} / {row['answered_crop']:.0%}); {row['answered_correct']:.3f}"
                  for row in coverage if row["answered"]))
    if args.ood:
        report_unknown_photos(args, checkpoint, model, device, (scores, features), result, labelled, tau, output,
                              score_options)
    print(f"tau {tau:g} ({tau_source}); TTA {'on' if args.tta else 'off'}; {device} -> {output}/")


def report_unknown_photos(args, checkpoint, model, device, known, result, labelled, tau, output, score_options):
    """unknown_photos.csv: each --ood folder against DATA's photos, for every unknown-photo score method."""
    record = checkpoint.get("unknown")
    known_scores, known_features = known
    if record is None or known_features is None:
        print(f"--ood: {args.checkpoint} carries no unknown-photo score to test; add it with `python predict.py "
              f"--checkpoint {args.checkpoint} --fit-unknown --data-dir DATA_DIR`"
              if record is None else "--ood: an ONNX file gives no features to score; use the checkpoint")
        return
    predicted = inference.adjust_scores(known_scores, checkpoint["train_counts"], tau).argmax(dim=1).numpy()
    known_by_method = unknown.score_all(record, known_features, known_scores)
    rows = []
    for folder in args.ood:
        scores, _, rejected, features = inference.predict_scores_and_features(
            model, inference.find_images([folder]), checkpoint, device, desc=f"--ood {folder}", **score_options)
        by_method = unknown.score_all(record, features, scores)
        for method in unknown.METHODS:
            rows.append({"ood": str(folder), "photos": len(scores), "unreadable": len(rejected), "method": method,
                         "default": method == record["method"], **unknown.detection_metrics(
                             known_by_method[method].numpy(), by_method[method].numpy(),
                             unknown.threshold(record, method=method), labelled.targets, predicted)})
    table = pd.DataFrame(rows)
    write_csv(output / UNKNOWN_REPORT, table)
    for row in table.loc[table["default"]].itertuples():
        print(f"--ood {row.ood}: {row.photos} photos, {row.method} score: AUROC {row.auroc:.3f}; still diagnosed "
              f"{row.diagnosed_at_stored:.1%} at the stored threshold ({row.fpr_at_95_tpr:.1%} at 95 % of "
              f"{labelled.name} kept); {labelled.name}: {row.known_coverage_at_stored:.1%} answered, balanced "
              f"accuracy {row.known_balanced_accuracy_at_stored:.3f} of those (all methods: {output / UNKNOWN_REPORT})")


if __name__ == "__main__":
    main()
