"""Progress bars that stay readable in logs: tqdm on a terminal, plain lines every LOG_SECONDS elsewhere.

A carriage-return bar written to a file (nohup, a cluster job's log) becomes one enormous line of redraws; a
line every LOG_SECONDS and one when the pass ends keeps such logs short and greppable.
"""
import sys
import time

from tqdm import tqdm

LOG_SECONDS = 30
LOG_FORMAT = "{desc}: {percentage:3.0f}% {n_fmt}/{total_fmt} [{elapsed}<{remaining}, {rate_fmt}{postfix}]"


class LogLines(tqdm):
    """tqdm that writes a plain, newline-terminated line at most every LOG_SECONDS and once at the end."""

    def __init__(self, *args, **kwargs):
        kwargs.update(mininterval=LOG_SECONDS, maxinterval=LOG_SECONDS, bar_format=LOG_FORMAT, dynamic_ncols=False)
        # tqdm draws the bar on creation (a 0 % line says nothing in a log) and on every set_postfix: only
        # LOG_SECONDS after the previous line does display() write one.
        self._last_line = time.monotonic()
        self._lines_written_at_n = kwargs.get("initial", 0)
        super().__init__(*args, **kwargs)

    def display(self, msg=None, pos=None, force=False):
        if msg == "":  # tqdm clearing its bar: a log has nothing to clear (False: no '\r' either)
            return False
        now = time.monotonic()
        if force or now - self._last_line >= LOG_SECONDS:
            self.fp.write(self.__str__().strip() + "\n")
            self.fp.flush()
            self._last_line, self._lines_written_at_n = now, self.n
        return True

    def close(self):
        if not self.disable and self.n != self._lines_written_at_n:
            self.display(force=True)
        self.leave = False
        super().close()


def bar(iterable=None, **kwargs):
    """tqdm(iterable, **kwargs) when its stream (stderr by default) is a terminal; else LogLines, on stdout by
    default, so that progress joins the run's log and stderr keeps only warnings and errors."""
    stream = kwargs.get("file") or sys.stderr
    if getattr(stream, "isatty", lambda: False)():
        return tqdm(iterable, **kwargs)
    if kwargs.get("disable") is None:
        kwargs["disable"] = False  # tqdm's None means "off unless a terminal"; logs get lines instead
    kwargs.setdefault("file", sys.stdout)
    return LogLines(iterable, **kwargs)
