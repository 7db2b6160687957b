"""Lava as a target: run an ``IntNetwork`` in Lava ``fixed_pt`` or a float model in ``floating_pt``.

Lava runs in its own managed Python 3.10 runtime (``targets/lava_env.py``); these functions send
the work there through the file-based bridge (``targets/bridge.py``) and return the same
``SimResult`` the simulator does. The process builder itself, with every layout conversion between
PyTorch's and Lava's conventions, is ``targets/lava_procs.py`` (it runs inside the runtime).
"""
from __future__ import annotations

import math

import numpy as np

from spikeport.sim.network import IntNetwork
from spikeport.sim.simulator import SimResult, check_input

from . import bridge


def _sim_result(arrays: dict, record: bool) -> SimResult:
    if not record:
        return SimResult(arrays["output"])
    n = sum(1 for k in arrays if k.startswith("spikes."))
    return SimResult(arrays["output"], *([arrays[f"{key}.{i}"] for i in range(n)] for key in ("spikes", "u", "v")))


def run_lava(net: IntNetwork, x, record: bool = False, progress: bool = False) -> SimResult:
    """Run ``net`` in Lava ``fixed_pt`` on input spikes ``x`` ``(S, T, *input_shape)``.

    Lava's timing is the simulator's ``hardware`` timing (one step of delay per synaptic layer).
    Samples run one after another, each from rest. With ``record``, spikes, ``u`` and ``v`` of every
    layer come back as ``(S, T, N)`` arrays (flattened C order).
    """
    x = check_input(net, x)
    _, arrays = bridge.call("record", {"record": bool(record), "progress": bool(progress)}, {"x": x}, network=net)
    return _sim_result(arrays, record)


def run_lava_float(in_shape: tuple, specs: list, x, record: bool = False, progress: bool = False) -> SimResult:
    """Run float layers in Lava ``floating_pt`` on spikes ``x`` ``(S, T, *in_shape)``: the float
    reference in Lava's hardware timing (one step of delay per synaptic layer, as a float model
    trained with ``synaptic_delay=True``).

    Each spec is a dict: ``kind`` ('dense' or 'conv'), ``weight`` (float, PyTorch layout),
    ``stride``/``padding`` (conv), ``decay_syn``, ``decay_mem``, ``v_threshold`` (one value per
    layer: Lava's LIF holds one), ``bias`` (per neuron, C order), ``out_shape``.
    """
    x = np.asarray(x)
    n_in = math.prod(in_shape)
    if x.ndim < 3 or math.prod(x.shape[2:]) != n_in:
        raise ValueError(f"input must have shape (samples, T, {tuple(in_shape)}), got {x.shape}")
    arrays, plain = {"x": x.reshape(x.shape[0], x.shape[1], n_in)}, []
    for i, spec in enumerate(specs):
        arrays[f"spec.{i}.weight"] = np.asarray(spec["weight"], dtype=np.float64)
        arrays[f"spec.{i}.bias"] = np.asarray(spec["bias"], dtype=np.float64)
        plain.append({"kind": spec["kind"], "stride": [int(v) for v in spec.get("stride", (1, 1))],
                      "padding": [int(v) for v in spec.get("padding", (0, 0))],
                      "decay_syn": float(spec["decay_syn"]), "decay_mem": float(spec["decay_mem"]),
                      "v_threshold": float(spec["v_threshold"]), "out_shape": [int(v) for v in spec["out_shape"]]})
    params = {"in_shape": [int(v) for v in in_shape], "specs": plain, "record": bool(record),
              "progress": bool(progress)}
    _, out = bridge.call("float", params, arrays)
    return _sim_result(out, record)


def lava_versions() -> dict:
    """Python, lava-nc, lava-dl, numpy and torch versions inside the Lava runtime."""
    info, _ = bridge.call("versions")
    return info
