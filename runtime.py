"""How a process uses the machine: the cores it may use and the data-loading settings that follow from them.

Shared by every entry script (train.py, predict.py, evaluate.py, benchmarks/), so they agree.
"""
import os


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
