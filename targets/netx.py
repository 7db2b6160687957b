"""Run a lava-dl netx HDF5 file in Lava ``fixed_pt``: the reference ``export.netx`` is tested against.

Lava is imported lazily, here only.
"""
from __future__ import annotations

import math

import numpy as np

from .lava import _import_lava_runtime


def run_netx(path, x, num_layers=None) -> np.ndarray:
    """Load ``path`` with ``lava.lib.dl.netx.hdf5.Network`` and run it in Lava ``fixed_pt`` on input
    spikes ``x`` ``(S, T, *input_shape)`` (our PyTorch order; converted to netx's ports). Returns the
    output spikes ``(S, T, N)`` int8, flattened in ``(C, H, W)`` order.

    Spikes go to ``Network.inp`` or, when the file has input neurons (whose netx block leaves
    ``inp`` unconnected), to those neurons' ``a_in``. Samples run one after another, ``T`` steps
    each, with every ``u``, ``v`` and synaptic buffer set back to zero in between.
    """
    _import_lava_runtime()
    from lava.lib.dl.netx.blocks.process import Input
    from lava.lib.dl.netx.hdf5 import Network
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.io.sink import RingBuffer as Sink
    from lava.proc.io.source import RingBuffer as Source

    x = np.asarray(x)
    S, T = x.shape[:2]
    net = Network(net_config=str(path), num_layers=num_layers)
    net.net_config.f.close()  # netx leaves its h5py handle open; everything has been copied out
    first = net.layers[0]
    port = first.neuron.a_in if isinstance(first, Input) else net.inp
    pshape = tuple(port.shape)
    flat = x.reshape(S * T, -1)
    if flat.shape[1] != math.prod(pshape):
        raise ValueError(f"input has {flat.shape[1]} values per step, netx's input port {pshape} "
                         f"has {math.prod(pshape)}")
    if len(pshape) == 3:  # ours (C, H, W) -> Lava (W, H, C)
        seq = flat.reshape(S * T, *pshape[::-1]).transpose(0, 3, 2, 1)
    else:
        seq = flat.reshape(S * T, *pshape)
    source = Source(data=np.moveaxis(seq, 0, -1).astype(np.int32))
    source.s_out.connect(port)
    oshape = tuple(net.out.shape)
    sink = Sink(shape=oshape, buffer=S * T)
    net.out.connect(sink.a_in)
    cfg = Loihi2SimCfg(select_tag="fixed_pt")
    try:
        for _ in range(S):
            net.run(condition=RunSteps(num_steps=T), run_cfg=cfg)
            for layer in net.layers:
                layer.neuron.u.set(np.zeros(layer.neuron.u.shape))
                layer.neuron.v.set(np.zeros(layer.neuron.v.shape))
                syn = getattr(layer, "synapse", None)
                if syn is not None:
                    buf = syn.a_buff if hasattr(syn, "a_buff") else syn.a_buf
                    buf.set(np.zeros(buf.shape))
        y = np.moveaxis(np.asarray(sink.data.get()), -1, 0)  # (S*T, *oshape)
    finally:
        net.stop()
    if len(oshape) == 3:
        y = y.transpose(0, 3, 2, 1)
    return y.reshape(S, T, -1).astype(np.int8)
