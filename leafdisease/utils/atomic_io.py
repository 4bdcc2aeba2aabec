"""Write every output file under a temporary name and rename it, so a crash never leaves half a file.

The temporary file is flushed to disk (fsync) before the rename and the folder after it: without that, a power
loss shortly after the rename can leave the new name pointing at an empty or partial file on common filesystems
(ext4 delayed allocation, XFS). A read-only file is never replaced. JSON is strict (RFC 8259): NaN and infinities
are written as null, which every parser reads, where Python's default would write bare NaN.
"""
import json
import math
import numbers
import os
import stat
import tempfile
from contextlib import contextmanager
from pathlib import Path

from leafdisease.utils.errors import UserError


@contextmanager
def atomic_path(path):
    """Yield a temporary path beside `path`; on success it replaces `path` in one rename.

    The temporary name keeps the final suffix so libraries that pick a format from it (matplotlib,
    pandas) still do the right thing.
    """
    path = Path(path)
    if path.is_file() and is_read_only(path):
        raise UserError(f"{path}: read-only; not replaced (make it writable, or write elsewhere)")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}")
    except OSError as error:
        raise UserError(f"{path}: cannot write here ({error.strerror})") from None
    os.close(fd)
    tmp_path = Path(tmp_name)
    default_permissions(tmp_path)
    try:
        yield tmp_path
        _fsync(tmp_path)
        os.replace(tmp_path, path)
        _fsync(path.parent)
    except OSError as error:
        raise UserError(f"{path}: write failed ({error.strerror}); the previous file, if any, is intact") from None
    finally:
        tmp_path.unlink(missing_ok=True)


def is_read_only(path):
    """Whether an existing file or folder is read-only: this user may not write it, or no one may by its permission
    bits (root may write anything, so for root the bits are what says 'read-only')."""
    return not os.access(path, os.W_OK) or not stat.S_IMODE(os.stat(path).st_mode) & 0o222


def default_permissions(path):
    """Give `path` the permissions a plain open() would (mkstemp and some writers, safetensors' among them,
    create 0600 files)."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def _fsync(path):
    """Flush a file's (or a folder's entries') data to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_stale_temporaries(directory):
    """Delete temporaries a killed process left behind (atomic_path names them .<stem>.*.tmp<suffix>)."""
    for leftover in Path(directory).glob(".*.tmp*"):
        leftover.unlink(missing_ok=True)


def write_text(path, text):
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def json_values(obj):
    """`obj` with every number a plain JSON number: NaN and infinities become None (null), numpy scalars Python
    ones; dicts, lists and tuples are walked."""
    if isinstance(obj, dict):
        return {key: json_values(value) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_values(value) for value in obj]
    if isinstance(obj, bool) or not isinstance(obj, numbers.Real):
        return obj
    if isinstance(obj, numbers.Integral):
        return int(obj)
    return float(obj) if math.isfinite(obj) else None


def json_text(obj, indent=None):
    """Strict JSON of `obj` (json_values; anything else JSON has no type for, e.g. a path, as its text)."""
    return json.dumps(json_values(obj), indent=indent, default=str, allow_nan=False)


def write_json(path, obj):
    write_text(path, json_text(obj, indent=2) + "\n")


def write_csv(path, frame):
    """Write a pandas DataFrame without its index."""
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)


def save_figure(fig, path, dpi=110):
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight")
    plt.close(fig)


def save_torch(obj, path):
    import torch

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
