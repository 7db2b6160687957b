"""Run an ``IntNetwork`` as Lava processes under ``Loihi2SimCfg(select_tag='fixed_pt')``.

Lava is imported here only, lazily: the rest of spikeport runs without it.

Layout conversions (Lava's conventions, from lava/proc/conv):
- Feature maps are ``(W, H, C)`` in Lava and ``(C, H, W)`` here (PyTorch).
- Lava's ``Conv`` computes a true convolution (it flips the kernel) with weights
  ``(C_out, kW, kH, C_in)``; PyTorch's ``conv2d`` is a cross-correlation with ``(C_out, C_in, kH, kW)``.
  So ``w_lava[o, x, y, c] = w_torch[o, c, kH - 1 - y, kW - 1 - x]``.
- Lava's ``Conv`` ignores ``weight_exp``: it is folded into the weights (``w << weight_exp``,
  exact; the record allows only ``weight_exp >= 0`` for convolutions).
- Sum pooling is a ``Conv`` with a unit kernel per channel and stride ``k``.
- A dense layer after a feature map reads Lava's flattened ``(W, H, C)`` order, so its weight
  columns are permuted from PyTorch's ``(C, H, W)`` order.
- Lava's ``LIF`` holds one ``du``, ``dv`` and ``vth`` per process; biases are per neuron.

Samples run one after another: ``T`` steps each, then ``u``, ``v`` and every synaptic buffer are
set back to zero, so each sample starts from rest as in the simulator. The input source sends
``X[:, t]`` at step ``t``; the output sink records step ``t`` into ``Y[:, t]``.
"""
from __future__ import annotations

import math

import numpy as np

from sim.network import Conv2d, Dense, IntNetwork, SumPool2d
from sim.simulator import SimResult, check_input


def _import_lava_runtime() -> None:
    """Import Lava's runtime. It calls ``multiprocessing.set_start_method('fork')`` on import,
    which fails when anything earlier in the process (a progress bar's lock, a data loader) already
    fixed the start method. If that method is 'fork' as well, clear it and let Lava set it."""
    import multiprocessing as mp

    try:
        import lava.magma.runtime.message_infrastructure.multiprocessing  # noqa: F401
    except RuntimeError as err:
        if "context has already been set" not in str(err):
            raise
        if mp.get_start_method() != "fork":
            raise RuntimeError(f"Lava needs the 'fork' multiprocessing start method, but this process already "
                               f"uses {mp.get_start_method()!r}") from None
        mp.set_start_method(None, force=True)
        import lava.magma.runtime.message_infrastructure.multiprocessing  # noqa: F401,F811


def _lava_shape(shape: tuple) -> tuple:
    return (shape[2], shape[1], shape[0]) if len(shape) == 3 else tuple(shape)


def _to_lava_order(flat: np.ndarray, shape: tuple) -> np.ndarray:
    """``(..., prod(shape))`` in (C, H, W) order -> ``(..., W, H, C)`` (or unchanged for 1-d)."""
    if len(shape) != 3:
        return flat
    return np.moveaxis(flat.reshape(*flat.shape[:-1], *shape), (-3, -2, -1), (-1, -2, -3))


def _from_lava_order(arr: np.ndarray, shape: tuple) -> np.ndarray:
    """Inverse of ``_to_lava_order``: ``(..., W, H, C)`` -> ``(..., prod(shape))``."""
    if len(shape) != 3:
        return arr.reshape(*arr.shape[:-1], -1) if arr.ndim else arr
    n = len(shape)
    back = np.moveaxis(arr, (-1, -2, -3), (-3, -2, -1))
    return back.reshape(*back.shape[:-n], -1)


def lava_conv_weight(w_torch: np.ndarray) -> np.ndarray:
    """PyTorch cross-correlation kernel ``(C_out, C_in, kH, kW)`` -> Lava convolution kernel
    ``(C_out, kW, kH, C_in)`` (transposed and spatially flipped)."""
    return np.ascontiguousarray(w_torch.transpose(0, 3, 2, 1)[:, ::-1, ::-1, :])


def dense_weight_for_lava(w: np.ndarray, in_shape: tuple) -> np.ndarray:
    """Permute dense weight columns from PyTorch's flattened (C, H, W) to Lava's (W, H, C)."""
    if len(in_shape) != 3:
        return w
    cols = np.arange(math.prod(in_shape)).reshape(in_shape)        # our flat index at (c, h, w)
    lava_cols = cols.transpose(2, 1, 0).reshape(-1)                 # ours at Lava flat position
    return w[:, lava_cols]


def _shared(neurons, name: str, where: str) -> int:
    vals = np.unique(np.asarray(getattr(neurons, name)))
    if vals.size != 1:
        raise ValueError(f"{where}: Lava's LIF holds one {name} per process, but this layer has "
                         f"{vals.size} distinct values; use per-layer {name} for the Lava target")
    return int(vals[0])


class LavaNetwork:
    """Lava processes for an ``IntNetwork`` fed with ``x_flat`` ``(S, T, N_in)`` (samples one after
    the other in the source's buffer); built on construction, run with ``run``."""

    def __init__(self, net: IntNetwork, x_flat: np.ndarray, record: bool = False):
        _import_lava_runtime()
        from lava.proc.conv.process import Conv
        from lava.proc.dense.process import Dense as LavaDense
        from lava.proc.io.sink import RingBuffer as Sink
        from lava.proc.io.source import RingBuffer as Source
        from lava.proc.lif.process import LIF
        from lava.proc.monitor.process import Monitor
        from lava.utils.weightutils import SignMode

        S, T, _ = x_flat.shape
        steps = S * T
        self.net, self.record = net, record
        in_shape = net.input_shape
        seq = _to_lava_order(x_flat.reshape(steps, -1), in_shape)          # (steps, W, H, C)
        self.source = Source(data=np.moveaxis(np.asarray(seq), 0, -1).astype(np.int32))  # (W, H, C, steps)
        port, port_shape = self.source.s_out, in_shape
        self.synapses, self.lifs, self.sinks, self.monitors = [], [], [], []
        for i, layer in enumerate(net.layers):
            where = f"layer {i}"
            out_shape = net.shapes[i + 1]
            syn = layer.synapse
            if isinstance(syn, Dense):
                if len(port_shape) == 3:
                    port = port.flatten()
                w = dense_weight_for_lava(np.asarray(syn.weight).astype(np.int64), port_shape)
                mode = SignMode[syn.sign_mode.upper()] if syn.sign_mode else None
                proc = LavaDense(weights=w, weight_exp=int(syn.weight_exp),
                                 num_weight_bits=int(syn.num_weight_bits), sign_mode=mode)
            else:
                conv = syn.as_conv(port_shape[0]) if isinstance(syn, SumPool2d) else syn
                w = lava_conv_weight(conv.effective_weight())
                proc = Conv(weight=w, input_shape=_lava_shape(port_shape),
                            stride=tuple(conv.stride)[::-1], padding=tuple(conv.padding)[::-1])
            port.connect(proc.s_in)
            n = layer.neurons
            bias_mant = _to_lava_order(n.expand("bias_mant", out_shape), out_shape)
            bias_exp = _to_lava_order(n.expand("bias_exp", out_shape), out_shape)
            lif = LIF(shape=_lava_shape(out_shape), du=_shared(n, "du", where), dv=_shared(n, "dv", where),
                      vth=_shared(n, "vth", where), bias_mant=bias_mant, bias_exp=bias_exp)
            proc.a_out.connect(lif.a_in)
            self.synapses.append(proc)
            self.lifs.append(lif)
            if record or i == len(net.layers) - 1:
                sink = Sink(shape=_lava_shape(out_shape), buffer=steps)
                lif.s_out.connect(sink.a_in)
                self.sinks.append(sink)
            if record:
                mu, mv = Monitor(), Monitor()
                mu.probe(lif.u, steps)
                mv.probe(lif.v, steps)
                self.monitors.append((mu, mv))
            port, port_shape = lif.s_out, out_shape

    def run(self, S: int, T: int, progress: bool = False) -> SimResult:
        from lava.magma.core.run_conditions import RunSteps
        from lava.magma.core.run_configs import Loihi2SimCfg

        cfg = Loihi2SimCfg(select_tag="fixed_pt")
        first = self.lifs[0]
        samples = range(S)
        if progress:
            from tqdm.auto import tqdm

            samples = tqdm(samples, desc="lava", unit="sample")
        try:
            for _ in samples:
                first.run(condition=RunSteps(num_steps=T), run_cfg=cfg)
                for lif in self.lifs:
                    lif.u.set(np.zeros(lif.u.shape))
                    lif.v.set(np.zeros(lif.v.shape))
                for syn in self.synapses:
                    buf = syn.a_buff if hasattr(syn, "a_buff") else syn.a_buf
                    buf.set(np.zeros(buf.shape))
            return self._collect(S, T)
        finally:
            first.stop()

    def _collect(self, S: int, T: int) -> SimResult:
        def per_layer(arr_lava_time_last, shape):  # (W, H, C, steps) -> (S, T, N)
            arr = np.moveaxis(np.asarray(arr_lava_time_last), -1, 0)
            return _from_lava_order(arr, shape).reshape(S, T, -1)

        shapes = self.net.shapes[1:]
        spikes = [per_layer(s.data.get(), shapes[i if self.record else -1]).astype(np.int8)
                  for i, s in enumerate(self.sinks)]
        if not self.record:
            return SimResult(spikes[-1])
        us, vs = [], []
        for (mu, mv), lif, shape in zip(self.monitors, self.lifs, shapes):
            u = mu.get_data()[lif.name]["u"]  # (steps, *lava_shape)
            v = mv.get_data()[lif.name]["v"]
            us.append(_from_lava_order(np.asarray(u), shape).reshape(S, T, -1).astype(np.int32))
            vs.append(_from_lava_order(np.asarray(v), shape).reshape(S, T, -1).astype(np.int32))
        return SimResult(spikes[-1], spikes, us, vs)


def run_lava(net: IntNetwork, x, record: bool = False, progress: bool = False) -> SimResult:
    """Run ``net`` in Lava ``fixed_pt`` on input spikes ``x`` ``(S, T, *input_shape)``.

    Lava's timing is the simulator's ``hardware`` timing (one step of delay per synaptic layer).
    The processes are always stopped, also after an error.
    """
    x = check_input(net, x)
    S, T = x.shape[:2]
    return LavaNetwork(net, x, record=record).run(S, T, progress=progress)
