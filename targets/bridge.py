"""The bridge to the Lava runtime: a small, versioned, file-based protocol.

spikeport runs on current Python and numpy 2; Lava runs on Python 3.10 with numpy < 2 in its own
environment (``targets/lava_env.py``). One call = one worker process in that environment:

1. the caller writes a request directory::

       request.json   {"protocol": 1, "op": OP, "params": {...}, "packages": {name: dir}}
       inputs.npz     arrays (never pickled objects)
       network.npz    the integer record, ``IntNetwork.save``'s format (ops that take one)

2. ``targets/lava_worker.py`` runs in the runtime's interpreter (isolated mode ``-I``: no
   PYTHONPATH, no user site), mounts ``spikeport.sim`` and ``spikeport.targets`` from the
   directories named in ``packages`` (pure numpy code that runs on Python 3.10 / numpy 1), runs the
   op with Lava and writes::

       response.json  {"protocol": 1, "ok": true, "info": {...}}
                      or {"protocol": 1, "ok": false, "error_type": ..., "error": ..., "traceback": ...}
       outputs.npz    arrays

3. the caller reads the response. The worker starts in a new process session; when the call ends
   (normally, by error, by timeout or by Ctrl-C) the whole session is killed, so Lava's own
   processes never outlive the call.

A ``ValueError`` raised in the runtime (a bad file, a network Lava cannot express) is raised again
here as a ``ValueError`` with the same message; anything else is a ``LavaBridgeError`` carrying the
runtime's traceback. That holds for an exception inside one of Lava's process models too, which on
its own deadlocks Lava 0.10: the worker's ``fail_fast`` writes the response and ends the session at
once. ``$SPIKEPORT_LAVA_TIMEOUT`` (default one hour) bounds anything else that never returns.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from . import lava_env

PROTOCOL = 1
DEFAULT_TIMEOUT_S = 3600.0
WORKER = Path(__file__).with_name("lava_worker.py")


class LavaBridgeError(RuntimeError):
    """The Lava runtime failed in a way that is not the user's input (message holds its traceback)."""


def _packages() -> dict:
    """Directories of the packages the worker mounts (works for the source tree, an editable
    install and a wheel alike: each package's own ``__file__`` says where it is)."""
    from spikeport import sim, targets

    return {"spikeport.sim": str(Path(sim.__file__).parent), "spikeport.targets": str(Path(targets.__file__).parent)}


def timeout_s() -> float:
    """Seconds one call may take: ``$SPIKEPORT_LAVA_TIMEOUT`` or one hour."""
    raw = os.environ.get("SPIKEPORT_LAVA_TIMEOUT", "")
    try:
        value = float(raw) if raw else DEFAULT_TIMEOUT_S
    except ValueError:
        raise ValueError(f"SPIKEPORT_LAVA_TIMEOUT must be a number of seconds, got {raw!r}") from None
    if not value > 0:
        raise ValueError(f"SPIKEPORT_LAVA_TIMEOUT must be > 0, got {raw!r}")
    return value


def _kill_session(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def call(op: str, params: dict | None = None, arrays: dict | None = None, network=None,
         timeout: float | None = None) -> tuple[dict, dict]:
    """Run ``op`` in the Lava runtime; returns ``(info, arrays)`` from the worker.

    ``network`` is an ``IntNetwork`` sent as ``network.npz``. The runtime is created on first use.
    """
    python = lava_env.ensure()
    limit = timeout_s() if timeout is None else float(timeout)
    with tempfile.TemporaryDirectory(prefix="spikeport-lava-") as tmp:
        d = Path(tmp)
        request = {"protocol": PROTOCOL, "op": op, "params": params or {}, "packages": _packages()}
        (d / "request.json").write_text(json.dumps(request))
        with open(d / "inputs.npz", "wb") as f:
            np.savez(f, **(arrays or {}))
        if network is not None:
            network.save(d / "network.npz")
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")}
        proc = subprocess.Popen([str(python), "-I", str(WORKER), str(d)], env=env, start_new_session=True,
                                stdin=subprocess.DEVNULL)
        try:
            code = proc.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            _kill_session(proc)
            proc.wait()
            raise TimeoutError(f"the Lava run ({op}) took longer than {limit:g} s and was stopped "
                               "(set SPIKEPORT_LAVA_TIMEOUT to allow more)") from None
        except BaseException:
            _kill_session(proc)
            proc.wait()
            raise
        finally:
            _kill_session(proc)  # Lava's own processes, if any survived the worker
        try:
            response = json.loads((d / "response.json").read_text())
        except (OSError, ValueError):
            raise LavaBridgeError(f"the Lava runtime ({python}) exited with code {code} without an answer; "
                                  "its output is above. `spikeport lava status` checks the runtime.") from None
        if response.get("protocol") != PROTOCOL:
            raise LavaBridgeError(f"the Lava worker speaks protocol {response.get('protocol')!r}, "
                                  f"this spikeport {PROTOCOL}")
        if not response.get("ok"):
            if response.get("error_type") == "ValueError":
                raise ValueError(response.get("error", "the Lava runtime refused the input"))
            raise LavaBridgeError(f"{response.get('error_type')}: {response.get('error')} "
                                  f"(in the Lava runtime)\n{response.get('traceback', '')}")
        with np.load(d / "outputs.npz", allow_pickle=False) as out:
            result = {k: out[k] for k in out.files}
        return response.get("info", {}), result
