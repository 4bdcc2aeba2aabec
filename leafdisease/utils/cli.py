"""Command-line checks shared by every script: one-line argument errors, option ranges and output paths.

Each script's parse_args builds its parser with `ArgumentParser` (so argparse's own errors are one line, not
usage + message) and ends with `check_options(parser, args, RULES)`, where RULES maps an option's dest to a
`Range`. Paths are checked with `check_output_dir` / `check_output_file` / `check_not_inside` before any work
starts, so a bad option or path exits 2 with one line naming it and nothing written.
"""
import argparse
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from leafdisease.utils.atomic_io import is_read_only
from leafdisease.utils.errors import UserError


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose errors (unknown option, missing argument, bad choice or type) are an errors.UserError:
    one line 'error: ...' and exit 2 under errors.cli_entry."""

    def error(self, message):
        raise UserError(f"{message} (see {self.prog} --help)")


@dataclass(frozen=True)
class Range:
    """Allowed values of a numeric option: finite, integer or not, with optional (open or closed) bounds."""

    low: float = None
    high: float = None
    low_open: bool = False
    high_open: bool = False
    integer: bool = False

    def allows(self, value):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return False
        if self.integer and value != int(value):
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or (value < self.high if self.high_open else value <= self.high)

    def __str__(self):
        kind = "an integer" if self.integer else "a number"
        if self.low is not None and self.high is not None:
            return (f"{kind} in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}"
                    f"{')' if self.high_open else ']'}")
        if self.low is not None:
            return f"{kind} {'>' if self.low_open else '>='} {self.low:g}"
        if self.high is not None:
            return f"{kind} {'<' if self.high_open else '<='} {self.high:g}"
        return f"a finite {'integer' if self.integer else 'number'}"


def at_least(low, integer=True):
    return Range(low=low, integer=integer)


POSITIVE_INT = at_least(1)
NON_NEGATIVE_INT = at_least(0)
POSITIVE = Range(low=0, low_open=True)
NON_NEGATIVE = Range(low=0)
FINITE = Range()
FRACTION = Range(low=0, high=1, high_open=True)  # [0, 1): probabilities, decays, smoothing
SHARE = Range(low=0, high=1, low_open=True)  # (0, 1]: a share of photos kept
SEED = Range(low=0, high=2**32 - 1, integer=True)  # numpy's seed range


def option_name(parser, dest):
    """The long option string of `dest` ('--img-size' for img_size), for messages."""
    for action in parser._actions:
        if action.dest == dest and action.option_strings:
            return max(action.option_strings, key=len)
    return dest


def check_options(parser, args, rules):
    """Raise a UserError naming the first option whose value is outside its Range; None (unset) passes."""
    for dest, allowed in rules.items():
        value = getattr(args, dest)
        if value is not None and not allowed.allows(value):
            raise UserError(f"{option_name(parser, dest)} {value}: must be {allowed}")


def check_device(option, device):
    """'auto', 'cpu', 'cuda' or 'cuda:N' (what torch.device accepts); availability is checked at setup."""
    if device == "auto":
        return
    import torch

    try:
        torch.device(device)
    except RuntimeError:
        raise UserError(f"{option} {device}: not a device (use auto, cpu, cuda or cuda:N)") from None


def check_input_file(option, path):
    if path is not None and not Path(path).is_file():
        kind = "a folder, not a file" if Path(path).is_dir() else "no such file"
        raise UserError(f"{option} {path}: {kind}")


def _nearest_existing(path):
    path = Path(os.path.abspath(path))
    while not path.exists():
        path = path.parent
    return path


def _check_writable_ancestor(option, path, shown=None):
    """The nearest existing folder at or above `path` is writable; messages name `option` and `shown` (the path
    the user gave, default `path`)."""
    shown = path if shown is None else shown
    ancestor = _nearest_existing(path)
    if not ancestor.is_dir():
        raise UserError(f"{option} {shown}: {ancestor} is a file, not a folder")
    if is_read_only(ancestor):  # root may write anywhere: a folder without write permission is refused anyway
        raise UserError(f"{option} {shown}: {ancestor} is read-only")
    try:
        # Try it rather than trust os.access: root, read-only mounts and ACLs all answer differently.
        with tempfile.TemporaryFile(dir=ancestor):
            pass
    except OSError as error:
        raise UserError(f"{option} {shown}: cannot write in {ancestor} ({error.strerror})") from None


def check_output_dir(option, path, replaced=False):
    """An output folder: absent (its nearest existing parent writable) or an existing writable folder. replaced:
    the folder is replaced whole by one staged beside it (staged_output.staged_folder), so its parent must be
    writable too."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"{option} {path}: exists and is not a folder")
    _check_writable_ancestor(option, path)
    if replaced:
        _check_writable_ancestor(option, Path(os.path.abspath(path)).parent, shown=path)


def check_output_file(option, path):
    """An output file: not a folder, not an existing read-only file (never replaced), and its folder (or nearest
    existing parent) writable."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{option} {path}: is a folder; give a file name")
    if path.is_file() and is_read_only(path):
        raise UserError(f"{option} {path}: read-only; it is not replaced (make it writable, or write elsewhere)")
    _check_writable_ancestor(option, path.parent)


def is_inside(path, folder):
    """True when `path` is `folder` or lies under it (symlinks resolved)."""
    path, folder = Path(path).resolve(), Path(folder).resolve()
    return path == folder or folder in path.parents


def check_not_inside(option, path, other_option, folder):
    """Refuse an output inside a folder that another step replaces or reads wholesale."""
    if folder is not None and Path(folder).exists() and is_inside(path, folder):
        raise UserError(f"{option} {path}: lies inside {other_option} {folder}; choose a folder outside it")
