"""Lava processes for an integer graph (``fixed_pt``), a float model (``floating_pt``) or a netx file.

This module runs INSIDE the managed Lava runtime (Python 3.10, lava-nc 0.10, numpy < 2), called by
``targets/lava_worker.py``; the project's own environment never imports it. The public entry
points are ``spikeport.targets.lava.run_lava`` / ``run_lava_float`` / ``run_netx``, which send the
work here through the bridge (``targets/bridge.py``). It imports only numpy, Lava and
``spikeport.sim`` (pure numpy, Python 3.10 compatible).

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

from spikeport.sim.simulator import SimResult


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


def _progress(items, desc: str):
    """A progress bar over ``items`` where the runtime has tqdm (the managed runtime does not
    install it), else a plain count on stderr."""
    try:
        from tqdm.auto import tqdm
    except ImportError:
        import sys

        def counted():
            n = len(items)
            for i, item in enumerate(items):
                print(f"\r{desc}: {i + 1}/{n}", end="" if i + 1 < n else "\n", file=sys.stderr, flush=True)
                yield item
        return counted()
    return tqdm(items, desc=desc, unit="sample")


def reset_state(lifs, synapses) -> None:
    """Back to rest between samples: ``u``, ``v`` and every synaptic buffer set to 0 (Dense keeps
    ``a_buff``, Conv ``a_buf``: what each sends at the next step)."""
    for lif in lifs:
        lif.u.set(np.zeros(lif.u.shape))
        lif.v.set(np.zeros(lif.v.shape))
    for syn in synapses:
        buf = syn.a_buff if hasattr(syn, "a_buff") else syn.a_buf
        buf.set(np.zeros(buf.shape))


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


def float_layers(in_shape: tuple, specs: list) -> list:
    """Lava process arguments for float layers (``floating_pt``).

    Each spec is a dict: ``kind`` ('dense' or 'conv'), ``weight`` (float, PyTorch layout),
    ``stride``/``padding`` (conv), ``decay_syn``, ``decay_mem``, ``v_threshold`` (one value per
    layer: Lava's LIF holds one), ``bias`` (per neuron, C order), ``out_shape``.
    Lava's float LIF: ``u = u (1 - du) + a``, ``v = v (1 - dv) + u + bias_mant``, spike ``v > vth``,
    reset to 0; so ``du = 1 - decay_syn`` (1 for the STBP LIF) and ``dv = 1 - decay_mem``.
    """
    layers, prev = [], tuple(in_shape)
    for spec in specs:
        out_shape = tuple(spec["out_shape"])
        if spec["kind"] == "dense":
            synapse = ("dense", dict(weights=dense_weight_for_lava(np.asarray(spec["weight"], dtype=np.float64), prev)))
        else:
            synapse = ("conv", dict(weight=lava_conv_weight(np.asarray(spec["weight"], dtype=np.float64)),
                                    stride=tuple(spec["stride"])[::-1], padding=tuple(spec["padding"])[::-1]))
        lif = dict(du=1.0 - float(spec["decay_syn"]), dv=1.0 - float(spec["decay_mem"]),
                   vth=float(spec["v_threshold"]),
                   bias_mant=_to_lava_order(np.broadcast_to(spec["bias"], (math.prod(out_shape),)), out_shape))
        layers.append((synapse, lif, out_shape))
        prev = out_shape
    return layers


class LavaNetwork:
    """Lava processes for a chain of layers fed with ``x_flat`` ``(S, T, N_in)`` (samples one after
    the other in the source's buffer); built on construction, run with ``run``.

    ``layers`` come from ``float_layers`` (a float model, ``tag='floating_pt'``); integer
    networks, chains or graphs, run as ``LavaGraph``.
    """

    def __init__(self, in_shape: tuple, layers: list, x_flat: np.ndarray, record: bool = False,
                 tag: str = "fixed_pt"):
        _import_lava_runtime()
        from lava.proc.conv.process import Conv
        from lava.proc.dense.process import Dense as LavaDense
        from lava.proc.io.sink import RingBuffer as Sink
        from lava.proc.io.source import RingBuffer as Source
        from lava.proc.lif.process import LIF
        from lava.proc.monitor.process import Monitor

        S, T, _ = x_flat.shape
        steps = S * T
        self.shapes = [tuple(in_shape)] + [out for _, _, out in layers]
        self.record, self.tag = record, tag
        seq = _to_lava_order(x_flat.reshape(steps, -1), in_shape)          # (steps, W, H, C)
        data = np.moveaxis(np.asarray(seq), 0, -1)                          # (W, H, C, steps)
        self.source = Source(data=data.astype(np.int32 if tag == "fixed_pt" else np.float64))
        port, port_shape = self.source.s_out, tuple(in_shape)
        self.synapses, self.lifs, self.sinks, self.monitors = [], [], [], []
        for i, ((kind, syn_args), lif_args, out_shape) in enumerate(layers):
            if kind == "dense":
                if len(port_shape) == 3:
                    port = port.flatten()
                proc = LavaDense(**syn_args)
            else:
                proc = Conv(input_shape=_lava_shape(port_shape), **syn_args)
            port.connect(proc.s_in)
            lif = LIF(shape=_lava_shape(out_shape), **lif_args)
            proc.a_out.connect(lif.a_in)
            self.synapses.append(proc)
            self.lifs.append(lif)
            if record or i == len(layers) - 1:
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

        cfg = Loihi2SimCfg(select_tag=self.tag)
        first = self.lifs[0]
        samples = range(S)
        if progress:
            samples = _progress(samples, "lava")
        try:
            for _ in samples:
                first.run(condition=RunSteps(num_steps=T), run_cfg=cfg)
                reset_state(self.lifs, self.synapses)
            return self._collect(S, T)
        finally:
            first.stop()

    def _collect(self, S: int, T: int) -> SimResult:
        def per_layer(arr_lava_time_last, shape):  # (W, H, C, steps) -> (S, T, N)
            arr = np.moveaxis(np.asarray(arr_lava_time_last), -1, 0)
            return _from_lava_order(arr, shape).reshape(S, T, -1)

        shapes = self.shapes[1:]
        spikes = [per_layer(s.data.get(), shapes[i if self.record else -1]).astype(np.int8)
                  for i, s in enumerate(self.sinks)]
        if not self.record:
            return SimResult(spikes[-1])
        us, vs = [], []
        for (mu, mv), lif, shape in zip(self.monitors, self.lifs, shapes):
            u = mu.get_data()[lif.name]["u"]  # (steps, *lava_shape)
            v = mv.get_data()[lif.name]["v"]
            dtype = np.int32 if self.tag == "fixed_pt" else np.float64
            us.append(_from_lava_order(np.asarray(u), shape).reshape(S, T, -1).astype(dtype))
            vs.append(_from_lava_order(np.asarray(v), shape).reshape(S, T, -1).astype(dtype))
        return SimResult(spikes[-1], spikes, us, vs)


def run_float(in_shape: tuple, specs: list, x: np.ndarray, record: bool = False, progress: bool = False) -> SimResult:
    """Run float layers (``float_layers`` specs) in Lava ``floating_pt`` on spikes ``x`` ``(S, T, N_in)``."""
    S, T = x.shape[:2]
    return LavaNetwork(tuple(in_shape), float_layers(in_shape, specs), x, record=record,
                       tag="floating_pt").run(S, T, progress=progress)


def _refuse_message_bits(path) -> None:
    """lava-dl 0.6's netx cannot run a file whose neuron groups state ``messageBits``: the value
    stays an HDF5 dataset wrapper (blocks/process.py 45-47) and ``proc.output_message_bits > 0``
    (blocks/models.py 35) then raises inside Lava's runtime processes, where the run hangs instead
    of failing. Refused here, before Lava starts, in one line."""
    import h5py

    found = []

    def visit(name, obj):
        if name.rsplit("/", 1)[-1] == "messageBits":
            found.append(name)

    with h5py.File(str(path), "r") as f:
        f.visititems(visit)
    if found:
        raise ValueError(f"{path}: netx (lava-dl 0.6) cannot run a file that states messageBits ({found[0]}): "
                         "its process models compare the HDF5 value with an int and Lava's run hangs; "
                         "spikeport simulate reads such files")


def run_netx(path, x=None, steps=None, input_bias=None, reset_interval=None, reset_offset=0,
             record=False) -> dict:
    """Load ``path`` with ``lava.lib.dl.netx.hdf5.Network`` and run it in Lava ``fixed_pt``, driven
    as lava-dl drives its networks; returns ``output`` (the last block's spikes) and, with
    ``record``, ``spikes.<i>``, ``u.<i>``, ``v.<i>`` of every block ``i`` of ``Network.layers``,
    each ``(S, T, N)`` flattened in our ``(C, H, W)`` order (``sigma``/``act`` of a sigma-delta
    block, ``real``/``imag`` of a resonate-and-fire block), and ``rf.<i>``: the ``sin_decay``,
    ``cos_decay``, ``vth``, ``state_exp``, ``decay_bits`` Lava's RF process of block ``i`` holds.

    ``x`` ``(S, T, N)`` (our flat order; 0/1 spikes or graded payloads) goes to ``Network.inp``
    (payloads with ``input_message_bits = 24``) or, when the file has netx's Input block (whose
    ``inp`` netx leaves unconnected), to its neurons' ``a_in``. ``input_bias`` ``(S, N)`` sets the
    Input block's ``bias_mant`` per sample, as lava-dl's tinynet/PilotNet tests do
    (``net.in_layer.neuron.bias_mant.init = ...``). ``reset_interval`` / ``reset_offset`` are
    netx's own ``Network(reset_interval, reset_offset)`` (LIFReset neurons, a phase per block): the
    samples then run back to back as one stream. Without it, samples run one after another, ``T``
    steps each, with every ``u``, ``v`` and synaptic buffer set back to zero in between.
    """
    _refuse_message_bits(path)
    _import_lava_runtime()
    from lava.lib.dl.netx.blocks.process import Input
    from lava.lib.dl.netx.hdf5 import Network
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.io.sink import RingBuffer as Sink
    from lava.proc.io.source import RingBuffer as Source
    from lava.proc.monitor.process import Monitor

    S = x.shape[0] if x is not None else input_bias.shape[0]
    T = int(steps)
    total = S * T
    graded = x is not None and x.size and not np.all((x == 0) | (x == 1))
    net = Network(net_config=str(path), reset_interval=None if reset_interval is None else int(reset_interval),
                  reset_offset=int(reset_offset), input_message_bits=24 if graded else 0)
    net.net_config.f.close()  # netx leaves its h5py handle open; everything has been copied out
    blocks = list(net.layers)
    first = blocks[0]
    has_input_block = isinstance(first, Input)

    def ours(shape):  # a Lava shape (W, H, C) / (N,) -> ours (C, H, W) / (N,)
        return tuple(shape)[::-1] if len(shape) == 3 else tuple(shape)

    if x is not None:
        port = first.neuron.a_in if has_input_block else net.inp
        pshape = tuple(port.shape)
        if x.shape[2] != math.prod(pshape):
            raise ValueError(f"input has {x.shape[2]} values per step, netx's input port {pshape} "
                             f"has {math.prod(pshape)}")
        seq = _to_lava_order(x.reshape(total, -1), ours(pshape)).reshape(total, *pshape)
        source = Source(data=np.moveaxis(seq, 0, -1).astype(np.int32))
        source.s_out.connect(port)
    if input_bias is not None:
        if not has_input_block:
            raise ValueError(f"{path}: an input bias needs netx's Input block (an 'input' layer with a 'neuron' "
                             "group); this file has none")
        bshape = tuple(first.neuron.bias_mant.shape)

        def bias_of(s):
            return _to_lava_order(input_bias[s], ours(bshape)).reshape(bshape)

        first.neuron.bias_mant.init = bias_of(0)  # as lava-dl's tests set it before the first run
    from lava.proc.sdn.process import Delta, Sigma, SigmaDelta

    # sigma-delta neurons (SDNN blocks) send int32 graded payloads and hold sigma / act instead of
    # u / v: recorded as "u" and "v" (a Sigma has no act: zeros), their state reset is all four Vars
    sdnn = {i: isinstance(b.neuron, (Delta, Sigma, SigmaDelta)) for i, b in enumerate(blocks)}
    sd_vars = ("sigma", "act", "residue", "error")
    # resonate-and-fire neurons (RF blocks: RF_IZ is a subclass of RF) hold real / imag, recorded as
    # "u" and "v"; their complex synapse is two Dense processes (real_synapse, imag_synapse)
    from lava.proc.rf.process import RF

    rf = {i: isinstance(b.neuron, RF) for i, b in enumerate(blocks)}

    def state_vars(i):
        return ("sigma", "act") if sdnn[i] else (("real", "imag") if rf[i] else ("u", "v"))
    watched = range(len(blocks)) if record else [len(blocks) - 1]
    sinks, monitors = {}, {}
    for i in watched:
        neuron = blocks[i].neuron
        sinks[i] = Sink(shape=tuple(neuron.s_out.shape), buffer=total)
        neuron.s_out.connect(sinks[i].a_in)
        if record:
            vu, vv = state_vars(i)
            mu = Monitor()
            mu.probe(getattr(neuron, vu), total)
            mv = None
            if hasattr(neuron, vv):  # a Sigma has no act
                mv = Monitor()
                mv.probe(getattr(neuron, vv), total)
            monitors[i] = (mu, mv)
    cfg = Loihi2SimCfg(select_tag="fixed_pt")
    try:
        for s in range(S):
            if input_bias is not None and s:
                first.neuron.bias_mant.set(bias_of(s))
            net.run(condition=RunSteps(num_steps=T), run_cfg=cfg)
            if reset_interval is not None:
                continue  # one stream: netx's own reset does the rest
            for i, block in enumerate(blocks):
                for name in (sd_vars if sdnn[i] else state_vars(i)):
                    var = getattr(block.neuron, name, None)
                    if var is not None:
                        var.set(np.zeros(var.shape))
                for attr in ("synapse", "synapse_rec", "real_synapse", "imag_synapse"):
                    syn = getattr(block, attr, None)
                    if syn is not None:
                        buf = syn.a_buff if hasattr(syn, "a_buff") else syn.a_buf
                        buf.set(np.zeros(buf.shape))
        out = {}
        for i, sink in sinks.items():
            shape = ours(blocks[i].neuron.s_out.shape)
            data = np.moveaxis(np.asarray(sink.data.get()), -1, 0)  # (S*T, *lava shape)
            out[f"spikes.{i}"] = _from_lava_order(data, shape).reshape(S, T, -1).astype(np.int32 if sdnn[i] else np.int8)
            if record:
                for key, var, mon in zip(("u", "v"), state_vars(i), monitors[i]):
                    probed = {} if mon is None else mon.get_data().get(blocks[i].neuron.name, {})
                    if var not in probed:  # a Sigma has no act
                        out[f"{key}.{i}"] = np.zeros((S, T, math.prod(shape)), dtype=np.int32)
                        continue
                    arr = np.asarray(probed[var])  # (S*T, *lava shape)
                    out[f"{key}.{i}"] = _from_lava_order(arr, shape).reshape(S, T, -1).astype(np.int32)
        for i in (i for i in rf if rf[i] and record):  # the registers Lava's RF process was built with
            neuron = blocks[i].neuron
            out[f"rf.{i}"] = np.array([int(np.asarray(getattr(neuron, k).get()).reshape(-1)[0]) for k in
                                       ("sin_decay", "cos_decay", "vth", "state_exp", "decay_bits")])
    finally:
        net.stop()
    out["output"] = out[f"spikes.{len(blocks) - 1}"]
    if not record:
        del out[f"spikes.{len(blocks) - 1}"]
    return out


# --- probes of lava-dl's own conventions (the references export/netx.py ports) ----------------------

def netx_optimize_weight_bits(ws: list) -> list:
    """``lava.lib.dl.netx.utils.optimize_weight_bits`` on each weight matrix:
    ``[(weights, num_weight_bits, weight_exp), ...]``."""
    import contextlib
    import io
    import warnings

    from lava.lib.dl.netx.utils import optimize_weight_bits

    out = []
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        for w in ws:
            res = optimize_weight_bits(np.array(w, copy=True))
            out.append((np.asarray(res[0]), int(res[1]), int(res[2])))
    return out


def netx_dense_synapse(path) -> dict:
    """The first dense synapse netx builds from ``path``: its weights, ``num_weight_bits``,
    ``weight_exp``, ``sign_mode`` and what Lava's ``PyDenseModelBitAcc`` makes of the weights
    (``clip_weights`` then ``truncate_weights`` with the sign mode Lava determines)."""
    import contextlib
    import io
    import warnings

    from lava.lib.dl.netx.hdf5 import Network
    from lava.utils.weightutils import clip_weights, determine_sign_mode, truncate_weights

    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        net = Network(net_config=str(path))
        net.net_config.f.close()
        syn = net.layers[0].synapse
    weights, params = np.asarray(syn.weights.init), syn.proc_params
    mode = determine_sign_mode(weights)
    effective = truncate_weights(clip_weights(weights, mode, num_bits=8), mode, params["num_weight_bits"])
    return {"weights": weights, "effective": np.asarray(effective), "num_weight_bits": int(params["num_weight_bits"]),
            "weight_exp": int(params["weight_exp"]), "sign_mode": None if params.get("sign_mode") is None
            else str(params["sign_mode"])}


# --- any integer graph ---------------------------------------------------------------------------

def register_parts(graph, name: str) -> list:
    """Neuron indices (flat C order) of each Lava process group ``name`` needs: Lava's LIF holds one
    ``du``, ``dv`` and ``vth`` per process, so neurons are grouped by their (du, dv, vth)."""
    neurons, shape = graph.neurons(name), graph.shapes[name]
    keys = np.stack([neurons.expand(f, shape) for f in ("du", "dv", "vth")], axis=1)
    uniq, inverse = np.unique(keys, axis=0, return_inverse=True)
    return [np.flatnonzero(inverse.reshape(-1) == i) for i in range(len(uniq))]


class _Part:
    """One Lava process's worth of a group or input: ``idx`` our flat indices, ``shape`` its Lava
    shape, ``order`` our flat index at each position of its flattened Lava port."""

    def __init__(self, graph, name, idx, whole):
        self.idx = idx
        shape = graph.shapes[name]
        if whole and len(shape) == 3:
            self.shape = _lava_shape(shape)
            self.order = np.arange(math.prod(shape)).reshape(shape).transpose(2, 1, 0).reshape(-1)
        else:
            self.shape = (len(idx),)
            self.order = idx
        self.port = None     # spikes out (LIF s_out or a source)
        self.lif = None


class LavaGraph:
    """Lava processes for an ``IntGraph`` (``fixed_pt``): built on construction, run with ``run``.

    - each neuron group becomes one ``LIF`` per register set (``register_parts``), or ``LIFReset``
      with netx's phase per group in stream mode (``reset_interval``);
    - each input becomes ``RingBuffer`` sources (graded payloads as int32); an input with neurons
      is a LIF whose ``a_in`` the source drives directly;
    - each projection becomes ``Dense`` (one per pair of parts; the sign mode Lava would determine
      from the whole matrix is set explicitly, so splitting cannot change its truncation; graded
      input sets ``num_message_bits = 24``; with per-synapse delays ``DelayDense``) or ``Conv`` (kernel flipped and transposed, exponent
      folded; graded input sets ``num_message_bits = 24``, without which Lava's Conv reads payloads as
      0/1, lava/proc/conv/models.py 40-43; sum-pooling as a unit-kernel Conv, graded input refused as
      the simulator refuses it); several projections into one LIF add at its port.
    """

    def __init__(self, graph, xs: dict, steps: int, input_bias=None, reset_interval=None, reset_offset=0,
                 record=False):
        _import_lava_runtime()
        from lava.proc.conv.process import Conv
        from lava.proc.dense.process import Dense as LavaDense, DelayDense
        from lava.proc.io.sink import RingBuffer as Sink
        from lava.proc.io.source import RingBuffer as Source
        from lava.proc.lif.process import LIF, LIFReset
        from lava.proc.monitor.process import Monitor
        from lava.utils.weightutils import SignMode

        from spikeport.sim import formats as F
        from spikeport.sim.graph import Conv2d as _Conv, Dense as _Dense, SumPool2d as _Pool

        self.graph, self.record, self.steps = graph, record, steps
        S = next(iter(xs.values())).shape[0] if xs else (0 if input_bias is None else input_bias.shape[0])
        self.S, total = S, S * steps
        depth = graph.depths()
        self.parts, self.sources, self.sinks, self.monitors, self.synapses = {}, [], {}, {}, []
        groups = graph.groups()
        for name in graph.nodes:
            if name not in graph.shapes or (name not in groups and name not in graph.inputs()):
                continue
            if name in groups:
                idx_parts = register_parts(graph, name)
            else:
                idx_parts = [np.arange(graph.size(name))]
            whole = len(idx_parts) == 1
            self.parts[name] = [_Part(graph, name, idx, whole) for idx in idx_parts]
        for name, parts in self.parts.items():
            neurons = graph.neurons(name)
            x = xs.get(name)
            for part in parts:
                if x is not None:
                    seq = x.reshape(total, -1)[:, part.order].reshape(total, *part.shape)
                    src = Source(data=np.moveaxis(seq, 0, -1).astype(np.int32))
                    self.sources.append(src)
                    part.port = src.s_out
                if neurons is None:
                    continue
                shape = graph.shapes[name]
                regs = {f: int(neurons.expand(f, shape)[part.idx[0]]) for f in ("du", "dv", "vth")}
                bias = {f: neurons.expand(f, shape)[part.order].reshape(part.shape) for f in ("bias_mant", "bias_exp")}
                if input_bias is not None and name in graph.inputs() and input_bias.shape[0]:
                    bias["bias_mant"] = input_bias[0][part.order].reshape(part.shape)  # first sample's
                if reset_interval is None:
                    lif = LIF(shape=part.shape, **regs, **bias)
                else:
                    lif = LIFReset(shape=part.shape, **regs, **bias, reset_interval=int(reset_interval),
                                   reset_offset=(int(reset_offset) + 1 + depth[name]) % int(reset_interval))
                if part.port is not None:  # an input with neurons: its input drives a_in directly
                    part.port.connect(lif.a_in)
                part.lif, part.port = lif, lif.s_out
        graded = {n for n, x in xs.items() if x.size and not np.all((x == 0) | (x == 1))}
        for p in graph.projections():
            src_parts, dst_parts = self.parts[p.src], self.parts[p.dst]
            where = f"node {p.name!r}"
            if isinstance(p.op, _Dense):
                w = np.asarray(p.op.weight).astype(np.int64)
                mode = SignMode[(p.op.sign_mode or F.sign_mode_of(w)).upper()]
                d = None if p.op.delay is None else np.asarray(p.op.delay).astype(int)
                for sp in src_parts:
                    for dp in dst_parts:
                        args = dict(weights=w[np.ix_(dp.order, sp.order)], weight_exp=int(p.op.weight_exp),
                                    num_weight_bits=int(p.op.num_weight_bits), sign_mode=mode,
                                    num_message_bits=24 if p.src in graded else 0)
                        if d is None:
                            proc = LavaDense(**args)
                        else:  # per-synapse delays: Lava's DelayDense (a_buff of max_delay + 1 slots)
                            part_d = d[np.ix_(dp.order, sp.order)]
                            proc = DelayDense(**args, delays=part_d, max_delay=int(part_d.max()))
                        port = sp.port.flatten() if len(sp.shape) > 1 else sp.port
                        port.connect(proc.s_in)
                        out = proc.a_out.reshape(dp.shape) if len(dp.shape) > 1 else proc.a_out
                        out.connect(dp.lif.a_in)
                        self.synapses.append(proc)
                continue
            if len(src_parts) != 1 or len(dst_parts) != 1:
                raise ValueError(f"{where}: a {p.op.kind} between groups whose neurons have several (du, dv, vth) "
                                 "sets cannot be split into Lava processes; use one set per group")
            if isinstance(p.op, _Pool) and p.src in graded:
                raise ValueError(f"{where}: graded (non 0/1) input into a sum pooling operator is not supported "
                                 "(Lava has no pooling process and netx no pool layer)")
            conv = p.op.as_conv(graph.shapes[p.src][0]) if isinstance(p.op, _Pool) else p.op
            assert isinstance(conv, _Conv)
            proc = Conv(input_shape=src_parts[0].shape, weight=lava_conv_weight(conv.effective_weight()),
                        stride=tuple(conv.stride)[::-1], padding=tuple(conv.padding)[::-1],
                        num_message_bits=24 if p.src in graded else 0)
            src_parts[0].port.connect(proc.s_in)
            proc.a_out.connect(dst_parts[0].lif.a_in)
            self.synapses.append(proc)
        keep = set(groups) if record else set(graph.outputs().values()) & set(groups)
        for name in keep:
            for part in self.parts[name]:
                sink = Sink(shape=part.shape, buffer=total)
                part.lif.s_out.connect(sink.a_in)
                self.sinks.setdefault(name, []).append(sink)
                if record:
                    mu, mv = Monitor(), Monitor()
                    mu.probe(part.lif.u, total)
                    mv.probe(part.lif.v, total)
                    self.monitors.setdefault(name, []).append((mu, mv))
        self.input_bias, self.stream = input_bias, reset_interval is not None
        self.lifs = [p.lif for parts in self.parts.values() for p in parts if p.lif is not None]
        if not self.lifs:
            raise ValueError("the graph has no neuron group to run")

    def run(self, progress: bool = False) -> dict:
        from lava.magma.core.run_conditions import RunSteps
        from lava.magma.core.run_configs import Loihi2SimCfg

        cfg = Loihi2SimCfg(select_tag="fixed_pt")
        anchor = self.lifs[0]
        bias_group = [n for n in self.graph.inputs() if self.graph.neurons(n) is not None]
        samples = range(self.S)
        if progress:
            samples = _progress(samples, "lava")
        import time

        self.timing = {"samples": self.S, "steps_per_sample": self.steps}
        try:
            t_start = time.perf_counter()
            for s in samples:
                if s == 1:  # the first sample includes compiling and starting Lava's processes
                    self.timing["first_sample_s"] = time.perf_counter() - t_start
                if self.input_bias is not None and s:  # the first sample's bias is the initial value
                    for part in self.parts[bias_group[0]]:
                        part.lif.bias_mant.set(self.input_bias[s][part.order].reshape(part.shape))
                anchor.run(condition=RunSteps(num_steps=self.steps), run_cfg=cfg)
                if self.stream:
                    continue
                reset_state(self.lifs, self.synapses)
            self.timing["all_samples_s"] = time.perf_counter() - t_start
            return self._collect()
        finally:
            anchor.stop()

    def _gather(self, name, arrays) -> np.ndarray:
        """Per-part ``(steps, *lava_shape)`` arrays -> ``(S, T, N)`` in our flat C order."""
        n = self.graph.size(name)
        total = self.S * self.steps
        out = np.zeros((total, n), dtype=np.int64)
        for part, arr in zip(self.parts[name], arrays):
            out[:, part.order] = np.asarray(arr).reshape(total, -1)
        return out.reshape(self.S, self.steps, n)

    def _collect(self) -> dict:
        res = {}
        for name, sinks in self.sinks.items():
            data = [np.moveaxis(np.asarray(s.data.get()), -1, 0) for s in sinks]  # (steps, *shape)
            res[f"spikes.{name}"] = self._gather(name, data).astype(np.int8)
        for name, mons in self.monitors.items():
            for key, k in (("u", 0), ("v", 1)):
                data = [m[k].get_data()[part.lif.name][key] for m, part in zip(mons, self.parts[name])]
                res[f"{key}.{name}"] = self._gather(name, data).astype(np.int32)
        return res


def run_graph(graph, xs: dict, steps: int, input_bias=None, reset_interval=None, reset_offset=0,
              record=False, progress=False) -> tuple[dict, dict]:
    """Run an ``IntGraph`` in Lava ``fixed_pt``; returns ``spikes.<group>`` (and ``u.``/``v.`` with
    ``record``) as ``(S, T, N)`` arrays in our flat C order, and the timing: ``first_sample_s``
    (the first sample's run, which compiles and starts Lava's processes) and ``all_samples_s``
    (every sample's run plus the per-sample state resets). Processes are always stopped."""
    net = LavaGraph(graph, xs, steps, input_bias, reset_interval, reset_offset, record)
    out = net.run(progress)
    return out, net.timing
