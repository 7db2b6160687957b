"""lava-dl netx HDF5 exchange: ``write_netx`` / ``read_netx`` (``targets.netx.run_netx`` runs a file in Lava).

A netx file is an HDF5 file with groups ``layer/0``, ``layer/1``, ... that
``lava.lib.dl.netx.hdf5.Network(net_config=path)`` turns into Lava processes (lava-dl 0.6.0,
lava-nc 0.10.0). Each convention below was read in lava-dl's source (line numbers of
``lava/lib/dl/netx/hdf5.py``, ``utils.py``, ``blocks/process.py``) and checked by running netx
in Lava ``fixed_pt`` against ``sim.simulator.simulate`` (tests/test_netx.py). "netx does X: we do Y".

Layout
    netx stores ``shape`` (and conv ``stride``/``padding``/``dilation``) in PyTorch order ``(C, H, W)``
    / ``(H, W)`` and reverses them to Lava's ``(W, H, C)`` (hdf5.py 272, 496-500, 597): we write and
    read them in PyTorch order, as our record holds them.
    netx's conv weight is PyTorch's cross-correlation kernel ``(C_out, C_in, kH, kW)`` (a 5th
    trailing axis of 1, as slayer writes it, is dropped); netx flips it and transposes it to Lava's
    ``(C_out, kW, kH, C_in)`` itself (hdf5.py 505-506): we write our kernel as is, no flip.
    netx's ``flatten`` layer connects the next dense layer through ``transpose([2, 1, 0]).flatten()``
    (hdf5.py 634-636, 655-660), i.e. Lava's ``(W, H, C)`` back to PyTorch's C-order ``(C, H, W)``
    flattening: dense weight columns are in our order, not permuted (unlike targets/lava.py, which
    flattens Lava's order). We write a ``flatten`` layer before every dense layer that reads a
    feature map; reading, a dense layer after a feature map without one is refused (netx would
    connect a ``(W, H, C)`` port to a flat one).

Neurons (hdf5.py 140-163)
    netx builds a Lava ``LIF`` from ``neuron`` ``{type: CUBA | LOIHI, iDecay, vDecay, vThMant, ...}``
    with ``du = iDecay - 1``, ``dv = vDecay``, ``vth = vThMant``, ``bias_exp = 6`` and
    ``bias_mant = bias``: we write ``iDecay = du + 1``, ``vDecay = dv``, ``vThMant = vth``.
    LIF holds one ``du``, ``dv`` and ``vth`` per process: per-neuron values are refused.
    ``refDelay`` and ``gradedSpike`` are ignored by netx (LIF has no refractory period; graded
    output comes only from ``messageBits``): we write ``refDelay = 1``, ``gradedSpike = False``,
    and refuse reading ``messageBits > 0`` (graded spikes) and every other neuron type
    (SDNN, RF, ...).
    ``iDecay = 0`` gives ``du = -1``: Lava then keeps the current undecayed (factor 4096/4096,
    a perfect integrator), which our 12-bit ``du`` (factor at most 4095/4096) cannot express:
    refused. A dense layer without ``neuron`` gets netx's default non-leaky integrator with
    ``iDecay = 0`` (hdf5.py 349-355): refused for the same reason.
    ``vDecay = 4096`` (no voltage memory) has no 12-bit ``dv``: refused, except on input neurons
    with ``vThMant <= 63``, where ``0 <= v < 4096`` at every step end, so ``dv = 4095`` (which keeps
    ``trunc(v/4096) = 0``) acts identically.
Biases
    netx reads ``bias`` with ``.astype(int)`` (utils.py 67-68: floats truncate toward zero) and
    always uses ``bias_exp = 6`` (hdf5.py 158): a bias is ``bias << 6``, a multiple of 64. Per
    neuron for dense layers; for conv layers either per channel ``(C,)`` or per neuron in Lava's
    ``(W, H, C)`` order (blocks/process.py 57-72). We write ``bias = (bias_mant << bias_exp) / 64``
    and refuse biases that are not multiples of 64 or whose quotient leaves the 13-bit mantissa
    range; reading, ``bias << 6`` is re-split into our ``(bias_mant, bias_exp)`` (exponent 6, or 7
    for even values up to 8190).
Dense weights (hdf5.py 393-411, utils.py 80-158, blocks/process.py 157-162)
    netx reads ``weight`` with ``.astype(int)`` and rescales it with its own
    ``optimize_weight_bits``: ``w << k`` with ``weight_exp = -k``, ``k`` chosen from the weight
    range so the largest magnitude fills 8 bits (``ported as netx_optimize_weight_bits``).
    The file has no weight exponent: netx's exponent always undoes its own shift exactly, so a
    netx dense layer computes ``a = W_file @ s`` -- file weights are the synaptic input in units of
    ``a``. Hence we write ``W_eff << weight_exp`` (our effective weights, exact) and refuse:
    a negative exponent whose right shift would floor (``W_eff`` not divisible by
    ``2**-weight_exp``: netx has no flooring shift), magnitudes beyond netx's range (mixed
    ``[-256, 254]``: netx clips 255; excitatory ``<= 255``; larger ones make netx shift by a
    negative amount, which zeroes the weights), an all-zero matrix (netx crashes dividing by its
    maximum), and non-positive matrices whose most negative weight is a power of two (netx scales
    it to -256, which Lava's inhibitory clip turns into -255 before truncating: in Lava
    ``[[-128, -128, -3]]`` sums to -257, ``[[0, -128, -128]]`` to -128, and a uniform -64 matrix
    to 0 -- measured, and reproduced by ``netx_dense_effective``).
    netx does not pass its sign mode to Lava's Dense, which determines its own from the shifted
    weights (``max == 0`` counts as inhibitory in Lava, as mixed in netx) and then clips and
    truncates them (lava/utils/weightutils.py): ``netx_dense_effective`` emulates that chain, and
    the writer checks that it reproduces our effective weights exactly. netx keeps odd mixed-sign
    weights (``num_weight_bits = 9``: nothing truncated); reading, they become even weights with
    one less exponent where they fit, and are refused otherwise (our mixed-sign weights are even).
    ``delay`` makes netx use ``DelayDense`` (hdf5.py 425-448): all-zero delays behave as Dense and
    are accepted; others are refused (no synaptic delays in our record).
Conv and pooling (hdf5.py 464-544, 547-563, 625-632, 679-683)
    Conv weights go to Lava's Conv as given (no clip, no exponent): we write our folded
    ``w << weight_exp``; reading, a power of two is factored out of weights beyond 8 bits.
    ``dilation`` and ``groups`` are required by netx (scalar ``groups``): we write 1; reading,
    grouped kernels are expanded to block-diagonal full kernels and dilation other than 1 is
    refused. netx ignores conv ``delay`` (hdf5.py 527-530): so do we.
    netx does not implement ``pool``, ``average``, ``concat``, ``convT``, ``unpool``
    (NotImplementedError): we write sum pooling as a ``conv`` layer with a unit kernel per
    channel and stride ``k`` (exact), and refuse those types when reading.
Input layer and timing (hdf5.py 246-312, 582-597; blocks/process.py 79-108)
    An ``input`` layer with only ``shape`` sets netx's input shape and creates no process.
    With a ``neuron`` group netx creates an ``Input`` block: a LIF population with no synapse,
    whose ``weight``/``bias`` go to a ``transform`` that is never applied and whose ``inp`` port is
    left unconnected ("The input must be handled through neuron's bias"): connecting a source to
    ``Network.inp`` then fails to compile. Spikes are fed to the input neurons' ``a_in``, which
    integrates them in the same step (no synaptic delay); every later layer adds one step
    (Dense/Conv send at ``t + 1`` what they received at ``t``).
    We write ``input`` with ``shape`` only, so the netx chain is exactly ours: ``Network.inp`` takes
    the input spikes, and netx's output at step ``t`` is ``simulate(net, x).output[:, t]``.
    Reading, input neurons become a layer with an identity synapse (``Dense`` with the identity
    matrix, or ``SumPool2d(1)`` on feature maps), which delivers one step later than netx's input
    block: ``net.meta["netx_time_offset"] = 1`` and netx's output at step ``t`` equals
    ``simulate(...).output[:, t + 1]``. Input neurons that pass spikes straight through
    (``du = 4095``, ``vth = 0``: ``v = 64 x`` spikes iff ``x = 1``; netx gives input neurons no bias)
    are dropped instead: offset 0.

Our files also carry root attribute ``spikeport`` (JSON: format, ``dt``, ``meta``, layer names),
which netx ignores and ``read_netx`` restores. netx never closes its h5py handle (utils.py 43):
``run_netx`` closes it once the network is built, so the file can be rewritten.
Values netx truncates or clips silently (float weights and biases, weights beyond range) are read
as netx reads them (truncated) or refused where netx would silently zero them.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from spikeport.sim import formats as F
from spikeport.sim.network import Conv2d, Dense, IntNetwork, Layer, Neurons, SumPool2d

FORMAT = "spikeport.netx/1"
ATTR = "spikeport"
TIME_OFFSET_KEY = "netx_time_offset"
NETX_BIAS_EXP = 6                       # hdf5.py 158
NETX_BIAS = F.IntFormat("netx bias", 13, True)  # bias_mant written at exponent 6
UNSUPPORTED_TYPES = {
    "pool": "netx does not implement it (hdf5.py raises NotImplementedError)",
    "average": "netx does not implement it (hdf5.py raises NotImplementedError)",
    "concat": "netx does not implement it (hdf5.py raises NotImplementedError)",
    "convT": "netx does not implement it (hdf5.py raises NotImplementedError)",
    "unpool": "netx does not implement it (hdf5.py raises NotImplementedError)",
    "dense_rec": "recurrent connections are not part of our feed-forward record",
    "dense_comp": "complex-valued synapses are not part of our record",
}


# --- netx's dense weight pipeline ----------------------------------------------------------------

def netx_optimize_weight_bits(weight, where: str = "") -> tuple[np.ndarray, int, int]:
    """``lava.lib.dl.netx.utils.optimize_weight_bits`` (lava-dl 0.6.0), step by step, on the integer
    weights netx read (``.astype(int)``): returns ``(weights << k, num_weight_bits, weight_exp=-k)``.

    Where netx itself crashes (all-zero matrix: ``255 / 0``) or would shift by a negative amount
    (weights beyond its range, which numpy turns into zeros) this raises ``ValueError``.
    """
    at = f"{where}: " if where else ""
    w = np.asarray(weight).astype(np.int64)
    if w.size == 0:
        raise ValueError(f"{at}empty weight matrix")
    mx, mn = int(w.max()), int(w.min())
    if mx > 254 and mn < 0:  # utils.py 103-107 (only max is updated)
        w = np.clip(w, -256, 254)
        mx = int(w.max())
    if mn < -256 and mx > 0:  # utils.py 108-112
        w = np.clip(w, -256, 254)
        mn = int(w.min())
    if mx < 0:
        signed, scale = 0, -256 / mn
    elif mn >= 0:
        if mx == 0:
            raise ValueError(f"{at}netx cannot load an all-zero dense weight matrix "
                             "(optimize_weight_bits divides by its largest weight)")
        signed, scale = 0, 255 / mx
    else:
        signed = 1
        scale = min(127 / mx if mx > 0 else math.inf, -128 / mn)
    shift = int(np.floor(np.log2(scale))) + signed
    if shift < 0:
        raise ValueError(f"{at}dense weights in [{mn}, {mx}] are beyond netx's range "
                         "(excitatory <= 255, inhibitory >= -256): optimize_weight_bits would shift "
                         "them by a negative amount, which zeroes them")
    n = 8
    while n > 0 and np.any(w % (1 << n)):  # utils.py 137-144: all divisible by 2**n
        n -= 1
    n -= signed
    return w << shift, 8 - shift - n, -shift


def netx_dense_effective(weight, where: str = "") -> tuple[np.ndarray, int]:
    """What netx + Lava's bit-accurate Dense compute from a netx dense ``weight``:
    ``(W, weight_exp)`` with ``a = (W @ s) << weight_exp`` (floor shift when negative).

    netx's ``optimize_weight_bits``, then Lava's Dense: no sign mode is passed
    (blocks/process.py 157-162), so Lava determines it from the shifted weights, clips them to
    8 bits and drops ``8 - num_weight_bits (+1 mixed)`` low bits (lava/proc/dense/models.py,
    lava/utils/weightutils.py).
    """
    at = f"{where}: " if where else ""
    w, nwb, exp = netx_optimize_weight_bits(weight, where)
    mode = F.sign_mode_of(w)  # = lava.utils.weightutils.determine_sign_mode
    drop = F.WEIGHT_BITS - nwb + int(mode == "mixed")
    if drop < 0:
        raise ValueError(f"{at}netx computes num_weight_bits = {nwb} for a mixed-sign matrix, "
                         f"but Lava treats these weights as {mode} and would shift them by {drop}, "
                         "zeroing them")
    return F.dense_effective_weights(w, nwb, mode), exp


def _canonical(w, e: int) -> tuple[np.ndarray, int]:
    """``(W, e)`` -> the same synaptic operator ``floor(W s 2**e)`` with ``e <= 0`` and, if
    ``e < 0``, some weight odd (``W 2**j`` with ``e - j`` computes the same for any ``j`` that keeps
    the weights integer)."""
    w = np.asarray(w).astype(np.int64)
    if e >= 0:
        return w << e, 0
    while e < 0 and not np.any(w & 1):
        w, e = w >> 1, e + 1
    return w, e


def _dense_from_operator(w, e: int, where: str) -> Dense:
    """A record ``Dense`` (8-bit, sign mode from the weights) computing ``floor(W s 2**e)``."""
    wc, ec = _canonical(w, e)
    for j in range(0, 10):
        wj, ej = wc << j, ec - j
        if ej < F.WEIGHT_EXP.min:
            break
        if ej > F.WEIGHT_EXP.max or wj.min() < F.WEIGHT.min or wj.max() > F.WEIGHT.max:
            continue
        if np.array_equal(F.dense_effective_weights(wj, 8, F.sign_mode_of(wj)), wj):
            return Dense(wj, weight_exp=ej)
    raise ValueError(f"{where}: netx computes a = floor(W s * 2**{e}) with weights in "
                     f"[{int(np.min(w))}, {int(np.max(w))}]{' (odd mixed-sign weights)' if np.any(wc & 1) else ''}, "
                     "which our record (8-bit weights, even when mixed-sign, exponent -8..7) cannot hold")


# --- writer ------------------------------------------------------------------------------------

def _shared(neurons: Neurons, name: str, where: str) -> int:
    return neurons.shared_value(name, where, f"netx gives a layer one {name} (Lava's LIF holds one per process)")


def _write_str(group, name: str, value: str) -> None:
    group.create_dataset(name, (1,), "S10", [value.encode("ascii")])  # as slayer writes it


def _neuron_datasets(neurons: Neurons, out_shape: tuple, where: str) -> dict:
    """The ``neuron`` group (and ``bias``) of one layer, as ``{dataset path: value}``."""
    du, dv, vth = (_shared(neurons, k, where) for k in ("du", "dv", "vth"))
    data = {"neuron/type": "CUBA", "neuron/iDecay": np.int64(du + 1), "neuron/vDecay": np.int64(dv),
            "neuron/vThMant": np.int64(vth), "neuron/refDelay": np.int64(1), "neuron/gradedSpike": False}
    value = neurons.expand("bias_mant", out_shape) << neurons.expand("bias_exp", out_shape)
    if not np.any(value):
        return data
    bad = value % (1 << NETX_BIAS_EXP) != 0
    if np.any(bad):
        v = int(value[np.argmax(bad)])
        raise ValueError(f"{where}: bias {v} (bias_mant << bias_exp) is not a multiple of 64: netx always "
                         f"uses bias_exp = {NETX_BIAS_EXP}")
    b = value >> NETX_BIAS_EXP
    NETX_BIAS.check(b, f"{where}: bias / 64 (netx's bias mantissa at bias_exp = 6)")
    if len(out_shape) == 3:
        c, hh, ww = out_shape
        per_channel = b.reshape(c, -1)
        if np.all(per_channel == per_channel[:, :1]):
            b = per_channel[:, 0]
        else:
            b = b.reshape(c, hh, ww).transpose(2, 1, 0)  # netx: neuron-wise bias in Lava's (W, H, C)
    data["bias"] = b.astype(np.int64)
    return data


def _netx_dense_weight(syn: Dense, where: str) -> np.ndarray:
    target, te = _canonical(syn.effective_weight(), int(syn.weight_exp))
    if te < 0:
        raise ValueError(f"{where}: weight_exp = {syn.weight_exp} floors the synaptic sum (weights not divisible "
                         f"by 2**{-syn.weight_exp}); netx has no weight exponent of its own choosing that "
                         "floors (it only undoes its own scaling), so this layer cannot be written exactly")
    if not np.any(target):
        raise ValueError(f"{where}: netx cannot load an all-zero dense weight matrix "
                         "(optimize_weight_bits divides by its largest weight)")
    head = (f"{where}: synaptic weights (W << weight_exp) in [{int(target.min())}, {int(target.max())}] "
            "cannot be written to netx")
    try:
        got, ge = _canonical(*netx_dense_effective(target))
    except ValueError as err:
        raise ValueError(f"{head}: {err}") from None
    if ge != 0 or not np.array_equal(got, target):
        scaled = target << -ge
        k = int(np.flatnonzero((got != scaled).reshape(-1))[0]) if got.shape == scaled.shape else 0
        raise ValueError(f"{head}: netx's rescaling would change them (weight {int(target.reshape(-1)[k])} at "
                         f"flat index {k} would act as {int(got.reshape(-1)[k])} * 2**{ge}); netx keeps "
                         "weights in [-256, 254] (mixed signs), [0, 255] (excitatory) and non-positive "
                         "matrices whose most negative weight is not a power of two (Lava clips netx's "
                         "-256 to -255)")
    return target


def write_netx(net: IntNetwork, path) -> None:
    """Write ``net`` as a netx HDF5 file that ``lava.lib.dl.netx.hdf5.Network(net_config=path)`` runs
    in Lava ``fixed_pt`` exactly as ``simulate(net, x)`` (hardware timing): feed ``Network.inp`` with
    the input spikes (``(W, H, C)`` port for a convolutional first layer, flat ``(C, H, W)``-order
    port for a dense one), and netx's output at step ``t`` is ours at step ``t``.

    What netx cannot express is refused with a ``ValueError`` naming the layer (module docstring).
    The file is written only once every layer has been checked.
    """
    import h5py

    plan = []  # (type, {dataset path: value})
    shape = net.input_shape
    for i, layer in enumerate(net.layers):
        where = f"layer {i}" + (f" ({layer.name})" if layer.name else "")
        out_shape = net.shapes[i + 1]
        syn = layer.synapse
        neuron = _neuron_datasets(layer.neurons, out_shape, where)
        if isinstance(syn, Dense):
            if len(shape) == 3:
                plan.append(("flatten", {"shape": np.array([math.prod(shape), 1, 1])}))
            plan.append(("dense", {"shape": np.array(out_shape), "weight": _netx_dense_weight(syn, where),
                                   **neuron}))
        else:
            conv = syn.as_conv(shape[0]) if isinstance(syn, SumPool2d) else syn
            w = conv.effective_weight()
            plan.append(("conv", {"shape": np.array(out_shape), "weight": w.astype(np.int64),
                                  "stride": np.array(conv.stride, dtype=np.int64),
                                  "padding": np.array(conv.padding, dtype=np.int64),
                                  "dilation": np.array([1, 1], dtype=np.int64),
                                  "groups": np.int64(1),
                                  "inChannels": np.int64(w.shape[1]), "outChannels": np.int64(w.shape[0]),
                                  "kernelSize": np.array(w.shape[2:], dtype=np.int64), **neuron}))
        shape = out_shape
    path = Path(path)
    with h5py.File(path, "w") as f:
        f.attrs[ATTR] = json.dumps({"format": FORMAT, "dt": net.dt, "meta": net.meta,
                                    "names": [layer.name for layer in net.layers]}, default=str)
        group = f.create_group("layer")
        h = group.create_group("0")
        _write_str(h, "type", "input")
        h.create_dataset("shape", data=np.array(net.input_shape, dtype=np.int64))
        for j, (kind, data) in enumerate(plan, start=1):
            h = group.create_group(str(j))
            _write_str(h, "type", kind)
            for k, v in data.items():
                if isinstance(v, str):
                    _write_str(h, k, v)
                else:
                    h.create_dataset(k, data=v)


# --- reader ------------------------------------------------------------------------------------

def _decode(value) -> str:
    if isinstance(value, np.ndarray):
        if value.size != 1:
            raise ValueError(f"expected one string, got {value.size}")
        value = value.reshape(-1)[0]
    if isinstance(value, (bytes, np.bytes_)):
        return bytes(value).decode("ascii", "replace").strip("\x00 ")
    return str(value).strip()


class _Reader:
    def __init__(self, path: Path):
        self.path = path
        self.input_shape = None      # ours, (N,) or (C, H, W)
        self.shape = None            # current output shape, ours
        self.input_neurons = None    # Neurons of netx's Input block
        self.layers = []             # Layer
        self.flatten_next = False

    # helpers
    def err(self, where: str, msg: str) -> ValueError:
        return ValueError(f"{self.path}: {where}: {msg}")

    def need(self, g, key: str, where: str):
        if key not in g:
            raise self.err(where, f"missing '{key}' (netx requires it)")
        return g[key]

    def array(self, g, key: str, where: str) -> np.ndarray:
        ds = self.need(g, key, where)
        try:
            return np.asarray(ds[()])
        except Exception as err:  # noqa: BLE001 - h5py raises several types
            raise self.err(where, f"cannot read '{key}' ({err})") from None

    def ints(self, g, key: str, where: str, truncate: bool = False) -> np.ndarray:
        """Integers as netx reads them: ``.astype(int)`` (truncation) for weights and biases,
        integer-valued numbers for everything else."""
        a = self.array(g, key, where)
        if a.dtype.kind not in "biuf":
            raise self.err(where, f"'{key}' must be numeric, got dtype {a.dtype}")
        if a.dtype.kind == "f":
            if not np.all(np.isfinite(a)):
                raise self.err(where, f"'{key}' has non-finite values")
            if not truncate and not np.all(a == np.round(a)):
                raise self.err(where, f"'{key}' must hold integers, got {a.reshape(-1)[np.argmax(a != np.round(a))]!r}")
        return a.astype(np.int64)

    def scalar(self, g, key: str, where: str) -> int:
        a = self.ints(g, key, where)
        vals = np.unique(a)
        if vals.size != 1:
            raise self.err(where, f"'{key}' has {vals.size} distinct values; netx passes it to Lava's LIF, "
                                  "which holds one value per layer")
        return int(vals[0])

    def shape_of(self, g, where: str) -> tuple:
        s = tuple(int(v) for v in self.ints(g, "shape", where).reshape(-1))
        if any(v < 1 for v in s):
            raise self.err(where, f"bad shape {s}")
        return s

    def pair(self, g, key: str, where: str) -> tuple:
        a = self.ints(g, key, where).reshape(-1)
        if a.size == 1:
            return (int(a[0]), int(a[0]))
        if a.size != 2:
            raise self.err(where, f"'{key}' must be a scalar or (H, W) pair, got {a.size} values")
        return (int(a[0]), int(a[1]))

    # neurons
    def neurons(self, g, where: str, out_shape: tuple, is_input: bool = False) -> Neurons:
        if "neuron" not in g:
            raise self.err(where, "no 'neuron' group: netx then uses its non-leaky integrator default "
                                  "(iDecay = 0, du = -1: current never decays), which our record cannot express")
        import h5py

        ng = g["neuron"]
        w = f"{where} neuron"
        if not isinstance(ng, h5py.Group):
            raise self.err(w, "'neuron' must be a group")
        ntype = _decode(self.need(ng, "type", w)[()])
        if ntype not in ("CUBA", "LOIHI"):
            raise self.err(w, f"type {ntype!r} is not supported (only CUBA/LOIHI neurons map to Lava's LIF)")
        if "messageBits" in ng and self.scalar(ng, "messageBits", w) != 0:
            raise self.err(w, "messageBits > 0 (graded spikes) is not supported: our spikes are 0/1")
        i_decay = self.scalar(ng, "iDecay", w)
        v_decay = self.scalar(ng, "vDecay", w)
        vth = self.scalar(ng, "vThMant", w)
        if i_decay == 0:
            raise self.err(w, "iDecay = 0 gives netx's du = iDecay - 1 = -1: Lava then never decays the current "
                              "(factor 4096/4096), which our 12-bit du (factor <= 4095/4096) cannot express")
        if not 1 <= i_decay <= 4096:
            raise self.err(w, f"iDecay = {i_decay} outside [1, 4096] (du = iDecay - 1 is 12-bit)")
        if v_decay == 4096:
            if not (is_input and vth <= 63):
                raise self.err(w, "vDecay = 4096 (no voltage memory) has no 12-bit dv in our record (dv <= 4095 "
                                  "keeps trunc(v/4096)); accepted only on input neurons with vThMant <= 63")
            v_decay = 4095  # input neurons: 0 <= v <= 64 vth < 4096, so trunc(v/4096) = 0 as with 4096
        if not 0 <= v_decay <= 4095:
            raise self.err(w, f"vDecay = {v_decay} outside [0, 4096]")
        if not F.VTH.min <= vth <= F.VTH.max:
            raise self.err(w, f"vThMant = {vth} outside its 17-bit range [0, {F.VTH.max}]")
        bias_mant, bias_exp = 0, 0
        if "bias" in g and not is_input:  # netx never gives input neurons a bias (hdf5.py 279-294)
            bias_mant, bias_exp = self.bias(g, where, out_shape)
        return Neurons(du=i_decay - 1, dv=v_decay, vth=vth, bias_mant=bias_mant, bias_exp=bias_exp)

    def bias(self, g, where: str, out_shape: tuple):
        b = self.ints(g, "bias", where, truncate=True)
        n = math.prod(out_shape)
        if len(out_shape) == 1:
            if b.size not in (1, n):
                raise self.err(where, f"bias has {b.size} values for {n} neurons")
            b = np.broadcast_to(b.reshape(-1), (n,)).copy() if b.size == 1 else b.reshape(-1)
        else:
            c, h, w = out_shape
            if b.shape == (w, h, c):  # neuron-wise, Lava's order (checked first, as netx)
                b = b.transpose(2, 1, 0).reshape(-1)
            elif b.ndim == 1 and b.size == c:  # channel-wise
                b = np.repeat(b, h * w)
            else:
                raise self.err(where, f"conv bias of shape {b.shape} is neither per channel ({c},) nor per "
                                      f"neuron in Lava's (W, H, C) order {(w, h, c)}")
        if b.min() < -(2 ** 15) or b.max() > 2 ** 15 - 1:
            raise self.err(where, "bias beyond Lava's int16 bias_mant")
        value = b << NETX_BIAS_EXP
        mant, exp = b.copy(), np.full(b.shape, NETX_BIAS_EXP, dtype=np.int64)
        big = (b < F.BIAS_MANT.min) | (b > F.BIAS_MANT.max)
        if np.any(big):
            ok = big & (b % 2 == 0) & (b // 2 >= F.BIAS_MANT.min) & (b // 2 <= F.BIAS_MANT.max)
            if not np.array_equal(ok, big):
                bad = int(b[np.argmax(big & ~ok)])
                raise self.err(where, f"bias {bad} << 6 cannot be written as a 13-bit mantissa << 3-bit exponent")
            mant[big], exp[big] = b[big] // 2, NETX_BIAS_EXP + 1
        assert np.array_equal(mant << exp, value)
        if np.unique(mant).size == 1 and np.unique(exp).size == 1:
            return int(mant[0]), int(exp[0])
        return mant, exp

    # layers
    def add(self, i: int, g) -> None:
        import h5py

        where = f"layer {i}"
        if not isinstance(g, h5py.Group):
            raise self.err(where, "is not a group")
        ltype = _decode(self.need(g, "type", where)[()])
        where = f"layer {i} ({ltype!r})"
        if ltype in UNSUPPORTED_TYPES:
            raise self.err(where, f"unsupported layer type: {UNSUPPORTED_TYPES[ltype]}")
        if ltype == "input":
            if i != 0:
                raise self.err(where, "an 'input' layer must be the first one")
            if "shape" not in g and "neuron" not in g:
                return  # netx ignores it (hdf5.py 584-597)
            s = self.shape_of(g, where)
            if len(s) not in (1, 3):
                raise self.err(where, f"input shape {s} must be (N,) or (C, H, W)")
            self.input_shape = self.shape = s
            if "neuron" in g:
                self.input_neurons = self.neurons(g, where, s, is_input=True)
        elif ltype == "flatten":
            self.flatten_next = True
        elif ltype == "dense":
            self.dense(g, where)
        elif ltype == "conv":
            self.conv(g, where)
        else:
            raise self.err(where, f"unknown layer type {ltype!r}")

    @staticmethod
    def name(where: str) -> str:
        return "netx " + where.replace("'", "")

    def blocks(self) -> int:  # processes netx has created so far
        return len(self.layers) + (self.input_neurons is not None)

    def dense(self, g, where: str) -> None:
        import h5py

        if "weight/imag" in g or isinstance(g.get("weight"), h5py.Group):
            raise self.err(where, "complex-valued weights are not supported")
        w = self.ints(g, "weight", where, truncate=True)
        n_out = math.prod(self.shape_of(g, where))
        if w.ndim == 1:
            if w.size % n_out:
                raise self.err(where, f"1-d weight of {w.size} values does not split into {n_out} rows")
            w = w.reshape(n_out, -1)
        if w.ndim != 2 or w.shape[0] != n_out:
            raise self.err(where, f"weight shape {w.shape} does not match the layer shape ({n_out} neurons)")
        if self.shape is None:
            self.input_shape = self.shape = (w.shape[1],)
        if len(self.shape) == 3 and self.blocks() > 0 and not self.flatten_next:
            raise self.err(where, f"dense layer after a {self.shape} feature map needs a 'flatten' layer "
                                  "before it (netx would connect the (W, H, C) port to a flat one)")
        if len(self.shape) == 1 and self.flatten_next and self.blocks() > 0:
            raise self.err(where, "'flatten' after a 1-d layer: netx would transpose a 1-d port")
        self.flatten_next = False
        if w.shape[1] != math.prod(self.shape):
            raise self.err(where, f"weight has {w.shape[1]} inputs but the previous layer has "
                                  f"{math.prod(self.shape)} neurons")
        if "delay" in g:
            d = self.ints(g, "delay", where, truncate=True)
            if np.any(np.clip(d, 0, 62) != 0):
                raise self.err(where, "non-zero synaptic delays (netx's DelayDense) are not part of our record")
        syn = _dense_from_operator(*netx_dense_effective(w, f"{self.path}: {where}"), f"{self.path}: {where}")
        out = (n_out,)
        self.layers.append(Layer(syn, self.neurons(g, where, out), self.name(where)))
        self.shape = out

    def conv(self, g, where: str) -> None:
        if self.shape is None or len(self.shape) != 3:
            raise self.err(where, f"conv layer needs a (C, H, W) input, got {self.shape} "
                                  "(a first conv layer needs an 'input' layer with its shape)")
        w = self.ints(g, "weight", where, truncate=True)
        if w.ndim == 5 and w.shape[4] == 1:
            w = w[..., 0]
        if w.ndim != 4:
            raise self.err(where, f"conv weight must be (C_out, C_in, kH, kW), got shape {w.shape}")
        stride, padding, dilation = (self.pair(g, k, where) for k in ("stride", "padding", "dilation"))
        groups_arr = self.array(g, "groups", where)
        if groups_arr.ndim != 0:
            raise self.err(where, "'groups' must be a scalar (Lava's Conv rejects arrays)")
        groups = self.scalar(g, "groups", where)
        if dilation != (1, 1):
            raise self.err(where, f"dilation {dilation} is not supported (our Conv2d has none)")
        c_in = self.shape[0]
        if groups < 1 or c_in % groups or w.shape[0] % groups or w.shape[1] * groups != c_in:
            raise self.err(where, f"weight {w.shape} with groups = {groups} does not fit {c_in} input channels")
        if groups > 1:
            full = np.zeros((w.shape[0], c_in, *w.shape[2:]), dtype=np.int64)
            co, ci = w.shape[0] // groups, w.shape[1]
            for k in range(groups):
                full[k * co:(k + 1) * co, k * ci:(k + 1) * ci] = w[k * co:(k + 1) * co]
            w = full
        e = 0
        while (w.min() < F.WEIGHT.min or w.max() > F.WEIGHT.max) and not np.any(w & 1) and e < F.WEIGHT_EXP.max:
            w, e = w >> 1, e + 1
        if w.min() < F.WEIGHT.min or w.max() > F.WEIGHT.max:
            raise self.err(where, f"conv weights in [{int(w.min() << e)}, {int(w.max() << e)}] are not a 9-bit "
                                  "signed mantissa times a power of two")
        syn = Conv2d(w, stride=stride, padding=padding, weight_exp=e)
        try:
            out = syn.validate(where, self.shape)
        except ValueError as err:
            raise self.err(where, str(err)) from None
        declared = self.shape_of(g, where)
        if declared != tuple(out):
            raise self.err(where, f"declared shape {declared} differs from the convolution's output {tuple(out)}")
        self.layers.append(Layer(syn, self.neurons(g, where, out), self.name(where)))
        self.shape = tuple(out)
        # netx keeps a pending 'flatten' until the next dense layer (hdf5.py 634-660)

    def finish(self, attrs: dict) -> IntNetwork:
        layers, offset = list(self.layers), 0
        if self.input_neurons is not None:
            n = self.input_neurons
            passthrough = int(n.du) == F.DU.max and int(n.vth) == 0
            if not (passthrough and layers):
                s = self.input_shape
                syn = SumPool2d(1) if len(s) == 3 else Dense(np.eye(s[0], dtype=np.int64))
                layers.insert(0, Layer(syn, n, "netx input neurons"))
                offset = 1
        if not layers:
            raise ValueError(f"{self.path}: no layers: netx builds no network from this file")
        names = attrs.get("names")
        if isinstance(names, list) and len(names) == len(layers):
            layers = [Layer(l.synapse, l.neurons, str(nm)) for l, nm in zip(layers, names)]
        meta = dict(attrs.get("meta") or {}) if isinstance(attrs.get("meta"), dict) else {}
        meta.update({"source": "netx", TIME_OFFSET_KEY: offset})
        dt = attrs.get("dt", 1.0)
        try:
            return IntNetwork(self.input_shape, tuple(layers), float(dt) if dt else 1.0, meta)
        except ValueError as err:
            raise ValueError(f"{self.path}: {err}") from None


def read_netx(path) -> IntNetwork:
    """Read a netx HDF5 file into an integer record such that ``simulate(read_netx(path), x)``
    equals what netx builds and runs in Lava ``fixed_pt`` on the same 0/1 input, offset in time by
    ``net.meta["netx_time_offset"]`` steps (0, or 1 when the file has input neurons that do more
    than pass spikes through): netx's output at step ``t`` is ours at step ``t + offset``.

    The input is fed to netx's ``Network.inp`` or, for files with input neurons, to those neurons'
    ``a_in`` (``run_netx`` does either). Unsupported layer types, neuron models or parameters and
    malformed files raise ``ValueError`` naming the file, the layer and the problem.
    """
    import h5py

    path = Path(path)
    try:
        f = h5py.File(path, "r")
    except Exception as err:  # noqa: BLE001 - missing file, not HDF5, ...
        raise ValueError(f"{path}: cannot open as an HDF5 netx file ({err})") from None
    with f:
        if "layer" not in f or not isinstance(f["layer"], h5py.Group):
            raise ValueError(f"{path}: no 'layer' group: not a netx network file")
        group = f["layer"]
        keys = set(group.keys())
        if keys != {str(i) for i in range(len(keys))}:
            raise ValueError(f"{path}: netx reads groups layer/0 .. layer/{len(keys) - 1}; found "
                             f"{sorted(keys, key=lambda k: (len(k), k))}")
        attrs = {}
        if ATTR in f.attrs:
            try:
                attrs = json.loads(f.attrs[ATTR])
            except (TypeError, ValueError):
                attrs = {}
        reader = _Reader(path)
        for i in range(len(keys)):
            try:
                reader.add(i, group[str(i)])
            except ValueError:
                raise
            except Exception as err:  # noqa: BLE001 - odd structures: say where, never crash deep inside
                raise ValueError(f"{path}: layer {i}: malformed ({type(err).__name__}: {err})") from None
        return reader.finish(attrs if isinstance(attrs, dict) else {})


# --- the reference: netx in Lava ---------------------------------------------------------------
