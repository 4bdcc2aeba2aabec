"""Export a trained checkpoint for use outside this project: a timm / Hugging Face folder and ONNX.

  python export.py --checkpoint checkpoints/task1_stage2/best.pth --format all --output exported/

Writes into --output:
  model.safetensors, config.json  (--format timm) timm's save_for_hf layout; loads with
                                   timm.create_model("local-dir:exported/", pretrained=True), classes, mean/std,
                                   input size, crop_pct and interpolation included
  model.onnx                       (--format onnx) dynamic batch axis, input "image" (N, 3, S, S), output "logits"

Both carry the class ids, names, training counts and calibrated tau, so predict.py and evaluate.py accept the
folder or the .onnx file in place of the checkpoint. Each export is checked before it is kept: the folder is
reloaded through timm and the ONNX model run with ONNX Runtime, on real images through the eval transform
(--verify-images, default: validation images from --data-dir), against the PyTorch model; the largest logit
difference is printed, and a difference above --max-logit-diff or any disagreeing predicted class is an error.

--output holds one export and nothing else: it is written in a staging folder beside it and renamed into place
whole (staged_output, as cleaning does), so no file of an earlier export survives beside the new ones. A folder
that already holds an export is replaced only with --overwrite; one holding other files, or read-only, is refused.
"""
from leafdisease.utils import runtime  # noqa: F401, I001  (first: it sets OMP_WAIT_POLICY before anything loads torch)

import argparse
from pathlib import Path

import numpy as np

import dataset
from leafdisease.data.staged_output import staged_folder
from leafdisease.deployment import formats, inference
from leafdisease.training import checkpoint as checkpoint_format
from leafdisease.utils import cli
from leafdisease.utils.atomic_io import default_permissions
from leafdisease.utils.errors import UserError, cli_entry

FORMATS = {"timm": ("timm",), "onnx": ("onnx",), "all": ("timm", "onnx")}


def parse_args(argv=None):
    parser = cli.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="a train.py best.pth")
    parser.add_argument("--format", choices=tuple(FORMATS), default="all")
    parser.add_argument("--output", default="exported",
                        help="the export's folder (created if missing; replaced whole, see --overwrite)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace --output when it holds an earlier export (nothing else is ever replaced)")
    check = parser.add_argument_group("checking the export against PyTorch")
    check.add_argument("--verify-images", nargs="+", default=None,
                       help="image files or folders (default: validation images from --data-dir)")
    check.add_argument("--data-dir", default="data/cleaned", help="cleaned dataset whose val.csv supplies images")
    check.add_argument("--verify-count", type=int, default=32, help="images to check with (spread over the list)")
    check.add_argument("--max-logit-diff", type=float, default=formats.DEFAULT_MAX_LOGIT_DIFF,
                       help="largest tolerated |logit difference| between PyTorch and the export")
    args = parser.parse_args(argv)
    if args.verify_count < 1:
        parser.error("--verify-count must be at least 1")
    if not args.max_logit_diff > 0:
        parser.error("--max-logit-diff must be positive")
    cli.check_output_dir("--output", args.output, replaced=True)
    check_replaceable(Path(args.output), args.overwrite)
    return args


def check_replaceable(output, overwrite):
    """--output is absent, empty, or holds an earlier export (formats.EXPORT_FILES) and --overwrite is given: it is
    replaced whole, so anything else in it would be lost."""
    entries = sorted(entry.name for entry in output.iterdir()) if output.is_dir() else []
    others = [name for name in entries if name not in formats.EXPORT_FILES]
    if others:
        shown = ", ".join(others[:3]) + (f" and {len(others) - 3} more" if len(others) > 3 else "")
        raise UserError(f"--output {output}: holds {shown}, not only an export; export.py replaces its folder whole: "
                        f"choose a new or empty folder")
    if entries and not overwrite:
        raise UserError(f"--output {output}: already holds an export ({', '.join(entries)}); pass --overwrite to "
                        f"replace the whole folder with this one, or choose another --output")


def verification_paths(args):
    if args.verify_images:
        paths = inference.find_images(args.verify_images)  # files that are not images are passed over
    else:
        val_csv = Path(args.data_dir) / "metadata" / "val.csv"
        if not val_csv.is_file():
            raise UserError(f"{val_csv}: not found; the export is checked on real images: pass --verify-images "
                            f"PATH or --data-dir of a cleaned dataset")
        paths = dataset.load_metadata(args.data_dir).val["path"].tolist()
        if not paths:
            raise UserError(f"{val_csv}: no validation images to check the export with; pass --verify-images")
    chosen = np.unique(np.linspace(0, len(paths) - 1, min(args.verify_count, len(paths))).round().astype(int))
    return [paths[index] for index in chosen]


def check(name, reference, exported, images, max_difference):
    difference, disagreements = formats.compare_logits(reference, exported, images)
    print(f"{name}: max |logit difference| vs PyTorch {difference:.3g} on {len(images)} images, "
          f"predicted classes {'agree' if not disagreements else f'differ on {disagreements}'}")
    if difference > max_difference or disagreements:
        raise UserError(f"{name}: the export does not reproduce the PyTorch model (max logit difference "
                        f"{difference:.3g}, tolerance {max_difference:g}; {disagreements} class disagreement(s)); "
                        f"nothing was replaced")
    return difference


@cli_entry
def main(argv=None):
    args = parse_args(argv)
    checkpoint = checkpoint_format.load(args.checkpoint, need="weights")
    model = inference.build_model(checkpoint, args.checkpoint)
    card = formats.model_card(checkpoint, args.checkpoint)
    images = formats.transformed_images(verification_paths(args), card)
    output = Path(args.output)
    # Written beside --output and renamed into place whole, only once every export is checked: an earlier export's
    # files never survive beside the new ones, and a failed check leaves --output as it was.
    with staged_folder(output, "export") as staging:
        if "timm" in FORMATS[args.format]:
            formats.save_timm_folder(model, card, staging)
            if checkpoint.get("unknown") is not None:
                formats.save_unknown_record(checkpoint["unknown"], staging / formats.UNKNOWN_FILE)
            _, reloaded = formats.load_model(staging)
            check(f"{output}/ (timm folder)", model, reloaded, images, args.max_logit_diff)
        if "onnx" in FORMATS[args.format]:
            formats.save_onnx(model, card, staging / formats.ONNX_FILE)
            _, session = formats.load_model(staging / formats.ONNX_FILE)
            check(f"{output / formats.ONNX_FILE} (ONNX Runtime)", model, session, images, args.max_logit_diff)
            if checkpoint.get("unknown") is not None:
                print(f"{output / formats.ONNX_FILE}: carries no unknown-photo score (an ONNX file gives no features "
                      f"to score); the timm folder (--format timm) does")
        for path in staging.iterdir():
            default_permissions(path)
    print(f"exported {checkpoint['model_name']} ({checkpoint['num_classes']} classes, {checkpoint['img_size']}px) "
          f"from {args.checkpoint} to {output}/")


if __name__ == "__main__":
    main()
