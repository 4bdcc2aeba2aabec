"""The training engine: the optimiser, schedule and loss a run trains with, one epoch of training, one pass of
evaluation, and the two records a run carries between them (RunContext, TrainingState).

It exists so that train.py stays the one script a user runs and reads (options, the run's orchestration,
checkpoints and reports), while benchmarks/ time the very loop train.py runs by importing this library instead of
the script. The loop functions take what they use as arguments, as torchvision's references/classification
`train_one_epoch(model, criterion, optimizer, data_loader, device, epoch, ...)` does; what an epoch changes
(weights, optimiser, schedule, step count) lives in a TrainingState, whose state_dict() is what last.pth saves and
--resume loads (checkpoint.py owns the file format around it).
"""
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from timm.optim import create_optimizer_v2
from timm.scheduler import CosineLRScheduler

from leafdisease.data import hierarchy as label_hierarchy
from leafdisease.evaluation import metrics
from leafdisease.training import losses, models, outlier_exposure
from leafdisease.utils import runtime
from leafdisease.utils.errors import TrainingDiverged
from leafdisease.utils.progress import bar as progress_bar

# train.py's defaults for the options of the same names (its parser reads them here), so a benchmark that builds
# the loop with this module times what a default run trains.
WEIGHT_DECAY = 0.01
WARMUP_LR = 1e-6
MIN_LR = 1e-6
CLIP_GRAD = 1.0
LABEL_SMOOTHING = 0.1


@dataclass
class RunContext:
    """What a run decided before its first step and keeps to its end: its options, where it runs, its classes and
    data; every checkpoint's header is made from it."""
    args: object  # train.py's options (an argparse.Namespace)
    device: torch.device
    rank: int
    world_size: int
    output: Path
    class_ids: list
    class_names: list
    train_counts: np.ndarray
    class_weights: np.ndarray
    data_config: dict  # timm's resolve_data_config: mean, std, crop_pct
    dataset_fingerprint: str
    amp_dtype: torch.dtype | None
    model_input: object  # dataset.ModelInput: the loaders' uint8 batches as the model's input on `device`
    hierarchy: object = None  # hierarchy.Hierarchy of the classes, or None (flat)


@dataclass
class TrainingState:
    """What training changes: the model and its trainable wrapper (HeadOnly for the head stage, DDP when
    distributed), optimiser, schedule, gradient scaler, EMA, the step count, the epochs' history and the best
    epoch so far (its weights and per-class results in `best`), and the run this one started from (`parent`)."""
    model: torch.nn.Module
    trainable: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: CosineLRScheduler
    scaler: torch.amp.GradScaler
    ema: object = None  # timm's ModelEmaV3, or None
    global_step: int = 0
    history: list = field(default_factory=list)
    best_metric: float | None = None
    best_epoch: int | None = None
    best: dict | None = None
    parent: dict | None = None

    def state_dict(self):
        """Everything --resume needs to continue exactly, under last.pth's keys (checkpoint.py's format)."""
        state = {
            "state_dict": self.model.state_dict(),
            "epoch": len(self.history),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "global_step": self.global_step,
            "history": self.history,
            "best_metric": self.best_metric,
            "best_epoch": self.best_epoch,
            "parent": self.parent,
            # A kill between writing last.pth and best.pth must not leave them disagreeing: resume rebuilds
            # best.pth from this copy.
            "best": self.best,
        }
        if self.ema is not None:
            state["state_dict_ema"] = self.ema.module.state_dict()
        return state

    def load_state_dict(self, state):
        """Continue from state_dict()'s output (or a last.pth, loaded by checkpoint.load)."""
        self.model.load_state_dict(state["state_dict"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if state["scaler"]:  # empty when written without fp16 (CPU, bf16): a fresh scaler calibrates itself
            self.scaler.load_state_dict(state["scaler"])
        if self.ema is not None and "state_dict_ema" in state:
            self.ema.module.load_state_dict(state["state_dict_ema"])
        self.history = list(state["history"])
        self.best_metric, self.best_epoch = state["best_metric"], state["best_epoch"]
        self.global_step = state["global_step"]
        self.best, self.parent = state.get("best"), state.get("parent")
        self.scheduler.step_update(num_updates=self.global_step)


def new_epoch_progress():
    """An epoch's running totals; saved with a mid-epoch last.pth so a resumed epoch continues them."""
    return {"steps": 0, "loss_sum": 0.0, "correct": 0, "images": 0, "seconds": 0.0}


# ----------------------------------------------------------------------------------------------------
# Builders
# ----------------------------------------------------------------------------------------------------
def build_optimizer(model, lr, weight_decay=WEIGHT_DECAY, backbone_lr_scale=1.0):
    """AdamW over the trainable parameters: no weight decay on biases and norms; the backbone's LR scaled by
    backbone_lr_scale (timm's scheduler honours each group's lr_scale)."""
    parameter_groups = []
    for is_head in (True, False):
        for no_decay in (False, True):
            group = [parameter for name, parameter in model.named_parameters()
                     if parameter.requires_grad and models.is_head_parameter(model, name) == is_head
                     and (parameter.ndim <= 1) == no_decay]
            if group:
                parameter_groups.append({"params": group, "weight_decay": 0.0 if no_decay else weight_decay,
                                         "lr_scale": 1.0 if is_head else backbone_lr_scale})
    return create_optimizer_v2(parameter_groups, opt="adamw", lr=lr, weight_decay=weight_decay)


def build_scheduler(optimizer, epochs, steps_per_epoch, warmup_epochs=0.0, warmup_lr=WARMUP_LR, min_lr=MIN_LR):
    """Linear warmup, then cosine to min_lr, stepped every update so warmup is smooth even over one epoch."""
    warmup_steps = int(warmup_epochs * steps_per_epoch)
    return CosineLRScheduler(optimizer, t_initial=max(1, epochs * steps_per_epoch - warmup_steps),
                             lr_min=min_lr, warmup_t=warmup_steps, warmup_lr_init=warmup_lr,
                             warmup_prefix=True, t_in_epochs=False)


def build_criterion(loss, class_weights, train_counts, label_smoothing=LABEL_SMOOTHING, hierarchy=None,
                    hierarchy_weight=0.0, **loss_options):
    """The training loss (losses.build_loss; loss_options: focal_gamma, tau); class_weights None trains
    unweighted. hierarchy_weight > 0 adds the cross-entropy at the coarser levels of `hierarchy` (a
    hierarchy.Hierarchy) that group classes (losses.HierarchyLoss), weighted per image like the loss."""
    weights = None if class_weights is None else torch.as_tensor(class_weights, dtype=torch.float32)
    criterion = losses.build_loss(loss, weights, class_counts=train_counts, label_smoothing=label_smoothing,
                                  **loss_options)
    if hierarchy_weight > 0:
        groups = [torch.as_tensor(hierarchy.groups(level)[1]) for level in hierarchy.training_levels()]
        criterion = losses.HierarchyLoss(criterion, groups, hierarchy_weight, weights)
    return criterion


def current_lr(optimizer):
    """The head's learning rate (the largest; the backbone's may be scaled down)."""
    return max(group["lr"] for group in optimizer.param_groups)


# ----------------------------------------------------------------------------------------------------
# One epoch of training, one pass of evaluation
# ----------------------------------------------------------------------------------------------------
def train_one_epoch(state, criterion, loader, model_input, epoch, progress, *, epochs, backbone_frozen=False,
                    clip_grad=CLIP_GRAD, amp_dtype=None, show_progress=True, after_step=None, outliers=None,
                    outlier_weight=outlier_exposure.WEIGHT, outlier_mix=outlier_exposure.DEFAULT_MIX):
    """Trains `state` until the loader is exhausted, continuing a partly-done epoch's `progress`
    (new_epoch_progress() for a fresh one), which it updates in place and returns. backbone_frozen: the head
    stage (state.trainable is HeadOnly): features under no_grad. model_input (dataset.ModelInput) puts the
    loader's uint8 batches on its device as the model's input. after_step(progress) runs after every update
    (train.py's --save-every-steps). outliers: batches (outlier_exposure.EndlessBatches) of photos of none of the
    classes, put beside every batch and trained towards an even answer with `outlier_weight` (outlier_mix
    "cutmix": pasted into the batch's photos, towards their class and the even answer by area). A non-finite loss
    raises TrainingDiverged before the update."""
    model, optimizer, scaler = state.model, state.optimizer, state.scaler
    device = model_input.device
    trainable_parameters = [parameter for parameter in model.parameters() if parameter.requires_grad]
    models.set_train_mode(model, backbone_frozen=backbone_frozen)
    bar = progress_bar(loader, desc=f"epoch {epoch}/{epochs}", disable=not show_progress, leave=False,
                       dynamic_ncols=True, mininterval=1.0, initial=progress["steps"],
                       total=progress["steps"] + len(loader))
    start = time.perf_counter()
    # Seconds (like images) accumulate over the sessions of a resumed epoch and are saved with them, so the
    # epoch's images/s counts only steps whose time is counted too.
    seconds_before = progress["seconds"]
    images_this_session = 0
    for images, targets in bar:
        images = model_input(images)
        targets = targets.to(device, non_blocking=True)
        batch_size = targets.size(0)
        if outliers is not None:
            outlier_images, kept_share = model_input(next(outliers)[0]), 0.0
            if outlier_mix == "cutmix":
                outlier_images, kept_share = outlier_exposure.paste_outlier_patches(images, outlier_images)
            images = torch.cat([images, outlier_images])
        if backbone_frozen:
            with torch.no_grad(), runtime.autocast(device, amp_dtype):
                features = model.forward_features(images)
            with runtime.autocast(device, amp_dtype):
                logits = state.trainable(features)
        else:
            with runtime.autocast(device, amp_dtype):
                logits = state.trainable(images)
        if outliers is not None:
            logits, outlier_logits = logits[:batch_size], logits[batch_size:]
        loss = criterion(logits.float(), targets)
        if outliers is not None:
            loss = loss + outlier_weight * outlier_exposure.mixed_cross_entropy(
                outlier_logits, targets[:len(outlier_logits)], kept_share)
        if not torch.isfinite(loss):
            raise TrainingDiverged(
                f"loss became {loss.item()} at epoch {epoch} step {progress['steps'] + 1}; best.pth and last.pth "
                f"keep the last good epoch. Lower --lr or check --class-weights and --loss"
            )
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if clip_grad > 0:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(trainable_parameters, clip_grad)
        scaler.step(optimizer)
        scaler.update()
        state.global_step += 1
        state.scheduler.step_update(num_updates=state.global_step)
        if state.ema is not None:
            state.ema.update(model, step=state.global_step)

        progress["steps"] += 1
        progress["loss_sum"] += loss.item() * batch_size
        progress["correct"] += (logits.argmax(dim=1) == targets).sum().item()
        progress["images"] += batch_size
        images_this_session += batch_size
        elapsed = time.perf_counter() - start
        progress["seconds"] = seconds_before + elapsed
        bar.set_postfix(loss=f"{progress['loss_sum'] / progress['images']:.3f}",
                        lr=f"{current_lr(optimizer):.2e}", img_s=f"{images_this_session / elapsed:.1f}",
                        refresh=False)
        if after_step is not None:
            after_step(progress)
    progress["seconds"] = seconds_before + time.perf_counter() - start
    bar.close()
    return progress


@torch.no_grad()
def evaluate(model, loader, model_input, amp_dtype=None, world_size=1, desc=None):
    """Logits and targets for the whole validation set (the loader's uint8 batches made the model's input by
    model_input, a dataset.ModelInput), gathered from every rank; a progress bar named `desc` when given."""
    model.eval()
    all_logits, all_targets = [], []
    for images, targets in progress_bar(loader, desc=desc, disable=desc is None, leave=False, dynamic_ncols=True,
                                        mininterval=1.0):
        images = model_input(images)
        with runtime.autocast(model_input.device, amp_dtype):
            logits = model(images)
        all_logits.append(logits.float().cpu())
        all_targets.append(targets)
    logits = torch.cat(all_logits) if all_logits else torch.empty(0, 0)
    targets = torch.cat(all_targets) if all_targets else torch.empty(0, dtype=torch.long)
    if world_size > 1:
        gathered = [None] * world_size
        dist.all_gather_object(gathered, (logits, targets))
        logits = torch.cat([part[0] for part in gathered if part[0].numel()])
        targets = torch.cat([part[1] for part in gathered])
    return logits, targets


def validation_metrics(logits, targets, train_counts, many_threshold, few_threshold, hierarchy=None):
    """metrics.classification_metrics of evaluate()'s output, plus the unweighted validation loss, and with a label
    hierarchy (hierarchy.Hierarchy) its level metrics (hierarchy.level_metrics: crop_acc, disease_acc, ...)."""
    result, per_class, confusion = metrics.classification_metrics(
        logits.numpy(), targets.numpy(), train_counts, many_threshold, few_threshold)
    result["loss"] = F.cross_entropy(logits, targets).item()
    if hierarchy is not None:
        result.update(label_hierarchy.level_metrics(confusion, hierarchy))
    return result, per_class, confusion
