"""What the training tests share: train.py's flags for a tiny, fast run (timm's test model, random weights, 32 px),
one stage run with them, and reading a checkpoint back."""
import torch

import train

TINY_ARGS = ["--model", "test_efficientnet", "--no-pretrained", "--img-size", "32", "--batch-size", "8",
                   "--workers", "0"]


def run_stage(data_dir, output, *extra):
    """train.py on `data_dir` into `output` with the tiny flags and `extra`; returns `output`."""
    train.run(train.parse_args(["--data-dir", str(data_dir), "--output", str(output), *TINY_ARGS, *extra]))
    return output


def load_checkpoint(path):
    return torch.load(path, map_location="cpu", weights_only=True)
