"""Exported models: a timm / Hugging Face folder (model.safetensors + config.json) and ONNX, written from a
train.py checkpoint and read back, like the checkpoint itself, by predict.py and evaluate.py.

Each export carries the checkpoint's description (the "card": classes, training counts, input size,
normalisation, calibrated tau, the label hierarchy), so a model file alone is enough to predict with:
- the folder's config.json is timm's own (label_names, num_classes, pretrained_cfg with mean/std, input size,
  crop_pct and the eval resize's interpolation), plus the card under CARD_KEY; it loads with
  `timm.create_model("local-dir:FOLDER", pretrained=True)`, no num_classes needed;
- the ONNX file has a dynamic batch axis (input "image", output "logits") and the card as JSON in its
  metadata_props under CARD_KEY.
"""
import json
from pathlib import Path

import numpy as np
import timm
import torch
from safetensors import SafetensorError

from leafdisease.data import transforms
from leafdisease.deployment import inference
from leafdisease.training import checkpoint as checkpoint_format
from leafdisease.utils.atomic_io import atomic_path, json_text, json_values
from leafdisease.utils.errors import UserError

CARD_KEY = "leaf_disease"
CARD_KEYS = ("model_name", "num_classes", "class_ids", "class_names", "train_counts", "img_size", "mean", "std",
             "crop_pct")
# hierarchy: the classes' crop, disease and severity (hierarchy.py), so an exported model answers at each level.
OPTIONAL_CARD_KEYS = ("logit_adjust_tau", "best_epoch", "best_metric", "select_metric", "hierarchy", "trained_at",
                      "photo_reading")
TIMM_FILES = ("model.safetensors", "config.json")
# The unknown-photo record (unknown.py) beside the timm files: its tensors, and its other values as JSON in the
# file's metadata. The ONNX file carries no features to score, so it has none.
UNKNOWN_FILE = "unknown.safetensors"
ONNX_FILE = "model.onnx"
EXPORT_FILES = TIMM_FILES + (UNKNOWN_FILE, ONNX_FILE)  # all an export folder holds (export.py replaces it whole)
ONNX_INPUT, ONNX_OUTPUT = "image", "logits"
# fp32 ONNX Runtime kernels differ from PyTorch's in rounding only; a real export error is orders larger.
DEFAULT_MAX_LOGIT_DIFF = 1e-3


def model_card(checkpoint, source):
    """What an exported model must carry to be used alone: the checkpoint's description without weights."""
    card = {key: checkpoint[key] for key in CARD_KEYS}
    card.update({key: checkpoint[key] for key in OPTIONAL_CARD_KEYS if checkpoint.get(key) is not None})
    many, few = checkpoint_format.shot_thresholds(checkpoint)
    card["args"] = {"many_threshold": many, "few_threshold": few}
    card["exported_from"] = str(source)
    return card


def timm_data_config(card):
    """The preprocessing the project's eval transform applies, in timm's terms."""
    return {"input_size": (3, card["img_size"], card["img_size"]), "mean": tuple(card["mean"]),
            "std": tuple(card["std"]), "crop_pct": card["crop_pct"], "crop_mode": "center",
            "interpolation": transforms.EVAL_INTERPOLATION}


# ----------------------------------------------------------------------------------------------------
# Writing
# ----------------------------------------------------------------------------------------------------
def save_timm_folder(model, card, out_dir):
    """TIMM_FILES (model.safetensors + config.json) in `out_dir` via timm's save_for_hf."""
    from timm.models import save_for_hf

    # timm writes config.json with Python's json, which would write a NaN in the card as bare NaN.
    save_for_hf(model, out_dir, model_config={"label_names": list(card["class_names"]), CARD_KEY: json_values(card)},
                safe_serialization=True, data_config=timm_data_config(card))
    return Path(out_dir)


def save_unknown_record(record, path):
    """The unknown-photo record as a safetensors file (atomically): tensors by name ('val_scores.knn', ...), the
    rest as JSON under the metadata key 'values'."""
    from safetensors.torch import save_file

    tensors = {key: value.contiguous() for key, value in record.items() if isinstance(value, torch.Tensor)}
    tensors.update({f"val_scores.{method}": values.contiguous() for method, values in record["val_scores"].items()})
    values = {key: value for key, value in record.items() if not isinstance(value, torch.Tensor) and key != "val_scores"}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"values": json_text(values)})
    return Path(path)


def load_unknown_record(path):
    """The record save_unknown_record wrote; a damaged file is a one-line UserError."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            record = json.loads(handle.metadata()["values"])
            record["val_scores"] = {}
            for key in handle.keys():
                if key.startswith("val_scores."):
                    record["val_scores"][key.split(".", 1)[1]] = handle.get_tensor(key)
                else:
                    record[key] = handle.get_tensor(key)
    except (OSError, KeyError, ValueError, SafetensorError) as error:
        raise UserError(f"{path}: unreadable unknown-photo record ({str(error).splitlines()[0]})") from None
    return record


def save_onnx(model, card, path):
    """ONNX with a dynamic batch axis and the card in its metadata; written under a temporary name."""
    import onnx

    size = card["img_size"]
    example = torch.zeros(2, 3, size, size)
    batch = torch.export.Dim("batch", min=1)
    with atomic_path(path) as tmp:
        # The exporter may write the weights beside the file (<name>.data); loaded and saved again they are inline,
        # so that file is a leftover, removed whatever happens.
        external_data = tmp.with_name(tmp.name + ".data")
        try:
            torch.onnx.export(model.eval(), (example,), str(tmp), input_names=[ONNX_INPUT],
                              output_names=[ONNX_OUTPUT], dynamo=True, dynamic_shapes=({0: batch},), verbose=False)
            proto = onnx.load(str(tmp))
            onnx.helper.set_model_props(proto, {CARD_KEY: json_text(card)})
            onnx.save(proto, str(tmp))
        finally:
            external_data.unlink(missing_ok=True)
    return Path(path)


# ----------------------------------------------------------------------------------------------------
# Reading
# ----------------------------------------------------------------------------------------------------
class OnnxModel(torch.nn.Module):
    """An ONNX Runtime session behind the nn.Module interface inference.predict_scores drives (CPU)."""

    def __init__(self, path):
        super().__init__()
        import onnxruntime

        self.session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name

    def forward(self, images):
        array = np.ascontiguousarray(images.detach().float().cpu().numpy())
        logits = self.session.run(None, {self.input_name: array})[0]
        return torch.from_numpy(logits).to(images.device)


def kind_of(path):
    """'onnx', 'timm' (an exported folder) or 'checkpoint' (a train.py .pth)."""
    path = Path(path)
    if path.is_dir():
        return "timm"
    return "onnx" if path.suffix.lower() == ".onnx" else "checkpoint"


def load_model(path):
    """(card, model in eval mode) from a train.py checkpoint, an exported folder or an .onnx file.

    For a checkpoint the card is the checkpoint dict itself (it holds every card key)."""
    path = Path(path)
    kind = kind_of(path)
    if kind == "checkpoint":
        checkpoint = checkpoint_format.load(path, need="weights")
        return checkpoint, inference.build_model(checkpoint, path)
    if kind == "timm":
        card = _read_card(path / "config.json", lambda: json.loads((path / "config.json").read_text()).get(CARD_KEY))
        try:
            model = timm.create_model(f"local-dir:{path}", pretrained=True)
        except (OSError, RuntimeError, ValueError, SafetensorError) as error:  # SafetensorError: a damaged file
            raise UserError(f"{path}: cannot load the exported model ({str(error).splitlines()[0]})") from None
        if (path / UNKNOWN_FILE).is_file():
            card["unknown"] = load_unknown_record(path / UNKNOWN_FILE)
        return card, model.eval()
    if not path.is_file():
        raise UserError(f"{path}: ONNX model not found")
    try:
        model = OnnxModel(path)
    except Exception as error:  # onnxruntime raises its own exception types for unreadable files
        raise UserError(f"{path}: not a readable ONNX model ({str(error).splitlines()[0]})") from None
    metadata = model.session.get_modelmeta().custom_metadata_map
    card = _read_card(path, lambda: json.loads(metadata[CARD_KEY]) if CARD_KEY in metadata else None)
    return card, model.eval()


def _read_card(path, read):
    if not Path(path).exists():
        raise UserError(f"{path}: not found; an exported model folder holds config.json and model.safetensors "
                        f"(python export.py --format timm)")
    try:
        card = read()
    except (OSError, ValueError) as error:
        raise UserError(f"{path}: unreadable model description ({error})") from None
    if not isinstance(card, dict):
        raise UserError(f"{path}: no '{CARD_KEY}' model description; export it with this project's export.py")
    missing = [key for key in CARD_KEYS if key not in card]
    if missing:
        raise UserError(f"{path}: its '{CARD_KEY}' model description lacks {', '.join(missing)}")
    return card


# ----------------------------------------------------------------------------------------------------
# Checking an export against PyTorch
# ----------------------------------------------------------------------------------------------------
@torch.no_grad()
def compare_logits(reference_model, exported_model, images, batch_size=8):
    """(max |logit difference|, number of images whose predicted class differs) over `images` (N, 3, H, W),
    run in batches of different sizes so a fixed batch axis would fail."""
    reference_model.eval()
    exported_model.eval()
    max_difference, disagreements = 0.0, 0
    sizes = [1] + [batch_size] * len(images)
    start = 0
    for size in sizes:
        if start >= len(images):
            break
        batch = images[start:start + size]
        start += size
        expected, got = reference_model(batch).float(), exported_model(batch).float()
        if got.shape != expected.shape:
            raise UserError(f"exported model returns logits of shape {tuple(got.shape)}, PyTorch {tuple(expected.shape)}")
        max_difference = max(max_difference, (expected - got).abs().max().item())
        disagreements += int((expected.argmax(dim=1) != got.argmax(dim=1)).sum())
    return max_difference, disagreements


def transformed_images(paths, card):
    """The model's input for the readable images among `paths` (N, 3, H, W, float on the CPU), decoded and
    transformed as predict.py feeds them; the other files are passed over, none readable is a UserError."""
    transform = inference.eval_transform(card)
    tensors = []
    for path in paths:
        try:
            tensors.append(transform(image=inference.read_photo(path, card))["image"])
        except UserError:
            continue
    if not tensors:
        raise UserError(f"none of the {len(paths)} file(s) to check the export with is a readable image "
                        f"(first: {paths[0] if paths else 'none given'})")
    return inference.model_input(card, torch.device("cpu"))(torch.stack(tensors))
