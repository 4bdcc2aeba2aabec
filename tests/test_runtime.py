"""runtime.py: loader workers follow the cores this process may use, not the machine's core count."""
import os

import runtime


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
