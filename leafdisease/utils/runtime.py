"""How a process uses the machine, decided once for every entry script (train.py, predict.py, evaluate.py,
export.py, benchmarks/): OMP_WAIT_POLICY, the cores it may use and the data-loading settings that follow from
them, device and distributed setup, the mixed-precision dtype and autocast, and the channels_last rule.

Entry scripts import this module before anything that imports torch (it sets OMP_WAIT_POLICY first). torch itself
is imported only by the functions that need it, so cleaning and the reports can ask for the core count without
loading it. Modelled on torchvision's references/classification/utils.py and timm/utils/distributed.py.
"""
import os
from contextlib import nullcontext
from dataclasses import dataclass

from leafdisease.utils.errors import UserError

# Must precede `import torch`: OpenMP threads that spin while waiting lose their core to the data-loading
# workers on small machines and slow training several-fold (benchmarks/reports/speed.md); sleeping threads don't.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

AMP_CHOICES = ("auto", "bf16", "fp16", "off")
CHANNELS_LAST_CHOICES = ("auto", "on", "off")


# ----------------------------------------------------------------------------------------------------
# Cores and data loading
# ----------------------------------------------------------------------------------------------------
def available_cores():
    """Cores this process may run on: its CPU affinity (what a container, `taskset` or a batch scheduler grants),
    not the machine's core count, which os.cpu_count() reports."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS and Windows have no sched_getaffinity
        return os.cpu_count() or 1


def default_workers(processes=1):
    """Loader processes per training/inference process: the available cores shared among the processes of a
    run (torchrun's --nproc_per_node), less one core per process for the process itself, which drives the
    model; at least one."""
    return max(1, available_cores() // processes - 1)


def loader_options(workers, device_type):
    """DataLoader settings for feeding a model on `device_type`: page-locked (pinned) batches for asynchronous
    copies to a GPU, workers kept alive between epochs (no start-up pause each epoch). Prefetching is the
    DataLoader's own: each worker keeps 2 batches ready (prefetch_factor), 2 x workers in flight, which at a
    GPU's rate is ample, while every extra batch per worker costs shared memory."""
    return dict(num_workers=workers, pin_memory=device_type == "cuda", persistent_workers=workers > 0)


# ----------------------------------------------------------------------------------------------------
# Device and processes
# ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Process:
    """This process's place in a run: rank 0 of 1 without torchrun."""
    rank: int
    world_size: int
    local_rank: int
    device: object  # torch.device
    distributed: bool

    @property
    def is_main(self):
        return self.rank == 0


def launched_rank():
    """This process's rank as torchrun set it (0 without torchrun), readable before setup_process."""
    return int(os.environ.get("RANK", "0"))


def resolve_device(device_arg, local_rank=0, world_size=1):
    """--device (auto | cpu | cuda | cuda:N) as a torch.device. Under torchrun each process takes its local GPU;
    a bare 'cuda' gets an explicit index, which DDP's device_ids need."""
    import torch

    if device_arg == "auto":
        return torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(device_arg)
    except RuntimeError:
        raise UserError(f"--device {device_arg}: not a device (use auto, cpu, cuda or cuda:N)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {device_arg}: CUDA is not available on this machine")
    if device.type == "cuda" and (world_size > 1 or device.index is None):
        device = torch.device(f"cuda:{local_rank}")
    return device


def setup_process(device_arg):
    """The device of this process, and the process group under torchrun (which sets RANK and WORLD_SIZE), even
    for one process, so `torchrun --nproc_per_node=1` runs the same code as a multi-GPU job."""
    import torch
    import torch.distributed as dist

    distributed = "RANK" in os.environ and "WORLD_SIZE" in os.environ
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = launched_rank()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_arg, local_rank, world_size)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if distributed:
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return Process(rank=rank, world_size=world_size, local_rank=local_rank, device=device, distributed=distributed)


def teardown_process(process):
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


# ----------------------------------------------------------------------------------------------------
# Precision and memory format
# ----------------------------------------------------------------------------------------------------
def amp_dtype(amp_arg, device):
    """The autocast dtype for --amp on this device: None (off) on CPU; auto is bf16 where the GPU supports it."""
    import torch

    if device.type != "cuda" or amp_arg == "off":
        return None
    if amp_arg == "fp16" or (amp_arg == "auto" and not torch.cuda.is_bf16_supported()):
        return torch.float16
    return torch.bfloat16


def autocast(device, dtype):
    """A fresh torch.autocast context for `dtype` (one per `with`), or a no-op when mixed precision is off."""
    import torch

    return torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext()


def use_channels_last(setting, device):
    """channels_last pays on CUDA (tensor cores want NHWC) and on the CPU too (oneDNN's NHWC kernels: a training step
    of tf_efficientnet_lite0 took 35 % less CPU time at 128 px and 41 % less at 192 px, an evaluation pass 30 % less,
    benchmarks/reports/step_speed.md): 'auto' means on for both."""
    return setting == "on" or (setting == "auto" and device.type in ("cuda", "cpu"))


def memory_format(channels_last):
    import torch

    return torch.channels_last if channels_last else torch.contiguous_format
