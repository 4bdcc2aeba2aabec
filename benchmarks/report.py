"""What every benchmark report states besides its numbers: the machine, the date, the exact command."""
import datetime
import os
import platform
import shlex
from pathlib import Path

import cv2
import pandas as pd
import torch

from leafdisease.utils import runtime

ROOT = Path(__file__).resolve().parent.parent


def _cpu_model():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _ram_gib():
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 2 ** 20
    except OSError:
        pass
    return float("nan")


def machine_lines():
    """Markdown bullet lines describing where the numbers were measured (load average included: a busy
    machine makes every rate lower)."""
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    gpu = (f"{torch.cuda.get_device_name(0)} (CUDA {torch.version.cuda}, {torch.cuda.device_count()} device(s))"
           if torch.cuda.is_available() else "none")
    return [
        f"- CPU: {_cpu_model()}, `nproc` = {runtime.available_cores()}; RAM {_ram_gib():.1f} GiB; load average at start {load}",
        f"- GPU: {gpu}",
        f"- torch {torch.__version__} ({torch.get_num_threads()} intra-op threads, OMP_WAIT_POLICY="
        f"{os.environ.get('OMP_WAIT_POLICY', 'unset')}), OpenCV {cv2.__version__} "
        f"({cv2.getNumThreads()} threads), Python {platform.python_version()}, {platform.platform()}",
    ]


def start_snapshot():
    """The date and machine description when a benchmark starts (the load average then, not at the end)."""
    return {"date": datetime.datetime.now(), "machine": machine_lines()}


def header_lines(title, snapshot, script, argv):
    command = " ".join(shlex.quote(str(part)) for part in ["python", script, *argv])
    return [f"# {title}", "", f"- Date: {snapshot['date']:%Y-%m-%d %H:%M} (local time)",
            f"- Command (from `{ROOT}`): `{command}`", *snapshot["machine"], ""]


def markdown_table(frame):
    """A pandas DataFrame of already-formatted cells as a GitHub markdown table."""
    columns = [str(column) for column in frame.columns]
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in frame.itertuples(index=False)]
    return lines


def run_end_stamp():
    """What a benchmark records beside each run's result: when it ended and the 1-minute load average then (other
    work on the cores slows the runs it overlaps, so a report says which runs shared the machine)."""
    return {"finished_at": datetime.datetime.now().isoformat(timespec="minutes"),
            "load_average": round(os.getloadavg()[0], 2)}


def runs_ended_line(runs, by):
    """'- When the runs ended: ...' from the rows' run_end_stamp, one part per value of column `by`; rows of a
    report written before the stamp existed are counted as having none."""
    parts = []
    for value, group in runs.groupby(by, sort=False):
        label = str(value).replace("_", " ")
        stamped = group.dropna(subset=["finished_at"]) if "finished_at" in group else group.iloc[:0]
        unrecorded = len(group) - len(stamped)
        note = f"{unrecorded} row(s) of an earlier report without a record"
        if not len(stamped):
            parts.append(f"{label}: {note}")
            continue
        ended, load = pd.to_datetime(stamped["finished_at"]), stamped["load_average"].astype(float)
        parts.append(f"{label}: {ended.min():%Y-%m-%d %H:%M} to {ended.max():%Y-%m-%d %H:%M}, load average "
                     f"{load.min():.1f}-{load.max():.1f} as each ended" + (f" ({note})" if unrecorded else ""))
    return "- When the runs ended (local time): " + "; ".join(parts) + "."
