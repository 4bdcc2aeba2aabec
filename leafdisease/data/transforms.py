"""What every reader of a model applies to a photo: the evaluation resize and crop, and the model's input
(normalised, on the device, in its memory format). Training's augmentations are in the root dataset.py."""
import albumentations as A
import cv2
import torch
from albumentations.pytorch import ToTensorV2

# The eval resize's interpolation, by timm's name (exported configs carry it) and as OpenCV's flag.
EVAL_INTERPOLATION = "bilinear"
_CV2_INTERPOLATION = {"bilinear": cv2.INTER_LINEAR}
DEFAULT_CROP_PCT = 0.875


def eval_pipeline(img_size, crop_pct=DEFAULT_CROP_PCT):
    """The evaluation steps: the short side resized to img_size / crop_pct, then a centre crop of img_size."""
    return [
        A.SmallestMaxSize(max_size=int(round(img_size / crop_pct)),
                          interpolation=_CV2_INTERPOLATION[EVAL_INTERPOLATION]),
        A.CenterCrop(height=img_size, width=img_size),
    ]


def eval_transform(img_size, crop_pct=DEFAULT_CROP_PCT, to_tensor=True):
    """eval_pipeline as an albumentations pipeline returning a uint8 CHW tensor (ModelInput makes the model's input
    of it), or with to_tensor=False the HWC uint8 image, for plotting."""
    return A.Compose(eval_pipeline(img_size, crop_pct) + ([ToTensorV2()] if to_tensor else []))


class ModelInput:
    """Turns a batch of transformed images (uint8, N x 3 x H x W, as a loader yields them) into the model's input:
    on `device`, float, normalised with the pretrained mean and std (0-1 scale, the model's data config) so the
    pretrained features see what they expect, in the model's memory format.

    Normalising here rather than in each loader worker (timm's PrefetchLoader does the same) saves the workers a
    float pass per image (benchmarks/feeding.md) and sends a quarter of the bytes through the workers' shared
    memory and the pinned-memory copy; on a GPU the arithmetic costs nothing.
    """

    def __init__(self, device, mean, std, channels_last=False):
        self.device = torch.device(device)
        self.channels_last = channels_last
        shape = (1, len(mean), 1, 1)
        # Put on the device once: made per batch, they would be copied from pageable memory, and such a copy makes
        # the host wait for the GPU's queued work at every step.
        self.mean = (torch.tensor(mean, dtype=torch.float32) * 255).view(shape).to(self.device)
        self.std = (torch.tensor(std, dtype=torch.float32) * 255).view(shape).to(self.device)

    @classmethod
    def for_config(cls, config, device, channels_last=False):
        """From anything that carries the model's "mean" and "std": timm's data config, a checkpoint, an exported
        model's card."""
        return cls(device, [float(value) for value in config["mean"]], [float(value) for value in config["std"]],
                   channels_last)

    def __call__(self, images):
        images = images.to(self.device, non_blocking=True).float().sub_(self.mean).div_(self.std)
        return images.contiguous(memory_format=torch.channels_last) if self.channels_last else images

