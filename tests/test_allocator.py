"""train.allocator: CPU training keeps its freed buffers instead of faulting them in every iteration.

The malloc settings are process-wide, so the measurements run in child processes (this file as a
script): training steps of the 784-800-10 benchmark workload (T = 20, batch 64), counted in minor
page faults per step, with and without ``keep_freed_memory``.
"""
from __future__ import annotations

import os
import resource
import subprocess
import sys

import pytest

from spikeport.train import allocator
from spikeport.train.allocator import ENV, keep_freed_memory


def _faults_per_iteration(keep: bool) -> float:
    import torch
    from spikeport.train.losses import LossSpec
    from spikeport.train.network import NeuronSpec, build_network
    if keep:
        print(keep_freed_memory(), file=sys.stderr)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    net = build_network("784-800-10", NeuronSpec(model="lif", decay=0.2, v_threshold=0.5))
    loss_fn = LossSpec("rate_mse")
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    x = (torch.rand(20, 64, 784) < 0.2).float()
    y = torch.arange(64) % 10

    def iteration():  # one training step of bench/train_throughput.py's workload
        loss = loss_fn(net(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(3):
        iteration()
    r0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(10):
        iteration()
    return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - r0) / 10


def _child(keep: bool) -> float:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "GLIBC_TUNABLES"}
    env.pop(ENV, None)
    out = subprocess.run([sys.executable, __file__, "keep" if keep else "default"], env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return float(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(allocator._glibc() is None, reason="the setting exists on glibc only")
def test_kept_memory_stops_the_page_faults_of_every_iteration():
    default, kept = _child(False), _child(True)
    assert default > 1000  # the step's freed buffers go back to the kernel and fault in again
    assert kept < 300, (default, kept)


def test_off_and_bad_values(monkeypatch):
    monkeypatch.setenv(ENV, "0")
    assert "left alone" in keep_freed_memory()
    monkeypatch.setenv(ENV, "lots")
    with pytest.raises(ValueError, match=f"{ENV}='lots'"):
        keep_freed_memory()
    monkeypatch.setenv(ENV, "-5")
    with pytest.raises(ValueError, match="-5"):
        keep_freed_memory()


def test_users_malloc_settings_win(monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "1048576")
    assert "environment" in keep_freed_memory()


if __name__ == "__main__":
    print(_faults_per_iteration(sys.argv[1] == "keep"))
