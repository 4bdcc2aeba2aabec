"""Train one stage of a long-tailed leaf-disease classifier on a cleaned dataset.

  python train.py --config recipes/fixed_stage1.yaml --output checkpoints/task1_stage1
  python train.py --config recipes/fixed_stage2.yaml --init-from checkpoints/task1_stage1/best.pth \
      --output checkpoints/task1_stage2
  python train.py --config checkpoints/task1_stage2/config.yaml --output checkpoints/again   # re-run a run

A recipe (recipes/*.yaml) sets defaults; flags given on the command line override it.

Runs the same under `torchrun --nproc_per_node=N train.py ...`. train_fixed.sh chains the two stages.
"""
from leafdisease.utils import runtime  # noqa: I001  (first: it sets OMP_WAIT_POLICY before anything loads torch)

import argparse
import copy
import hashlib
import math
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import albumentations
import numpy as np
import pandas as pd
import timm
import torch
import torch.distributed as dist
import yaml
from timm.data import resolve_data_config
from timm.utils import ModelEmaV3

import dataset
from leafdisease.data import hierarchy, longtail
from leafdisease.deployment import inference, unknown
from leafdisease.evaluation import metrics, plots
from leafdisease.training import checkpoint, cluster, engine, losses, models, outlier_exposure, recipe, run_log
from leafdisease.utils import cli
from leafdisease.utils.atomic_io import remove_stale_temporaries, write_csv, write_text
from leafdisease.utils.errors import UserError, cli_entry

SELECT_METRICS = metrics.METRIC_NAMES + ("loss",)
# Without --config (or a value in it), a stage's LR and warmup are those of its recipe (recipe.STAGE_RECIPES),
# and the stage, epochs, resolution and augmentation those of recipe.DEFAULT.
RUN_FILES = ("last.pth", "best.pth", "history.csv")  # a folder holding one of these holds a run
OPTION_RULES = {
    "min_samples": cli.POSITIVE_INT, "batch_size": cli.POSITIVE_INT, "workers": cli.NON_NEGATIVE_INT,
    "img_size": models.IMG_SIZE_RANGE, "drop_rate": cli.FRACTION,
    "epochs": cli.POSITIVE_INT, "lr": cli.POSITIVE, "backbone_lr_scale": cli.NON_NEGATIVE,
    "weight_decay": cli.NON_NEGATIVE, "warmup_epochs": cli.NON_NEGATIVE, "warmup_lr": cli.NON_NEGATIVE,
    "min_lr": cli.NON_NEGATIVE, "clip_grad": cli.NON_NEGATIVE, "ema_decay": cli.FRACTION,
    "effective_beta": cli.FRACTION, "focal_gamma": cli.NON_NEGATIVE, "la_tau": cli.NON_NEGATIVE,
    "label_smoothing": cli.FRACTION, "hierarchy_loss": cli.NON_NEGATIVE,
    "rotate_limit": cli.Range(0, 180, integer=True),
    "targeted_aug_below": cli.NON_NEGATIVE_INT, "many_threshold": cli.POSITIVE_INT,
    "few_threshold": cli.NON_NEGATIVE_INT, "save_every_steps": cli.NON_NEGATIVE_INT, "seed": cli.SEED,
    "unknown_keep": cli.SHARE, "outlier_weight": cli.NON_NEGATIVE,
}


def parse_args(argv=None):
    parser = build_parser()
    chosen, _ = parser.parse_known_args(argv)
    if chosen.profile and not chosen.config:
        parser.error("--profile goes with --config")
    if chosen.config:
        recipe.apply_to_parser(parser, chosen.config, chosen.profile)
    args = parser.parse_args(argv)
    stage_recipe = recipe.settings(recipe.path_of(recipe.STAGE_RECIPES[args.stage]))
    for key in ("lr", "warmup_epochs"):
        if getattr(args, key) is None:
            setattr(args, key, stage_recipe[key])
    check_option_combinations(parser, args)
    if args.warmup_epochs >= args.epochs:
        args.warmup_epochs = max(0.0, args.epochs - 1.0)
    if args.log == "tensorboard":
        run_log.require_tensorboard()
    if args.class_weights == "auto":
        args.class_weights = "none" if args.loss == "logit-adjusted" else "sqrt"
    return args


def build_parser():
    recipe_default = recipe.settings(recipe.path_of(recipe.DEFAULT))
    from_recipe = f"(default: recipes/{recipe.DEFAULT}.yaml's)"
    parser = cli.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=None,
                        help="a recipe (recipes/*.yaml) or a finished run's config.yaml; flags here override it")
    parser.add_argument("--profile", default=None, help="a profile applied on top of --config (recipes/demo.yaml)")
    add_data_and_model_options(parser, recipe_default, from_recipe)
    add_optimisation_options(parser, recipe_default, from_recipe)
    add_evaluation_and_runtime_options(parser)
    return parser


def add_data_and_model_options(parser, recipe_default, from_recipe):
    data = parser.add_argument_group("data")
    data.add_argument("--data-dir", default="data/cleaned", help="cleaned dataset written by analyze_data.py")
    data.add_argument("--min-samples", type=int, default=1,
                      help="leave out classes with fewer training images (the seed's 'remove classes 44, 45')")
    data.add_argument("--batch-size", type=int, default=32)
    data.add_argument("--workers", type=int, default=None, help="data-loading processes per GPU/process (default: available cores / processes - 1)")
    data.add_argument("--outlier-dir", nargs="+", default=None, metavar="DIR",
                      help="photos of none of the classes (other crops' leaves, soil, hands, sky): trained towards "
                           "an even answer beside every batch (outlier exposure), so the unknown-photo score learns "
                           "what is not a leaf this model knows")
    data.add_argument("--outlier-weight", type=float, default=outlier_exposure.WEIGHT,
                      help="--outlier-dir's loss weight")
    data.add_argument("--outlier-mix", choices=outlier_exposure.MIXES, default=outlier_exposure.DEFAULT_MIX,
                      help="cutmix: --outlier-dir's photos pasted as patches into the batch's photos, trained "
                           "towards their class and the even answer by area (mixture outlier exposure)")

    model = parser.add_argument_group("model")
    model.add_argument("--model", default=models.DEFAULT_MODEL, help="any timm model name")
    model.add_argument("--pretrained-file", default=None, help="local weights file for --model")
    model.add_argument("--no-pretrained", action="store_true", help="random initialisation")
    model.add_argument("--init-from", default=None, help="start from another run's checkpoint (stage 2 from stage 1)")
    model.add_argument("--img-size", type=int, default=recipe_default["img_size"], help=from_recipe)
    model.add_argument("--photo-reading", choices=dataset.PHOTO_READINGS, default=dataset.DEFAULT_PHOTO_READING,
                       help="working: large photos are read reduced to the size the crops need (fast); full: "
                            "decoded in full. Stored with the model: evaluation and prediction read photos alike")
    model.add_argument("--drop-rate", type=float, default=models.DEFAULT_DROP_RATE)


def add_optimisation_options(parser, recipe_default, from_recipe):
    stage = parser.add_argument_group("stage and optimisation")
    stage.add_argument("--stage", choices=tuple(recipe.STAGE_RECIPES), default=recipe_default["stage"],
                       help=f"head: frozen backbone, only the classifier trains; full: everything trains {from_recipe}")
    stage.add_argument("--epochs", type=int, default=recipe_default["epochs"], help=from_recipe)
    stage.add_argument("--lr", type=float, default=None, help="peak learning rate (default: the stage's recipe, recipes/fixed_stage*.yaml)")
    stage.add_argument("--backbone-lr-scale", type=float, default=1.0,
                       help="full stage: backbone LR = lr x this (fastai-style discriminative LR, e.g. 0.1)")
    stage.add_argument("--weight-decay", type=float, default=engine.WEIGHT_DECAY)
    stage.add_argument("--warmup-epochs", type=float, default=None, help="linear warmup (default: the stage's recipe)")
    stage.add_argument("--warmup-lr", type=float, default=engine.WARMUP_LR)
    stage.add_argument("--min-lr", type=float, default=engine.MIN_LR)
    stage.add_argument("--clip-grad", type=float, default=engine.CLIP_GRAD, help="max gradient norm (0 disables)")
    stage.add_argument("--ema-decay", type=float, default=0.0, help="EMA of weights (e.g. 0.999); 0 disables")

    imbalance = parser.add_argument_group("class imbalance")
    imbalance.add_argument("--class-weights", default="auto",
                           help="inverse | sqrt | effective | none | a CSV with id,weight "
                                "(auto: sqrt, or none with --loss logit-adjusted)")
    imbalance.add_argument("--effective-beta", type=float, default=0.999)
    imbalance.add_argument("--loss", choices=losses.LOSSES, default="ce")
    imbalance.add_argument("--focal-gamma", type=float, default=losses.FOCAL_GAMMA)
    imbalance.add_argument("--la-tau", type=float, default=losses.LA_TAU, help="logit-adjusted loss temperature")
    imbalance.add_argument("--label-smoothing", type=float, default=engine.LABEL_SMOOTHING)
    imbalance.add_argument("--hierarchy-loss", type=float, default=0.0, metavar="W",
                           help="add W x the cross-entropy at the crop and disease levels of the label hierarchy "
                                "(metadata/hierarchy.csv), computed from the class logits; 0 = off")
    imbalance.add_argument("--sampler", choices=longtail.WEIGHT_SCHEMES[:2] + ("none",), default="none",
                           help="class-aware sampling: sqrt or inverse oversample tail classes")

    augmentation = parser.add_argument_group("augmentation")
    augmentation.add_argument("--augment", choices=dataset.AUGMENTATIONS, default=recipe_default["augment"],
                              help=from_recipe)
    augmentation.add_argument("--rotate-limit", type=int, default=dataset.STRONG_AUGMENTATION["rotate_limit"])
    augmentation.add_argument("--targeted-aug-below", type=int, default=0,
                              help="classes with fewer training images get the 'heavy' pipeline (0 disables)")


def add_evaluation_and_runtime_options(parser):
    evaluation = parser.add_argument_group("evaluation and checkpoints")
    evaluation.add_argument("--select-metric", choices=SELECT_METRICS, default=metrics.DEFAULT_TARGET_METRIC,
                            help="the metric the run is judged on: chooses best.pth, and predict.py --calibrate-tau "
                                 "tunes tau for it. balanced_acc when every class matters equally; acc for a test "
                                 "set as long-tailed as training (AI Challenger's leaderboard); prior_acc: recall "
                                 "weighted by the training shares. Plain accuracy is what hid the seed's collapse"),
    evaluation.add_argument("--unknown-keep", type=float, default=unknown.DEFAULT_KEEP,
                            help="the share of new photos of the model's classes the unknown-photo threshold keeps "
                                 "answered (set on the validation photos); the rest of the score range is 'not a leaf "
                                 "this model knows' (predict.py can change it)")
    evaluation.add_argument("--many-threshold", type=int, default=longtail.MANY_SHOT_THRESHOLD)
    evaluation.add_argument("--few-threshold", type=int, default=longtail.FEW_SHOT_THRESHOLD)
    evaluation.add_argument("--output", default="checkpoints/run")
    evaluation.add_argument("--resume", default=None, help="a last.pth, or 'auto' for OUTPUT/last.pth if present")
    evaluation.add_argument("--save-every-steps", type=int, default=0, help="also write last.pth every N steps")

    runtime_options = parser.add_argument_group("runtime")
    runtime_options.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    runtime_options.add_argument("--amp", choices=runtime.AMP_CHOICES, default="auto",
                         help="mixed precision on CUDA (auto: bf16 where supported, else fp16)")
    runtime_options.add_argument("--channels-last", choices=runtime.CHANNELS_LAST_CHOICES, default="auto",
                                 help="NHWC memory format (auto: on for CUDA and the CPU, where it measured faster)")
    runtime_options.add_argument("--sync-bn", action="store_true", help="SyncBatchNorm across GPUs (full stage)")
    runtime_options.add_argument("--compile", action="store_true",
                         help="torch.compile the model (full stage): slower start, faster steps where it pays off")
    runtime_options.add_argument("--seed", type=int, default=0)
    runtime_options.add_argument("--log", choices=run_log.LOGGERS, default="none",
                         help="tensorboard: also write TensorBoard event files into OUTPUT/tensorboard/ (every "
                              "history column, the curves and the confusion matrix); train.log is always written")


def check_option_combinations(parser, args):
    """Ranges (OPTION_RULES) and what options mean together; files that must exist. Nothing is written yet."""
    cli.check_options(parser, args, OPTION_RULES)
    if args.min_lr > args.lr:
        raise UserError(f"--min-lr {args.min_lr:g} is above --lr {args.lr:g}; the schedule would rise")
    if args.few_threshold > args.many_threshold:
        raise UserError(f"--few-threshold {args.few_threshold} is above --many-threshold {args.many_threshold}")
    if args.pretrained_file and args.no_pretrained:
        raise UserError("--pretrained-file and --no-pretrained exclude each other")
    cli.check_input_file("--pretrained-file", args.pretrained_file)
    if args.class_weights not in ("auto", *longtail.WEIGHT_SCHEMES):
        if not Path(args.class_weights).is_file():
            raise UserError(f"--class-weights {args.class_weights}: neither a scheme "
                            f"(auto, {', '.join(longtail.WEIGHT_SCHEMES)}) nor an existing CSV file")
    cli.check_device("--device", args.device)


# ----------------------------------------------------------------------------------------------------
# Setup
# ----------------------------------------------------------------------------------------------------
def log(rank, message):
    if rank == 0:
        print(message, flush=True)


def dataset_fingerprint(metadata):
    """Identifies the training set, so --resume refuses a checkpoint from different data."""
    digest = hashlib.sha1()
    for path, label in sorted(zip(metadata.train["path"], metadata.train["label"])):
        digest.update(f"{Path(path).name}:{label}\n".encode())
    return digest.hexdigest()


def resolve_class_weights(args, class_ids, train_counts, excluded):
    """A scheme's weights, or a CSV's (parse_args checked it is one or the other); a CSV may still list the
    classes --min-samples left out."""
    if args.class_weights in longtail.WEIGHT_SCHEMES:
        return longtail.compute_class_weights(train_counts, args.class_weights, beta=args.effective_beta)
    return longtail.load_weights_csv(args.class_weights, class_ids, ignored_ids=[int(i) for i in excluded["id"]])


def build_transforms(args, data_config, train_counts):
    """Training transform, per-class overrides for targeted augmentation, and the eval transform."""
    train_transform = dataset.build_transform(args.augment, args.img_size, rotate_limit=args.rotate_limit)
    targeted = {}
    if args.targeted_aug_below > 0:
        heavy = dataset.build_transform("heavy", args.img_size)
        targeted = {index: heavy for index, count in enumerate(train_counts) if count < args.targeted_aug_below}
    eval_transform = dataset.build_transform("eval", args.img_size, crop_pct=data_config["crop_pct"])
    return train_transform, targeted, eval_transform



def library_versions():
    return {"python": platform.python_version(), "torch": str(torch.__version__), "timm": str(timm.__version__),
            "albumentations": str(albumentations.__version__), "numpy": str(np.__version__)}


# ----------------------------------------------------------------------------------------------------
# Checkpoints and reports
# ----------------------------------------------------------------------------------------------------
def checkpoint_header(context, state):
    """The run's self-description that every checkpoint it writes carries (checkpoint.header)."""
    args = context.args
    return checkpoint.header(
        model_name=args.model, class_ids=context.class_ids, class_names=context.class_names,
        train_counts=context.train_counts, class_weights=context.class_weights, img_size=args.img_size,
        data_config=context.data_config, stage=args.stage, args=vars(args), history=state.history,
        best_metric=state.best_metric, best_epoch=state.best_epoch, select_metric=args.select_metric,
        dataset_fingerprint=context.dataset_fingerprint, parent=state.parent, versions=library_versions(),
        hierarchy=context.hierarchy.to_record() if context.hierarchy is not None else None,
        photo_reading=args.photo_reading)


def save_last(context, state, epoch_in_progress=None, progress=None):
    """last.pth (rank 0): everything --resume needs. Mid-epoch saves record how far the epoch got."""
    if context.rank != 0:
        return
    payload = checkpoint_header(context, state)
    payload.update(state.state_dict())
    payload.update({"epoch_in_progress": epoch_in_progress, "epoch_progress": dict(progress) if progress else None})
    checkpoint.save(context.output / "last.pth", payload)


def keep_best_epoch(state, evaluated_model, per_class, confusion):
    """Hold the best epoch's weights and per-class results in memory, for best.pth and last.pth."""
    state.best = {
        "state_dict": {key: value.detach().cpu().clone() for key, value in evaluated_model.state_dict().items()},
        "epoch": len(state.history),
        "per_class": {key: [float(value) for value in values] for key, values in per_class.items()},
        "confusion_matrix": confusion.tolist(),
    }


def write_best_epoch_reports(context, state, per_class, confusion):
    """per_class_metrics.csv and confusion_matrix.png of the best epoch."""
    args = context.args
    groups = longtail.shot_groups(context.train_counts, args.many_threshold, args.few_threshold)
    table = pd.DataFrame({"id": context.class_ids, "name": context.class_names,
                          "train_count": context.train_counts, "group": groups, **per_class})
    write_csv(context.output / "per_class_metrics.csv", table)
    labels = [f"{class_id} {plots.abbreviate(name, 32)}" for class_id, name in zip(context.class_ids, context.class_names)]
    plots.plot_confusion_matrix(confusion, labels, context.output / "confusion_matrix.png",
                                title=f"Confusion matrix, best epoch {state.best_epoch} (rows normalised to recall)",
                                hierarchy=context.hierarchy)


def save_best(context, state):
    """best.pth: the best epoch's weights with the run's whole history so far, rewritten every epoch so
    comparing checkpoints shows complete curves."""
    payload = checkpoint_header(context, state)
    payload.update(state.best)
    checkpoint.save(context.output / "best.pth", payload)


def is_better(value, best, metric_name):
    if value is None or math.isnan(value):
        return best is None
    if best is None or math.isnan(best):
        return True
    return value < best if metric_name == "loss" else value > best


def write_history_and_curves(context, state):
    history = pd.DataFrame(state.history)
    write_csv(context.output / "history.csv", history)
    plots.plot_training_curves(history, context.output / "training_curves.png",
                               title=f"{context.output.name}: {context.args.model}, stage {context.args.stage}")


# ----------------------------------------------------------------------------------------------------
# main
# ----------------------------------------------------------------------------------------------------
def prepare_data(args, rank):
    metadata = dataset.load_metadata(args.data_dir)
    metadata, excluded = dataset.select_classes(metadata, args.min_samples)
    if len(excluded):
        log(rank, f"--min-samples {args.min_samples}: leaving out {len(excluded)} classes "
                  f"({', '.join(map(str, excluded['id']))}); listed in excluded_classes.csv")
    class_ids = [int(class_id) for class_id in metadata.classes["id"]]
    index_of = dataset.label_to_index(class_ids)
    train_targets = metadata.train["label"].map(index_of).to_numpy()
    val_targets = metadata.val["label"].map(index_of).to_numpy()
    train_counts = np.bincount(train_targets, minlength=len(class_ids))
    if metadata.val.empty:
        raise UserError(f"{Path(args.data_dir) / 'metadata' / 'val.csv'}: no validation images")
    if args.hierarchy_loss > 0 and (metadata.hierarchy is None or not metadata.hierarchy.training_levels()):
        raise UserError(f"--hierarchy-loss {args.hierarchy_loss:g}: {args.data_dir} has no label hierarchy whose "
                        f"crops or diseases group its classes (metadata/{hierarchy.HIERARCHY_FILE}); write "
                        f"{hierarchy.HIERARCHY_FILE} (class,crop,disease[,severity]) beside the source and clean it "
                        f"again, or leave the option out")
    return metadata, excluded, class_ids, train_targets, val_targets, train_counts


def resume_and_rewrite_best(context, state, saved, resume_path):
    """Continue a run from its last.pth (_run has checked it is this run's: same data, classes, model and stage),
    and rewrite best.pth from the copy last.pth holds, so a kill between their two writes leaves no disagreement.
    Returns the interrupted epoch's progress, if last.pth was saved mid-epoch."""
    try:
        state.load_state_dict(saved)
    except (RuntimeError, ValueError, KeyError) as error:  # weights or optimiser groups that do not fit this run
        raise UserError(f"{resume_path}: cannot continue from it ({str(error).splitlines()[0]}); use another "
                        f"--output or delete it to start over") from None
    if state.best is not None and context.rank == 0:
        save_best(context, state)
    return saved.get("epoch_progress") if saved.get("epoch_in_progress") else None


def init_from(model, path, class_ids, model_name=None):
    """Load another run's weights (stage 2 from stage 1); returns its record for this run's checkpoints."""
    saved = checkpoint.load(path, need="init")
    checkpoint.check_compatible(saved, path, class_ids=class_ids, hint="use the same --data-dir and --min-samples")
    checkpoint.load_weights(model, model_name or type(model).__name__, saved, path)
    return {"path": str(path), "stage": saved.get("stage"), "history": saved.get("history", []),
            "parent": saved.get("parent")}


def plan_run(args):
    """Rank 0's decision before any work: the output folder is usable, and which last.pth (if any) to resume.

    A run in --output is continued only when asked (--resume), and only with the number of epochs it was
    planned for: its learning-rate schedule (warmup, cosine to --min-lr) is fixed by that number, so a longer
    run is a new run started from this one's weights (--init-from).
    """
    output = Path(args.output)
    cli.check_output_dir("--output", output)
    cli.check_not_inside("--output", output, "--data-dir", args.data_dir)
    dataset.check_cache_covers(args.data_dir, args.img_size, f"training at --img-size {args.img_size}")
    cli.check_input_file("--init-from", args.init_from)
    if args.resume == "auto":
        resume_path = output / "last.pth" if (output / "last.pth").exists() else None
    elif args.resume:
        resume_path = Path(args.resume)
        cli.check_input_file("--resume", resume_path)
    else:
        resume_path = None
        found = [name for name in RUN_FILES if (output / name).exists()]
        if found:
            raise UserError(f"--output {output}: already holds a run ({', '.join(found)}); continue it with "
                            f"--resume auto, or choose a fresh --output")
    if resume_path is None:
        return None
    # Its header only: every rank reads the whole checkpoint later, and refuses one that cannot be resumed.
    saved = checkpoint.load(resume_path, need="progress")
    planned, done = (saved.get("args") or {}).get("epochs"), saved.get("epoch")
    if planned is not None and planned != args.epochs:
        raise UserError(f"--epochs {args.epochs}: {resume_path} is a {planned}-epoch run ({done} done) and its "
                        f"learning-rate schedule is fixed by that; resume it with --epochs {planned}, or train "
                        f"longer as a new run: --init-from {output / 'best.pth'} --output NEW_FOLDER")
    return str(resume_path)


def run(args):
    """Train one stage. Rank 0 decides (plan_run) before any work; its console is copied into OUTPUT/train.log
    from the moment the run has passed its checks and starts writing (nothing is written for refused input)."""
    cluster.refuse_srun_without_torchrun()
    process = runtime.setup_process(args.device)
    rank, world_size = process.rank, process.world_size
    if process.distributed:
        log(rank, f"distributed: {dist.get_backend()}, {world_size} process(es)")
    resume_path = cluster.decide(rank, world_size, lambda: plan_run(args))
    with run_log.console_copy(Path(args.output) / run_log.LOG_FILE, enabled=rank == 0, deferred=True) as console_log:
        _run(args, process, resume_path, console_log)


@dataclass
class Loaders:
    """The run's data: the training and validation loaders, the sampler the epoch loop positions, and what the
    setup report shows."""
    train: torch.utils.data.DataLoader
    val: torch.utils.data.DataLoader
    sampler: object
    batch_size: int
    workers: int
    train_transform: object
    targeted: dict
    outliers: object = None  # outlier_exposure.EndlessBatches with --outlier-dir


def _run(args, process, resume_path, console_log):
    """One stage, as torchvision's main reads: setup (data, model, loaders, optimisation), the epoch loop, the end."""
    rank, world_size = process.rank, process.world_size
    torch.manual_seed(args.seed + rank)
    np.random.seed(args.seed + rank)
    resume_checkpoint, data = read_run_inputs(args, rank, world_size, resume_path)
    if resume_checkpoint and resume_checkpoint["epoch"] >= args.epochs and not resume_checkpoint.get("epoch_in_progress"):
        log(rank, f"{resume_path}: all {args.epochs} epochs already done; nothing to train")
        if rank == 0:
            # A run killed while writing its last epoch's reports leaves their temporaries behind.
            remove_stale_temporaries(Path(args.output))
        return
    context, model, parent = build_model_and_context(args, process, data)
    loaders = build_loaders(args, context, data)
    state, criterion = build_training_state(args, context, model, parent, loaders)
    partial_progress = (resume_and_rewrite_best(context, state, resume_checkpoint, resume_path)
                        if resume_checkpoint else None)
    start_epoch = len(state.history) + 1
    tensorboard = None
    if rank == 0:
        context.output.mkdir(parents=True, exist_ok=True)
        console_log.open()  # the run starts writing: from here its console, earlier lines included, is in train.log
        remove_stale_temporaries(context.output)
        print_and_write_setup(context, data.excluded, data.metadata, loaders, resume_path, start_epoch)
        if args.log == "tensorboard":
            tensorboard = run_log.TensorBoardLog(context.output, first_epoch=start_epoch)
    try:
        train_epochs(context, state, criterion, loaders, start_epoch, partial_progress, tensorboard)
        if rank == 0:
            write_unknown_record(context, state, loaders.workers)
    finally:
        if tensorboard is not None:
            tensorboard.close()
        runtime.teardown_process(process)
    log(rank, f"done: best {args.select_metric} {state.best_metric:.4f} at epoch {state.best_epoch}; "
              f"outputs in {context.output}/")


@dataclass
class RunData:
    metadata: object
    excluded: object
    class_ids: list
    train_targets: np.ndarray
    val_targets: np.ndarray
    train_counts: np.ndarray
    fingerprint: str
    outlier_paths: list


def read_run_inputs(args, rank, world_size, resume_path):
    """(the checkpoint to resume from or None, RunData), the same on every rank; a resumed run is checked against
    this dataset and model before anything else, a finished one included ("nothing to train" must not hide another
    dataset's run)."""
    resume_checkpoint = cluster.on_every_rank(world_size, "read the checkpoint rank 0 resumes from",
                                              lambda: checkpoint.load(resume_path, need="resume") if resume_path else None)
    metadata, excluded, class_ids, train_targets, val_targets, train_counts = cluster.on_every_rank(
        world_size, f"read --data-dir {args.data_dir}", lambda: prepare_data(args, rank))
    fingerprint = dataset_fingerprint(metadata)
    outlier_paths = cluster.on_every_rank(world_size, "read --outlier-dir", lambda: outlier_exposure.find_outlier_photos(
        args.outlier_dir) if args.outlier_dir else [])
    cluster.same_on_every_rank(world_size, f"dataset in --data-dir {args.data_dir}", fingerprint)
    if resume_checkpoint:
        checkpoint.check_compatible(resume_checkpoint, resume_path, class_ids=class_ids,
                                    dataset_fingerprint=fingerprint, model_name=args.model, stage=args.stage,
                                    hint="use another --output or delete it to start over")
    return resume_checkpoint, RunData(metadata, excluded, class_ids, train_targets, val_targets, train_counts,
                                      fingerprint, outlier_paths)


def build_model_and_context(args, process, data):
    """(engine.RunContext, the model on its device, the --init-from parent's header or None)."""
    rank, world_size, device = process.rank, process.world_size, process.device
    class_weights = resolve_class_weights(args, data.class_ids, data.train_counts, data.excluded)
    model = models.create_model(args.model, len(data.class_ids), pretrained=not args.no_pretrained,
                                pretrained_file=args.pretrained_file, drop_rate=args.drop_rate)
    parent = cluster.on_every_rank(world_size, f"start from --init-from {args.init_from}",
                                   lambda: init_from(model, args.init_from, data.class_ids, args.model)
                                   if args.init_from else None)
    data_config = resolve_data_config(model=model)
    if args.stage == "head":
        models.freeze_backbone(model)
    elif args.sync_bn and world_size > 1:
        model = timm.layers.convert_sync_batchnorm(model)
    channels_last = runtime.use_channels_last(args.channels_last, device)
    model = model.to(device, memory_format=runtime.memory_format(channels_last))
    context = engine.RunContext(
        args=args, device=device, rank=rank, world_size=world_size, output=Path(args.output),
        class_ids=data.class_ids, class_names=[str(name) for name in data.metadata.classes["name"]],
        train_counts=data.train_counts, class_weights=class_weights, data_config=data_config,
        dataset_fingerprint=data.fingerprint, amp_dtype=runtime.amp_dtype(args.amp, device),
        model_input=dataset.ModelInput.for_config(data_config, device, channels_last),
        hierarchy=data.metadata.hierarchy)
    return context, model, parent


def build_loaders(args, context, data):
    """The training loader (class-aware sampler, this rank's share) and the validation loader (this rank's share)."""
    rank, world_size = context.rank, context.world_size
    train_transform, targeted, eval_transform = build_transforms(args, context.data_config, data.train_counts)
    # Photos far larger than the model needs are read reduced, as predict.py and evaluate.py read them.
    short_side = dataset.photo_short_side(args.img_size, args.photo_reading)
    train_set = dataset.LeafDataset(data.metadata.train["path"], data.train_targets, train_transform, targeted,
                                    short_side)
    train_set.reseed(args.seed + rank)  # loader workers reseed their copies from the same --seed
    val_order = np.arange(len(data.val_targets))[rank::world_size]
    val_set = dataset.LeafDataset(data.metadata.val["path"].iloc[val_order], data.val_targets[val_order],
                                  eval_transform, short_side=short_side)
    sampler = dataset.make_sampler(data.train_targets, len(data.class_ids), args.sampler, num_replicas=world_size,
                                   rank=rank, seed=args.seed)
    batch_size = max(1, min(args.batch_size, len(sampler)))
    workers = args.workers if args.workers is not None else runtime.default_workers(world_size)
    loader_options = dict(runtime.loader_options(workers, context.device.type), worker_init_fn=dataset.worker_init)
    train_loader = torch.utils.data.DataLoader(train_set, batch_size=batch_size, sampler=sampler, drop_last=True,
                                               **loader_options)
    val_loader = torch.utils.data.DataLoader(val_set, batch_size=batch_size * 2, shuffle=False, **loader_options)
    outliers = None
    if data.outlier_paths:
        # Augmented as the classes' photos are, by a copy of the transform so that the two draw apart.
        outlier_set = dataset.LeafDataset(data.outlier_paths, np.full(len(data.outlier_paths),
                                                                      outlier_exposure.UNLABELLED),
                                          copy.deepcopy(train_transform), short_side=short_side)
        outlier_set.reseed(args.seed + rank + world_size)
        outliers = outlier_exposure.EndlessBatches(outlier_exposure.outlier_loader(
            outlier_set, batch_size, args.seed + rank, **loader_options))
    return Loaders(train_loader, val_loader, sampler, batch_size, workers, train_transform, targeted, outliers)


def build_training_state(args, context, model, parent, loaders):
    """(engine.TrainingState: the model, what trains, optimiser, schedule, scaler and EMA; the loss)."""
    trainable = models.HeadOnly(model) if args.stage == "head" else model
    if dist.is_initialized():
        device = context.device
        trainable = torch.nn.parallel.DistributedDataParallel(
            trainable, device_ids=[device.index] if device.type == "cuda" else None)
    optimizer = engine.build_optimizer(model, args.lr, args.weight_decay, args.backbone_lr_scale)
    scheduler = engine.build_scheduler(optimizer, args.epochs, len(loaders.sampler) // loaders.batch_size,
                                       args.warmup_epochs, args.warmup_lr, args.min_lr)
    scaler = torch.amp.GradScaler(context.device.type, enabled=context.amp_dtype == torch.float16)
    ema = ModelEmaV3(model, decay=args.ema_decay) if args.ema_decay > 0 else None
    if args.compile and args.stage == "full":
        model.compile()  # in place (after the EMA's copy): state_dict keys stay the model's own
    criterion = engine.build_criterion(args.loss, None if args.class_weights == "none" else context.class_weights,
                                       context.train_counts, args.label_smoothing, hierarchy=context.hierarchy,
                                       hierarchy_weight=args.hierarchy_loss, focal_gamma=args.focal_gamma,
                                       tau=args.la_tau).to(context.device)
    state = engine.TrainingState(model=model, trainable=trainable, optimizer=optimizer, scheduler=scheduler,
                                 scaler=scaler, ema=ema, parent=parent)
    return state, criterion


def train_epochs(context, state, criterion, loaders, start_epoch, partial_progress, tensorboard):
    """The epoch loop: train (from a mid-epoch position when resuming one), validate, save; an interrupt saves
    last.pth where it stopped."""
    args, rank = context.args, context.rank
    for epoch in range(start_epoch, args.epochs + 1):
        progress = partial_progress or engine.new_epoch_progress()
        partial_progress = None
        loaders.sampler.set_epoch(epoch, start_index=progress["steps"] * loaders.batch_size)
        if epoch == 1 and progress["steps"] == 0 and rank == 0:
            write_batch_grid(context, loaders.train)
        try:
            engine.train_one_epoch(
                state, criterion, loaders.train, context.model_input, epoch, progress, epochs=args.epochs,
                backbone_frozen=args.stage == "head", clip_grad=args.clip_grad, amp_dtype=context.amp_dtype,
                show_progress=rank == 0, after_step=save_last_every_steps(context, state, epoch),
                outliers=loaders.outliers, outlier_weight=args.outlier_weight, outlier_mix=args.outlier_mix)
        except KeyboardInterrupt:
            save_last(context, state, epoch_in_progress=epoch, progress=progress)
            log(rank, f"interrupted in epoch {epoch} after {progress['steps']} steps; saved "
                      f"{context.output / 'last.pth'}; continue with --resume auto")
            raise
        validate_and_save_epoch(context, state, epoch, progress, loaders.val, tensorboard)


def write_unknown_record(context, state, workers):
    """best.pth with the unknown-photo record of its weights (leafdisease/deployment/unknown.py): features of the
    training photos and the validation scores its threshold is set on (--unknown-keep). The best epoch's
    weights are in memory (state.best), as save_best wrote them."""
    path = context.output / "best.pth"
    best = {**checkpoint_header(context, state), **state.best}
    best["unknown"] = inference.fit_unknown_record(
        inference.build_model(best, path), best, context.args.data_dir, context.device, keep=context.args.unknown_keep,
        workers=workers, amp_dtype=context.amp_dtype, channels_last=context.args.channels_last)
    checkpoint.save(path, best)
    record = best["unknown"]
    log(0, f"unknown photos: {record['method']} score fitted on {record['train_photos']} training photos; threshold "
           f"{unknown.threshold(record):.4g} keeps {record['keep']:.0%} of new photos of its classes answered")


def save_last_every_steps(context, state, epoch):
    """train_one_epoch's after_step for --save-every-steps N: a mid-epoch last.pth every N steps (None: never)."""
    every = context.args.save_every_steps
    if not every:
        return None

    def save_last_on_schedule(progress):
        if progress["steps"] % every == 0:
            save_last(context, state, epoch_in_progress=epoch, progress=progress)

    return save_last_on_schedule


def validate_and_save_epoch(context, state, epoch, progress, val_loader, tensorboard=None):
    """Validate, record the epoch in the history, and (rank 0) write last.pth, best.pth, the reports and the
    TensorBoard events."""
    args, rank, world_size = context.args, context.rank, context.world_size
    evaluated_model = state.ema.module if state.ema is not None else state.model
    eval_start = time.perf_counter()
    logits, targets = engine.evaluate(evaluated_model, val_loader, context.model_input, context.amp_dtype, world_size,
                                      desc=f"validation {epoch}/{args.epochs}" if rank == 0 else None)
    result, per_class, confusion = engine.validation_metrics(logits, targets, context.train_counts,
                                                             args.many_threshold, args.few_threshold,
                                                             context.hierarchy)
    if world_size > 1:
        totals = torch.tensor([progress["loss_sum"], progress["correct"], progress["images"]], dtype=torch.float64)
        dist.all_reduce(totals)
        progress = dict(progress, loss_sum=totals[0].item(), correct=totals[1].item(), images=totals[2].item())
    images = max(1, progress["images"])
    row = {"epoch": epoch, "stage": args.stage, "train_loss": progress["loss_sum"] / images,
           "train_acc": progress["correct"] / images}
    row.update({f"val_{name}": value for name, value in result.items()})
    row.update({"lr": engine.current_lr(state.optimizer), "epoch_seconds": progress["seconds"],
                "eval_seconds": time.perf_counter() - eval_start,
                "train_images_per_s": progress["images"] / max(progress["seconds"], 1e-9)})
    state.history.append(row)
    selected = result[args.select_metric]
    improved = is_better(selected, state.best_metric, args.select_metric)
    if improved:
        state.best_metric, state.best_epoch = selected, epoch
    log(rank, f"epoch {epoch}/{args.epochs} | train loss {row['train_loss']:.3f} | val loss {result['loss']:.3f} "
              f"acc {result['acc']:.3f} bal_acc {result['balanced_acc']:.3f} prior_acc {result['prior_acc']:.3f} "
              f"macro_f1 {result['macro_f1']:.3f} "
              f"top5 {result['top5']:.3f} | many/med/few {result['many_acc']:.2f}/{result['medium_acc']:.2f}/"
              f"{result['few_acc']:.2f}"
              + (f" | crop/disease {result['crop_acc']:.3f}/{result['disease_acc']:.3f}"
                 if "crop_acc" in result else "")
              + f" | lr {row['lr']:.2e} | {row['train_images_per_s']:.1f} img/s"
              + (" | best" if improved else ""))
    warning = metrics.collapse_warning(result, int((per_class["support"] > 0).sum()))
    if warning:
        log(rank, f"WARNING: {warning}")
    if rank == 0:
        if improved:
            keep_best_epoch(state, evaluated_model, per_class, confusion)
            write_best_epoch_reports(context, state, per_class, confusion)
        save_last(context, state)
        save_best(context, state)
        write_history_and_curves(context, state)
        if tensorboard is not None:
            tensorboard.epoch(row)
            tensorboard.figure("curves", context.output / "training_curves.png", epoch)
            if improved:
                tensorboard.figure("confusion_matrix", context.output / "confusion_matrix.png", epoch)
            tensorboard.flush()


def print_and_write_setup(context, excluded, metadata, loaders, resume_path, start_epoch):
    """Print and record what this run really uses: the seed's 'check the class weights are used'."""
    args, output, weights = context.args, context.output, context.class_weights
    train_transform, targeted, workers, batch_size = (loaders.train_transform, loaders.targeted, loaders.workers,
                                                      loaders.batch_size)
    weight_line = (f"class weights: {args.class_weights} over {len(weights)} classes, min {weights.min():.3f}, "
                   f"max {weights.max():.3f}, ratio {weights.max() / weights.min():.1f}:1"
                   + (" (not used by the loss)" if args.class_weights == "none" else ""))
    print(f"run: {args.model}, stage {args.stage}, {args.epochs} epochs, lr {args.lr:g}, {args.img_size}px, "
          f"batch {batch_size} x {context.world_size} process(es), {workers} loader worker(s), device {context.device}")
    print(f"data: {len(metadata.train)} train / {len(metadata.val)} val images, {len(weights)} classes, "
          f"imbalance {context.train_counts.max()}:{context.train_counts.min()}")
    val_counts = metadata.val["label"].value_counts()
    unvalidated = [f"{class_id} '{name}'" for class_id, name in zip(context.class_ids, context.class_names)
                   if val_counts.get(class_id, 0) == 0]
    if unvalidated:
        print(f"no validation image for {len(unvalidated)} class(es): {', '.join(unvalidated)}; validation metrics "
              f"average over the {len(weights) - len(unvalidated)} classes that have one")
    print(f"best.pth chosen by validation {args.select_metric}")
    print(weight_line)
    print(hierarchy_line(context.hierarchy))
    print(f"loss: {args.loss}, label smoothing {args.label_smoothing}"
          + (f" + {args.hierarchy_loss:g} x cross-entropy at the {' and '.join(context.hierarchy.training_levels())} "
             f"level" if args.hierarchy_loss > 0 else "") + f"; sampler: {args.sampler}; "
          f"augmentation: {args.augment}" + (f", heavy for {len(targeted)} classes under {args.targeted_aug_below} images"
                                              if targeted else ""))
    if loaders.outliers is not None:
        print(f"outlier exposure: {len(loaders.outliers.loader.dataset)} photos of none of the classes "
              f"({', '.join(map(str, args.outlier_dir))}), {outlier_exposure.outlier_batch_size(batch_size)} beside "
              f"each batch, towards an even answer with weight {args.outlier_weight:g}"
              + (", pasted as patches into the batch's photos (cutmix)" if args.outlier_mix == "cutmix" else ""))
    if resume_path:
        print(f"resuming from {resume_path} at epoch {start_epoch}")
    weights_table = pd.DataFrame({"id": context.class_ids, "name": context.class_names,
                                  "train_count": context.train_counts, "weight": weights})
    write_csv(output / "class_weights_used.csv", weights_table)
    if len(excluded):
        write_csv(output / "excluded_classes.csv", excluded)
    config = {"args": {key: (str(value) if isinstance(value, Path) else value) for key, value in vars(args).items()},
              "resolved": {"device": str(context.device), "world_size": context.world_size, "batch_size": batch_size,
                           "workers": workers, "num_classes": len(weights), "class_weights": weight_line,
                           "mean": [float(v) for v in context.data_config["mean"]],
                           "std": [float(v) for v in context.data_config["std"]],
                           "augmentation": dataset.describe_transform(train_transform),
                           "targeted_heavy_classes": sorted(int(context.class_ids[i]) for i in targeted),
                           "amp": str(context.amp_dtype), "channels_last": context.model_input.channels_last,
                           "versions": library_versions()}}
    write_text(output / "config.yaml", yaml.safe_dump(config, sort_keys=False, width=120))


def hierarchy_line(class_hierarchy):
    if class_hierarchy is None:
        return f"label hierarchy: none (no metadata/{hierarchy.HIERARCHY_FILE}), flat classes"
    return (f"label hierarchy (metadata/{hierarchy.HIERARCHY_FILE}): {len(class_hierarchy.groups('crop')[0])} crops, "
            f"{len(class_hierarchy.groups('disease')[0])} diseases"
            + (" with severities" if class_hierarchy.has_severity else "")
            + "; crop and disease accuracy every epoch")


def write_batch_grid(context, loader):
    """train_batch.png: the seed's 'verify augmentation is applied', from the loader itself."""
    images, targets = next(iter(loader))
    plots.plot_batch_grid(images.numpy(), targets.numpy(), context.class_names, context.output / "train_batch.png",
                          title=f"First training batch ({context.args.augment} augmentation, {context.args.img_size}px)")


@cli_entry
def main(argv=None):
    run(parse_args(argv))


if __name__ == "__main__":
    main()