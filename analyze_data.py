"""Look at the data before touching hyperparameters: class distribution, class weights, augmentation.

    python analyze_data.py --visualize                  # the built-in demo when nothing is configured
    python analyze_data.py --source PATH [--max-side 512] [--visualize]
    python analyze_data.py --source PATH --max-side auto --img-size 128   # cache copies only if photos are large
    python analyze_data.py --source train_list.txt --val-list val_list.txt   # '<image path> <label>' lines
    python analyze_data.py --demo --visualize           # back to the demo after analysing another dataset
    python analyze_data.py --source PATH --apply-audit data/label_audit/label_audit.csv   # after audit_labels.py

With --source it first cleans that dataset into --out (data/cleaned; see cleaning.py for the rules). With no
--source it analyses the cleaned dataset already in --out, or, when there is none, generates the built-in
synthetic demo into data/demo and cleans that. --visualize writes three figures into --plots-dir.
"""
import argparse
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from dataset import build_transform, load_metadata, read_image_rgb, short_side_for_crops  # noqa: E402
from leafdisease.data import audit_decisions, demo_data, hierarchy, near_duplicates  # noqa: E402
from leafdisease.data.cleaning import MIN_MAX_SIDE, WEIGHT_SCHEMES_WRITTEN, clean_dataset, read_summary, reduction  # noqa: E402
from leafdisease.data.longtail import FEW_SHOT_THRESHOLD, MANY_SHOT_THRESHOLD, shot_group_captions, shot_groups  # noqa: E402
from leafdisease.data.sources import FORMATS  # noqa: E402
from leafdisease.evaluation.plots import SHOT_GROUP_COLORS, abbreviate  # noqa: E402
from leafdisease.training import models, recipe  # noqa: E402
from leafdisease.utils import atomic_io, cli  # noqa: E402
from leafdisease.utils.errors import UserError, cli_entry  # noqa: E402

TOP_N = 5
NEAR_DUPLICATES_SHOWN = 10
AUGMENTATION_DRAWS = 5
TRAINING_IMG_SIZE = recipe.settings(recipe.path_of(recipe.DEFAULT))["img_size"]  # train.py's default resolution
# The shell scripts' resolution on the built-in demo (its CPU-sized profile).
DEMO_IMG_SIZE = recipe.settings(recipe.path_of(recipe.DEFAULT), recipe.path_of("demo"))["img_size"]
SCHEME_STYLES = {"inverse": ("tab:red", "o"), "sqrt": ("tab:green", "s"), "effective": ("tab:purple", "^")}
OPTION_RULES = {"demo_scale": cli.POSITIVE, "demo_image_size": cli.at_least(demo_data.MIN_IMAGE_SIZE),
                "val_fraction": cli.Range(0, 1, low_open=True, high_open=True),
                "seed": cli.SEED, "workers": cli.POSITIVE_INT, "many_threshold": cli.POSITIVE_INT,
                "few_threshold": cli.NON_NEGATIVE_INT, "img_size": models.IMG_SIZE_RANGE}
AUTO = "auto"  # --max-side auto
MAX_SIDE_RULE = cli.at_least(MIN_MAX_SIDE)


def max_side_option(text):
    """--max-side's value: 'auto' or a whole number of pixels (its range is checked with the other options)."""
    if text == AUTO:
        return AUTO
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is neither a number of pixels nor '{AUTO}'") from None


def parse_args(argv=None):
    parser = cli.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_argument_group("what to analyse")
    source.add_argument("--source", help="dataset to clean first: AI Challenger root, ImageFolder root, CSV file or "
                                         "text list of '<image path> <label>' lines")
    source.add_argument("--format", choices=("auto",) + FORMATS, default="auto",
                        help="layout of --source (default: detected)")
    source.add_argument("--path-column", help="CSV: column holding image paths (default: detected)")
    source.add_argument("--label-column", help="CSV: column holding labels, ids or names (default: detected)")
    source.add_argument("--split-column", help="CSV: column holding train/val (default: 'split' if present)")
    source.add_argument("--val-list", help="list: the validation list file (then --source's lines are the training "
                                           "split; without it a stratified split is made)")
    source.add_argument("--demo", action="store_true",
                        help="use the built-in demo as the source: generate it into data/demo and clean it "
                             "(each step is redone only if missing or changed)")
    source.add_argument("--demo-scale", type=float, default=demo_data.DEFAULT_SCALE,
                        help="demo size as a fraction of the seed's class counts")
    source.add_argument("--demo-image-size", type=int, default=160, help="demo image side in pixels")
    source.add_argument("--demo-dir", default="data/demo", help="where the demo dataset is generated")
    cleaning = parser.add_argument_group("cleaning")
    cleaning.add_argument("--out", default="data/cleaned", help="cleaned dataset folder")
    cleaning.add_argument("--max-side", type=max_side_option, default=None,
                          help="re-encode images whose longer side exceeds this; 'auto': images at least twice the "
                               "short side training at --img-size needs, at the size training reads them (1/2, 1/4 or "
                               "1/8; default: keep originals)")
    cleaning.add_argument("--img-size", type=int, default=None,
                          help="the training resolution that --max-side auto, the image-size advice and the "
                               "augmentation figure are for, in train.py's range "
                               f"{models.MIN_IMG_SIZE}-{models.MAX_IMG_SIZE} (default: train.py's; the demo "
                               "profile's on the demo)")
    cleaning.add_argument("--recipe", default=recipe.DEFAULT,
                          help="without --img-size, the recipe (recipes/RECIPE.yaml, its demo profile's on the demo) "
                               "whose resolution --img-size is (default: %(default)s, train.py's)")
    cleaning.add_argument("--val-fraction", type=float, default=0.15,
                          help="validation share per class when the source has no split")
    cleaning.add_argument("--seed", type=int, default=0, help="seed of the stratified split and the plot draws")
    cleaning.add_argument("--workers", type=int, default=None, help="processes for image checks (default: all cores)")
    cleaning.add_argument("--near-dup-threshold", type=int, default=near_duplicates.DEFAULT_THRESHOLD,
                          help="report validation images within this many bits (of 64) of a training image's "
                               "perceptual hash in metadata/near_duplicates.csv (0 = off)")
    cleaning.add_argument("--apply-audit", metavar="CSV",
                          help="a label audit's CSV (audit_labels.py) with its decision column filled in (keep, "
                               "relabel, drop): checked whole, then applied; each relabel is logged in "
                               "metadata/relabel_log.csv, each drop in rejected.csv. Applied decisions are kept and "
                               f"applied again when --source is cleaned again into --out; '{audit_decisions.NONE}' "
                               "cleans without them")
    report = parser.add_argument_group("report")
    report.add_argument("--visualize", action="store_true", help="write the three figures into --plots-dir")
    report.add_argument("--plots-dir", default="demo_plots")
    report.add_argument("--many-threshold", type=int, default=MANY_SHOT_THRESHOLD,
                        help="many-shot: more training images than this")
    report.add_argument("--few-threshold", type=int, default=FEW_SHOT_THRESHOLD,
                        help="few-shot: fewer training images than this")
    args = parser.parse_args(argv)
    if args.demo and args.source:
        parser.error("--demo and --source exclude each other")
    if args.val_list and not args.source:
        parser.error("--val-list goes with --source (the training list)")
    if args.apply_audit and not (args.source or args.demo):
        parser.error("--apply-audit goes with --source (or --demo): the decisions are applied while cleaning it")
    if args.apply_audit not in (None, audit_decisions.NONE):
        cli.check_input_file("--apply-audit", args.apply_audit)
    cli.check_options(parser, args, OPTION_RULES)
    if args.max_side not in (None, AUTO) and not MAX_SIDE_RULE.allows(args.max_side):
        raise UserError(f"--max-side {args.max_side}: must be {MAX_SIDE_RULE} or '{AUTO}'")
    if args.few_threshold > args.many_threshold:
        raise UserError(f"--few-threshold {args.few_threshold} is above --many-threshold {args.many_threshold}")
    if args.recipe not in recipe.available():
        raise UserError(f"--recipe {args.recipe}: no {recipe.path_of(args.recipe)} (recipes: "
                        f"{', '.join(sorted(recipe.available()))})")
    if args.source is not None and not Path(args.source).exists():
        raise UserError(f"--source {args.source}: no such file or folder")
    # Cleaning replaces --out whole with a folder staged beside it.
    cli.check_output_dir("--out", args.out, replaced=bool(args.source or args.demo))
    cli.check_not_inside("--out", args.out, "--source", args.source if args.source and Path(args.source).is_dir() else None)
    if args.visualize:
        cli.check_output_dir("--plots-dir", args.plots_dir)
    if args.demo or not args.source:
        cli.check_output_dir("--demo-dir", args.demo_dir)
    return args


@cli_entry
def main(argv=None):
    args = parse_args(argv)
    prepare_cleaned_dataset(args)
    metadata = load_metadata(args.out)
    metadata_dir = Path(args.out) / "metadata"
    weights = {scheme: _read_metadata_table(metadata_dir / f"class_weights_{scheme}.csv").set_index("id")["weight"]
               for scheme in WEIGHT_SCHEMES_WRITTEN}
    rejected = _read_metadata_table(metadata_dir / "rejected.csv")
    summary = read_summary(args.out)
    print_report(metadata.classes, weights, rejected, args)
    print_hierarchy(metadata.hierarchy, summary)
    print_near_duplicates(summary, metadata_dir)
    print_image_size_advice(summary, args.img_size)
    if args.visualize:
        started = time.monotonic()
        plots_dir = Path(args.plots_dir)
        groups = shot_groups(metadata.classes["train_count"], args.many_threshold, args.few_threshold)
        paths = [plots_dir / "class_distribution.png", plots_dir / "class_weights_comparison.png",
                 plots_dir / "augmentation_examples.png"]
        plot_class_distribution(metadata.classes, groups, args.many_threshold, args.few_threshold, paths[0])
        plot_class_weights(metadata.classes, weights, paths[1])
        plot_augmentation_examples(metadata, paths[2], args.seed, args.img_size)
        print(f"\nFigures ({time.monotonic() - started:.1f} s):")
        for path in paths:
            print(f"  {path}")


def prepare_cleaned_dataset(args):
    """Clean --source, or the demo when asked or when nothing is configured; otherwise use --out as is."""
    out = Path(args.out)
    reuse = False
    if args.source:
        source, fmt = args.source, args.format
    elif args.demo or not (out / "metadata" / "classes.csv").exists():
        if not args.demo:
            print(f"No --source given and no cleaned dataset in {out}: generating the built-in synthetic demo "
                  f"dataset into {args.demo_dir} and cleaning it (use --source PATH for your own data).")
        started = time.monotonic()
        source = demo_data.generate_demo(args.demo_dir, scale=args.demo_scale, image_size=args.demo_image_size,
                                         workers=args.workers)
        fmt = "aichallenger"
        print(f"Demo dataset ready in {source} ({time.monotonic() - started:.1f} s).")
    else:
        print(f"Using the cleaned dataset in {out} (pass --source PATH or --demo to rebuild it).")
        source, reuse = read_summary(out).get("source"), True
    args.img_size = args.img_size or default_img_size(source, args.recipe)
    if reuse:
        return
    auto = args.max_side == AUTO
    summary = clean_dataset(source, out, fmt=fmt, max_side=None if auto else args.max_side,
                            val_fraction=args.val_fraction, seed=args.seed, workers=args.workers,
                            path_column=args.path_column, label_column=args.label_column,
                            split_column=args.split_column, val_list=args.val_list,
                            many_threshold=args.many_threshold, few_threshold=args.few_threshold,
                            near_dup_threshold=args.near_dup_threshold,
                            cache_short_side=short_side_for_crops(args.img_size) if auto else None,
                            audit=args.apply_audit)
    imageless = summary.get("classes_without_images") or []
    if imageless:
        print(f"{len(imageless)} class(es) of the source have no image and are left out: "
              + ", ".join(f"{entry['id']} '{entry['name']}'" for entry in imageless))
    unvalidated = summary.get("classes_without_val_images") or []
    if unvalidated:
        print(f"{len(unvalidated)} class(es) have training images but no validation image: "
              + ", ".join(f"{entry['id']} '{entry['name']}'" for entry in unvalidated)
              + "; they are trained on, and validation metrics (balanced accuracy, shot groups, calibration) average "
                "over the classes that have validation images")
    if summary["reused"]:
        print(f"{out} is up to date with {summary['source']} (nothing changed since it was cleaned).")
    else:
        totals = summary["totals"]
        print(f"Cleaned {totals['listed']} listed images from {summary['source']} ({summary['format']}) into {out} "
              f"in {summary['seconds']:.1f} s: kept {totals['kept']}, rejected {totals['rejected']}, "
              f"re-encoded {totals['reencoded']}.")
    if auto:
        print_cache_choice(summary["cache"], args.img_size)
    print_label_decisions(summary.get("label_decisions"), out)


def print_label_decisions(entry, out):
    """What the label decisions did (none applied: nothing to say)."""
    if not entry:
        return
    metadata = out / "metadata"
    if entry["cleared"] and not (entry["relabelled"] or entry["dropped"]):
        print(f"Label decisions: the ones an earlier cleaning kept are not applied (--apply-audit "
              f"{audit_decisions.NONE}); every photo has its source label.")
        return
    origin = []
    if entry["kept_from_earlier"]:
        origin.append(f"{entry['kept_from_earlier']} kept from an earlier cleaning "
                      f"({metadata / audit_decisions.DECISION_FILE})")
    if entry["audit_file"]:
        origin.append(f"{entry['new']} from {entry['audit_file']}")
    print(f"Label decisions ({'; '.join(origin) or 'none new'}): {entry['relabelled']} photo(s) relabelled "
          f"(listed in {metadata / audit_decisions.RELABEL_LOG}), {entry['dropped']} dropped (rejected.csv, reason "
          f"'{audit_decisions.DROP_REASON}'); --apply-audit {audit_decisions.NONE} cleans without them.")


def default_img_size(source, recipe_name=recipe.DEFAULT):
    """The resolution the shell scripts train a cleaned copy of `source` at with recipes/<recipe_name>.yaml: its
    demo profile's for the built-in demo (a folder with demo_data's info file), the recipe's own otherwise (for
    recipe.DEFAULT: train.py's default)."""
    profile = recipe.path_of("demo") if demo_data.is_demo_folder(source) else None
    return recipe.settings(recipe.path_of(recipe_name), profile).get("img_size", TRAINING_IMG_SIZE)


def print_cache_choice(cache, img_size):
    """What --max-side auto did: how many images it cached at their working size."""
    needed = f"the short side of {cache['short_side']} px that training at {img_size} px needs"
    if not cache["reduced"]:
        print(f"--max-side auto: no image is at least twice {needed}; training reads the originals.")
    else:
        print(f"--max-side auto: {cache['reduced']} of {cache['images']} images are at least twice {needed}; "
              f"training reads copies at 1/2, 1/4 or 1/8 of their size (a short side of {cache['short_side']} to "
              f"{2 * cache['short_side'] - 1} px), as it would read the originals, without decoding them in full "
              f"every epoch.")


def _read_metadata_table(path):
    try:
        return pd.read_csv(path, keep_default_na=False)
    except FileNotFoundError:
        raise UserError(f"{path}: not found; rebuild {path.parent.parent} with "
                        f"`python analyze_data.py --source PATH` (or --demo)") from None
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise UserError(f"{path}: not a readable CSV ({error})") from None


# ----------------------------------------------------------------------------------------------------
# Text report
# ----------------------------------------------------------------------------------------------------
def print_report(classes, weights, rejected, args):
    counts = classes["train_count"]
    groups = shot_groups(counts, args.many_threshold, args.few_threshold)
    by_count = classes.sort_values(["train_count", "id"], ascending=[False, True])
    columns = {"id": "id", "name": "class", "train_count": "train", "val_count": "val"}
    print(f"\nDataset {args.out}: {int(counts.sum())} training and {int(classes['val_count'].sum())} validation "
          f"images in {len(classes)} classes.")
    table = by_count[list(columns)].rename(columns=columns)
    if len(table) <= 2 * TOP_N:
        print("\nClasses by training images:")
        print(table.to_string(index=False))
    else:
        print(f"\nLargest {TOP_N} classes (training images):")
        print(table.head(TOP_N).to_string(index=False))
        print(f"\nSmallest {TOP_N} classes:")
        print(table.tail(TOP_N).to_string(index=False))
    print(f"\nImbalance ratio (largest / smallest training class): {counts.max() / counts.min():.1f} : 1")
    captions = shot_group_captions(args.many_threshold, args.few_threshold)
    print("Shot groups: " + ", ".join(f"{captions[group]} {int((groups == group).sum())} classes"
                                      for group in captions))
    print("\nClass weights from the training split (metadata/class_weights_<scheme>.csv):")
    table = pd.DataFrame([{"scheme": scheme, "min": w.min(), "max": w.max(), "max/min": w.max() / w.min()}
                          for scheme, w in weights.items()])
    print(table.to_string(index=False, float_format=lambda value: f"{value:.3f}"))
    if rejected.empty:
        print("\nRejected images: none.")
    else:
        by_reason = ", ".join(f"{count} {reason}" for reason, count in rejected["reason"].value_counts().items())
        print(f"\nRejected images: {len(rejected)} ({by_reason}); see {Path(args.out) / 'metadata' / 'rejected.csv'}")


def print_hierarchy(class_hierarchy, summary):
    """The label hierarchy cleaning found (hierarchy.py), one line per crop, or why there is none: the table to
    check before crop and disease metrics are trusted."""
    how = (summary.get("hierarchy") or {}).get("how")
    if class_hierarchy is None:
        print(f"\nLabel hierarchy: {how or f'none (no metadata/{hierarchy.HIERARCHY_FILE})'}")
        return
    print(f"\nLabel hierarchy ({how or f'metadata/{hierarchy.HIERARCHY_FILE}'}): {hierarchy.describe(class_hierarchy)}")


def print_image_size_advice(summary, img_size=TRAINING_IMG_SIZE):
    """Photos smaller than the training size are enlarged: compute spent on no new detail (benchmarks/reports/resolution.md
    measured it on field13's 256 px photos), so say so. Photos several times larger than training needs make
    decoding most of a loader worker's time, and then the loader, not a GPU, sets the pace (benchmarks/reports/feeding.md):
    say so, and how to cache them at the size training reads them (--max-side auto)."""
    sizes = summary.get("image_sizes")
    if not sizes:
        return
    if sizes["median_short_side"] < img_size:
        # Never advise a size train.py refuses (models.IMG_SIZE_RANGE).
        matching = max(sizes["median_short_side"], models.MIN_IMG_SIZE)
        print(f"\nImage size: the median image's short side ({sizes['median_short_side']} px) is below the "
              f"{img_size} px training size, so training and scoring enlarge most photos: "
              f"{(img_size / sizes['median_short_side']) ** 2:.1f}x the compute per image of training at "
              f"{sizes['median_short_side']} px, for no detail the photos do not have. On field13's 256 px photos a "
              f"size below theirs was as accurate as theirs (benchmarks/reports/resolution.md); "
              + (f"to train at most at the photos' size: --img-size {matching} (IMG_SIZE for train_fixed.sh) or less."
                 if matching == sizes["median_short_side"] else
                 f"the smallest size train.py takes is --img-size {matching} (IMG_SIZE for train_fixed.sh)."))
        return
    needed = short_side_for_crops(img_size)
    if reduction(sizes["median_long_side"], sizes["median_short_side"], needed) == 1:
        return
    size_option = "" if img_size == TRAINING_IMG_SIZE else f" --img-size {img_size}"
    print(f"\nImage size: the median image is {sizes['median_long_side']} x {sizes['median_short_side']} px, at "
          f"least twice what training at {img_size} px uses (a short side of {needed} px covers its smallest "
          f"crop). Training reads such photos reduced, but decoding them is still most of the data loader's work "
          f"and can leave a GPU waiting (benchmarks/reports/feeding.md). To cache them once at the size training reads "
          f"them, clean again with --max-side auto{size_option}.")


def print_near_duplicates(summary, metadata_dir):
    """The near-duplicate train/val pairs cleaning found (nothing for a dataset cleaned before the check)."""
    found, pairs_path = summary.get("near_duplicates"), metadata_dir / "near_duplicates.csv"
    if not found:
        return
    if found["threshold"] == 0:
        print("\nNear-duplicate check: off (--near-dup-threshold 0).")
        return
    print(f"\nNear duplicates across train/val (perceptual hash within {found['threshold']} bits): "
          f"{found['same_class_pairs']} same-class pair(s) (leakage: validation sees near copies of training "
          f"photos), {found['label_conflict_pairs']} cross-class pair(s) (label conflicts); "
          f"{found['val_images_involved']} validation image(s) involved"
          + (f"; {found['unhashed_images']} image(s) could not be hashed" if found["unhashed_images"] else ""))
    pairs = _read_metadata_table(pairs_path)
    if len(pairs):
        print(pairs.head(NEAR_DUPLICATES_SHOWN).to_string(index=False))
        print(f"All pairs: {pairs_path}")


# ----------------------------------------------------------------------------------------------------
# Figures (analysis only)
# ----------------------------------------------------------------------------------------------------
def _class_labels(classes):
    return [f"{class_id} {abbreviate(name, 34)}" for class_id, name in zip(classes["id"], classes["name"])]


def _class_axis(axis, classes):
    """Class names on the x axis, readable for 61 classes."""
    count = len(classes)
    font_size = 9 if count <= 20 else max(5, min(8, int(480 / count)))
    axis.set_xticks(range(count), _class_labels(classes), rotation=90, fontsize=font_size)
    axis.set_xlim(-0.7, count - 0.3)
    axis.set_xlabel("class (id and name), sorted by number of training images")


def _figure_width(class_count):
    return max(10.0, 0.24 * class_count + 3)


def plot_class_distribution(classes, groups, many_threshold, few_threshold, path):
    """Sorted training counts per class on a log scale, coloured by many/medium/few-shot group."""
    order = np.argsort(-classes["train_count"].to_numpy(), kind="stable")
    ordered, ordered_groups = classes.iloc[order].reset_index(drop=True), groups[order]
    counts = ordered["train_count"].to_numpy()
    fig, axis = plt.subplots(figsize=(_figure_width(len(ordered)), 6.5))
    axis.bar(range(len(ordered)), counts, color=[SHOT_GROUP_COLORS[group] for group in ordered_groups], width=0.8)
    for position, count in enumerate(counts):
        axis.text(position, count * 1.08, str(count), ha="center", va="bottom", rotation=90, fontsize=6)
    axis.set_yscale("log")
    axis.set_ylim(0.5, counts.max() * 4)
    axis.axhline(many_threshold, color="tab:blue", linestyle="--", linewidth=0.8)
    axis.axhline(few_threshold, color="tab:red", linestyle="--", linewidth=0.8)
    group_text = shot_group_captions(many_threshold, few_threshold)
    handles = [Patch(color=SHOT_GROUP_COLORS[group], label=f"{group_text[group]}: {int((groups == group).sum())} classes")
               for group in SHOT_GROUP_COLORS]
    axis.legend(handles=handles, loc="upper right", fontsize=9)
    _class_axis(axis, ordered)
    axis.set_ylabel("training images (log scale)")
    axis.set_title(f"Training images per class: {int(counts.sum())} images, {len(counts)} classes, "
                   f"imbalance {counts.max() / counts.min():.0f}:1 (largest / smallest class)\n"
                   f"dashed lines: many-shot ({many_threshold}) and few-shot ({few_threshold}) thresholds")
    axis.grid(axis="y", which="major", alpha=0.3)
    atomic_io.save_figure(fig, path)


def plot_class_weights(classes, weights, path):
    """inverse vs sqrt vs effective-number weight per class, log scale, classes in the same order as above."""
    order = np.argsort(-classes["train_count"].to_numpy(), kind="stable")
    ordered = classes.iloc[order].reset_index(drop=True)
    fig, (weight_axis, count_axis) = plt.subplots(
        2, 1, figsize=(_figure_width(len(ordered)), 8.5), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    positions = np.arange(len(ordered))
    for scheme, scheme_weights in weights.items():
        values = scheme_weights.loc[ordered["id"]].to_numpy()
        color, marker = SCHEME_STYLES[scheme]
        label = f"{scheme}: {values.min():.3g} to {values.max():.3g} (max/min {values.max() / values.min():.1f})"
        weight_axis.plot(positions, values, color=color, marker=marker, markersize=4, linewidth=1.2, label=label)
    weight_axis.axhline(1.0, color="gray", linewidth=0.8, linestyle=":")
    weight_axis.set_yscale("log")
    weight_axis.set_ylabel("loss weight (log scale)")
    weight_axis.set_title("Per-class loss weights from the training split (higher = the class counts more in "
                          "the loss)\ninverse frequency vs sqrt-smoothed vs effective number of samples (beta 0.999)")
    weight_axis.legend(fontsize=9, loc="upper left")
    weight_axis.grid(alpha=0.3, which="major")
    count_axis.bar(positions, ordered["train_count"], color="tab:gray", width=0.8)
    count_axis.set_yscale("log")
    count_axis.set_ylabel("training images\n(log scale)")
    count_axis.grid(axis="y", alpha=0.3)
    _class_axis(count_axis, ordered)
    atomic_io.save_figure(fig, path)


def plot_augmentation_examples(metadata, path, seed, img_size):
    """The largest (head) and smallest (tail) class's first training image through weak and strong augmentation."""
    counts = metadata.classes.set_index("id")["train_count"]
    head_id = counts.index[counts == counts.max()].min()
    tail_id = counts.index[counts == counts.min()].min()
    columns = AUGMENTATION_DRAWS + 1
    fig, axes = plt.subplots(4, columns, figsize=(2.3 * columns, 2.3 * 4 + 0.6))
    rows = [(role, class_id, kind) for role, class_id in (("head", head_id), ("tail", tail_id))
            for kind in ("weak", "strong")]
    for row, (role, class_id, kind) in enumerate(rows):
        class_row = metadata.classes.loc[metadata.classes["id"] == class_id].iloc[0]
        image_path = metadata.train.loc[metadata.train["label"] == class_id, "path"].sort_values().iloc[0]
        image = read_image_rgb(image_path, short_side_for_crops(img_size))
        transform = build_transform(kind, img_size, to_tensor=False)
        transform.set_random_seed(seed + row)
        row_axes = axes[row]
        row_axes[0].imshow(image)
        row_axes[0].set_title("original", fontsize=9)
        for draw, axis in enumerate(row_axes[1:], start=1):
            axis.imshow(transform(image=image)["image"])
            axis.set_title(f"{kind} draw {draw}", fontsize=9)
        row_axes[0].set_ylabel(f"{role} class {class_id}:\n{class_row['name']}\n"
                               f"({int(class_row['train_count'])} train images)\n{kind.upper()} augmentation",
                               fontsize=8)
        for axis in row_axes:
            axis.set_xticks([])
            axis.set_yticks([])
    fig.suptitle(f"Augmentation examples at {img_size}px, largest (head) and smallest (tail) class: "
                 f"'weak' = the seed's before (rotate 15, occasional colour jitter/cutout),\n"
                 f"'strong' = the seed's after (rotate 45, flips, grid distortion, frequent colour jitter, shadow, "
                 f"cutout)", fontsize=11)
    fig.tight_layout()
    atomic_io.save_figure(fig, path)


if __name__ == "__main__":
    main()
