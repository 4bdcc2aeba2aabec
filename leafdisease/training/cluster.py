"""Multi-process runs that cannot diverge: refuse a launch that would start N independent trainings, let rank 0
decide what every rank must agree on, and fail every rank loudly when one of them cannot do its part.

Without these, a node that cannot see the shared output folder starts from epoch 1 while the others resume,
and a rank that fails alone leaves the others waiting forever in their next collective.
"""
import os
import socket

import torch.distributed as dist

from leafdisease.utils.errors import UserError

SHARED_FILESYSTEM_HINT = ("every node must see the same --data-dir and --output (a shared filesystem, or identical "
                          "copies); see README, 'More than one GPU or machine'")


def refuse_srun_without_torchrun():
    """`srun python train.py` with several tasks starts that many single-process trainings writing one folder."""
    tasks = int(os.environ.get("SLURM_STEP_NUM_TASKS") or os.environ.get("SLURM_NTASKS") or 1)
    if tasks > 1 and "WORLD_SIZE" not in os.environ:
        raise UserError(
            f"SLURM started {tasks} tasks of train.py without torchrun, so each would train alone: launch one task "
            f"per node that runs torchrun, e.g. srun --ntasks-per-node=1 .venv/bin/python -m torch.distributed.run "
            f"--nnodes=$SLURM_NNODES --nproc_per_node=GPUS_PER_NODE --rdzv_backend=c10d "
            f"--rdzv_endpoint=$(hostname):29500 train.py ...")


def decide(rank, world_size, decide_fn):
    """decide_fn() on rank 0 only; its result, or its UserError, is what every rank gets."""
    if world_size == 1:
        return decide_fn()
    payload = [None]
    if rank == 0:
        try:
            payload = [("ok", decide_fn())]
        except UserError as error:
            payload = [("error", str(error))]
    dist.broadcast_object_list(payload, src=0)
    kind, value = payload[0]
    if kind == "error":
        raise UserError(value)
    return value


def on_every_rank(world_size, what, function):
    """function() on every rank; when it fails on any rank, every rank raises one UserError naming the first
    failing rank and its host, instead of the others waiting for it."""
    result, error = None, None
    try:
        result = function()
    except UserError as caught:
        error = str(caught)
    if world_size == 1:
        if error:
            raise UserError(error)
        return result
    reports = [None] * world_size
    dist.all_gather_object(reports, (socket.gethostname(), error))
    failed = [(rank, host, message) for rank, (host, message) in enumerate(reports) if message]
    if failed:
        rank, host, message = failed[0]
        raise UserError(f"rank {rank} on {host} cannot {what}: {message}"
                        + (f"; {SHARED_FILESYSTEM_HINT}" if rank != 0 else ""))
    return result


def same_on_every_rank(world_size, what, value):
    """Refuse a run whose ranks see different `value`s (e.g. different copies of the dataset)."""
    if world_size == 1:
        return
    values = [None] * world_size
    dist.all_gather_object(values, (socket.gethostname(), value))
    for rank, (host, other) in enumerate(values):
        if other != values[0][1]:
            raise UserError(f"rank {rank} on {host} sees a different {what} than rank 0 on {values[0][0]}; "
                            f"{SHARED_FILESYSTEM_HINT}")
