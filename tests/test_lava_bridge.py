"""The bridge to the Lava runtime when Lava itself fails: an exception inside a process model must
end the call at once with the model's error, not hang until the timeout (Lava 0.10 deadlocks
there; targets/lava_worker.py ``fail_fast``). Lava runs in its managed runtime; it is required."""
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from spikeport.targets import bridge, lava_env

FAULT = Path(__file__).parent / "data" / "lava_fault"

DRIVER = """
import importlib.util
import sys
from pathlib import Path
spec = importlib.util.spec_from_file_location("lava_worker", sys.argv[3])  # not its folder on the path:
lava_worker = importlib.util.module_from_spec(spec)                        # targets/lava.py would shadow lava
spec.loader.exec_module(lava_worker)
lava_worker.mount({"spikeport.targets": sys.argv[4]})
d = Path(sys.argv[1])
if sys.argv[5] == "fail_fast":
    lava_worker.fail_fast(d)
sys.path.insert(0, sys.argv[2])               # the faulty process, alone in its folder
import numpy as np
from faulty import Faulty
from lava.magma.core.run_conditions import RunSteps
from lava.magma.core.run_configs import Loihi2SimCfg
from lava.proc.dense.process import Dense
from lava.proc.lif.process import LIF

src, syn, lif = Faulty(), Dense(weights=np.eye(3, dtype=int)), LIF(shape=(3,))
src.s_out.connect(syn.s_in)
syn.a_out.connect(lif.a_in)
lif.run(condition=RunSteps(num_steps=10), run_cfg=Loihi2SimCfg(select_tag="fixed_pt"))
lif.stop()
print("the run returned")
"""


def run_driver(tmp_path, mode: str, timeout: float) -> str:
    """The driver in the Lava runtime, in a process session of its own (fail_fast kills its own
    session, never ours; a hung run's Lava processes are killed with it). Returns its stdout;
    raises subprocess.TimeoutExpired when it did not end in ``timeout`` seconds."""
    py = lava_env.ensure()
    proc = subprocess.Popen([str(py), "-I", "-c", DRIVER, str(tmp_path), str(FAULT), str(bridge.WORKER),
                             str(bridge.WORKER.parent), mode], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
        return out
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        proc.wait()


def test_a_failing_process_model_ends_the_call_with_its_error(tmp_path):
    t0 = time.monotonic()
    out = run_driver(tmp_path, "fail_fast", timeout=120)
    took = time.monotonic() - t0
    assert "the run returned" not in out
    response = json.loads((tmp_path / "response.json").read_text())
    assert response["ok"] is False and response["error_type"] == "ValueError"
    assert "failing at step 3 on purpose" in response["error"] and "PyFaulty" in response["error"]
    assert "run_spk" in response["traceback"]
    assert took < 60, f"the failing call took {took:.0f} s"


def test_without_fail_fast_lava_hangs_on_the_same_model(tmp_path):
    """What fail_fast is for: Lava alone never returns (checked for 15 s)."""
    with pytest.raises(subprocess.TimeoutExpired):
        run_driver(tmp_path, "plain", timeout=15)
    assert not (tmp_path / "response.json").exists()


def test_the_bridge_reads_the_error_of_a_worker_that_killed_its_session(tmp_path, monkeypatch):
    """The caller's side of fail_fast: the worker's session is gone (SIGKILL), its response stands
    and is raised with the model's message (ValueError as ValueError)."""
    worker = tmp_path / "worker.py"
    worker.write_text(
        "import json, os, signal, subprocess, sys, time\n"
        "d = sys.argv[1]\n"
        "subprocess.Popen(['sleep', '300'])  # a Lava process that would outlive the worker\n"
        "json.dump({'protocol': 1, 'ok': False, 'error_type': 'ValueError', 'error': 'bad step (raised in "
        "Lava\\'s process model PyX)'}, open(os.path.join(d, 'response.json'), 'w'))\n"
        "os.killpg(os.getpgrp(), signal.SIGKILL)\n"
        "time.sleep(300)\n")
    monkeypatch.setattr(bridge, "WORKER", worker)
    t0 = time.monotonic()
    with pytest.raises(ValueError, match=r"bad step \(raised in Lava's process model PyX\)"):
        bridge.call("versions", timeout=60)
    assert time.monotonic() - t0 < 30
