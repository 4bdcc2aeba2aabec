"""Which training labels are wrong: a label audit of the cleaned training split that a person can act on.

    python audit_labels.py                                  # data/cleaned -> data/label_audit/
    python audit_labels.py --data-dir data/field13 --output data/field13_audit --top 60
    # then: fill in label_audit.csv's decision column (keep / relabel / drop) and clean again with it
    python analyze_data.py --source PATH --apply-audit data/label_audit/label_audit.csv

Every training photo gets class probabilities from a model that never saw its label: the ImageNet-pretrained
backbone's features (one pass, each photo and its mirror image) and a logistic regression fitted --folds times,
each time without the fold it then scores. cleanlab ranks the labels those probabilities contradict
(leafdisease/evaluation/label_audit.py says how, and how photos unlike any other are told apart). It writes into
--output:

- label_audit.csv: the suspects, few-shot classes' first: decision (empty: fill it in), kind (another_class: the
  photos say it is the suggested class; unusable: unlike the photos of every class, probably not a leaf;
  only_photo: the only photo of its class), path (the photo in the source), given and suggested label, score (label
  quality: the out-of-sample probability of the given label, lower = more suspect), class size, distance ratio
  (how far the photo is from the nearest class's photos, against a typical photo's);
- contact_sheet.png: the first --top suspects, both labels under each photo;
- scores.csv: every training photo, most suspect first; summary.json: the counts, settings and times.
"""
import argparse
import time
from pathlib import Path

from leafdisease.utils import runtime  # noqa: F401, I001  (first: OMP_WAIT_POLICY before torch loads)

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from dataset import load_metadata, read_image_rgb, short_side_for_crops  # noqa: E402
from leafdisease.data import audit_decisions, longtail  # noqa: E402
from leafdisease.data.cleaning import read_summary  # noqa: E402
from leafdisease.data.metadata import label_to_index  # noqa: E402
from leafdisease.data.transforms import eval_transform  # noqa: E402
from leafdisease.evaluation import label_audit, plots  # noqa: E402
from leafdisease.training import models  # noqa: E402
from leafdisease.utils import atomic_io, cli  # noqa: E402
from leafdisease.utils.errors import UserError, cli_entry  # noqa: E402

OPTION_RULES = {"folds": cli.at_least(2), "img_size": cli.Range(models.MIN_IMG_SIZE, models.MAX_IMG_SIZE,
                                                                  integer=True),
                "top": cli.NON_NEGATIVE_INT, "batch_size": cli.POSITIVE_INT, "workers": cli.NON_NEGATIVE_INT,
                "seed": cli.SEED, "many_threshold": cli.POSITIVE_INT, "few_threshold": cli.NON_NEGATIVE_INT}
SHOWN_PER_GROUP = 5
SHEET_PIXELS = 160


def parse_args(argv=None):
    parser = cli.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default="data/cleaned", help="the cleaned dataset (analyze_data.py's --out)")
    parser.add_argument("--output", default="data/label_audit",
                        help="folder for label_audit.csv, contact_sheet.png, scores.csv, summary.json (outside "
                             "--data-dir: cleaning replaces that folder)")
    parser.add_argument("--folds", type=int, default=label_audit.DEFAULT_FOLDS,
                        help="folds of the out-of-sample probabilities")
    parser.add_argument("--img-size", type=int, default=label_audit.DEFAULT_IMG_SIZE,
                        help="the size photos are shown to the backbone at")
    parser.add_argument("--top", type=int, default=48, help="suspects on the contact sheet")
    parser.add_argument("--model", default=models.DEFAULT_MODEL, help="timm backbone whose features are used")
    parser.add_argument("--pretrained-file", default=None, help="local weights file for --model")
    parser.add_argument("--no-pretrained", action="store_true",
                        help="random weights (tests only: the features then say little about the photos)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--batch-size", type=int, default=label_audit.DEFAULT_BATCH_SIZE)
    parser.add_argument("--workers", type=int, default=0, help="photo-reading processes (0: in this process)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the folds")
    parser.add_argument("--many-threshold", type=int, default=longtail.MANY_SHOT_THRESHOLD,
                        help="many-shot: more training images than this")
    parser.add_argument("--few-threshold", type=int, default=longtail.FEW_SHOT_THRESHOLD,
                        help="few-shot: fewer training images than this")
    args = parser.parse_args(argv)
    cli.check_options(parser, args, OPTION_RULES)
    if args.pretrained_file and args.no_pretrained:
        raise UserError("--pretrained-file and --no-pretrained exclude each other")
    cli.check_input_file("--pretrained-file", args.pretrained_file)
    longtail.check_thresholds(args.many_threshold, args.few_threshold)
    cli.check_device("--device", args.device)
    cli.check_output_dir("--output", args.output)
    cli.check_not_inside("--output", args.output, "--data-dir", args.data_dir)
    return args


@cli_entry
def main(argv=None):
    args = parse_args(argv)
    started = time.perf_counter()
    metadata = load_metadata(args.data_dir)
    train = metadata.train
    if "source_path" not in train.columns:  # cleaned before source paths were recorded: originals only
        train = train.assign(source_path=train["path"])
    class_ids = list(metadata.classes["id"])
    class_names = [str(name) for name in metadata.classes["name"]]
    labels = train["label"].map(label_to_index(class_ids)).to_numpy()
    device = runtime.resolve_device(args.device)
    print(f"Label audit of {args.data_dir}: {len(train)} training photos, {len(class_ids)} classes; features of "
          f"{args.model} at {args.img_size} px on {device}, {args.folds}-fold logistic regression, cleanlab ranking.")
    model = label_audit.feature_model(args.model, pretrained=not args.no_pretrained,
                                      pretrained_file=args.pretrained_file)
    features, readable, unreadable = label_audit.photo_features(
        model, list(train["path"]), args.img_size, device, args.batch_size, args.workers)
    if unreadable:
        raise UserError(f"{unreadable[0][0]}: {unreadable[0][1]} ({len(unreadable)} unreadable training photo(s)); "
                        f"clean the dataset again (analyze_data.py)")
    feature_seconds = time.perf_counter() - started
    table = label_audit.audit(features, labels, len(class_ids), args.folds, args.seed)
    suspects = label_audit.suspects(table, list(train["source_path"]), class_names, args.many_threshold,
                                    args.few_threshold)
    output = Path(args.output)
    atomic_io.write_csv(output / "label_audit.csv", suspects)
    atomic_io.write_csv(output / "scores.csv", scores_table(table, train, class_names))
    write_contact_sheet(output / "contact_sheet.png", suspects, train, args)
    seconds = time.perf_counter() - started
    summary = {"data_dir": str(Path(args.data_dir).resolve()), "photos": len(train), "classes": len(class_ids),
               "suspects": {kind: int((suspects["kind"] == kind).sum()) for kind in audit_decisions.KINDS},
               "settings": {"model": args.model, "pretrained": not args.no_pretrained, "img_size": args.img_size,
                            "folds": args.folds, "seed": args.seed, "logistic_c": label_audit.LOGISTIC_C,
                            "outlier_neighbours": label_audit.OUTLIER_NEIGHBOURS,
                            "outlier_fence": label_audit.OUTLIER_FENCE, "rank_method": label_audit.RANK_METHOD},
               "out_of_sample_accuracy": float((table["suggested_prob"] < table["given_prob"]).mean()),
               "seconds": {"features": round(feature_seconds, 1), "ranking": round(table.attrs["seconds"], 1),
                           "total": round(seconds, 1)}}
    atomic_io.write_json(output / "summary.json", summary)
    print_report(suspects, summary, output, args)


def scores_table(table, train, class_names):
    """Every training photo, most suspect first (label_audit.ranking)."""
    names = np.asarray(class_names, dtype=object)
    frame = pd.DataFrame({
        "path": train["source_path"].to_numpy(), "file": train["path"].to_numpy(),
        "given_label": names[table["given"].to_numpy()], "suggested_label": names[table["suggested"].to_numpy()],
        "given_prob": table["given_prob"].round(4), "suggested_prob": table["suggested_prob"].round(4),
        "label_quality": table["label_quality"].round(4), "label_issue": table["label_issue"],
        "distance_ratio": table["distance_ratio"].round(3),
        "kind": table["kind"], "class_size": table["class_size"], "fold": table["fold"]})
    return frame.iloc[label_audit.ranking(table)].reset_index(drop=True)


def write_contact_sheet(path, suspects, train, args):
    """The first --top suspects as the CSV orders them, each photo as the backbone saw it (resized, centre crop)."""
    file_of = dict(zip(train["source_path"], train["path"]))
    crop = eval_transform(SHEET_PIXELS, to_tensor=False)
    short_side = short_side_for_crops(SHEET_PIXELS)
    entries = [(crop(image=read_image_rgb(file_of[row.path], short_side))["image"], row.kind, row.shot_group,
                row.given_label, int(row.class_size), row.suggested_label, float(row.suggested_prob), row.score,
                float(row.distance_ratio))
               for row in suspects.head(args.top).itertuples()]
    shown = f"first {len(entries)} of {len(suspects)}" if len(suspects) > len(entries) else f"all {len(entries)}"
    plots.plot_audit_contact_sheet(
        entries, path, f"Label audit of {args.data_dir}: {shown} suspect photos, few-shot classes first (then "
                       f"medium, many); in each group 'probably another class' before 'not a leaf / unusable', the "
                       f"likeliest first.\nDecide in label_audit.csv's decision column (keep / relabel / drop), then "
                       f"analyze_data.py --apply-audit.")


def print_report(suspects, summary, output, args):
    counts = summary["suspects"]
    print(f"\nSuspects: {counts['another_class']} probably another class, {counts['unusable']} probably not a leaf "
          f"or unusable, {counts['only_photo']} only photo(s) of their class (of {summary['photos']} photos; "
          f"out-of-sample accuracy of the given labels {summary['out_of_sample_accuracy']:.3f}).")
    for group in ("few", "medium", "many"):
        rows = suspects.loc[suspects["shot_group"] == group]
        if rows.empty:
            continue
        print(f"\n{group}-shot classes: {len(rows)} suspect(s)"
              + (f", first {SHOWN_PER_GROUP}:" if len(rows) > SHOWN_PER_GROUP else ":"))
        shown = rows.head(SHOWN_PER_GROUP)[["kind", "given_label", "suggested_label", "score", "class_size", "path"]]
        print(shown.to_string(index=False))
    seconds = summary["seconds"]
    print(f"\nWritten to {output}: label_audit.csv (fill in its decision column: "
          f"{' / '.join(audit_decisions.DECISIONS)}), contact_sheet.png (the first {args.top}), scores.csv (every "
          f"photo), summary.json. {seconds['total']:.1f} s ({seconds['features']:.1f} s of features).")
    source = read_summary(args.data_dir).get("source") or "SOURCE"
    print(f"Then: python analyze_data.py --source {source} --out {args.data_dir} --apply-audit "
          f"{output / 'label_audit.csv'}")


if __name__ == "__main__":
    main()
