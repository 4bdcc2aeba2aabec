"""Unknown photos on real photos: every unknown-photo score against near, other-crop and no-leaf photos (issue 32).

    python benchmarks/ood.py                                  # each field13 crop left out in turn, seed 0
    python benchmarks/ood.py --seeds 0 1 2                    # more seeds (finished runs are reused)
    python benchmarks/ood.py --training plain outlier_exposure  # also train with outlier exposure
    python benchmarks/ood.py --training background_class      # the outliers as one more class instead
    python benchmarks/ood.py --training mixed_outlier_exposure  # the outliers pasted into the photos (cutmix)

For each crop of field13 (bean, blackgram, citrus) and seed, a model is trained without that crop (its classes are
left out of train/ and val/ before cleaning) by today's default recipe at the CPU profile (realdata.py's `sampler`
row, --profile final: 5 head + 15 full epochs at 128 px); train.py fits the unknown-photo record at its end, the
threshold set on the validation photos to keep 95 % answered. --training outlier_exposure trains the same row with
train.py --outlier-dir: photos that are none of the classes, trained towards an even answer
(leafdisease/training/outlier_exposure.py): --outlier-leaves (default chilli5's train/ and val/: another crop's
leaves) and --outlier-scenes field scenes without a leaf that the demo generator draws (other draws than the no-leaf
test photos). No photo of the left-out crop is among them. --training mixed_outlier_exposure: the same with
--outlier-mix cutmix (each outlier photo pasted as a patch into a known one). --training background_class trains
the same row on the same outlier photos as one more class, `background` (as PlantVillage ships one; every fifth outlier photo in val/):
its known photos' diagnosis is the best of the other classes, and its scores are the probability of `background`,
every unknown.py method refitted on the other classes' photos, and knn+background (each of knn and that probability
as the share of validation photos scoring below it, summed). Each run is then shown:

- known:  field13's test photos of the crops it was trained on;
- near:   the left-out crop's test photos (leaves of a crop it never saw, the same kind of photo);
- chilli: ../shared/realdata/chilli5's test photos (another crop's field photos, another camera; with outlier
          exposure a kind of photo it was shown, not one it never saw);
- noleaf: photos with no leaf at all: --noleaf-count field scenes the demo generator draws without a leaf (soil,
          grass, out-of-focus foliage, straw) and crops of the photos matplotlib ships (a portrait, a logo).

For every score method (leafdisease/deployment/unknown.py): AUROC against the known photos, the share still
diagnosed at the stored threshold, and the known photos' coverage and balanced accuracy there (against all of
them); and the method's scoring time per photo beside the forward pass's. Runs resume (runs/ood/); results are
written after each run to OUT/ood.md and ood.csv, and the runs OUT's CSV already holds count as finished on a new
machine too.
"""
import argparse
import json
import sys
import time
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from leafdisease.utils import runtime  # noqa: E402, F401, I001  (first: OMP_WAIT_POLICY before torch loads)

import cv2  # noqa: E402
import matplotlib  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

from benchmarks import realdata  # noqa: E402
from benchmarks.report import (header_lines, markdown_table, run_end_stamp, runs_ended_line,  # noqa: E402
                               start_snapshot)
from benchmarks.runner import mean_and_spread, run_stages  # noqa: E402
from leafdisease.data import cleaning  # noqa: E402
from leafdisease.data import metadata as cleaned_metadata  # noqa: E402
from leafdisease.data.demo_data.photo import render_scene  # noqa: E402
from leafdisease.deployment import inference, unknown  # noqa: E402
from leafdisease.evaluation import metrics  # noqa: E402
from leafdisease.training import checkpoint as checkpoint_format  # noqa: E402
from leafdisease.training import models  # noqa: E402
from leafdisease.utils.atomic_io import write_csv, write_json, write_text  # noqa: E402
from leafdisease.utils.errors import UserError, cli_entry  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "realdata"
CROPS = ("bean", "blackgram", "citrus")
SETS = ("near", "chilli", "noleaf")
TRAININGS = ("plain", "outlier_exposure", "mixed_outlier_exposure", "background_class")
# train.py options beside --outlier-dir (none for the default mix: runs trained before --outlier-mix resume as they are)
OUTLIER_EXPOSURE_OPTIONS = {"outlier_exposure": [], "mixed_outlier_exposure": ["--outlier-mix", "cutmix"]}
WITH_OUTLIERS = {*OUTLIER_EXPOSURE_OPTIONS, "background_class"}
BACKGROUND_CLASS = "background"  # background_class runs: the outlier photos' class
BACKGROUND_METHODS = ("background", "knn+background")
PACKAGE_PHOTOS = ("grace_hopper.jpg", "logo2.png", "Minduka_Present_Blue_Pack.png")
RESULT_FILE = "ood_result.json"
NOLEAF_TEST_SEED, OUTLIER_SCENE_SEED = 1000, 5000  # the test scenes and the exposure's scenes are other draws


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", default=str(SHARED / "field13"), help="field13 root (train/, val/, test/)")
    parser.add_argument("--chilli", default=str(SHARED / "chilli5" / "test"), help="another crop's photos")
    parser.add_argument("--crops", nargs="+", choices=CROPS, default=list(CROPS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--training", nargs="+", choices=TRAININGS, default=["plain"],
                        help="plain: the default recipe; outlier_exposure: the same with --outlier-dir; "
                             "mixed_outlier_exposure: with --outlier-mix cutmix too; background_class: the outlier "
                             "photos as one more class")
    parser.add_argument("--outlier-leaves", nargs="+", default=[str(SHARED / "chilli5" / split)
                                                                for split in ("train", "val")],
                        help="outlier exposure, background class: folders of leaves of crops that are none of "
                             "field13's")
    parser.add_argument("--outlier-scenes", type=int, default=200,
                        help="outlier exposure, background class: leaf-free scenes drawn")
    parser.add_argument("--profile", choices=tuple(realdata.PROFILES), default="final")
    parser.add_argument("--noleaf-count", type=int, default=100)
    parser.add_argument("--model", default=models.DEFAULT_MODEL)
    parser.add_argument("--no-pretrained", action="store_true", help="random initialisation (tests)")
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--work", default="benchmarks/runs/ood", help="cleaned data, runs, no-leaf photos")
    parser.add_argument("--out", default="benchmarks/reports")
    args = parser.parse_args(argv)
    leaves = args.outlier_leaves if set(args.training) & WITH_OUTLIERS else []
    for folder in (Path(args.source) / "train", Path(args.chilli), *map(Path, leaves)):
        if not folder.is_dir():
            raise UserError(f"{folder}: not found")
    return args


# ----------------------------------------------------------------------------------------------------
# Photos
# ----------------------------------------------------------------------------------------------------
def crop_of(class_name):
    return class_name.split("_")[0]


def write_source_without(source, crop, target, background=None):
    """An ImageFolder train/ and val/ of `source` without `crop`'s classes (links to the photos), and with a
    BACKGROUND_CLASS of the photos under `background` when given (every fifth in val/)."""
    if (target / "done").exists():
        return target
    for split in ("train", "val"):
        for class_dir in sorted((Path(source) / split).iterdir()):
            if class_dir.is_dir() and crop_of(class_dir.name) != crop:
                (target / split / class_dir.name).mkdir(parents=True, exist_ok=True)
                for photo in class_dir.iterdir():
                    link = target / split / class_dir.name / photo.name
                    if not link.exists():
                        link.symlink_to(photo.resolve())
    if background is not None:
        photos = sorted(path for path in Path(background).rglob("*") if path.is_file())
        for number, photo in enumerate(photos):
            link = (target / ("val" if number % 5 == 4 else "train") / BACKGROUND_CLASS
                    / "_".join(photo.relative_to(background).parts))
            link.parent.mkdir(parents=True, exist_ok=True)
            if not link.exists():
                link.symlink_to(photo.resolve())
    (target / "done").write_text("")
    return target


def write_scenes(target, count, first_seed, size=256):
    """`count` leaf-free field scenes from the demo generator (seeds first_seed, first_seed + 1, ...)."""
    target.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        scene = render_scene(np.random.default_rng(first_seed + index), size)
        cv2.imwrite(str(target / f"scene_{index:03d}.png"), cv2.cvtColor(scene, cv2.COLOR_RGB2BGR))


def write_noleaf_photos(target, count, size=256):
    """`count` leaf-free field scenes from the demo generator, and 4 crops of each photo matplotlib ships."""
    if (target / "done").exists():
        return sorted(path for path in target.iterdir() if path.suffix == ".png")
    write_scenes(target, count, NOLEAF_TEST_SEED, size)
    sample_data = Path(matplotlib.get_data_path()) / "sample_data"
    rng = np.random.default_rng(0)
    for name in PACKAGE_PHOTOS:
        image = cv2.imread(str(sample_data / name), cv2.IMREAD_COLOR)
        if image is None:
            continue
        height, width = image.shape[:2]
        side = min(height, width) // 2
        for index in range(4):
            top, left = rng.integers(0, height - side + 1), rng.integers(0, width - side + 1)
            cv2.imwrite(str(target / f"{Path(name).stem}_{index}.png"), image[top:top + side, left:left + side])
    (target / "done").write_text("")
    return sorted(path for path in target.iterdir() if path.suffix == ".png")


def write_outlier_photos(target, leaf_folders, scene_count):
    """The outlier-exposure folder TARGET/photos: links to the photos under `leaf_folders` and `scene_count`
    leaf-free scenes."""
    photos = target / "photos"
    if (target / "done").exists():
        return photos
    write_scenes(photos / "scenes", scene_count, OUTLIER_SCENE_SEED)
    for number, folder in enumerate(leaf_folders):
        for photo in sorted(path for path in Path(folder).rglob("*") if path.is_file()):
            link = photos / f"leaves{number}" / photo.relative_to(folder)
            link.parent.mkdir(parents=True, exist_ok=True)
            if not link.exists():
                link.symlink_to(photo.resolve())
    (target / "done").write_text("")
    return photos


def test_photos(source, crops_kept, crop_left_out):
    """(known paths, their class names; the left-out crop's test paths)."""
    known, names, near = [], [], []
    for class_dir in sorted((Path(source) / "test").iterdir()):
        photos = sorted(str(path) for path in class_dir.iterdir())
        if crop_of(class_dir.name) == crop_left_out:
            near += photos
        elif crop_of(class_dir.name) in crops_kept:
            known += photos
            names += [class_dir.name] * len(photos)
    return known, names, near


# ----------------------------------------------------------------------------------------------------
# Runs
# ----------------------------------------------------------------------------------------------------
def training_dir(args, crop, training):
    """Where a training's runs of the data without `crop` live (plain: the crop's folder itself, as first written)."""
    return Path(args.work) / crop / ("" if training == "plain" else training)


def cleaned_dir(args, crop, training):
    """The cleaned data a training's runs read: background_class's has one more class."""
    return training_dir(args, crop, training) / "cleaned" if training == "background_class" else (
        Path(args.work) / crop / "cleaned")


def run_args(args, crop, data_dir, training):
    """What realdata.stage_commands needs for the `sampler` row on the data without `crop`."""
    out = training_dir(args, crop, training)
    return SimpleNamespace(out=str(out), profile=args.profile, suffix="", data_dir=str(data_dir),
                           model=args.model, batch_size=32, no_pretrained=args.no_pretrained,
                           workers=args.workers, select_metric=metrics.DEFAULT_TARGET_METRIC)


def stage_commands(args, crop, seed, training):
    """realdata.stage_commands for the run, each stage with --outlier-dir and --outlier-mix under outlier exposure."""
    stages = realdata.stage_commands(run_args(args, crop, cleaned_dir(args, crop, training), training), "sampler", seed)
    if training not in OUTLIER_EXPOSURE_OPTIONS:
        return stages
    return [(folder, command + ["--outlier-dir", str(Path(args.work) / "outliers" / "photos"),
                                *OUTLIER_EXPOSURE_OPTIONS[training]]) for folder, command in stages]


def scored(model, checkpoint, paths, desc):
    """(logits, features, seconds of the forward passes) of readable `paths`."""
    started = time.perf_counter()
    scores, indices, rejected, features = inference.predict_scores_and_features(
        model, paths, checkpoint, torch.device("cpu"), batch_size=64, desc=desc)
    if rejected:
        raise UserError(f"{rejected[0][0]}: {rejected[0][1]}")
    return scores, features, time.perf_counter() - started


def validation_share(val_scores, scores):
    """Each score as the share of validation photos scoring below it: two scores on one scale, without a weight."""
    return np.searchsorted(np.sort(val_scores), scores) / len(val_scores)


def scores_by_set(score_of, outputs):
    """({set name: score_of(logits, features)} for every set of `outputs`, seconds scoring its known photos)."""
    started = time.perf_counter()
    known = score_of(*outputs["known"])
    seconds = time.perf_counter() - started
    return {"known": known, **{name: score_of(*pair) for name, pair in outputs.items() if name != "known"}}, seconds


def background_class_scores(args, crop, checkpoint, model, outputs):
    """({method: {set name: scores}}, {method: threshold}, {method: seconds scoring the known photos}) of a
    background_class run: unknown.py's methods refitted on the other classes' training photos (the record
    train.py fitted counts `background` as a known class), the probability of `background`, and both together."""
    background = checkpoint["class_names"].index(BACKGROUND_CLASS)
    columns = [index for index in range(len(checkpoint["class_names"])) if index != background]
    metadata = cleaned_metadata.load_metadata(cleaned_dir(args, crop, "background_class"))
    index_of = cleaned_metadata.label_to_index(checkpoint["class_ids"])
    fitted = {}
    for split, table in (("train", metadata.train), ("val", metadata.val)):
        logits, features = scored(model, checkpoint, list(table["path"]), split)[:2]
        targets = table["label"].map(index_of).to_numpy()
        fitted[split] = (logits, features, targets != background, np.searchsorted(columns, targets))
    (_, train_features, train_known, train_targets), (val_logits, val_features, val_known, _) = fitted.values()
    record = unknown.fit(train_features[train_known], train_targets[train_known], len(columns),
                         val_features[val_known], val_logits[val_known][:, columns])
    outputs = dict(outputs, val=(val_logits[val_known], val_features[val_known]))
    scores, seconds = {}, {}
    for method in unknown.METHODS:
        scores[method], seconds[method] = scores_by_set(
            lambda logits, features: unknown.score(record, features, logits[:, columns], method).numpy(), outputs)
    scores["background"], seconds["background"] = scores_by_set(
        lambda logits, features: torch.softmax(logits.double(), dim=1)[:, background].numpy(), outputs)
    scores["knn+background"] = {name: sum(validation_share(scores[method]["val"], scores[method][name])
                                          for method in ("knn", "background")) for name in outputs}
    seconds["knn+background"] = seconds["knn"] + seconds["background"]
    thresholds = {method: unknown.threshold_at(by_set["val"], unknown.DEFAULT_KEEP)
                  for method, by_set in scores.items()}
    return scores, thresholds, seconds


def record_scores(checkpoint, outputs):
    """The same as background_class_scores for a run whose every class is known: train.py's record."""
    record = checkpoint["unknown"]
    scores, seconds = {}, {}
    for method in unknown.METHODS:
        scores[method], seconds[method] = scores_by_set(
            lambda logits, features: unknown.score(record, features, logits, method).numpy(), outputs)
    return scores, {method: unknown.threshold(record, method=method) for method in unknown.METHODS}, seconds


def evaluate_run(args, crop, seed, training, checkpoint_path, photos):
    checkpoint = checkpoint_format.load(checkpoint_path, need="weights")
    model = inference.build_model(checkpoint, checkpoint_path)
    class_names = checkpoint["class_names"]
    kept = sorted({crop_of(name) for name in class_names if name != BACKGROUND_CLASS})
    known_paths, known_names, near = test_photos(args.source, kept, crop)
    sets = {"near": near, "chilli": photos["chilli"], "noleaf": photos["noleaf"]}
    logits, features, forward_s = scored(model, checkpoint, known_paths, "known")
    outputs = {"known": (logits, features), **{name: scored(model, checkpoint, paths, name)[:2]
                                                for name, paths in sets.items()}}
    adjusted = inference.adjust_scores(logits, checkpoint["train_counts"], checkpoint.get("logit_adjust_tau") or 0)
    diagnosed = [index for index, name in enumerate(class_names) if name != BACKGROUND_CLASS]
    predicted = adjusted[:, diagnosed].argmax(dim=1).numpy()  # a known photo's diagnosis: never `background`
    index_of = {class_names[column]: index for index, column in enumerate(diagnosed)}
    targets = np.array([index_of[name] for name in known_names])
    every_class = metrics.per_class_metrics(metrics.confusion_matrix(targets, predicted, len(index_of)))
    scores, thresholds, seconds = (background_class_scores(args, crop, checkpoint, model, outputs)
                                   if training == "background_class" else record_scores(checkpoint, outputs))
    rows = []
    for method, by_set in scores.items():
        row = {"crop_left_out": crop, "seed": seed, "training": training, "method": method,
               "known_photos": len(known_paths),
               "known_balanced_acc_all": float(np.nanmean(every_class["recall"])),
               "forward_ms_per_photo": 1000 * forward_s / len(known_paths),
               "score_ms_per_photo": 1000 * seconds[method] / len(known_paths)}
        for name in sets:
            figures = unknown.detection_metrics(by_set["known"], by_set[name], thresholds[method], targets, predicted)
            row.update({f"{name}_photos": len(sets[name]), f"{name}_auroc": figures["auroc"],
                        f"{name}_diagnosed": figures["diagnosed_at_stored"],
                        f"{name}_fpr95": figures["fpr_at_95_tpr"]})
            row.update({"known_coverage": figures["known_coverage_at_stored"],
                        "known_balanced_acc_answered": figures.get("known_balanced_accuracy_at_stored")})
        rows.append(row)
    return rows


def summary_table(runs):
    rows = []
    for training, method in ((training, method) for training in TRAININGS
                             for method in unknown.METHODS + BACKGROUND_METHODS):
        group = runs[(runs["training"] == training) & (runs["method"] == method)]
        if group.empty:
            continue

        def cell(column, scale=100, digits=1):
            mean, spread = mean_and_spread(scale * group[column].to_numpy(dtype=float))
            return f"{mean:.{digits}f}" + ("" if np.isnan(spread) else f" ± {spread:.{digits}f}")
        rows.append({"training": training.replace("_", " "),
                     "method": method + (" (default)" if method == unknown.DEFAULT_METHOD else ""),
                     "runs": len(group), "near AUROC": cell("near_auroc"), "near diagnosed %": cell("near_diagnosed"),
                     "chilli AUROC": cell("chilli_auroc"), "chilli diagnosed %": cell("chilli_diagnosed"),
                     "no-leaf AUROC": cell("noleaf_auroc"), "no-leaf diagnosed %": cell("noleaf_diagnosed"),
                     "known answered %": cell("known_coverage"),
                     "known bal. acc. answered / all": f"{cell('known_balanced_acc_answered')} / "
                                                       f"{cell('known_balanced_acc_all')}",
                     "score ms/photo (forward)": f"{group['score_ms_per_photo'].mean():.2f} "
                                                 f"({group['forward_ms_per_photo'].mean():.1f})"})
    return pd.DataFrame(rows)


def write_reports(args, started, argv):
    results = sorted(Path(args.work).rglob(RESULT_FILE))
    runs = pd.DataFrame([{"training": "plain", **row} for path in results for row in json.loads(path.read_text())])
    if runs.empty:
        return
    out = Path(args.out)
    write_csv(out / "ood.csv", runs)
    lines = header_lines("Unknown photos on real photos: leave-one-crop-out on field13", started,
                         "benchmarks/ood.py", argv)
    lines += ["- Each run: field13 without one crop, realdata.py's `sampler` row at the `"
              f"{args.profile}` profile; the unknown-photo record fitted by train.py at the end (threshold set on the "
              f"validation photos to keep {unknown.DEFAULT_KEEP:.0%} answered, unknown.threshold_at). Known: field13 "
              "test photos of the crops trained on; near: the left-out crop's test photos; chilli: chilli5's test photos; no-leaf: demo scenes "
              f"without a leaf ({args.noleaf_count}) and crops of matplotlib's sample photos.",
              "- Outlier exposure: the same runs with train.py --outlier-dir: "
              f"{', '.join(args.outlier_leaves)} (another crop's leaves) and {args.outlier_scenes} leaf-free scenes "
              "of the demo generator (other draws than the no-leaf test photos); its chilli column is other photos "
              "of a kind it was shown.",
              "- Mixed outlier exposure: the same with train.py --outlier-mix cutmix (each outlier photo pasted as a "
              "patch into a known photo, trained towards its class and the even answer by area).",
              f"- Background class: the same runs with those outlier photos as one more class, `{BACKGROUND_CLASS}` "
              "(every fifth in val/); known photos diagnosed among the other classes; `background`: its "
              "probability; unknown.py's methods refitted on the other classes' photos; knn+background: both as "
              "shares of validation photos below, summed.",
              "- Mean ± standard deviation over crops left out and seeds; `diagnosed %`: unknown photos still given "
              "a class at the stored threshold (lower is better); `known answered %`: known test photos kept.",
              "- Runs: " + ", ".join(sorted({f"{training.replace('_', ' ')}: {crop} seed {seed}" for training, crop, seed
                                             in zip(runs.training, runs.crop_left_out, runs.seed)})) + ".",
              runs_ended_line(runs, "training"), ""]
    lines += markdown_table(summary_table(runs))
    write_text(out / "ood.md", "\n".join(lines) + "\n")


def result_path(args, crop, seed, training):
    return stage_commands(args, crop, seed, training)[-1][0] / RESULT_FILE


def restore_finished_runs(args):
    """The runs OUT/ood.csv already holds (a report committed by an earlier session) count as finished: their rows
    are written back as result files under WORK, so a new machine adds seeds instead of training these again."""
    report = Path(args.out) / "ood.csv"
    if not report.is_file():
        return
    rows = pd.read_csv(report)
    if "training" not in rows:
        rows["training"] = "plain"  # reports written before outlier exposure
    for (crop, seed, training), group in rows.groupby(["crop_left_out", "seed", "training"]):
        path = result_path(args, crop, int(seed), training)
        if not path.exists():
            records = [{key: (None if pd.isna(value) else value) for key, value in row.items()}
                       for row in group.to_dict("records")]
            write_json(path, records)


@cli_entry
def main(argv=None):
    args = parse_args(argv)
    argv = sys.argv[1:] if argv is None else argv
    started = start_snapshot()
    work = Path(args.work)
    photos = {"chilli": sorted(str(path) for path in Path(args.chilli).rglob("*") if path.is_file()),
              "noleaf": [str(path) for path in write_noleaf_photos(work / "noleaf", args.noleaf_count)]}
    if set(args.training) & WITH_OUTLIERS:
        write_outlier_photos(work / "outliers", args.outlier_leaves, args.outlier_scenes)
    restore_finished_runs(args)
    for seed, training, crop in ((s, t, c) for s in args.seeds for t in args.training for c in args.crops):
        data_dir = cleaned_dir(args, crop, training)
        background = work / "outliers" / "photos" if training == "background_class" else None
        source = write_source_without(args.source, crop,
                                      (training_dir(args, crop, training) if background else work / crop) / "source",
                                      background)
        if not (data_dir / "metadata" / "classes.csv").is_file():
            cleaning.clean_dataset(source, data_dir, progress=False)
        if result_path(args, crop, seed, training).exists():
            continue
        print(f"== {training}, without {crop}, seed {seed}", flush=True)
        stages = stage_commands(args, crop, seed, training)
        record = run_stages(stages)
        rows = evaluate_run(args, crop, seed, training, stages[-1][0] / "best.pth", photos)
        stamp = run_end_stamp()
        write_json(result_path(args, crop, seed, training),
                   [dict(row, train_wall_s=record["wall_seconds"], **stamp) for row in rows])
        write_reports(args, started, argv)
    write_reports(args, started, argv)
    if (Path(args.out) / "ood.md").exists():
        print((Path(args.out) / "ood.md").read_text())


if __name__ == "__main__":
    main()
