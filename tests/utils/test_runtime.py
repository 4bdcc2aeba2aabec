"""runtime.py decides the machine questions once for every entry script: loader workers follow the cores this
process may use, one channels_last rule, AMP off on CPU, OMP_WAIT_POLICY set before torch loads."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from leafdisease.utils import runtime
from leafdisease.utils.errors import UserError

ROOT = Path(__file__).resolve().parents[2]


def test_default_workers_follow_cpu_affinity(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)), raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 128)  # a big host, of which this process may use 16 cores
    assert runtime.available_cores() == 16
    assert runtime.default_workers() == 15
    assert runtime.default_workers(processes=4) == 3  # torchrun --nproc_per_node=4 shares them
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0}, raising=False)
    assert runtime.default_workers() == 1  # never zero: a worker overlaps loading with the model's step


def test_loader_options_pin_memory_only_for_a_gpu():
    assert runtime.loader_options(3, "cuda") == {"num_workers": 3, "pin_memory": True, "persistent_workers": True}
    assert runtime.loader_options(0, "cpu") == {"num_workers": 0, "pin_memory": False, "persistent_workers": False}


def test_one_channels_last_rule():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert [runtime.use_channels_last(setting, cpu) for setting in ("auto", "on", "off")] == [True, True, False]
    assert [runtime.use_channels_last(setting, cuda) for setting in ("auto", "on", "off")] == [True, True, False]


def test_amp_is_off_on_cpu_and_autocast_is_a_no_op_then():
    cpu = torch.device("cpu")
    assert all(runtime.amp_dtype(choice, cpu) is None for choice in runtime.AMP_CHOICES)
    with runtime.autocast(cpu, None):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32


def test_a_bad_device_is_a_one_line_error():
    with pytest.raises(UserError, match="--device gpu0: not a device"):
        runtime.resolve_device("gpu0")


@pytest.mark.parametrize("script", ["train.py", "predict.py", "evaluate.py", "export.py"])
def test_entry_scripts_set_omp_wait_policy_before_torch_loads(script):
    code = (f"import os, sys; os.environ.pop('OMP_WAIT_POLICY', None); sys.argv = ['{script}']; "
            f"import runpy, builtins; real = builtins.__import__\n"
            f"def spy(name, *a, **k):\n"
            f"    if name == 'torch' and 'torch' not in sys.modules: print('policy at torch import:', "
            f"os.environ.get('OMP_WAIT_POLICY'))\n"
            f"    return real(name, *a, **k)\n"
            f"builtins.__import__ = spy\n"
            f"import importlib; importlib.import_module('{script[:-3]}')")
    env = {key: value for key, value in os.environ.items() if key != "OMP_WAIT_POLICY"}
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.splitlines()[0] == "policy at torch import: PASSIVE"
