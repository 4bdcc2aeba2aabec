"""What a training run leaves besides checkpoints: train.log (a copy of its console) and, with --log tensorboard,
TensorBoard event files (every numeric history column as a scalar, the curves and confusion matrix as images)."""
import math
import numbers
import sys
from contextlib import contextmanager
from pathlib import Path

import cv2

from leafdisease.utils.errors import UserError

LOG_FILE = "train.log"
TENSORBOARD_DIR = "tensorboard"
LOGGERS = ("none", "tensorboard")


class _Tee:
    """A console stream that also appends to the log file; tqdm's in-place updates ('\\r') stay on the console."""

    def __init__(self, stream, log_file):
        self._stream = stream
        self._log_file = log_file

    def write(self, text):
        self._stream.write(text)
        if "\r" not in text:
            self._log_file.write(text)
        return len(text)

    def flush(self):
        self._stream.flush()
        self._log_file.flush()

    def __getattr__(self, name):  # isatty, fileno, encoding...: the console's, so tqdm behaves as before
        return getattr(self._stream, name)


class _LogFile:
    """Appends to `path` once opened; until then it keeps what was written, so a run refused before any work
    (bad options, paths or data) leaves no log behind."""

    def __init__(self, path):
        self.path = Path(path)
        self._pending = []
        self._file = None

    def open(self):
        if self._file is not None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "a", buffering=1)
        except OSError as error:
            raise UserError(f"{self.path}: cannot write the run log ({error.strerror})") from None
        self._file.write("".join(self._pending))
        self._pending = []

    def write(self, text):
        if self._file is None:
            self._pending.append(text)
        else:
            self._file.write(text)

    def flush(self):
        if self._file is not None:
            self._file.flush()

    def close(self):
        if self._file is not None:
            self._file.close()


@contextmanager
def console_copy(path, enabled=True, deferred=False):
    """Inside, stdout and stderr are also appended to `path` (a resumed run continues its log), including the
    one-line error a UserError ends the run with. deferred: the file is only created when the yielded log's
    open() is called (train.py calls it once the run has passed its checks); what came before is copied then."""
    if not enabled:
        yield None
        return
    log_file = _LogFile(path)
    if not deferred:
        log_file.open()
    stdout, stderr = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = _Tee(stdout, log_file), _Tee(stderr, log_file)
    try:
        yield log_file
    except UserError as error:
        log_file.write(f"error: {error}\n")
        raise
    finally:
        sys.stdout, sys.stderr = stdout, stderr
        log_file.close()


def _tag(column):
    """history column -> TensorBoard tag: train_loss -> train/loss, val_acc -> val/acc, lr -> run/lr."""
    for split in ("train", "val"):
        if column.startswith(f"{split}_"):
            return f"{split}/{column[len(split) + 1:]}"
    return f"run/{column}"


def require_tensorboard():
    """torch's SummaryWriter; a missing tensorboard package is a one-line error saying what to do."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise UserError("--log tensorboard: the tensorboard package is not installed; `pip install tensorboard`, "
                        "or train without --log") from None
    return SummaryWriter


class TensorBoardLog:
    """TensorBoard event files in <run folder>/tensorboard/."""

    def __init__(self, run_folder, first_epoch=1):
        SummaryWriter = require_tensorboard()
        # purge_step: a resumed run drops events a killed run logged past its last saved epoch.
        self.writer = SummaryWriter(log_dir=str(Path(run_folder) / TENSORBOARD_DIR), purge_step=first_epoch)

    def epoch(self, row):
        """Every numeric column of one history row, at step = its epoch."""
        epoch = int(row["epoch"])
        for column, value in row.items():
            if column != "epoch" and isinstance(value, numbers.Real) and not isinstance(value, bool):
                self.writer.add_scalar(_tag(column), float(value) if math.isfinite(value) else math.nan, epoch)

    def figure(self, tag, png_path, epoch):
        """A PNG the run wrote (curves, confusion matrix) as an image at step = epoch."""
        image = cv2.imread(str(png_path), cv2.IMREAD_COLOR)
        if image is not None:
            self.writer.add_image(tag, cv2.cvtColor(image, cv2.COLOR_BGR2RGB), epoch, dataformats="HWC")

    def flush(self):
        self.writer.flush()

    def close(self):
        self.writer.close()
