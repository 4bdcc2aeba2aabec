"""Grad-CAM overlays (the grad-cam package) for timm models: where in the photo the model looked for a class.

The heat map comes from the last feature stage timm reports (model.feature_info[-1]), the coarsest and most
class-specific one; transformer stages that return tokens are reshaped to their patch grid first. A ViT with a
class token classifies from that token alone, so its last block's output carries no gradient to the patches;
there the map comes from the last block's first norm, as the grad-cam package's ViT example does.
"""
import math

import numpy as np
import torch

from leafdisease.deployment import inference
from leafdisease.utils.errors import UserError


def target_layer(model):
    """The module Grad-CAM hooks: timm's last reported feature stage."""
    feature_info = getattr(model, "feature_info", None)
    if not feature_info:
        raise UserError(f"Grad-CAM: {type(model).__name__} reports no feature stages (timm's feature_info)")
    layer = model.get_submodule(feature_info[-1]["module"])
    if getattr(model, "num_prefix_tokens", 0) and hasattr(layer, "norm1"):
        return layer.norm1
    return layer


def _tokens_to_grid(model):
    """reshape_transform for stages returning (N, tokens, C) or channels-last maps; None for (N, C, H, W)."""
    prefix_tokens = getattr(model, "num_prefix_tokens", 0)
    channels = model.feature_info[-1]["num_chs"]

    def reshape(activations):
        if activations.ndim == 3:
            patches = activations[:, prefix_tokens:, :]
            side = int(math.isqrt(patches.shape[1]))
            return patches.reshape(patches.shape[0], side, side, patches.shape[2]).permute(0, 3, 1, 2)
        if activations.ndim == 4 and activations.shape[1] != channels and activations.shape[3] == channels:
            return activations.permute(0, 3, 1, 2)
        return activations

    return reshape


class GradCam:
    """Grad-CAM maps for batches of eval-transformed images; one map (H, W) in [0, 1] per image and class."""

    def __init__(self, model):
        from pytorch_grad_cam import GradCAM

        if not isinstance(model, torch.nn.Module) or not any(True for _ in model.parameters()):
            raise UserError("Grad-CAM needs PyTorch weights (a .pth checkpoint or an exported folder), not an ONNX "
                            "model")
        self.model = model.eval()
        self.cam = GradCAM(model=self.model, target_layers=[target_layer(self.model)],
                           reshape_transform=_tokens_to_grid(self.model))

    def maps(self, images, class_indices):
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

        targets = [ClassifierOutputTarget(int(index)) for index in class_indices]
        with torch.enable_grad():
            return self.cam(input_tensor=images, targets=targets)

    def close(self):
        self.cam.activations_and_grads.release()


def overlay(rgb_image, heat_map, image_weight=0.55):
    """The heat map blended onto the photo (uint8 RGB, same size as the map)."""
    from pytorch_grad_cam.utils.image import show_cam_on_image

    return show_cam_on_image(np.asarray(rgb_image, dtype=np.float32) / 255.0, heat_map, use_rgb=True,
                             image_weight=image_weight)


def explained_images(model, checkpoint, paths, class_indices, device, batch_size=16):
    """Yield (path, eval crop, Grad-CAM overlay for the given class) per image, both uint8 RGB of the model's
    input size, computed a batch at a time on `device`."""
    transform = inference.eval_transform(checkpoint)
    to_input = inference.model_input(checkpoint, device)
    crop = inference.eval_crop_transform(checkpoint)
    cam = GradCam(model.to(device))
    try:
        for start in range(0, len(paths), batch_size):
            batch_paths = paths[start:start + batch_size]
            images = [inference.read_photo(path, checkpoint) for path in batch_paths]
            tensors = to_input(torch.stack([transform(image=image)["image"] for image in images]))
            heat_maps = cam.maps(tensors, class_indices[start:start + batch_size])
            for path, image, heat_map in zip(batch_paths, images, heat_maps):
                cropped = crop(image=image)["image"]
                yield path, cropped, overlay(cropped, heat_map)
    finally:
        cam.close()
