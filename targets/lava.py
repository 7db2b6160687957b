"""Lava as a target: run an ``IntNetwork`` in Lava ``fixed_pt`` or a float model in ``floating_pt``.

Lava runs in its own managed Python 3.10 runtime (``targets/lava_env.py``); these functions send
the work there through the file-based bridge (``targets/bridge.py``) and return the same
``SimResult`` the simulator does. The process builder itself, with every layout conversion between
PyTorch's and Lava's conventions, is ``targets/lava_procs.py`` (it runs inside the runtime).
"""
from __future__ import annotations

import math

import numpy as np

from spikeport.sim.graph import IntGraph, as_graph, refuse_unless_lif
from spikeport.sim.network import IntNetwork
from spikeport.sim.simulator import GraphResult, SimResult, check_input, prepare_inputs

from . import bridge


def _sim_result(arrays: dict, record: bool) -> SimResult:
    if not record:
        return SimResult(arrays["output"])
    n = sum(1 for k in arrays if k.startswith("spikes."))
    return SimResult(arrays["output"], *([arrays[f"{key}.{i}"] for i in range(n)] for key in ("spikes", "u", "v")))


def run_lava(net, x=None, record: bool = False, progress: bool = False, input_bias=None, steps=None,
             reset_interval=None, reset_offset: int = 0):
    """Run ``net`` (an ``IntNetwork`` chain or an ``IntGraph``) in Lava ``fixed_pt``.

    The arguments and the result are the simulator's (``sim.simulator.simulate``): input spikes or
    graded payloads ``x`` ``(S, T, *input_shape)``, the deployment protocol (``input_bias`` with
    ``steps``, ``reset_interval`` / ``reset_offset``), and with ``record`` the spikes, ``u`` and
    ``v`` of every neuron group. Lava's timing is the simulator's ``hardware`` timing. A chain
    returns a ``SimResult``, a graph a ``GraphResult``.
    """
    graph = as_graph(net)
    refuse_unless_lif(graph, "spikeport's Lava deployment (run_lava; a netx file runs in Lava with run_netx)")
    if isinstance(net, IntNetwork) and x is not None:
        check_input(net, x)
    xs, proto, S = prepare_inputs(graph, x, input_bias, steps, reset_interval, reset_offset)
    arrays = {f"x.{n}": v for n, v in xs.items()}
    if proto.input_bias is not None:
        arrays["input_bias"] = proto.input_bias
    params = {"steps": proto.steps, "reset_interval": proto.reset_interval, "reset_offset": proto.reset_offset,
              "record": bool(record), "progress": bool(progress)}
    if S == 0:
        from spikeport.sim.simulator import simulate

        return simulate(net, x, record=record, input_bias=input_bias, steps=steps)
    info, out = bridge.call("graph", params, arrays, network=graph)
    outputs = {o: (out[f"spikes.{src}"] if f"spikes.{src}" in out else xs[src]) for o, src in graph.outputs().items()}
    res = GraphResult(outputs, *(({n: out[f"{k}.{n}"] for n in graph.groups()} for k in ("spikes", "u", "v"))
                                 if record else ()))
    res.info = info
    if isinstance(net, IntGraph):
        return res
    if not record:
        return SimResult(res.output, info=info)
    names = [f"layer{i}" for i in range(len(net.layers))]
    return SimResult(res.output, [res.spikes[n] for n in names], [res.u[n] for n in names], [res.v[n] for n in names],
                     info)


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
