"""Using a trained checkpoint: load it, score images the way training evaluated them, correct the long tail.

Post-hoc logit adjustment (Menon et al., "Long-tail learning via logit adjustment", ICLR 2021): a model
trained on a skewed set learns p(y|x) scaled by the class prior; subtracting tau * log(prior) from its
logits moves the decision towards the balanced-error optimum. tau = 0 is the plain model.
"""
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import timm
import torch

from leafdisease.data import cleaning, reading, sources, transforms
from leafdisease.data import metadata as cleaned_metadata
from leafdisease.deployment import unknown
from leafdisease.evaluation import metrics
from leafdisease.training import checkpoint as checkpoint_format
from leafdisease.utils import progress, runtime
from leafdisease.utils.errors import UserError


# ----------------------------------------------------------------------------------------------------
# Checkpoint and model
# ----------------------------------------------------------------------------------------------------
def build_model(checkpoint, path):
    """The checkpoint's timm model in eval mode, from its own weights only (no pretrained download)."""
    try:
        model = timm.create_model(checkpoint["model_name"], pretrained=False, num_classes=checkpoint["num_classes"])
    except RuntimeError as error:
        raise UserError(f"{path}: model '{checkpoint['model_name']}' unknown to this timm "
                        f"{timm.__version__} ({str(error).splitlines()[0]})") from None
    return checkpoint_format.load_weights(model, checkpoint["model_name"], checkpoint, path).eval()


def eval_transform(checkpoint):
    """The exact validation transform train.py used for this checkpoint (uint8 CHW tensors; model_input finishes
    them)."""
    return transforms.eval_transform(checkpoint["img_size"], checkpoint["crop_pct"])


def eval_crop_transform(checkpoint):
    """eval_transform's resize and centre crop alone (HxWx3 uint8): the pixels the model sees, for display."""
    return transforms.eval_transform(checkpoint["img_size"], checkpoint["crop_pct"], to_tensor=False)


def model_input(checkpoint, device, channels_last="auto"):
    """The checkpoint's normalisation on `device` (transforms.ModelInput), channels_last as train.py --channels-last
    sets it (auto: where it pays)."""
    return transforms.ModelInput.for_config(checkpoint, device, runtime.use_channels_last(channels_last, device))


# ----------------------------------------------------------------------------------------------------
# Images
# ----------------------------------------------------------------------------------------------------
def find_images(inputs):
    """The files to classify: files as given, plus every file (and link, sources.files_under) anywhere under given
    folders, each path once. Whether a file is an image is told by its content, as cleaning tells it (cleaning.inspect_image, through
    ImageFiles), never by its name: the others come back from predict_scores as rejected, with their reason."""
    found, seen = [], set()
    for raw in inputs:
        path = Path(raw)
        if path.is_dir():
            candidates = sources.files_under(path)  # links that are not files too: rejected with their reason
        elif path.is_file():
            candidates = [path]
        else:
            raise UserError(f"{path}: no such file or folder")
        for candidate in candidates:
            key = candidate.resolve() if candidate.exists() else candidate.absolute()  # a broken link: itself
            if key not in seen:
                seen.add(key)
                found.append(candidate)
    if not found:
        raise UserError(f"no images found in {', '.join(map(str, inputs))}: no files there at all")
    return found


def photo_short_side(checkpoint):
    """The short side a checkpoint's (or card's) photos are read at, as its training read them (None: in full)."""
    return reading.photo_short_side(checkpoint["img_size"],
                                    checkpoint.get("photo_reading") or reading.DEFAULT_PHOTO_READING)


def read_photo(path, checkpoint):
    """A photo as the model of `checkpoint` (or an exported model's card) is shown it: with cleaning's checks and
    conversions, read as its training read its photos (photo_short_side)."""
    return cleaning.read_checked_rgb(path, photo_short_side(checkpoint))


class ImageFiles(torch.utils.data.Dataset):
    """(image tensor, index, reason): an unreadable file yields a blank image and the reason, so one bad file
    neither stops a batch nor goes unreported. Photos are decoded with cleaning's checks and conversions
    (cleaning.read_checked_rgb), so a truncated file is reported, not padded, and transparency is flattened
    as in the training copies."""

    def __init__(self, paths, transform, checkpoint):
        self.paths = list(paths)
        self.transform = transform
        self.reading = {key: checkpoint.get(key) for key in ("img_size", "photo_reading")}
        self.blank = torch.zeros(3, checkpoint["img_size"], checkpoint["img_size"], dtype=torch.uint8)

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, index):
        try:
            image = read_photo(self.paths[index], self.reading)
        except UserError as error:
            return self.blank, index, str(error)
        return self.transform(image=image)["image"], index, ""


def predict_scores(model, paths, checkpoint, device, batch_size=64, workers=0, tta=False, amp_dtype=None,
                   desc="predict", channels_last="auto"):
    """Scores (N_readable, K) for the readable images, their indices into `paths`, and [(path, reason)] for the rest.

    `checkpoint` (or an exported model's card) says how images are transformed. Scores are the logits, or with
    `tta` the log of the mean softmax over the image and its horizontal flip: either way softmax(scores) are the
    probabilities and argmax the prediction.
    """
    scores, indices, rejected, _ = predict_scores_and_features(model, paths, checkpoint, device, batch_size, workers,
                                                               tta, amp_dtype, desc, channels_last, features=False)
    return scores, indices, rejected


def logits_and_features(model, images, features=True):
    """(logits, penultimate features) of a timm model in one pass; (logits, None) without `features` or for a
    model that does not expose them (an ONNX file)."""
    if features and hasattr(model, "forward_head") and hasattr(model, "forward_features"):
        pre_logits = model.forward_head(model.forward_features(images), pre_logits=True)
        return model.get_classifier()(pre_logits), pre_logits
    return model(images), None


@torch.no_grad()
def predict_scores_and_features(model, paths, checkpoint, device, batch_size=64, workers=0, tta=False,
                                amp_dtype=None, desc="predict", channels_last="auto", features=True):
    """predict_scores, plus the penultimate features (N_readable, D; the mean over the TTA views) when the model
    exposes them (None otherwise): what the unknown-photo scores need, from the same forward pass."""
    to_input = model_input(checkpoint, device, channels_last)
    model = model.to(device, memory_format=runtime.memory_format(to_input.channels_last)).eval()
    loader = torch.utils.data.DataLoader(
        ImageFiles(paths, eval_transform(checkpoint), checkpoint), batch_size=batch_size, shuffle=False,
        num_workers=workers, pin_memory=device.type == "cuda", worker_init_fn=reading.worker_init)
    all_scores, all_features, all_indices, rejected = [], [], [], []
    with progress.bar(total=len(paths), desc=desc, unit="img", dynamic_ncols=True, mininterval=1.0) as bar:
        for images, indices, reasons in loader:
            ok = torch.tensor([not reason for reason in reasons], dtype=torch.bool)
            rejected += [(str(paths[i]), reason) for i, reason in zip(indices.tolist(), reasons) if reason]
            bar.update(len(indices))
            if not ok.any():
                continue
            images = to_input(images[ok])
            views = [images, torch.flip(images, dims=[3])] if tta else [images]
            with runtime.autocast(device, amp_dtype):
                outputs = [logits_and_features(model, view, features) for view in views]
            all_scores.append(combine_views([logits.float() for logits, _ in outputs]).cpu())
            if outputs[0][1] is not None:
                all_features.append(torch.stack([feats.float() for _, feats in outputs]).mean(dim=0).cpu())
            all_indices.append(indices[ok])
    if not all_scores:
        return torch.empty(0, 0), torch.empty(0, dtype=torch.long), rejected, None
    return (torch.cat(all_scores), torch.cat(all_indices), rejected,
            torch.cat(all_features) if all_features else None)


@dataclass
class Predictions:
    """What a model says about a list of photos: the readable ones (`paths`, in the order given) with their class
    probabilities (N, K) after logit adjustment, and [(path, reason)] for the photos that could not be read.
    unknown_scores (N,; higher = less like the model's classes) and unknown (N, bool: above the threshold) when the
    model carries an unknown-photo record (unknown.py), else None."""

    paths: list
    probabilities: torch.Tensor
    rejected: list
    unknown_scores: np.ndarray = None
    unknown: np.ndarray = None


def predict_probabilities(model, paths, checkpoint, device, tau, unknown_keep=None, **score_options):
    """Class probabilities of each readable photo, logit-adjusted by `tau`, and its unknown-photo score where the
    model carries the record (at its threshold, or one keeping `unknown_keep` of new photos answered): the
    one path from photo files to answers that predict.py, evaluate.py and the diagnosis page (app.py) share.
    `score_options` go to predict_scores_and_features."""
    record = checkpoint.get("unknown")
    scores, indices, rejected, features = predict_scores_and_features(model, paths, checkpoint, device,
                                                                      features=record is not None, **score_options)
    if not len(indices):
        return Predictions([], torch.empty(0, len(checkpoint["class_ids"])), rejected)
    probabilities = torch.softmax(adjust_scores(scores, checkpoint["train_counts"], tau), dim=1)
    answered = [paths[index] for index in indices.tolist()]
    if record is None or features is None:
        return Predictions(answered, probabilities, rejected)
    unknown_scores = unknown.score(record, features, scores).numpy()
    return Predictions(answered, probabilities, rejected, unknown_scores,
                       unknown_scores > unknown.threshold(record, unknown_keep))


def fit_unknown_record(model, checkpoint, data_dir, device, keep=unknown.DEFAULT_KEEP, **score_options):
    """The unknown-photo record (unknown.fit) of a model from the cleaned dataset it was trained on: the penultimate
    features of a class-balanced sample of at most unknown.MAX_REFERENCE training photos, and the validation
    photos' features and logits, which set the threshold that keeps `keep` of them answered."""
    metadata = cleaned_metadata.load_metadata(data_dir)
    index_of = cleaned_metadata.label_to_index(checkpoint["class_ids"])
    train = cleaned_metadata.rows_of_classes(metadata.train, checkpoint["class_ids"])
    val = cleaned_metadata.rows_of_classes(metadata.val, checkpoint["class_ids"])
    if val.empty:
        raise UserError(f"{Path(data_dir) / 'metadata' / 'val.csv'}: no validation photo of the model's classes to "
                        f"set the unknown-photo threshold on")
    sample = train.iloc[unknown.reference_sample(train["label"].map(index_of).to_numpy())].reset_index(drop=True)
    scored = {}
    for name, table in (("training", sample), ("validation", val)):
        scores, indices, _, features = predict_scores_and_features(model, list(table["path"]), checkpoint, device,
                                                                   desc=f"unknown-photo fit: {name}", **score_options)
        if features is None:
            raise UserError("this model does not expose its features (an ONNX file): fit the unknown-photo score "
                            "on the checkpoint")
        scored[name] = (features, scores, table["label"].iloc[indices.numpy()].map(index_of).to_numpy())
    (train_features, _, train_targets), (val_features, val_logits, _) = scored["training"], scored["validation"]
    return unknown.fit(train_features, train_targets, len(checkpoint["class_ids"]), val_features, val_logits, keep)


def top_classes(probabilities, checkpoint, top_k):
    """The `top_k` most probable classes of each image, best first: (ids, names, probabilities), each an
    (N, k) array; probabilities as float64 rounded to metrics.PROBABILITY_DECIMALS, as predict.py writes them."""
    top_probabilities, top_indices = torch.topk(probabilities, min(top_k, probabilities.shape[1]), dim=1)
    indices = top_indices.numpy()
    return (np.asarray(checkpoint["class_ids"])[indices], np.asarray(checkpoint["class_names"], dtype=object)[indices],
            top_probabilities.double().numpy().round(metrics.PROBABILITY_DECIMALS))


def combine_views(view_logits):
    """One view: its logits unchanged. Several: log of the mean of their softmax (probability averaging)."""
    if len(view_logits) == 1:
        return view_logits[0]
    log_probs = torch.stack([torch.log_softmax(logits, dim=1) for logits in view_logits])
    return torch.logsumexp(log_probs, dim=0) - math.log(len(view_logits))


# ----------------------------------------------------------------------------------------------------
# Post-hoc logit adjustment
# ----------------------------------------------------------------------------------------------------
def calibrated_tau(checkpoint):
    """The tau predict.py --calibrate-tau stored in the checkpoint (or an exported model's card); None if never
    calibrated."""
    tau = checkpoint.get("logit_adjust_tau")
    return None if tau is None else float(tau)


def adjust_scores(scores, train_counts, tau):
    """scores - tau * log(prior), prior = training class frequencies. tau = 0 returns the scores untouched."""
    if tau == 0:
        return scores
    counts = torch.as_tensor(train_counts, dtype=torch.float64)
    if torch.any(counts <= 0):
        raise UserError("logit adjustment: a class has no training image, so its prior is 0 and log(prior) undefined")
    log_prior = torch.log(counts / counts.sum()).to(scores.dtype)
    return scores - tau * log_prior


def tau_grid(tau_min, tau_max, tau_step):
    """tau_min, ..., 0, ..., tau_max in steps of tau_step; 0 is always a candidate, so calibration can keep the
    plain model. A negative tau adds the log prior back: it corrects a model biased *against* the head classes
    (trained with a logit-adjusted loss or over-strong class weights)."""
    if tau_step <= 0 or not (math.isfinite(tau_min) and math.isfinite(tau_max)) or tau_min > 0 or tau_max < 0:
        raise UserError(f"tau grid: need --tau-step > 0 and finite --tau-min <= 0 <= --tau-max "
                        f"(got step {tau_step}, min {tau_min}, max {tau_max})")
    below = int(math.floor(-tau_min / tau_step + 1e-9))
    above = int(math.floor(tau_max / tau_step + 1e-9))
    return [round(index * tau_step, 10) for index in range(-below, above + 1)]


def one_image_gain(targets, train_counts, metric=metrics.DEFAULT_TARGET_METRIC):
    """The most that one validation image can move `metric`. A smaller gain from tuning tau is indistinguishable
    from luck. Accuracy: 1 / images; accuracy at the training prior: the largest (training share / validation
    images) of a present class; class means (balanced accuracy, ...): one image of the smallest present class,
    1 / (present classes x its images)."""
    support = np.bincount(np.asarray(targets, dtype=np.int64), minlength=len(train_counts))
    present = support > 0
    if not present.any():
        return float("nan")
    if metric in metrics.IMAGE_MEAN_METRICS:
        return 1.0 / int(support.sum())
    if metric == "prior_acc":
        shares = np.asarray(train_counts, dtype=np.float64) * present
        return float((shares[present] / shares.sum() / support[present]).max())
    return 1.0 / (int(present.sum()) * int(support[present].min()))


@dataclass
class TauSearch:
    """tau: the chosen strength; best_tau: the grid's best (tau is 0 instead when its gain is within margin);
    rows: one metrics row per candidate tau; margin: one_image_gain of the validation set; metric: what tau was
    chosen for."""

    tau: float
    best_tau: float
    rows: list
    margin: float
    metric: str = metrics.DEFAULT_TARGET_METRIC

    def row(self, tau):
        return next(row for row in self.rows if row["tau"] == tau)


def search_tau(scores, targets, train_counts, taus, many_threshold, few_threshold,
               metric=metrics.DEFAULT_TARGET_METRIC):
    """Pick tau by the validation `metric` (the run's target: balanced accuracy by default). Ties go to the smaller
    |tau|; the best tau is kept only when it beats tau = 0 by more than one validation image could
    (one_image_gain), so a tiny validation set cannot talk calibration into noise, and the result never scores
    below the plain model on validation."""
    taus = sorted(set(float(tau) for tau in taus) | {0.0})
    rows = []
    for tau in taus:
        result, _, _ = metrics.classification_metrics(
            adjust_scores(scores, train_counts, tau).numpy(), np.asarray(targets), train_counts,
            many_threshold, few_threshold)
        rows.append({"tau": tau, **result})
    scored = [row for row in rows if not math.isnan(row[metric])]
    if not scored:
        raise UserError(f"tau calibration: {metric} is undefined on this validation set (no validation image of "
                        f"the classes it averages over)")
    best = max(scored, key=lambda row: (row[metric], -abs(row["tau"])))
    plain = next(row for row in rows if row["tau"] == 0.0)
    margin = one_image_gain(targets, train_counts, metric)
    chosen = best["tau"] if best[metric] - plain[metric] > margin else 0.0
    return TauSearch(tau=chosen, best_tau=best["tau"], rows=rows, margin=margin, metric=metric)
