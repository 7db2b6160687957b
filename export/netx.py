"""lava-dl netx HDF5 exchange: ``write_netx`` / ``read_netx`` (``targets.netx.run_netx`` runs a file in Lava).

A netx file is an HDF5 file with groups ``layer/0``, ``layer/1``, ... that
``lava.lib.dl.netx.hdf5.Network(net_config=path)`` turns into a CHAIN of Lava blocks (lava-dl 0.6.0,
lava-nc 0.10.0). ``read_netx`` returns it as an ``IntGraph``; ``write_netx`` writes any ``IntGraph``
netx can express. Each convention below was read in lava-dl's source (file and line, under
``lava/lib/dl/netx/``) and checked by running netx in Lava ``fixed_pt`` against
``sim.simulator.simulate`` (tests/test_netx.py). "netx does X: we do Y".

The graph of a netx file
    ``input`` (an ``Input``: with netx's Input block's neurons, or without when the file's input
    layer has only a ``shape``) -> ``layer0.synapse`` -> ``layer0`` -> ``layer1.synapse`` -> ... ->
    ``output``; a recurrent block adds ``layerK.recurrent`` (a ``Dense`` from ``layerK`` onto
    itself). ``layerK`` counts the blocks with a synapse; ``graph.meta["netx_blocks"]`` lists the
    group names in the order of netx's ``Network.layers`` (the Input block first when it has
    neurons), which is how ``run_netx`` names what it records. Our own files restore our names.
    netx's periodic reset phase of block ``i`` (``Network(reset_interval, reset_offset)``: hdf5.py
    578-579 starts at ``reset_offset + 1`` and adds one per block, 592, 618, 653) is the graph's
    ``depths()`` of that block's group: the chain's position, the recurrent edge not counted.

Layout
    netx stores ``shape`` (and conv ``stride``/``padding``/``dilation``) in PyTorch order ``(C, H, W)``
    / ``(H, W)`` and reverses them to Lava's ``(W, H, C)`` (hdf5.py 272, 496-500): we write and
    read them in PyTorch order, as our record holds them.
    netx's conv weight is PyTorch's cross-correlation kernel ``(C_out, C_in, kH, kW)`` (a 5th
    trailing axis of 1, as slayer writes it, is dropped); netx flips it and transposes it to Lava's
    ``(C_out, kW, kH, C_in)`` itself (hdf5.py 505-506): we write our kernel as is, no flip.
    netx's ``flatten`` layer connects the next dense layer through ``transpose([2, 1, 0]).flatten()``
    (hdf5.py 634-636, 655-660), i.e. Lava's ``(W, H, C)`` back to PyTorch's C-order ``(C, H, W)``
    flattening: dense weight columns are in our order, not permuted (unlike targets/lava_procs.py,
    which flattens Lava's order). We write a ``flatten`` layer before every dense layer that reads a
    feature map; reading, a dense layer after a feature map without one is refused (netx would
    connect a ``(W, H, C)`` port to a flat one). A dense block's neurons are flat, ``(N,)``
    (hdf5.py 346): a graph group fed by a dense synapse is written only when it is 1-d.

Neurons (hdf5.py 140-163)
    netx builds a Lava ``LIF`` (``LIFReset`` with a reset interval, 147-150) from ``neuron``
    ``{type: CUBA | LOIHI, iDecay, vDecay, vThMant, ...}`` with ``du = iDecay - 1`` (156),
    ``dv = vDecay`` (157), ``vth = vThMant`` (155), ``bias_exp = 6`` (158) and ``bias_mant = bias``:
    we write ``iDecay = du + 1``, ``vDecay = dv``, ``vThMant = vth``. LIF holds one ``du``, ``dv``
    and ``vth`` per process: per-neuron values are refused. ``refDelay`` and ``gradedSpike`` are
    ignored by netx (LIF has no refractory period; graded output comes only from ``messageBits``):
    we write ``refDelay = 1``, ``gradedSpike = False``, and refuse reading ``messageBits > 0`` on a
    CUBA layer (graded LIF output spikes) and every other neuron type but SDNN and RF (below).
SDNN (sigma-delta) layers (hdf5.py 164-189)
    read into ``SigmaDelta`` registers (``sim.graph``): the Input block becomes Lava's ``Delta``
    encoder, a layer with ``sigma_output`` a ``Sigma`` accumulator, every other SDNN layer a ReLU
    ``SigmaDelta``; ``vth = vThMant``, ``spike_exp = state_exp = 6``, ``bias`` truncated to int32
    (blocks/process.py 71). Their graded payloads reach the next block with ``num_message_bits =
    messageBits`` (16 when absent, 168-169; the next block's ``input_message_bits``, 595, 621, 654),
    which Lava's Dense and Conv only test for ``> 0``: ``0`` (payloads read as 0/1) is refused, as
    are an ``activation`` other than ReLU (netx never reads it and runs ReLU), synaptic delays and
    recurrence. netx ignores a reset interval for SDNN blocks with a warning (165-167), and so does
    the simulator. Writing SDNN is not supported (``write_netx`` refuses such graphs).
    A conv block after an SDNN block (PilotNet SDNN's) gets the payloads as netx wires them:
    ``Conv(num_message_bits=input_message_bits)`` (hdf5.py 609-615, blocks/process.py 451-459, no
    weight exponent), and Lava's fixed_pt Conv then convolves the int32 payloads as they are
    (lava-nc lava/proc/conv/models.py 40-51: no cast to 0/1), sums in float64 (utils.py 214-216,
    ``conv_scipy`` 252-296), casts the sum to int32 (218) and wraps it into 24 bits (models.py
    78-79): the conv arithmetic of spikes on larger inputs. The simulator refuses a run in which a
    sum leaves int32 (Lava's cast is undefined there; ``sim.simulator._check_graded_conv``).
RF (resonate-and-fire) layers (hdf5.py 190-205, 362-390; blocks/process.py 309-386)
    A ``neuron`` type containing ``RF`` is built as Lava's ``RF`` when it contains ``PHASE``
    (slayer's ``RF_PHASE``), else as ``RF_IZ`` (slayer's ``RF_IZHIKEVICH``): read into ``Resonator``
    registers (``sim.graph``) with ``vth = vThMant`` (Lava shifts it by ``state_exp = 6``),
    ``decay_bits = 12`` and the decays Lava's process holds after netx's float round trip of
    ``sinDecay``/``cosDecay`` through a period and a decay (``netx_rf_decays``: each the file's
    value or one step toward zero; exact where Lava's numpy computes ``arctan2`` with the C
    library, i.e. without its AVX-512 kernel -- see there). Lava's RF has two inputs, so these
    neurons come only in a dense layer with ``weight/real`` and ``weight/imag`` (what slayer's
    ``rf``/``rf_iz`` blocks export), which netx builds as ``ComplexDense``: two Lava Dense synapses,
    each rescaled on its own by ``optimize_weight_bits``, into ``a_real_in`` and ``a_imag_in``. We
    read them as two ``Dense`` nodes, the imaginary one through an ``ImagPart`` into the group. The
    simulator steps them with Lava's fixed-point arithmetic (``sim.simulator.resonator_step``);
    their spikes are 0/1, their recorded ``u``/``v`` are ``real``/``imag``. As netx: a complex
    block's ``bias`` and ``delay`` are ignored (with a warning), ``messageBits`` and ``gradedSpike``
    too, and a reset interval leaves RF blocks alone (netx passes them no reset). Refused in one
    line: RF neurons after a real weight, on an input layer or with per-neuron parameters, complex
    weights into any other neuron or without a ``neuron`` group, complex ``dense_rec`` (netx drops
    ``weight_rec``); complex conv layers do not exist in netx. Writing RF is not supported
    (``write_netx`` refuses such graphs).
    A dense (or dense_rec) layer without ``neuron`` gets netx's default "non-leaky integrator"
    (hdf5.py 348-355): ``iDecay = 0``, ``vDecay = 4096``, ``vThMant = 1 << 18 - 1`` (Python's
    precedence: ``2**17``), i.e. Lava's ``du = -1`` (the current never decays: factor 4096/4096),
    ``dv = 4096`` (``v = u + bias`` each step) and a threshold ``2**23`` that the saturated ``v``
    never exceeds (it never spikes; a readout of ``u`` and ``v``, as PilotNet's). The graph holds
    exactly these registers (``sim.formats`` admits them as netx's documented special values), and
    files may also state them; a conv layer without ``neuron`` makes netx fail (hdf5.py 501 reads
    ``layer_config['neuron']``): refused.
Biases
    netx reads ``bias`` with ``.astype(int)`` (utils.py 67-68: floats truncate toward zero) and
    always uses ``bias_exp = 6`` (hdf5.py 158): a bias is ``bias << 6``, a multiple of 64. Per
    neuron for dense layers; for conv layers either per channel ``(C,)`` or per neuron in Lava's
    ``(W, H, C)`` order (blocks/process.py 53-72). We write ``bias = (bias_mant << bias_exp) / 64``
    and refuse biases that are not multiples of 64 or whose quotient leaves the 13-bit mantissa
    range; reading, ``bias << 6`` is re-split into our ``(bias_mant, bias_exp)`` (exponent 6, or 7
    for even values up to 8190).
Dense weights (hdf5.py 393-411, utils.py 80-158, blocks/process.py 157-162)
    netx reads ``weight`` with ``.astype(int)`` and rescales it with its own
    ``optimize_weight_bits``: ``w << k`` with ``weight_exp = -k``, ``k`` chosen from the weight
    range so the largest magnitude fills 8 bits (ported as ``netx_optimize_weight_bits``).
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
Recurrent blocks (``dense_rec``: hdf5.py 394-407, 454-455; blocks/process.py 203-306)
    What lava-dl slayer's ``cuba.Recurrent`` exports (slayer/block/base.py 1496-1531: ``weight``
    and ``weight_rec``, out x out). netx rescales the two matrices TOGETHER
    (``optimize_weight_bits(hstack(weight, weight_rec))``, hdf5.py 401-407: one shift, one
    ``num_weight_bits`` and one exponent) and builds two Lava Dense synapses (blocks/process.py
    249-262), each of which determines its own sign mode; the neuron's spikes feed the recurrent
    synapse (302-304), whose output arrives one step later, added at the same ``a_in``. We read and
    write it as a group with a forward ``Dense`` and a ``Dense`` onto itself (``netx_rec_effective``
    emulates the joint rescaling; the writer checks it reproduces both matrices exactly).
Delays (hdf5.py 425-448; blocks/process.py 163-181, 263-286)
    ``delay`` on a dense layer makes netx build Lava's ``DelayDense``. All-zero delays compute as
    Dense and are read as such, with one netx quirk reproduced: a recurrent block with ``delay``
    builds its two DelayDense synapses WITHOUT ``weight_exp`` (blocks/process.py 273-286), so the
    shift netx applied to its weights is never undone (they act ``2**k`` times larger). Non-zero
    delays become the ``Dense`` node's per-synapse ``delay``, expanded as netx expands them (a
    scalar, a vector per row -- checked first -- or per column, or a matrix; values above 62
    clamped with a warning, as netx does); the recurrent synapse of a ``dense_rec`` block gets
    the same matrix, as in netx. The writer writes the full matrix (refusing delays above 62 and
    delayed recurrent blocks, which netx would change). netx ignores conv ``delay`` (hdf5.py
    527-530): so do we.
Conv and pooling (hdf5.py 464-544, 547-563, 625-632, 679-683)
    Conv weights go to Lava's Conv as given (no clip, no exponent): we write our folded
    ``w << weight_exp``; reading, a power of two is factored out of weights beyond 8 bits.
    ``dilation`` and ``groups`` are required by netx (scalar ``groups``): we write 1; reading,
    grouped kernels are expanded to block-diagonal full kernels and dilation other than 1 is
    refused (Lava's Conv runs it; the graph's ``Conv2d`` has no dilation). netx does not implement
    ``pool``, ``average``, ``concat``, ``convT``, ``unpool`` (NotImplementedError), and its
    ``dense_comp`` layer type calls a method lava-dl 0.6 lacks (complex dense layers are ``dense``
    layers with ``weight/real``, above): we write sum pooling (and a pooling composed into
    the next synapse, ``IntGraph.projections``) as a ``conv`` layer with a unit kernel per channel
    and stride ``k`` (exact), and refuse those types when reading.
Input layer, input bias and timing (hdf5.py 246-312, 582-597; blocks/process.py 79-111)
    An ``input`` layer with only ``shape`` sets netx's input shape and creates no process: the
    input spikes (or graded payloads, ``Network(input_message_bits=...)``) go to ``Network.inp``,
    i.e. the first synapse. With a ``neuron`` group netx creates an ``Input`` block: a LIF
    population with no synapse, whose ``weight``/``bias`` go to a ``transform`` that is never
    applied (hdf5.py 279-289) and whose ``inp`` port is left unconnected ("The input must be
    handled through neuron's bias", blocks/process.py 103-104). lava-dl drives it by setting the
    neurons' ``bias_mant`` to the image (its tinynet and PilotNet tests:
    ``net.in_layer.neuron.bias_mant.init = ...`` with ``Network(reset_interval=...)``), or feeds
    spikes to the neurons' ``a_in``, which integrates them in the same step (no synaptic delay).
    lava-dl's data pipelines scale the input by that transform themselves (PilotNet's dataset takes
    ``transform=net.in_layer.transform``; a slayer ``Input`` block's input 1.0 is ``a_in = 64``):
    ``graph.meta["netx_input_transform"]`` holds it, and feeding ``64 * x`` reproduces slayer.
    This is the graph's ``Input(shape, neurons)`` exactly: ``bias_exp = 6``, ``bias_mant = 0``
    (the file's bias is never applied), ``--input-bias`` mantissas per sample, input spikes or
    payloads into ``a_in``. The writer refuses input neurons with another ``bias_exp`` or a
    static bias (netx could not hold them). Every later block adds one step (Dense/Conv send at
    ``t + 1`` what they received at ``t``): netx's output at step ``t`` is the graph's at ``t``.

Our files also carry the root attribute ``spikeport`` (JSON: format, ``dt``, ``meta``, node names),
which netx ignores and ``read_netx`` restores. netx never closes its h5py handle (utils.py 43):
``run_netx`` closes it once the network is built, so the file can be rewritten.
Values netx truncates or clips silently (float weights and biases, weights beyond range) are read
as netx reads them (truncated) or refused where netx would silently zero them.
"""
from __future__ import annotations

import dataclasses
import json
import math
import warnings
from pathlib import Path

import numpy as np

from spikeport.sim import formats as F
from spikeport.sim.graph import (MAX_GROUP_NEURONS, NETX_RF_DECAY_BITS, NETX_RF_STATE_EXP, RF_DECAY, RF_VTH, ImagPart,
                                 Input, IntGraph, NeuronGroup, Output, Resonator, SigmaDelta, as_graph, is_resonator,
                                 is_sigma_delta, refuse_unless_lif)
from spikeport.sim.npzfile import MEMORY_BUDGET_BYTES
from spikeport.sim.network import Conv2d, Dense, IntNetwork, Layer, Neurons, SumPool2d

from .hdf5file import Group, HDF5Error, read_hdf5

FORMAT = "spikeport.netx/2"             # /1: chains (layer names only), still read
ATTR = "spikeport"
BLOCKS_KEY = "netx_blocks"              # graph.meta: group names in netx's Network.layers order
TRANSFORM_KEY = "netx_input_transform"  # graph.meta: {weight, bias} of netx's Input block (not applied)
NETX_BIAS_EXP = 6                       # hdf5.py 158
NETX_BIAS = F.IntFormat("netx bias", 13, True)  # bias_mant written at exponent 6
NETX_MAX_DELAY = 62                     # hdf5.py 427-430 clamps delays to [0, 62]
UNSUPPORTED_TYPES = {
    "pool": "netx does not implement it (hdf5.py 625-626 raises NotImplementedError)",
    "average": "netx does not implement it (hdf5.py 679-680 raises NotImplementedError)",
    "concat": "netx does not implement it (hdf5.py 682-683 raises NotImplementedError)",
    "convT": "netx does not implement it (hdf5.py 628-629 raises NotImplementedError)",
    "unpool": "netx does not implement it (hdf5.py 631-632 raises NotImplementedError)",
    "dense_comp": "netx calls a create_complex_dense that lava-dl 0.6 does not define (hdf5.py 664-667 raises "
                  "AttributeError); complex dense layers are 'dense' layers with weight/real and weight/imag",
}
# netx's default neuron of a dense layer without a 'neuron' group (hdf5.py 348-355)
NETX_DEFAULT_NEURON = {"iDecay": 0, "vDecay": 4096, "vThMant": 1 << 18 - 1}


# --- netx's resonate-and-fire parameters ---------------------------------------------------------

def netx_rf_decays(sin_decay: int, cos_decay: int, decay_bits: int = NETX_RF_DECAY_BITS) -> tuple[int, int]:
    """The ``sin_decay`` and ``cos_decay`` integers Lava's ``RF``/``RF_IZ`` process holds for a netx
    RF layer whose file states ``sinDecay``, ``cosDecay``: netx does not pass them on, it turns them
    into a period and a decay with slayer's ``neuron_params`` (lava-dl 0.6
    lava/lib/dl/slayer/neuron/rf.py 42-50, imported by netx/hdf5.py 19 and called at 194) and Lava's
    process turns those back (lava-nc 0.10 lava/proc/rf/process.py 207-208, 215-217)::

        s, c   = sinDecay / 4096, cosDecay / 4096                   # p_scale = 1 << 12
        alpha  = 1 - sqrt(s**2 + c**2);  period = 1 / (atan2(s, c) / 2 / pi)
        sin    = int32((1 - alpha) * sin(pi * 2 * 1 / period) * (1 << decay_bits))    # truncation
        cos    = int32((1 - alpha) * cos(pi * 2 * 1 / period) * (1 << decay_bits))

    Exactly, the round trip is the identity; in float64 each result lands a hair above or below the
    file's integer, and the truncation keeps it or moves it one step toward zero (measured: about a
    third of slayer's (sinDecay, cosDecay) pairs move). Which one happens depends on the float
    functions: this port uses the C library's (Python's ``math``), which is what Lava's numpy 1.26
    computes where it does not dispatch ``arctan2`` to its AVX-512 (SVML) kernel; on an AVX-512
    machine Lava's own run differs from that in the last bit of ``arctan2`` and so, for about one
    pair in six (24197 of 135777 of slayer's pairs, measured), by one in a decay. Lava run with
    ``NPY_DISABLE_CPU_FEATURES`` naming the AVX-512 features equals this port on all 135777 pairs
    (tests/test_rf.py checks a grid against Lava's own ``RF`` process). ``1 / 0.0`` is numpy's
    ``inf`` (a file with ``sinDecay = 0``): no oscillation, ``sin = 0``.
    """
    s, c = sin_decay / 4096, cos_decay / 4096
    alpha = 1 - math.sqrt(s ** 2 + c ** 2)
    frequency = math.atan2(s, c) / 2 / math.pi
    period = 1 / frequency if frequency != 0 else math.inf
    scale = 1 << int(decay_bits)
    sin = (1 - alpha) * math.sin(math.pi * 2 * 1 / period)
    cos = (1 - alpha) * math.cos(math.pi * 2 * 1 / period)
    return int(sin * scale), int(cos * scale)   # np.int32(x): truncation toward zero


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
    w, nwb, exp = netx_optimize_weight_bits(weight, where)
    return _lava_dense(w, nwb, where), exp


def netx_rec_effective(weight, weight_rec, where: str = "", delay: bool = False):
    """What netx + Lava compute from a ``dense_rec`` block's ``weight`` and ``weight_rec``:
    ``((W, weight_exp), (R, weight_exp))``.

    netx rescales both together, ``optimize_weight_bits(hstack(weight, weight_rec))`` (hdf5.py
    401-407: one shift, one ``num_weight_bits``, one exponent), then builds one Lava Dense per
    matrix (blocks/process.py 249-262), each determining its own sign mode, clipping and
    truncating with the shared ``num_weight_bits``. With ``delay`` netx builds DelayDense synapses
    without ``weight_exp`` (blocks/process.py 273-286): the exponent is then 0, the shift kept.
    """
    w, r = (np.asarray(m).astype(np.int64) for m in (weight, weight_rec))
    both, nwb, exp = netx_optimize_weight_bits(np.hstack([w, r]), where)
    exp = 0 if delay else exp
    return tuple((_lava_dense(m, nwb, f"{where} ({name})" if where else name), exp)
                 for m, name in ((both[:, :w.shape[1]], "weight"), (both[:, w.shape[1]:], "weight_rec")))


def _lava_dense(w, nwb: int, where: str) -> np.ndarray:
    """Lava's Dense on weights netx passes without a sign mode: it determines the mode from the
    weights, clips them to 8 bits and drops ``8 - num_weight_bits (+1 mixed)`` low bits."""
    at = f"{where}: " if where else ""
    mode = F.sign_mode_of(w)  # = lava.utils.weightutils.determine_sign_mode
    drop = F.WEIGHT_BITS - nwb + int(mode == "mixed")
    if drop < 0:
        raise ValueError(f"{at}netx computes num_weight_bits = {nwb} for mixed-sign weights, "
                         f"but Lava treats these weights as {mode} and would shift them by {drop}, "
                         "zeroing them")
    return F.dense_effective_weights(w, nwb, mode)


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
                     "which the graph's Dense (8-bit weights, even when mixed-sign, exponent -8..7) cannot hold")


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


def _input_neuron_datasets(neurons: Neurons, shape: tuple, where: str) -> dict:
    """netx's Input block: its LIF gets ``bias_exp = 6`` and no bias (the file's ``bias`` goes to a
    transform that is never applied, hdf5.py 279-289); ``--input-bias`` mantissas replace
    ``bias_mant`` per sample, scaled by that exponent."""
    exp = neurons.expand("bias_exp", shape)
    if np.any(exp != NETX_BIAS_EXP):
        raise ValueError(f"{where}: input neurons with bias_exp = {int(exp[np.argmax(exp != NETX_BIAS_EXP)])}: netx "
                         f"gives its Input block bias_exp = {NETX_BIAS_EXP} (hdf5.py 158), which scales the input "
                         "bias mantissas")
    if np.any(neurons.expand("bias_mant", shape)):
        raise ValueError(f"{where}: input neurons with a static bias: netx never applies a bias to its Input block "
                         "(the file's 'bias' goes to an unused transform, hdf5.py 279-289); drive it with "
                         "--input-bias instead")
    return _neuron_datasets(Neurons(du=neurons.du, dv=neurons.dv, vth=neurons.vth), shape, where)


def _netx_weights(ops: list, where: str) -> list:
    """The file weights of a dense (one operator) or dense_rec (forward and recurrent) block:
    our effective synaptic operators, checked to come out of netx's rescaling and Lava's Dense
    unchanged (``netx_dense_effective`` / ``netx_rec_effective``)."""
    labels = ("weight", "weight_rec")[:len(ops)]
    targets = []
    for op, label in zip(ops, labels):
        target, te = _canonical(op.effective_weight(), int(op.weight_exp))
        if te < 0:
            raise ValueError(f"{where}: {label}: weight_exp = {op.weight_exp} floors the synaptic sum (weights not "
                             f"divisible by 2**{-op.weight_exp}); netx has no weight exponent of its own choosing "
                             "that floors (it only undoes its own scaling), so this synapse cannot be written exactly")
        targets.append(target)
    if not any(np.any(t) for t in targets):
        raise ValueError(f"{where}: netx cannot load an all-zero dense weight matrix "
                         "(optimize_weight_bits divides by its largest weight)")
    lo, hi = min(int(t.min()) for t in targets), max(int(t.max()) for t in targets)
    head = f"{where}: synaptic weights (W << weight_exp) in [{lo}, {hi}] cannot be written to netx"
    try:
        got = [netx_dense_effective(targets[0])] if len(ops) == 1 else list(netx_rec_effective(*targets))
    except ValueError as err:
        raise ValueError(f"{head}: {err}") from None
    for target, (g, ge), label in zip(targets, got, labels):
        g, ge = _canonical(g, ge)
        if ge != 0 or not np.array_equal(g, target):
            scaled = target << -ge
            k = int(np.flatnonzero((g != scaled).reshape(-1))[0]) if g.shape == scaled.shape else 0
            raise ValueError(f"{head}: netx's rescaling would change them ({label} {int(target.reshape(-1)[k])} at "
                             f"flat index {k} would act as {int(g.reshape(-1)[k])} * 2**{ge}); netx keeps "
                             "weights in [-256, 254] (mixed signs), [0, 255] (excitatory) and non-positive "
                             "matrices whose most negative weight is not a power of two (Lava clips netx's "
                             "-256 to -255)" + ("; a recurrent block's two matrices are rescaled together"
                                                if len(ops) > 1 else ""))
    return targets


def _netx_delay(op, rec, where: str):
    """The ``delay`` dataset of a dense block (None without delays): the full ``(out, in)`` matrix,
    0 where the weight is 0 (those synapses never act). netx clamps delays above 62; a recurrent
    block's two synapses share one matrix and lose their weight exponent (blocks/process.py
    263-286), which the writer does not reproduce: such a block is refused."""
    if (op.delay is None or not np.any(op.delay)) and (rec is None or rec.delay is None or not np.any(rec.delay)):
        return None
    if rec is not None:
        raise ValueError(f"{where}: a recurrent group with synaptic delays: netx gives a recurrent block's two "
                         "synapses one delay matrix and builds them without their weight exponent "
                         "(lava-dl netx/blocks/process.py 263-286), so it cannot be written exactly")
    d = np.where(op.effective_weight() != 0, np.asarray(op.delay), 0).astype(np.int64)
    if d.max() > NETX_MAX_DELAY:
        raise ValueError(f"{where}: delay {int(d.max())} > {NETX_MAX_DELAY}: netx clamps larger delays "
                         "(hdf5.py 427-430), so it cannot be written exactly")
    return d


def netx_chain(graph: IntGraph) -> tuple:
    """``graph`` as netx's chain of blocks: ``(input, [(group, projection, recurrent or None), ...])``
    from the lowered projections, or a ``ValueError`` naming the node netx cannot hold."""
    inputs, outputs = graph.inputs(), graph.outputs()
    if len(inputs) != 1:
        raise ValueError(f"a netx network has one input; the graph has {len(inputs)} ({inputs})")
    if len(outputs) != 1:
        raise ValueError(f"a netx network has one output (its last layer); the graph has {len(outputs)} "
                         f"({list(outputs)})")
    into, onward = {}, {}
    for p in graph.projections():
        into.setdefault(p.dst, []).append(p)
        if p.src != p.dst:
            onward.setdefault(p.src, []).append(p)
    chain, cur, seen = [], inputs[0], {inputs[0]}
    while cur in onward and len(chain) < len(graph.nodes):
        if len(onward[cur]) != 1:
            raise ValueError(f"node {cur!r} feeds {len(onward[cur])} groups ({[p.dst for p in onward[cur]]}): "
                             "netx's layers form a chain, each feeding only the next")
        p = onward[cur][0]
        own = [q for q in into[p.dst] if q.src == p.dst]
        other = [q.src for q in into[p.dst] if q is not p and q.src != p.dst]
        if other:  # (a loop back to an earlier group shows here too: that group receives twice)
            raise ValueError(f"node {p.dst!r} also receives from {other}: netx's layers form a chain (no merges, "
                             "skips or loops through several layers; its only recurrence is a dense block onto "
                             "itself)")
        if len(own) > 1:
            raise ValueError(f"node {p.dst!r} has {len(own)} projections onto itself; netx's recurrent block has one")
        chain.append((p.dst, p, own[0] if own else None))
        seen.add(p.dst)
        cur = p.dst
    missed = [n for n in graph.groups() if n not in seen]
    if missed:
        raise ValueError(f"nodes {missed} are not on the chain from {inputs[0]!r}: netx's layers form a chain")
    (out_name, src), = outputs.items()
    if src != cur:
        raise ValueError(f"node {out_name!r} reads {src!r}, but netx's output is its last layer, {cur!r}")
    if not chain and graph.neurons(inputs[0]) is None:
        raise ValueError("the graph has no neurons: netx builds no network from an input alone")
    return inputs[0], chain


def write_netx(net, path) -> None:
    """Write ``net`` (an ``IntGraph``, or an ``IntNetwork`` chain) as a netx HDF5 file that
    ``lava.lib.dl.netx.hdf5.Network(net_config=path)`` runs in Lava ``fixed_pt`` exactly as
    ``simulate(net, ...)`` does (hardware timing, the same protocol: input spikes to
    ``Network.inp`` or, with input neurons, to their ``a_in``; input bias as their ``bias_mant``;
    netx's ``reset_interval``): netx's output at step ``t`` is ours at step ``t``.

    netx expresses a chain: one input (optionally netx's Input block of neurons), dense, recurrent
    dense and conv blocks (sum pooling as a unit-kernel conv), one output on the last block. What it
    cannot express is refused with a ``ValueError`` naming the node (module docstring). The file is
    written only once every block has been checked.
    """
    import h5py

    graph = as_graph(net)
    refuse_unless_lif(graph, "write_netx")
    inp, chain = netx_chain(graph)
    in_shape = graph.shapes[inp]
    if len(in_shape) not in (1, 3):
        raise ValueError(f"node {inp!r}: input shape {in_shape}: netx's input is (N,) or (C, H, W)")
    first = {"shape": np.array(in_shape, dtype=np.int64)}
    if graph.neurons(inp) is not None:
        first.update(_input_neuron_datasets(graph.neurons(inp), in_shape, f"node {inp!r}"))
    plan = [("input", first)]
    for group, p, rec in chain:
        where = f"node {group!r}"
        shape, src_shape, op = graph.shapes[group], graph.shapes[p.src], p.op
        neuron = _neuron_datasets(graph.neurons(group), shape, where)
        if rec is not None and not (isinstance(op, Dense) and isinstance(rec.op, Dense)):
            kinds = f"{type(op).__name__} in, {type(rec.op).__name__} onto itself"
            raise ValueError(f"{where}: a recurrent group with {kinds}: netx's recurrent block (dense_rec) has a "
                             "dense input and a dense recurrent synapse")
        if isinstance(op, Dense):
            if len(shape) != 1:
                raise ValueError(f"{where}: netx's dense blocks hold flat neurons (hdf5.py 346), the group has shape "
                                 f"{shape}; give it shape ({math.prod(shape)},)")
            if len(src_shape) == 3:
                plan.append(("flatten", {"shape": np.array([math.prod(src_shape), 1, 1])}))
            ws = _netx_weights([op] if rec is None else [op, rec.op], where)
            data = {"shape": np.array(shape), "weight": ws[0]}
            if rec is not None:
                data["weight_rec"] = ws[1]
            delay = _netx_delay(op, None if rec is None else rec.op, where)
            if delay is not None:
                data["delay"] = delay
            plan.append(("dense" if rec is None else "dense_rec", {**data, **neuron}))
            continue
        conv = op.as_conv(src_shape[0]) if isinstance(op, SumPool2d) else op
        out = tuple(conv.validate(where, src_shape))
        if out != tuple(shape):
            raise ValueError(f"{where}: the group has shape {shape}, its convolution's output is {out}: netx's conv "
                             "block's neurons have the convolution's shape")
        w = conv.effective_weight()
        plan.append(("conv", {"shape": np.array(shape), "weight": w.astype(np.int64),
                              "stride": np.array(conv.stride, dtype=np.int64),
                              "padding": np.array(conv.padding, dtype=np.int64),
                              "dilation": np.array([1, 1], dtype=np.int64), "groups": np.int64(1),
                              "inChannels": np.int64(w.shape[1]), "outChannels": np.int64(w.shape[0]),
                              "kernelSize": np.array(w.shape[2:], dtype=np.int64), **neuron}))
    (out_name,) = graph.outputs()
    names = {"input": inp, "output": out_name,
             "blocks": [[g, p.name, None if r is None else r.name] for g, p, r in chain]}
    meta = {k: v for k, v in graph.meta.items() if k not in (BLOCKS_KEY, TRANSFORM_KEY)}
    with h5py.File(Path(path), "w") as f:
        f.attrs[ATTR] = json.dumps({"format": FORMAT, "dt": graph.dt, "meta": meta, "names": names}, default=str)
        group = f.create_group("layer")
        for j, (kind, data) in enumerate(plan):
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


class _Block:
    """One netx block with a synapse: its neurons' ``shape`` (ours), ``synapse``, optional
    ``recurrent`` Dense and ``neurons``."""

    def __init__(self, shape, synapse, neurons, recurrent=None, imag=None):
        self.shape, self.synapse, self.neurons, self.recurrent = tuple(shape), synapse, neurons, recurrent
        self.imag = imag  # the imaginary Dense of netx's complex synapse (a resonate-and-fire block)


class _Reader:
    def __init__(self, path: Path):
        self.path = path
        self.input_shape = None      # ours, (N,) or (C, H, W)
        self.shape = None            # current output shape, ours
        self.input_neurons = None    # Neurons of netx's Input block
        self.blocks = []             # _Block
        self.flatten_next = False
        self.transform = None        # the Input block's input transform (meta, never applied by netx)

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
        # checked in the file's dtype before the cast: a uint64 (or float) beyond int64 would wrap
        if a.size and (a.max() >= 2 ** 63 or a.min() < -(2 ** 63)):
            bad = a.max() if a.max() >= 2 ** 63 else a.min()
            raise self.err(where, f"'{key}' = {bad.item():g} is beyond int64" if a.dtype.kind == "f"
                           else f"'{key}' = {bad.item()} is beyond int64")
        return a.astype(np.int64)

    def delay(self, g, where: str, w_shape: tuple) -> np.ndarray:
        """A dense block's ``delay`` as netx expands it (hdf5.py 425-448): clamped to 62 with a
        warning when larger, a scalar for every synapse, a vector of ``out`` entries per row
        ("axonal delays to syn", checked first) or of ``in`` entries per column, or a matrix."""
        d = self.ints(g, "delay", where, truncate=True)
        if d.size and d.max() > NETX_MAX_DELAY:
            warnings.warn(f"{self.path}: {where}: delays up to {int(d.max())} clamped to {NETX_MAX_DELAY}, "
                          "as netx does (hdf5.py 427-430)", stacklevel=3)
            d = np.clip(d, 0, NETX_MAX_DELAY)
        if d.size and d.min() < 0:
            raise self.err(where, f"delay {int(d.min())} < 0 (Lava's DelayDense refuses negative delays)")
        if d.size == 1:
            return np.full(w_shape, int(d.reshape(-1)[0]), dtype=np.int64)
        if d.ndim == 1 and d.size == w_shape[0]:
            return np.repeat(d.reshape(-1, 1), w_shape[1], axis=1)
        if d.ndim == 1 and d.size == w_shape[1]:
            return np.repeat(d.reshape(1, -1), w_shape[0], axis=0)
        if d.shape != tuple(w_shape):
            raise self.err(where, f"delay of shape {d.shape} fits neither the weight {tuple(w_shape)}, its rows "
                                  "nor its columns (netx raises, hdf5.py 432-446)")
        return d

    def scalar(self, g, key: str, where: str) -> int:
        a = self.ints(g, key, where)
        vals = np.unique(a)
        if vals.size != 1:
            raise self.err(where, f"'{key}' has {vals.size} distinct values; netx passes it to Lava's LIF, "
                                  "which holds one value per layer")
        return int(vals[0])

    def shape_of(self, g, where: str) -> tuple:
        s = tuple(int(v) for v in self.ints(g, "shape", where).reshape(-1))
        if any(v < 1 for v in s) or math.prod(s) > MAX_GROUP_NEURONS:
            raise self.err(where, f"bad shape {s} (sizes >= 1, at most {MAX_GROUP_NEURONS} neurons)")
        return s

    def pair(self, g, key: str, where: str) -> tuple:
        a = self.ints(g, key, where).reshape(-1)
        if a.size == 1:
            return (int(a[0]), int(a[0]))
        if a.size != 2:
            raise self.err(where, f"'{key}' must be a scalar or (H, W) pair, got {a.size} values")
        return (int(a[0]), int(a[1]))

    # neurons
    def neurons(self, g, where: str, out_shape: tuple, is_input: bool = False, default: bool = False) -> Neurons:
        """The layer's ``neuron`` group as Lava's LIF registers; ``default``: a layer netx gives its
        non-leaky integrator when the group is missing (dense layers, hdf5.py 348-355)."""
        w = f"{where} neuron"
        if "neuron" in g:
            ng = g["neuron"]
            if not isinstance(ng, Group):
                raise self.err(w, "'neuron' must be a group")
            ntype = _decode(self.need(ng, "type", w)[()])
            if ntype == "SDNN":
                return self.sigma_delta(g, ng, where, out_shape, is_input)
            if ntype not in ("CUBA", "LOIHI") and "RF" in ntype:
                return self.resonator(g, ng, where, ntype, is_input)
            if ntype not in ("CUBA", "LOIHI"):
                raise self.err(w, f"type {ntype!r} is not supported (only CUBA/LOIHI neurons map to Lava's LIF, "
                                  "hdf5.py 144-163, SDNN to its sigma-delta neurons, 164-189, and types containing "
                                  "'RF' to its resonate-and-fire neurons, 190-205)")
            if "messageBits" in ng and self.scalar(ng, "messageBits", w) != 0:
                raise self.err(w, "messageBits > 0 (graded output spikes) is not supported: the graph's neuron "
                                  "groups send 0/1 spikes")
            i_decay, v_decay, vth = (self.scalar(ng, k, w) for k in ("iDecay", "vDecay", "vThMant"))
        elif default:
            i_decay, v_decay, vth = (NETX_DEFAULT_NEURON[k] for k in ("iDecay", "vDecay", "vThMant"))
        else:
            raise self.err(where, "no 'neuron' group: netx requires one for this layer type (it reads "
                                  "layer_config['neuron'], hdf5.py 273, 501)")
        du = i_decay - 1  # hdf5.py 156: du = iDecay - 1 cancels the LIF's ds_offset
        for name, value, fmt in (("iDecay", i_decay, F.DU), ("vDecay", v_decay, F.DV), ("vThMant", vth, F.VTH)):
            reg = du if fmt is F.DU else value
            if not (fmt.min <= reg <= fmt.max or reg in fmt.special):
                raise self.err(w, f"{name} = {value} gives Lava's {fmt.name} = {reg}, outside its {fmt.bits}-bit "
                                  f"register [{fmt.min}, {fmt.max}] (or {fmt.special[0]}, netx's default neuron)")
        bias_mant, bias_exp = (0, NETX_BIAS_EXP) if is_input else (0, 0)
        if "bias" in g and not is_input:  # netx never gives input neurons a bias (hdf5.py 279-294)
            bias_mant, bias_exp = self.bias(g, where, out_shape)
        return Neurons(du=du, dv=v_decay, vth=vth, bias_mant=bias_mant, bias_exp=bias_exp)

    def sigma_delta(self, g, ng, where: str, out_shape: tuple, is_input: bool) -> SigmaDelta:
        """An SDNN ``neuron`` group as netx builds it (hdf5.py 164-189): the Input block's ``Delta``
        encoder, a ``Sigma`` accumulator when the group has ``sigma_output``, else a ReLU
        ``SigmaDelta``; ``vth = vThMant``, ``spike_exp = 6`` (``Network(spike_exp=6)``), ``state_exp = 6``,
        the layer's ``bias`` read as ``bias.astype(np.int32)`` (blocks/process.py 53-72: truncation).
        Their payloads reach the next block with ``num_message_bits = messageBits`` (16 when absent,
        hdf5.py 168-169; any value > 0 computes alike: Lava's Dense only asks whether it is > 0).
        Measured: lava-dl 0.6's netx itself fails on a file that states ``messageBits`` (its NetDict
        hands the dataset on, and Lava's Dense and the Network's output check cannot take it), so
        files netx runs leave it out; we read it, and it changes nothing."""
        w = f"{where} neuron"
        if "messageBits" in ng:
            bits = self.scalar(ng, "messageBits", w)
            if not 1 <= bits <= 32:
                raise self.err(w, f"messageBits = {bits}: SDNN payloads need 1..32 message bits (0 would make the next "
                                  "synapse read them as 0/1 spikes, which the simulator does not model)")
        if "activation" in ng and _decode(ng["activation"][()]).lower() != "relu":
            act = _decode(ng["activation"][()])
            raise self.err(w, f"activation {act!r} is not supported: netx never reads 'activation' and runs every "
                              "SDNN block as ReLU (hdf5.py 183-188, lava/proc/sdn/process.py 126), which is not what "
                              "this network was trained with")
        if "delay" in g:
            raise self.err(where, "synaptic delays on an SDNN block are not supported")
        mode = "delta" if is_input else ("sigma" if "sigma_output" in ng else "sigma_delta")
        vth = 0
        if mode != "sigma":
            vth = self.scalar(ng, "vThMant", w)
            if not F.SD_VTH.min <= vth <= F.SD_VTH.max:
                raise self.err(w, f"vThMant = {vth} outside the sigma-delta threshold's {F.SD_VTH.bits}-bit unsigned "
                                  f"range [{F.SD_VTH.min}, {F.SD_VTH.max}]")
        bias = 0
        if "bias" in g and not is_input:  # an Input block's 'bias' is its data transform (hdf5.py 284-289)
            if mode == "sigma":
                raise self.err(where, "a 'bias' on an SDNN sigma_output layer: netx would pass it to Lava's Sigma, "
                                      "which takes none")
            b = self._bias_values(g, where, out_shape)
            if b.min() < F.SD_BIAS.min or b.max() > F.SD_BIAS.max:
                bad = int(b.min()) if b.min() < F.SD_BIAS.min else int(b.max())
                raise self.err(where, f"bias = {bad} outside the sigma-delta bias' {F.SD_BIAS.bits}-bit signed range "
                                      f"[{F.SD_BIAS.min}, {F.SD_BIAS.max}] (lava/proc/sdn/models.py 273)")
            bias = int(b[0]) if np.unique(b).size == 1 else b
        sd = SigmaDelta(mode=mode, vth=vth, bias=bias, spike_exp=F.NETX_SD_SPIKE_EXP, state_exp=F.NETX_SD_STATE_EXP)
        try:
            sd.validate(w, out_shape)
        except ValueError as err:
            raise self.err(w, str(err).removeprefix(f"{w}: ")) from None
        return sd

    def resonator(self, g, ng, where: str, ntype: str, is_input: bool) -> Resonator:
        """A neuron group whose type contains ``RF`` as netx builds it (hdf5.py 190-205): Lava's ``RF``
        when the type contains ``PHASE`` (slayer's ``RF_PHASE``), else ``RF_IZ`` (slayer's
        ``RF_IZHIKEVICH``; ``ADRF_*`` types too), with ``vth = vThMant`` (shifted by ``state_exp = 6``
        in the process), ``decay_bits = 12`` and the decays of ``netx_rf_decays``. netx never passes
        ``messageBits`` to these processes (their spikes are 0/1, ``output_message_bits = 0``) nor
        ``gradedSpike``: both ignored."""
        w = f"{where} neuron"
        if is_input:
            raise self.err(w, f"type {ntype!r} on an input layer: netx's Input block wires its input to the "
                              "neurons' a_in, which Lava's RF has not")
        sin_decay, cos_decay = (self.scalar(ng, k, w) for k in ("sinDecay", "cosDecay"))
        for name, value in (("sinDecay", sin_decay), ("cosDecay", cos_decay)):
            if not RF_DECAY.min <= value <= RF_DECAY.max:
                raise self.err(w, f"{name} = {value} outside [{RF_DECAY.min}, {RF_DECAY.max}]")
        vth = self.scalar(ng, "vThMant", w)
        if not RF_VTH.min <= vth <= RF_VTH.max:
            raise self.err(w, f"vThMant = {vth} outside the resonate-and-fire threshold's 24-bit range "
                              f"[{RF_VTH.min}, {RF_VTH.max}] (Lava's vth, precision=24, lava/proc/rf/models.py 102)")
        sin, cos = netx_rf_decays(sin_decay, cos_decay)
        rf = Resonator(mode="rf" if "PHASE" in ntype else "rf_iz", sin_decay=sin, cos_decay=cos, vth=vth,
                       state_exp=NETX_RF_STATE_EXP, decay_bits=NETX_RF_DECAY_BITS)
        rf.validate(w, ())
        return rf

    def _bias_values(self, g, where: str, out_shape: tuple) -> np.ndarray:
        """The layer's ``bias`` as netx reads it, one int64 per neuron in our flat order."""
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
        return b

    def bias(self, g, where: str, out_shape: tuple):
        b = self._bias_values(g, where, out_shape)
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
        if not np.array_equal(mant << exp, value):
            raise AssertionError("bias split is not exact")
        if np.unique(mant).size == 1 and np.unique(exp).size == 1:
            return int(mant[0]), int(exp[0])
        return mant, exp

    # layers
    def add(self, i: int, g) -> None:
        where = f"layer {i}"
        if not isinstance(g, Group):
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
                # the transform lava-dl's data pipelines apply to the input (hdf5.py 279-289: weight 64 and
                # bias 0 unless the file says; PilotNet's dataset takes transform=net.in_layer.transform);
                # netx never applies it itself
                self.transform = {k: int(self.ints(g, k, where, truncate=True).reshape(-1)[0]) if k in g else v
                                  for k, v in (("weight", 64), ("bias", 0))}
        elif ltype == "flatten":
            self.flatten_next = True
        elif ltype in ("dense", "dense_rec"):
            self.dense(g, where, rec=ltype == "dense_rec")
        elif ltype == "conv":
            self.conv(g, where)
        else:
            raise self.err(where, f"unknown layer type {ltype!r}")

    def processes(self) -> int:  # blocks netx has created so far
        return len(self.blocks) + (self.input_neurons is not None)

    def matrix(self, g, key: str, where: str, n_out: int) -> np.ndarray:
        if isinstance(g.get(key), Group):
            raise self.err(where, f"complex-valued '{key}' is not supported")
        w = self.ints(g, key, where, truncate=True)
        if w.ndim == 1:  # netx reshapes a flat weight to (shape[0], -1) (hdf5.py 396-399)
            if w.size % n_out:
                raise self.err(where, f"1-d {key} of {w.size} values does not split into {n_out} rows")
            w = w.reshape(n_out, -1)
        if w.ndim != 2 or w.shape[0] != n_out:
            raise self.err(where, f"{key} shape {w.shape} does not match the layer shape ({n_out} neurons)")
        return w

    def dense(self, g, where: str, rec: bool = False) -> None:
        if "weight/imag" in g:
            return self.complex_dense(g, where, rec)
        n_out = math.prod(self.shape_of(g, where))
        w = self.matrix(g, "weight", where, n_out)
        self._feeds(w, where)
        delayed = "delay" in g
        delay = self.delay(g, where, w.shape) if delayed else None
        at = f"{self.path}: {where}"
        out = (n_out,)
        if rec:
            r = self.matrix(g, "weight_rec", where, n_out)
            if r.shape != (n_out, n_out):
                raise self.err(where, f"weight_rec shape {r.shape} is not ({n_out}, {n_out})")
            if delayed and w.shape[1] != n_out:
                raise self.err(where, f"'delay' on a recurrent block with {w.shape[1]} inputs and {n_out} neurons: "
                                      "netx gives the recurrent synapse the input synapse's delay matrix "
                                      "(blocks/process.py 280-286), which does not fit")
            (wf, ef), (wr, er) = netx_rec_effective(w, r, at, delay=delayed)
            syn, recurrent = _dense_from_operator(wf, ef, at), _dense_from_operator(wr, er, f"{at} (weight_rec)")
            if delay is not None and delay.any():  # netx gives both synapses the same matrix (process.py 270-286)
                recurrent = dataclasses.replace(recurrent, delay=delay)
        else:
            syn, recurrent = _dense_from_operator(*netx_dense_effective(w, at), at), None
        if delay is not None and delay.any():
            syn = dataclasses.replace(syn, delay=delay)
        neurons = self.neurons(g, where, out, default=True)
        if is_resonator(neurons):
            raise self.err(where, "a resonate-and-fire neuron after a real-valued weight: netx connects the Dense "
                                  "synapse to the neurons' a_in, which Lava's RF has not (it needs weight/real and "
                                  "weight/imag)")
        if rec and is_sigma_delta(neurons):
            raise self.err(where, "a recurrent SDNN block is not supported (netx gives its recurrent synapse the "
                                  "input's message bits, blocks/process.py 256-262)")
        self.blocks.append(_Block(out, syn, neurons, recurrent))
        self.shape = out

    def _feeds(self, w: np.ndarray, where: str) -> None:
        """Check that a dense weight ``(out, in)`` reads the previous layer as netx connects it."""
        if self.shape is None:
            self.input_shape = self.shape = (w.shape[1],)
        if len(self.shape) == 3 and self.processes() > 0 and not self.flatten_next:
            raise self.err(where, f"dense layer after a {self.shape} feature map needs a 'flatten' layer "
                                  "before it (netx would connect the (W, H, C) port to a flat one)")
        if len(self.shape) == 1 and self.flatten_next and self.processes() > 0:
            raise self.err(where, "'flatten' after a 1-d layer: netx would transpose a 1-d port")
        self.flatten_next = False
        if w.shape[1] != math.prod(self.shape):
            raise self.err(where, f"weight has {w.shape[1]} inputs but the previous layer has "
                                  f"{math.prod(self.shape)} neurons")

    def complex_dense(self, g, where: str, rec: bool) -> None:
        """A dense layer with ``weight/real`` and ``weight/imag`` as netx builds it (hdf5.py 362-390,
        blocks/process.py 309-386): a ``ComplexDense`` block of two Lava Dense synapses, each weight
        rescaled by ``optimize_weight_bits`` on its own (its own exponent and sign mode), feeding the
        neurons' ``a_real_in`` and ``a_imag_in``. Read as two ``Dense`` nodes, the imaginary one
        through an ``ImagPart``. netx gives the block's neurons no bias (``_neuron(None)``,
        process.py 348) and reads no ``delay`` on this path: a ``bias`` or ``delay`` in the file
        (slayer writes the bias of a norm) is ignored with a warning, as netx ignores it silently."""
        if rec:
            raise self.err(where, "a 'dense_rec' layer with complex weights: netx builds it as a plain ComplexDense "
                                  "and ignores weight_rec (hdf5.py 362-390)")
        n_out = math.prod(self.shape_of(g, where))
        if isinstance(g.get("weight"), Group) and "real" not in g["weight"]:
            raise self.err(where, "missing 'weight/real' (netx reads it next to weight/imag, hdf5.py 363)")
        wr = self.matrix(g, "weight/real", where, n_out)
        wi = self.matrix(g, "weight/imag", where, n_out)
        if wr.shape != wi.shape:
            raise self.err(where, f"weight/real {wr.shape} and weight/imag {wi.shape} differ in shape")
        self._feeds(wr, where)
        for key in ("bias", "delay"):
            if key in g:
                warnings.warn(f"{self.path}: {where}: '{key}' of a complex (resonate-and-fire) block ignored, as "
                              "netx ignores it (hdf5.py 362-390 passes no bias or delay to ComplexDense)",
                              stacklevel=3)
        if "neuron" not in g:
            raise self.err(where, "complex weights without a 'neuron' group: netx's default neuron is a LIF, "
                                  "which has no a_real_in for ComplexDense to connect")
        neurons = self.neurons(g, where, (n_out,))
        if not is_resonator(neurons):
            raise self.err(where, "complex weights into a non-RF neuron: netx's ComplexDense connects a_real_in and "
                                  "a_imag_in, which only Lava's RF and RF_IZ have")
        at = f"{self.path}: {where}"
        syn = _dense_from_operator(*netx_dense_effective(wr, f"{at} (weight/real)"), f"{at} (weight/real)")
        imag = _dense_from_operator(*netx_dense_effective(wi, f"{at} (weight/imag)"), f"{at} (weight/imag)")
        self.blocks.append(_Block((n_out,), syn, neurons, imag=imag))
        self.shape = (n_out,)

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
            raise self.err(where, f"dilation {dilation} is not supported (the graph's Conv2d has none)")
        c_in = self.shape[0]
        if groups < 1 or c_in % groups or w.shape[0] % groups or w.shape[1] * groups != c_in:
            raise self.err(where, f"weight {w.shape} with groups = {groups} does not fit {c_in} input channels")
        if groups > 1:
            if w.shape[0] * c_in * math.prod(w.shape[2:]) * 8 > MEMORY_BUDGET_BYTES:
                raise self.err(where, f"weight {w.shape} with groups = {groups} expands beyond the memory budget "
                                      "(MEMORY_BUDGET_BYTES)")
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
        self.blocks.append(_Block(out, syn, self.neurons(g, where, out)))
        self.shape = tuple(out)
        # netx keeps a pending 'flatten' until the next dense layer (hdf5.py 634-660)

    def names(self, attrs: dict) -> tuple:
        """``(input, [(group, synapse, recurrent)], output)``: ours from the file's attribute when it
        matches the blocks, else ``input``, ``layerK``, ``layerK.synapse``, ``layerK.recurrent``, ``output``."""
        default = ("input", [(f"layer{k}", f"layer{k}.synapse", f"layer{k}.recurrent" if b.recurrent else None)
                             for k, b in enumerate(self.blocks)], "output")
        names = attrs.get("names") if attrs.get("format") == FORMAT else None
        try:
            inp, out = str(names["input"]), str(names["output"])
            blocks = [(str(g), str(s), None if r is None else str(r)) for g, s, r in names["blocks"]]
        except (TypeError, KeyError, ValueError):
            return default
        flat = [inp, out] + [n for b in blocks for n in b if n is not None]
        fits = len(blocks) == len(self.blocks) and all((r is None) == (b.recurrent is None)
                                                       for (_, _, r), b in zip(blocks, self.blocks))
        return (inp, blocks, out) if fits and len(set(flat)) == len(flat) and all(flat) else default

    def finish(self, attrs: dict) -> IntGraph:
        if not self.blocks and self.input_neurons is None:
            raise ValueError(f"{self.path}: no layers: netx builds no network from this file")
        inp, names, out = self.names(attrs)
        nodes, edges, prev = {inp: Input(self.input_shape, self.input_neurons)}, [], inp
        for (group, syn, rec), b in zip(names, self.blocks):
            nodes[syn], nodes[group] = b.synapse, NeuronGroup(b.shape, b.neurons)
            edges += [(prev, syn), (syn, group)]
            if b.imag is not None:  # netx's complex synapse: the imaginary Dense into a_imag_in
                nodes[f"{group}.imag_synapse"], nodes[f"{group}.imag"] = b.imag, ImagPart()
                edges += [(prev, f"{group}.imag_synapse"), (f"{group}.imag_synapse", f"{group}.imag"),
                          (f"{group}.imag", group)]
            if b.recurrent is not None:
                nodes[rec] = b.recurrent
                edges += [(group, rec), (rec, group)]
            prev = group
        nodes[out] = Output()
        edges.append((prev, out))
        meta = dict(attrs["meta"]) if isinstance(attrs.get("meta"), dict) else {}
        meta.update({"source": "netx", BLOCKS_KEY: ([inp] if self.input_neurons is not None else [])
                     + [g for g, _, _ in names]})
        if self.transform is not None:
            meta[TRANSFORM_KEY] = self.transform
        dt = attrs.get("dt", 1.0)
        try:
            return IntGraph(nodes, edges, float(dt) if isinstance(dt, (int, float)) and dt > 0 else 1.0, meta)
        except ValueError as err:
            raise ValueError(f"{self.path}: {err}") from None


def read_netx(path) -> IntGraph:
    """Read a netx HDF5 file into an ``IntGraph`` such that ``simulate(read_netx(path), ...)`` equals
    what netx builds and runs in Lava ``fixed_pt`` under the same protocol, step for step (module
    docstring): input spikes or payloads, input bias of netx's Input block, ``steps``,
    ``reset_interval`` / ``reset_offset``; every block's spikes, ``u`` and ``v``
    (``graph.meta["netx_blocks"]`` names the groups in netx's block order).

    Unsupported layer types, neuron models or parameters and malformed files raise ``ValueError``
    naming the file, the layer and the problem. The HDF5 file is parsed in another process, bounded
    in time (``SPIKEPORT_READ_TIMEOUT``), memory and structure (``export.hdf5file``: a damaged file
    can hang libhdf5); this reader works on the plain arrays it returns.
    """
    path = Path(path)
    try:
        f = read_hdf5(path)
    except HDF5Error as err:
        raise ValueError(f"{path}: cannot open as an HDF5 netx file ({err.reason})") from None
    if "layer" not in f or not isinstance(f["layer"], Group):
        raise ValueError(f"{path}: no 'layer' group: not a netx network file")
    group = f["layer"]
    keys = set(group.keys())
    if keys != {str(i) for i in range(len(keys))}:
        shown = sorted(keys, key=lambda k: (len(k), k))
        raise ValueError(f"{path}: netx reads groups layer/0 .. layer/{len(keys) - 1}; found "
                         f"{shown[:20]}{' ...' if len(shown) > 20 else ''}")
    attrs = {}
    if ATTR in f.attrs:
        try:
            attrs = json.loads(f.attrs[ATTR])
        except (TypeError, ValueError, RecursionError):
            attrs = {}
    reader = _Reader(path)
    for i in range(len(keys)):
        try:
            reader.add(i, group[str(i)])
        except ValueError as err:
            raise ValueError(str(err) if str(path) in str(err) else f"{path}: layer {i}: {err}") from None
        except Exception as err:  # noqa: BLE001 - odd structures: say where, never crash deep inside
            raise ValueError(f"{path}: layer {i}: malformed ({type(err).__name__}: {err})") from None
    return reader.finish(attrs if isinstance(attrs, dict) else {})


def as_chain(graph: IntGraph):
    """The ``IntNetwork`` of a graph that is a plain feed-forward chain (an input without neurons,
    then groups each fed only by the one before, the output on the last), else ``None``: for
    callers that still take chains (layer names are the group names)."""
    try:
        inp, chain = netx_chain(graph)
    except ValueError:
        return None
    if graph.neurons(inp) is not None or not chain or any(rec is not None for _, _, rec in chain):
        return None
    layers = []
    for group, p, _ in chain:
        if tuple(graph.shapes[group]) != tuple(p.op.validate(group, graph.shapes[p.src])):
            return None
        layers.append(Layer(p.op, graph.neurons(group), group))
    meta = {k: v for k, v in graph.meta.items() if k not in (BLOCKS_KEY, TRANSFORM_KEY)}
    return IntNetwork(graph.shapes[inp], tuple(layers), graph.dt, meta)
