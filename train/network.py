"""Spiking networks from compact spec strings, as the papers write them.

Grammar: tokens joined by ``-``; the first is the input shape, the rest are layers.

    784            input of 784 features (flat)
    28x28          input of 1 x 28 x 28 (H x W)
    34x34x2        input of 2 x 34 x 34 (H x W x C, as the N-MNIST papers write it)
    800            dense layer of 800 neurons (flattens a spatial input first)
    128R           recurrent dense layer: 128 neurons whose spikes also feed themselves one step later
    15C5           convolution, 15 output channels, 5 x 5 kernel (``15C5p2`` pads 2, ``15C5s2`` strides 2)
    P2             2 x 2 average pooling (STBP);  S2: 2 x 2 sum pooling (Loihi's unit-weight conv)
    D0.2           dropout, p = 0.2 (mask shared over time)
    400+1          dense layer of 400 neurons that also receives the spikes of layer 1 (a skip)
    8C3p1+1        convolution that also receives the spike map of layer 1 (a skip, 1x1 convolution)

Skip connections (merges). Layers with neurons are numbered from 1 in spec order (dropout tokens
do not count; ``0`` is the network input). A dense token (``N`` or ``NR``) followed by ``+j``
(repeatable: ``400+0+2``) adds, for each ``j``, a dense projection ``W_skip`` from the spikes of
layer ``j`` (flattened in C order when it is a feature map) to its input current:

    x_k[t] = W_k s_{k-1}[t] + sum_j W_skip_j s_j[t]      (then the neuron update of layer k)

so ``784-400-400-400+1-10`` is a residual-style MLP whose third layer also hears the first. ``j``
must be an earlier layer and not the one that already feeds layer ``k`` (``j = k - 1`` would only
split one weight matrix in two). A convolution token (``8C3p1+1``) takes skips too: ``W_skip_j`` is
then a learned 1x1 convolution (no padding) from the source's ``C_j x H_j x W_j`` spike map to the
layer's ``C x H x W`` output, with stride ``s = ceil(H_j / H)`` (and ``ceil(W_j / W)`` across), the
shortcut of a ResNet: the target's own stride when it pads to keep its size (``8C3p1s2+1``), the
pooling factor when the source lies before a pooling layer. The source must be a feature map that
this stride maps onto exactly ``H x W`` (``ceil(H_j / s) == H``); otherwise, or when the source is
flat (a dense layer), the spec is refused with one line naming both shapes. Skips enter dense and
convolution layers (not pooling), and read their source's spikes as its neurons emit them (a
dropout after the source acts on the main path only). With ``synaptic_delay`` every synaptic
hop delivers one step later, the skip as well: ``x_k[t]`` above is built from the spikes of step
``t - 1``, as Loihi delivers every synapse (``sim.graph``). The skip weights live in
``SpikingNetwork.skips`` (``train.layers.Skip``, ``train.layers.ConvSkip``), the main chain is
unchanged (``blocks()``).
The source's spike train is complete before the target runs (the graph is feed-forward through
skips), so the target's neurons still run as one fused ``neuron_sequence`` over all ``T`` steps,
and gradients reach ``W_skip`` and the source layer through the ordinary autograd graph.

Every dense, convolution and pooling layer is followed by a neuron layer (LIF or CUBA, from
``NeuronSpec``); the network's output is the spike train of the last layer, ``(T, B, n_out)``.

Two optional behaviours serve deployment (they change nothing by default):
- ``synaptic_delay``: each synaptic layer delivers its output one step later, as Loihi/Lava do,
  so float and hardware timing agree.
- ``fake_quant``: a callable ``(index, synapse, neuron) -> (weight or None, neuron_params,
  recurrent weight or None)``
  attached by ``export.quantize`` for quantization-aware training; the network itself knows
  nothing about integer formats. A network with skips also calls its ``skip_weights(index)``:
  the weights of ``skips_into(index)``, in that order.

>>> net = build_network("28x28-15C5-P2-40C5-P2-300-10", NeuronSpec())
>>> [tuple(s) for s in net.shapes]
[(1, 28, 28), (15, 24, 24), (15, 12, 12), (40, 8, 8), (40, 4, 4), (640,), (300,), (10,)]
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

import torch
from torch import nn

from .layers import Conv2d, ConvSkip, Dropout, Flatten, Linear, Pool2d, Skip
from .neurons import CUBA, LIF
from .surrogates import Surrogate


@dataclass(frozen=True)
class NeuronSpec:
    """Neuron settings shared by every layer of a network.

    ``model`` is ``'lif'`` (STBP: ``decay``) or ``'cuba'`` (``decay_syn``, ``decay_mem``); all
    decays are per-step factors in [0, 1], thresholds in the units of the synaptic input.
    """

    model: str = "lif"
    decay: float = 0.2
    decay_syn: float = 0.5
    decay_mem: float = 0.9
    v_threshold: float = 0.5
    surrogate: str = "rectangular"
    surrogate_width: float = 1.0
    per_neuron: bool = False
    learn_decay: bool = False
    learn_threshold: bool = False
    learn_bias: bool = True
    detach_reset: bool = False

    def make(self, param_shape, recurrent: bool = False) -> nn.Module:
        sg = Surrogate(self.surrogate, self.surrogate_width)
        common = dict(v_threshold=self.v_threshold, surrogate=sg, per_neuron=self.per_neuron,
                      learn_decay=self.learn_decay, learn_threshold=self.learn_threshold,
                      learn_bias=self.learn_bias, detach_reset=self.detach_reset, recurrent=recurrent)
        if self.model == "lif":
            return LIF(param_shape, decay=self.decay, **common)
        if self.model == "cuba":
            return CUBA(param_shape, decay_syn=self.decay_syn, decay_mem=self.decay_mem, **common)
        raise ValueError(f"unknown neuron model {self.model!r}; choose 'lif' or 'cuba'")


_INPUT = re.compile(r"^(\d+)(?:x(\d+))?(?:x(\d+))?$")
_CONV = re.compile(r"^(\d+)C(\d+)(?:p(\d+))?(?:s(\d+))?$")
_POOL = re.compile(r"^([PS])(\d+)$")
_DENSE = re.compile(r"^(\d+)(R?)$")
_SKIP_REF = re.compile(r"^[0-9]+$")
_DROP = re.compile(r"^D(0?\.\d+|0)$")


def parse_input_shape(token: str) -> tuple:
    """``'784' -> (784,)``, ``'28x28' -> (1, 28, 28)``, ``'34x34x2' -> (2, 34, 34)``."""
    m = _INPUT.match(token)
    if not m:
        raise ValueError(f"bad input shape {token!r} in network spec: expected N, HxW or HxWxC")
    a, b, c = m.groups()
    if b is None:
        return (int(a),)
    return (int(c) if c else 1, int(a), int(b))


class SpikingNetwork(nn.Module):
    """A feed-forward spiking network over ``(T, B, *input_shape)`` inputs.

    Attributes
    ----------
    spec : str
    input_shape : tuple
    shapes : list of tuples
        Feature shape after each layer, starting with the input.
    layers : nn.ModuleList
        Synaptic layers, neuron layers, flatten and dropout in execution order.
    skips : nn.ModuleList
        Skip connections (``train.layers.Skip``, see the module docstring); empty for a chain.
    """

    def __init__(self, spec: str, input_shape: tuple, layers: list, shapes: list, synaptic_delay: bool = False,
                 skips: tuple = ()):
        super().__init__()
        self.spec = spec
        self.input_shape = tuple(input_shape)
        self.layers = nn.ModuleList(layers)
        self.shapes = shapes
        self.synaptic_delay = synaptic_delay
        self.fake_quant = None
        self.skips = nn.ModuleList(skips)
        n_blocks = sum(isinstance(m, SYNAPTIC) for m in layers)
        for s in self.skips:
            kind = Conv2d if isinstance(s, ConvSkip) else Linear
            if not 0 <= s.source < s.target < n_blocks or not isinstance(layers_of(layers, s.target), kind):
                raise ValueError(f"skip {s.source} -> layer {s.target + 1}: needs an earlier source and a "
                                 f"{'convolution' if kind is Conv2d else 'dense'} target among the {n_blocks} layers")

    def skips_into(self, index: int) -> list:
        """The skips feeding block ``index`` (0-based, as ``blocks()``), in spec order."""
        return [s for s in self.skips if s.target == index]

    @property
    def n_out(self) -> int:
        return math.prod(self.shapes[-1])

    def forward(self, x: torch.Tensor, record: bool = False):
        """Output spikes ``(T, B, n_out)``; with ``record=True`` also the spikes of every neuron layer."""
        if tuple(x.shape[2:]) != self.input_shape:
            if math.prod(x.shape[2:]) == math.prod(self.input_shape) and len(self.input_shape) == 1:
                x = x.reshape(x.shape[0], x.shape[1], -1)
            else:
                raise ValueError(f"network {self.spec!r} expects inputs (T, B, {self.input_shape}), "
                                 f"got {tuple(x.shape)}")
        spikes = []
        layers = list(self.layers)
        block = 0
        i = 0
        sources = {s.source for s in self.skips}
        saved = {0: x} if 0 in sources else {}  # spike trains skips read: 0 the input, k layer k
        while i < len(layers):
            layer = layers[i]
            if not isinstance(layer, SYNAPTIC):
                x = layer(x)
                i += 1
                continue
            neuron = layers[i + 1]
            w_rec = None
            if self.fake_quant is None:
                x, p = layer(x), neuron.params()
            else:
                w, p, w_rec = self.fake_quant(block, layer, neuron)
                x = layer(x) if w is None else layer.apply_weight(x, w)
            into = self.skips_into(block) if sources else []
            if into:
                fws = [None] * len(into) if self.fake_quant is None else self._fake_skip_weights(block)
                for s, fw in zip(into, fws):
                    x = x + (s(saved[s.source]) if fw is None else s.apply_weight(saved[s.source], fw))
            if self.synaptic_delay:  # delivered one step later; step 0 receives nothing
                x = torch.cat([torch.zeros_like(x[:1]), x[:-1]])
            x = neuron.apply_params(x, p, w_rec)
            if record:
                spikes.append(x)
            if block + 1 in sources:
                saved[block + 1] = x
            block += 1
            i += 2
        out = x.reshape(x.shape[0], x.shape[1], -1)
        return (out, spikes) if record else out

    def _fake_skip_weights(self, block: int) -> list:
        hook = getattr(self.fake_quant, "skip_weights", None)
        if hook is None:
            raise ValueError("this network has skip connections and its fake_quant hook has no skip_weights "
                             "method (use export.quantize.attach_fake_quant)")
        return hook(block)

    def blocks(self) -> list:
        """``(synapse, neuron, input_shape, output_shape)`` for every synaptic layer, in order."""
        out, shape_idx, layers = [], 0, list(self.layers)
        shapes = list(self.shapes)
        for i, layer in enumerate(layers):
            if isinstance(layer, Flatten):
                shape_idx += 1
            elif isinstance(layer, SYNAPTIC):
                out.append((layer, layers[i + 1], tuple(shapes[shape_idx]), tuple(shapes[shape_idx + 1])))
                shape_idx += 1
        return out

    def neuron_layers(self) -> list:
        return [m for m in self.layers if isinstance(m, (LIF, CUBA))]


SYNAPTIC = (Linear, Conv2d, Pool2d)


def layers_of(layers, index: int):
    """The synaptic layer of block ``index`` in a layer list."""
    return [m for m in layers if isinstance(m, SYNAPTIC)][index]


MAX_PARAMETERS = 100_000_000
"""Most weights and biases a spec may ask for (400 MB of float32 before optimizer state; the
largest preset has about 0.7 million)."""


def plan_network(spec: str, input_shape: tuple | None = None) -> list:
    """The layers a spec string describes, without building any: ``[(kind, args, output_shape)]``,
    starting with ``('input', (), input_shape)``, then kinds ``conv`` ``(c_in, c_out, k, stride, pad)``, ``pool`` ``(k, 'avg'|'sum')``, ``flatten``,
    ``dense`` ``(n_in, n)`` (``rdense`` when recurrent), ``dropout`` ``(p,)`` and, right after the
    layer it feeds, one ``skip`` ``(source, n_source, n)`` (into a dense layer) or ``conv_skip``
    ``(source, c_source, c_out, (s_h, s_w))`` (into a convolution: a 1x1 convolution of that stride)
    per ``+source`` (output shape that of the layer it feeds). Raises ``ValueError`` for a spec that is not
    the grammar, has a size below 1, does not fit its input, or asks for more than
    ``MAX_PARAMETERS`` weights; cheap whatever the sizes, so configurations are checked with it.

    ``input_shape`` (PyTorch order) overrides the spec's first token when the data has another
    layout of the same size, e.g. spec ``784`` with MNIST images ``(1, 28, 28)`` stays flat.
    """
    tokens = [t.strip() for t in spec.strip().split("-") if t.strip()]
    if len(tokens) < 2:
        raise ValueError(f"network spec {spec!r} needs an input shape and at least one layer")
    shape = parse_input_shape(tokens[0])
    if min(shape) < 1:
        raise ValueError(f"network spec {spec!r}: input sizes must be at least 1, got {tokens[0]!r}")
    if input_shape is not None and math.prod(input_shape) != math.prod(shape):
        raise ValueError(f"network spec {spec!r} has input {shape} but the data has shape {tuple(input_shape)}")
    plan, params = [("input", (), shape)], 0
    layer_shapes = [shape]  # output shape of each layer with neurons, the input first (skip sources)
    for tok in tokens[1:]:
        refs = []
        if "+" in tok:
            tok, *refs = tok.split("+")
            full = "+".join([tok, *refs])
            if not _DENSE.match(tok) and not _CONV.match(tok):
                raise ValueError(f"layer {full!r} in {spec!r}: skip connections (+<layer>) enter dense or convolution "
                                 f"layers only (N, NR or <n>C<k>...), not {tok!r}")
            for r in refs:
                if not _SKIP_REF.match(r):
                    raise ValueError(f"layer {full!r} in {spec!r}: bad skip source {'+' + r!r}; expected "
                                     "+<layer number> (0 = the input, 1 = the first layer)")
            here = len(layer_shapes)  # this layer's number
            for r in refs:
                j = int(r)
                if j >= here:
                    raise ValueError(f"layer {full!r} in {spec!r}: skip source +{j} is not an earlier layer "
                                     f"(this is layer {here}; skips run forward only)")
                if j == here - 1:
                    raise ValueError(f"layer {full!r} in {spec!r}: skip source +{j} already feeds layer {here} "
                                     "directly; a skip must come from further back")
            if len(set(map(int, refs))) != len(refs):
                raise ValueError(f"layer {full!r} in {spec!r}: a skip source is repeated")
            if _CONV.match(tok):
                for r in refs:
                    if len(layer_shapes[int(r)]) != 3:
                        raise ValueError(f"layer {full!r} in {spec!r}: skip source +{r} is flat "
                                         f"{tuple(layer_shapes[int(r)])}; skips from flat layers enter dense layers "
                                         f"only (N or NR), not {tok!r} (a convolution needs a C x H x W source)")
        if m := _CONV.match(tok):
            if len(shape) != 3:
                raise ValueError(f"layer {tok!r} in {spec!r}: a convolution needs a C x H x W input, got {shape}")
            c_out, k, pad, stride = int(m[1]), int(m[2]), int(m[3] or 0), int(m[4] or 1)
            if min(c_out, k, stride) < 1:
                raise ValueError(f"layer {tok!r} in {spec!r}: channels, kernel and stride must be at least 1")
            h, w = ((s + 2 * pad - k) // stride + 1 for s in shape[1:])
            if h < 1 or w < 1:
                raise ValueError(f"layer {tok!r} in {spec!r}: kernel {k} does not fit input {shape}")
            plan.append(("conv", (shape[0], c_out, k, stride, pad), (c_out, h, w)))
            params += shape[0] * c_out * k * k + c_out
            for r in refs:
                src = layer_shapes[int(r)]
                strides = conv_skip_stride(src, (c_out, h, w))
                if strides is None:
                    raise ValueError(f"layer {full!r} in {spec!r}: skip source +{r} has spikes "
                                     f"{'x'.join(map(str, src))} and this layer outputs {c_out}x{h}x{w}; no 1x1 "
                                     "convolution of stride >= 1 maps the one onto the other (a skip into a "
                                     "convolution needs a source at least as large, H_j with ceil(H_j / s) == H)")
                plan.append(("conv_skip", (int(r), src[0], c_out, strides), (c_out, h, w)))
                params += src[0] * c_out
        elif m := _POOL.match(tok):
            if len(shape) != 3:
                raise ValueError(f"layer {tok!r} in {spec!r}: pooling needs a C x H x W input, got {shape}")
            k = int(m[2])
            if k < 1 or shape[1] < k or shape[2] < k:
                raise ValueError(f"layer {tok!r} in {spec!r}: pool {k} must be at least 1 and fit input {shape}")
            plan.append(("pool", (k, "avg" if m[1] == "P" else "sum"), (shape[0], shape[1] // k, shape[2] // k)))
        elif m := _DENSE.match(tok):
            n = int(m[1])
            if n < 1:
                raise ValueError(f"layer {tok!r} in {spec!r}: a dense layer needs at least 1 neuron")
            if len(shape) != 1:
                plan.append(("flatten", (), (math.prod(shape),)))
            n_in = math.prod(plan[-1][2]) if len(shape) != 1 else shape[0]
            plan.append(("rdense" if m[2] else "dense", (n_in, n), (n,)))
            params += n_in * n + n + (n * n if m[2] else 0)
            for r in refs:
                n_src = math.prod(layer_shapes[int(r)])
                plan.append(("skip", (int(r), n_src, n), (n,)))
                params += n_src * n
        elif m := _DROP.match(tok):
            plan.append(("dropout", (float(m[1]),), shape))
        else:
            raise ValueError(f"unknown layer {tok!r} in network spec {spec!r} "
                             "(expected N, NR, N+<layer>, <n>C<k>[p<pad>][s<stride>][+<layer>], P<k>, S<k> or D<p>)")
        shape = plan[-1][2]
        if plan[-1][0] not in ("dropout", "flatten"):
            layer_shapes.append(shape)
        if params > MAX_PARAMETERS:
            raise ValueError(f"network spec {spec!r} asks for more than {MAX_PARAMETERS} parameters "
                             "(MAX_PARAMETERS)")
    if plan[-1][0] in ("flatten", "dropout", "input"):
        raise ValueError(f"network spec {spec!r} must end with a dense, convolution or pooling layer")
    return plan


def conv_skip_stride(source: tuple, target: tuple) -> tuple | None:
    """The stride ``(s_h, s_w)`` of the 1x1 convolution that carries a skip from a ``(C_j, H_j, W_j)``
    spike map to a convolution layer's ``(C, H, W)`` output: ``s = ceil(H_j / H)`` per axis (the
    smallest stride that does not give more than ``H`` rows; a 1x1 convolution of stride ``s``
    gives ``ceil(H_j / s)``), or None when that is not exactly ``H x W`` (module docstring).

    >>> [conv_skip_stride(src, (8, 4, 4)) for src in [(4, 8, 8), (4, 7, 7), (4, 4, 4), (4, 5, 5), (4, 2, 2)]]
    [(2, 2), (2, 2), (1, 1), None, None]
    """
    out = []
    for n_src, n in zip(source[1:], target[1:]):
        s = -(-n_src // n)
        if n_src < n or -(-n_src // s) != n:
            return None
        out.append(s)
    return tuple(out)


def build_network(spec: str, neuron: NeuronSpec, input_shape: tuple | None = None,
                  synaptic_delay: bool = False) -> SpikingNetwork:
    """Build a network from a spec string (checked first by ``plan_network``, which see).

    ``input_shape`` (PyTorch order) overrides the spec's first token when the data has another
    layout of the same size, e.g. spec ``784`` with MNIST images ``(1, 28, 28)`` stays flat.
    """
    plan = plan_network(spec, input_shape)
    shapes = [plan[0][2]]
    layers, skips = [], []
    for kind, args, out_shape in plan[1:]:
        if kind in ("skip", "conv_skip"):
            target = sum(isinstance(m, SYNAPTIC) for m in layers) - 1  # the block just added
            skips.append(Skip(args[0], target, *args[1:]) if kind == "skip" else ConvSkip(args[0], target, *args[1:]))
            continue
        if kind == "conv":
            c_in, c_out, k, stride, pad = args
            layers += [Conv2d(c_in, c_out, k, stride, pad), neuron.make((c_out, 1, 1))]
        elif kind == "pool":
            layers += [Pool2d(*args), neuron.make((out_shape[0], 1, 1))]
        elif kind == "flatten":
            layers.append(Flatten())
        elif kind in ("dense", "rdense"):
            layers += [Linear(*args), neuron.make(out_shape, recurrent=kind == "rdense")]
        else:  # dropout: no shape of its own
            layers.append(Dropout(*args))
            continue
        shapes.append(tuple(out_shape))
    return SpikingNetwork(spec, shapes[0], layers, shapes, synaptic_delay, skips)
