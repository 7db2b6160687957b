"""Run a lava-dl netx HDF5 file in Lava ``fixed_pt``: the reference ``export.netx`` is tested against.

The run happens in the Lava runtime through the bridge (``targets/bridge.py``); the netx side is
``targets/lava_procs.run_netx``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from spikeport.sim.simulator import GraphResult, check_payload, prepare_inputs

from . import bridge


def run_netx(path, x=None, input_bias=None, steps=None, reset_interval=None, reset_offset: int = 0,
             record: bool = False, graph=None) -> GraphResult:
    """Load ``path`` with ``lava.lib.dl.netx.hdf5.Network`` and run it in Lava ``fixed_pt`` under the
    deployment protocol of ``sim.simulator.simulate`` (``targets/lava_procs.run_netx`` on the Lava side):

    ``x`` ``(S, T, *input_shape)``: 0/1 spikes or integer graded payloads (our PyTorch order), into
    ``Network.inp`` or, when the file has netx's Input block, into its neurons' ``a_in``;
    ``input_bias`` ``(S, *input_shape)`` with ``steps``: that block's ``bias_mant``, one sample at a
    time (as lava-dl drives PilotNet and its tinynet test); ``reset_interval`` / ``reset_offset``:
    netx's own ``Network(reset_interval=N, reset_offset=K)`` (samples back to back as one stream);
    without it every sample starts from rest.

    ``graph`` (what ``export.netx.read_netx`` returns for ``path``) names the recorded groups
    (``graph.meta["netx_blocks"]``) and checks the inputs exactly as the simulator does; without it,
    the blocks are named ``block0``, ``block1``, ... in netx's order. Returns a ``GraphResult``:
    ``outputs`` (the last block's spikes, under the graph's output name or ``output``) and, with
    ``record``, ``spikes``, ``u``, ``v`` of every block, ``(S, T, N)`` flattened in ``(C, H, W)`` order,
    and ``info["rf"]``: group -> the registers Lava's RF process of each resonate-and-fire block holds
    (``sin_decay``, ``cos_decay``, ``vth`` already ``<< state_exp``, ``state_exp``, ``decay_bits``).
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such netx file")
    if graph is not None:
        xs, proto, S = prepare_inputs(graph, x, input_bias, steps, reset_interval, reset_offset)
        xin = next(iter(xs.values()), None)
        bias, T = proto.input_bias, proto.steps
        names = list(graph.meta.get("netx_blocks") or [])
        out_name = next(iter(graph.outputs()))
    else:
        xin = None if x is None else check_payload(x, (int(np.prod(np.shape(x)[2:])),))
        bias = None if input_bias is None else np.asarray(input_bias).reshape(len(input_bias), -1)
        T = xin.shape[1] if xin is not None else steps
        if T is None:
            raise ValueError("no input: give input spikes, or an input bias with steps")
        S = xin.shape[0] if xin is not None else bias.shape[0]
        names, out_name = [], "output"
    arrays = {}
    if xin is not None:
        arrays["x"] = xin
    if bias is not None:
        arrays["input_bias"] = bias
    params = {"path": str(path.resolve()), "steps": int(T), "record": bool(record),
              "reset_interval": None if reset_interval is None else int(reset_interval),
              "reset_offset": int(reset_offset)}
    if S == 0:
        raise ValueError("no samples to run")
    info, out = bridge.call("netx", params, arrays)
    if record and names and len(names) != info["blocks"]:
        raise ValueError(f"{path}: netx built {info['blocks']} blocks, the graph names {len(names)}")
    if record and not names:
        names = [f"block{i}" for i in range(info["blocks"])]
    rec = [{names[i]: out[f"{key}.{i}"] for i in range(len(names))} for key in ("spikes", "u", "v")] if record else []
    # with record: the registers of each resonate-and-fire block as Lava's RF process holds them
    rf = {(names[int(k[3:])] if names else k[3:]): dict(zip(("sin_decay", "cos_decay", "vth", "state_exp",
                                                             "decay_bits"), map(int, v)))
          for k, v in out.items() if k.startswith("rf.")}
    return GraphResult({out_name: out["output"]}, *rec, info={"rf": rf} if rf else None)


def lavadl_optimize_weight_bits(ws: list) -> list:
    """lava-dl's own ``netx.utils.optimize_weight_bits`` on each weight matrix, run in the Lava runtime:
    ``[(weights, num_weight_bits, weight_exp), ...]`` (the reference ``export.netx`` ports)."""
    arrays = {f"w.{i}": np.asarray(w) for i, w in enumerate(ws)}
    _, out = bridge.call("netx_optimize_weight_bits", {"count": len(ws)}, arrays)
    return [(out[f"w.{i}"], int(out[f"bits.{i}"]), int(out[f"exp.{i}"])) for i in range(len(ws))]


def netx_dense_synapse(path) -> dict:
    """The first dense synapse netx builds from ``path`` (in the Lava runtime): ``weights``,
    ``num_weight_bits``, ``weight_exp``, ``sign_mode`` and ``effective`` (what Lava's bit-accurate
    Dense model makes of the weights after clipping and truncation)."""
    info, out = bridge.call("netx_dense_synapse", {"path": str(Path(path).resolve())})
    return dict(info, **out)
