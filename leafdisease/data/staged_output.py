"""Write a dataset folder (data/cleaned, the demo) in parallel into a staging folder and rename it into place.

The staging folder sits beside the output, named with the process id, and replaces the output only when it is
complete, so an interrupted run never leaves a half-written folder or a mix of two runs under the output's name.
The next run removes the staging and swap folders a killed run left (its process is gone), never those of a run
still writing. The per-image work runs in worker processes, with a progress bar counting images.
"""
import multiprocessing
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

import cv2

from leafdisease.utils.errors import UserError
from leafdisease.utils.progress import bar as progress_bar


@contextmanager
def staged_folder(out_dir, writer):
    """Yield a new, empty staging folder beside `out_dir`; when the block completes it replaces `out_dir` (whose
    previous content is deleted), when the block fails it is deleted and `out_dir` stays as it was. `writer` names
    the kind of run in the message about a killed run's leftovers ("cleaning")."""
    out_dir = Path(out_dir)
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        remove_abandoned(out_dir, writer)
        staging = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.staging-{os.getpid()}-"))
        staging.chmod(0o755)  # mkdtemp makes it private; the swapped-in dataset should not be
    except OSError as error:
        raise UserError(f"{out_dir}: cannot create the output folder ({error.strerror})") from None
    try:
        yield staging
        _swap_in(staging, out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _swap_in(staging, out_dir):
    previous = out_dir.with_name(f".{out_dir.name}.previous-{os.getpid()}")
    try:
        if out_dir.exists():
            os.rename(out_dir, previous)
        os.rename(staging, out_dir)
    except OSError as error:
        if previous.exists() and not out_dir.exists():
            os.rename(previous, out_dir)
        raise UserError(f"{out_dir}: cannot replace it with the new output ({error.strerror})") from None
    shutil.rmtree(previous, ignore_errors=True)


def remove_abandoned(out_dir, writer):
    """Delete the staging and swap folders a killed run left beside out_dir (named with their process id); those
    of a run still going are left alone. staged_folder calls it; a writer that finds its output up to date and
    writes nothing calls it itself."""
    for leftover in out_dir.parent.glob(f".{out_dir.name}.*-*"):
        kind, _, rest = leftover.name[len(out_dir.name) + 2:].partition("-")
        pid = rest.split("-")[0]
        if kind not in ("staging", "previous") or not pid.isdigit() or _process_alive(int(pid)):
            continue
        shutil.rmtree(leftover, ignore_errors=True)
        print(f"removed {leftover}, left by an interrupted {writer} (process {pid})")


def _process_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return pid != 0


def _init_worker():
    # Each worker handles one image at a time; OpenCV's own threads would only fight the other workers.
    cv2.setNumThreads(1)


def map_parallel(function, items, workers, description, progress=True):
    """[function(item) for item in items], in order, computed by up to `workers` worker processes (in this process
    when workers is 1), with a progress bar named `description` unless `progress` is False."""
    bar = {"total": len(items), "desc": description, "unit": "img", "disable": None if progress else True}
    if workers == 1 or len(items) < 2:
        return [function(item) for item in progress_bar(items, **bar)]
    chunksize = max(1, min(64, len(items) // (workers * 8)))
    # spawn, not fork: a forked child inherits OpenCV's and OpenMP's thread pools in a broken state and can hang
    # in its first OpenCV call (seen under pytest once other tests had used them).
    with multiprocessing.get_context("spawn").Pool(min(workers, len(items)), initializer=_init_worker) as pool:
        return list(progress_bar(pool.imap(function, items, chunksize=chunksize), **bar))
