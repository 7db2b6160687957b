"""The integer network record: the contract between export, the simulator and the targets.

An ``IntNetwork`` is a feed-forward chain of ``Layer``s. Each layer is one synaptic operator
(``Dense``, ``Conv2d`` or ``SumPool2d``) followed by one group of Loihi CUBA neurons
(``Neurons``). Shapes follow PyTorch: feature maps are ``(C, H, W)``; a ``Dense`` layer after a
feature map reads it flattened in C order (the flatten is implicit). Every integer is checked
against its register format on construction (``sim.formats``): a bad value is a ``ValueError``
naming the layer, the field, the value and the allowed range.

Records are frozen; ``save``/``load`` write one ``.npz`` file (arrays plus a JSON header).
"""
from __future__ import annotations

import json
import math
import numbers
import operator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import formats as F

FORMAT_VERSION = 1


def _shape(t) -> tuple:
    """Sizes as Python ints; a size that is not an integer (2.5, NaN, "3") is a ``ValueError``,
    not silently truncated."""
    out = []
    for v in t:
        try:
            i = operator.index(v)
        except TypeError:
            i = int(v) if isinstance(v, (float, np.floating)) and math.isfinite(v) and float(v).is_integer() else None
        if i is None:
            raise ValueError(f"sizes must be integers, got {tuple(t)!r}")
        out.append(int(i))
    return tuple(out)


def _count(v, where: str, name: str) -> int:
    """A scalar integer field (``kernel``, ``num_weight_bits``), or a ``ValueError`` naming it."""
    try:
        (i,) = _shape((v,))
    except (ValueError, TypeError):
        raise ValueError(f"{where}: {name} must be an integer, got {v!r}") from None
    return i


@dataclass(frozen=True, eq=False)
class Dense:
    """Dense synapses: ``a = (W @ s) << weight_exp`` with Lava's effective weights.

    ``weight`` is ``(out, in)`` int; ``num_weight_bits`` and ``sign_mode`` as Lava's Dense
    (``sign_mode=None``: determined from the weights).
    """

    weight: np.ndarray
    weight_exp: int = 0
    num_weight_bits: int = 8
    sign_mode: str | None = None
    delay: np.ndarray | None = None
    kind = "dense"

    def validate(self, where: str, in_shape: tuple) -> tuple:
        w = F.WEIGHT.check(self.weight, where)
        if w.ndim != 2:
            raise ValueError(f"{where}: dense weight must be 2-d (out, in), got shape {w.shape}")
        if w.shape[1] != math.prod(in_shape):
            raise ValueError(f"{where}: dense weight has {w.shape[1]} inputs but the layer input "
                             f"{in_shape} has {math.prod(in_shape)}")
        F.WEIGHT_EXP.check(self.weight_exp, where)
        if not 1 <= _count(self.num_weight_bits, where, "num_weight_bits") <= 8:
            raise ValueError(f"{where}: num_weight_bits = {self.num_weight_bits} outside [1, 8]")
        if self.sign_mode not in (None, "mixed", "excitatory", "inhibitory"):
            raise ValueError(f"{where}: sign_mode must be mixed, excitatory or inhibitory, got {self.sign_mode!r}")
        if self.delay is not None:
            d = F.DELAY.check(self.delay, where)
            if d.shape != w.shape:
                raise ValueError(f"{where}: delay has shape {d.shape}, the weight {w.shape} (one delay per synapse)")
        return (w.shape[0],)

    def delays(self) -> dict:
        """``{k: weight matrix of the synapses delayed k extra steps}`` (effective weights, every
        synapse with its own delay; ``{0: all}`` without delays). Each part is itself a valid
        ``Dense`` weight: Lava's clipping and truncation are idempotent and the sign mode is the
        whole matrix's, set explicitly."""
        w = self.effective_weight()
        if self.delay is None:
            return {0: w}
        d = np.asarray(self.delay)
        return {int(k): np.where(d == k, w, 0) for k in np.unique(d[w != 0])} or {0: w}

    def effective_weight(self) -> np.ndarray:
        return F.dense_effective_weights(self.weight, self.num_weight_bits, self.sign_mode)


@dataclass(frozen=True, eq=False)
class Conv2d:
    """2-d cross-correlation (PyTorch's ``conv2d``), weight ``(C_out, C_in, kH, kW)`` int.

    Lava's Conv ignores ``weight_exp``; here it must be >= 0 and is folded into the weights
    (``w << weight_exp``), which is exact. The output wraps into signed 24 bits as Lava's.
    """

    weight: np.ndarray
    stride: tuple = (1, 1)
    padding: tuple = (0, 0)
    weight_exp: int = 0
    kind = "conv"

    def validate(self, where: str, in_shape: tuple) -> tuple:
        w = F.WEIGHT.check(self.weight, where)
        if w.ndim != 4:
            raise ValueError(f"{where}: conv weight must be (C_out, C_in, kH, kW), got shape {w.shape}")
        if len(in_shape) != 3 or in_shape[0] != w.shape[1]:
            raise ValueError(f"{where}: conv weight expects {w.shape[1]} input channels, layer input is {in_shape}")
        e = int(F.WEIGHT_EXP.check(self.weight_exp, where))
        if e < 0:
            raise ValueError(f"{where}: conv weight_exp = {e} must be >= 0 (Lava's Conv ignores it; only a "
                             "non-negative exponent can be folded exactly into the weights)")
        return conv_output_shape(in_shape, w.shape[0], w.shape[2:], _shape(self.stride), _shape(self.padding), where)

    def effective_weight(self) -> np.ndarray:
        return np.asarray(self.weight).astype(np.int64) << int(self.weight_exp)


@dataclass(frozen=True, eq=False)
class SumPool2d:
    """Non-overlapping ``k x k`` sum pooling (a unit-weight convolution per channel)."""

    kernel: int
    kind = "sumpool"

    def validate(self, where: str, in_shape: tuple) -> tuple:
        if len(in_shape) != 3:
            raise ValueError(f"{where}: sum pooling needs a (C, H, W) input, got {in_shape}")
        k = _count(self.kernel, where, "pooling kernel")
        if k < 1:
            raise ValueError(f"{where}: pooling kernel must be >= 1, got {k}")
        return conv_output_shape(in_shape, in_shape[0], (k, k), (k, k), (0, 0), where)

    def as_conv(self, channels: int) -> Conv2d:
        k = int(self.kernel)
        w = np.zeros((channels, channels, k, k), dtype=np.int64)
        w[np.arange(channels), np.arange(channels)] = 1
        return Conv2d(w, stride=(k, k), padding=(0, 0))


def conv_output_shape(in_shape, c_out, kernel, stride, padding, where="conv") -> tuple:
    if len(stride) != 2 or min(stride) < 1 or len(padding) != 2 or min(padding) < 0:
        raise ValueError(f"{where}: stride {tuple(stride)} must be two sizes >= 1 and padding {tuple(padding)} "
                         "two sizes >= 0")
    _, h, w = in_shape
    oh = (h + 2 * padding[0] - kernel[0]) // stride[0] + 1
    ow = (w + 2 * padding[1] - kernel[1]) // stride[1] + 1
    if oh < 1 or ow < 1:
        raise ValueError(f"{where}: kernel {tuple(kernel)} does not fit input {tuple(in_shape)}")
    return (int(c_out), int(oh), int(ow))


@dataclass(frozen=True, eq=False)
class Neurons:
    """Loihi CUBA neuron registers, each a scalar (shared by the layer) or one value per neuron.

    Per-neuron arrays have the layer's output size (flattened C order) or, for feature maps,
    one value per channel ``(C,)``; ``expand(n, shape)`` broadcasts them to every neuron.
    """

    du: np.ndarray | int = 4095
    dv: np.ndarray | int = 0
    vth: np.ndarray | int = 1
    bias_mant: np.ndarray | int = 0
    bias_exp: np.ndarray | int = 0

    FIELDS = ("du", "dv", "vth", "bias_mant", "bias_exp")
    _FORMATS = {"du": F.DU, "dv": F.DV, "vth": F.VTH, "bias_mant": F.BIAS_MANT, "bias_exp": F.BIAS_EXP}

    def validate(self, where: str, out_shape: tuple) -> None:
        n = math.prod(out_shape)
        for name in self.FIELDS:
            arr = self._FORMATS[name].check(getattr(self, name), where)
            if arr.size not in (1, n) and not (len(out_shape) == 3 and arr.size == out_shape[0]):
                raise ValueError(f"{where}: {name} has {arr.size} values; expected 1, {n} (per neuron)"
                                 + (f" or {out_shape[0]} (per channel)" if len(out_shape) == 3 else ""))

    def expand(self, name: str, out_shape: tuple) -> np.ndarray:
        """One int64 value per neuron, flattened C order."""
        arr = np.asarray(getattr(self, name)).astype(np.int64).reshape(-1)
        n = math.prod(out_shape)
        if arr.size == 1:
            return np.full(n, arr[0], dtype=np.int64)
        if arr.size == n:
            return arr
        return np.repeat(arr, n // arr.size)  # per channel, C-order flatten

    def shared_value(self, name: str, where: str, why: str) -> int:
        """The one value of a register that every neuron of the layer shares, or a ``ValueError``
        naming ``where`` and ``why`` a single value is needed (e.g. Lava's LIF holds one per process)."""
        vals = np.unique(np.asarray(getattr(self, name)))
        if vals.size != 1:
            raise ValueError(f"{where}: {why}, but this layer has {vals.size} distinct {name} values")
        return int(vals[0])

    def is_shared(self, name: str) -> bool:
        return np.asarray(getattr(self, name)).size == 1 or np.unique(np.asarray(getattr(self, name))).size == 1


@dataclass(frozen=True, eq=False)
class Layer:
    synapse: Dense | Conv2d | SumPool2d
    neurons: Neurons
    name: str = ""


@dataclass(frozen=True, eq=False)
class IntNetwork:
    """A quantized feed-forward spiking network.

    Attributes
    ----------
    input_shape : tuple
        Shape of one input frame, PyTorch order (``(N,)`` or ``(C, H, W)``).
    layers : tuple of Layer
    dt : float
        The time step the integer dynamics were derived for (seconds; 1.0 if unitless steps).
    meta : dict
        Free JSON-serialisable facts (source model, quantization report, ...).
    """

    input_shape: tuple
    layers: tuple
    dt: float = 1.0
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        object.__setattr__(self, "input_shape", _shape(self.input_shape))
        object.__setattr__(self, "layers", tuple(self.layers))
        if not self.layers:
            raise ValueError("an integer network needs at least one layer")
        if not isinstance(self.dt, numbers.Real) or not math.isfinite(self.dt) or not self.dt > 0:
            raise ValueError(f"dt must be a finite number > 0, got {self.dt!r}")
        shapes = [self.input_shape]
        for i, layer in enumerate(self.layers):
            where = f"layer {i}" + (f" ({layer.name})" if layer.name else "")
            out = layer.synapse.validate(where, shapes[-1])
            layer.neurons.validate(where, out)
            shapes.append(tuple(out))
        object.__setattr__(self, "shapes", tuple(shapes))

    @property
    def output_size(self) -> int:
        return math.prod(self.shapes[-1])

    # --- persistence ---------------------------------------------------------------------
    def save(self, path) -> None:
        arrays, header = {}, {"format": "spikeport.intnet", "version": FORMAT_VERSION, "dt": self.dt,
                              "input_shape": list(self.input_shape), "meta": self.meta, "layers": []}
        for i, layer in enumerate(self.layers):
            s = layer.synapse
            entry = {"name": layer.name, "kind": s.kind}
            if s.kind == "dense":
                arrays[f"{i}.weight"] = np.asarray(s.weight)
                entry.update(weight_exp=int(s.weight_exp), num_weight_bits=int(s.num_weight_bits),
                             sign_mode=s.sign_mode)
            elif s.kind == "conv":
                arrays[f"{i}.weight"] = np.asarray(s.weight)
                entry.update(stride=list(_shape(s.stride)), padding=list(_shape(s.padding)),
                             weight_exp=int(s.weight_exp))
            else:
                entry.update(kernel=int(s.kernel))
            for name in Neurons.FIELDS:
                arrays[f"{i}.{name}"] = np.asarray(getattr(layer.neurons, name)).astype(np.int64)
            header["layers"].append(entry)
        arrays["header"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
        with open(path, "wb") as f:
            np.savez_compressed(f, **arrays)

    @classmethod
    def load(cls, path) -> "IntNetwork":
        """Read a chain record written by ``save`` (through ``sim.npzfile``: sizes, dtypes and the
        memory budget checked before anything is allocated); every problem is a one-line
        ``ValueError`` naming the file."""
        from .npzfile import read_record

        path = Path(path)
        data, header = read_record(path, "spikeport integer network file")
        return cls.from_record(path, header, data)

    @classmethod
    def from_record(cls, path, header: dict, data: dict) -> "IntNetwork":
        """The chain of a record's parsed ``header`` and ``data`` (name -> array)."""
        if header.get("format") != "spikeport.intnet":
            raise ValueError(f"{path} is not a spikeport integer network file")
        version = header.get("version", 0)
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise ValueError(f"{path} was written by a newer spikeport (format {version!r})")
        try:
            return cls._from_header(path, header, data)
        except (KeyError, TypeError, AttributeError, IndexError, OverflowError) as err:
            raise ValueError(f"{path}: damaged spikeport integer network file (missing or malformed "
                             f"{type(err).__name__}: {err})") from None
        except ValueError as err:
            raise ValueError(str(err) if str(path) in str(err) else f"{path}: {err}") from None

    @classmethod
    def _from_header(cls, path, header: dict, data) -> "IntNetwork":
        layers = []
        for i, e in enumerate(header["layers"]):
            if e["kind"] == "dense":
                syn = Dense(data[f"{i}.weight"], e["weight_exp"], e["num_weight_bits"], e["sign_mode"])
            elif e["kind"] == "conv":
                syn = Conv2d(data[f"{i}.weight"], tuple(e["stride"]), tuple(e["padding"]), e["weight_exp"])
            elif e["kind"] == "sumpool":
                syn = SumPool2d(e["kernel"])
            else:
                raise ValueError(f"{path}: layer {i} has unknown kind {e['kind']!r}")
            neurons = Neurons(**{n: data[f"{i}.{n}"] for n in Neurons.FIELDS})
            layers.append(Layer(syn, neurons, str(e.get("name", ""))))
        meta = header.get("meta", {})
        if not isinstance(meta, dict):
            raise ValueError(f"{path}: meta must be a JSON object, got {type(meta).__name__}")
        return cls(tuple(header["input_shape"]), tuple(layers), header["dt"], meta)
