"""The simulator's torch backend: ``simulate(..., backend="torch", device=...)``.

The numpy simulator's arithmetic run on torch tensors, so that a batch runs on a GPU: the neuron
step (``neuron_step``) and each operator's shift and wraps (``_Synapse.finish``) are the numpy
code itself, given torch's functions (``TORCH``, an ``ArrayOps``); only the products, window
gathers and the time loop of a component are written here. Products use the exact float dtype
the numpy side chose (``_exact_dtype``: float32 only where every sum stays below ``2**24``, else
float64), always dense (the sparse CSR path is numpy's); neuron state is float64 holding integers
(exact below ``2**53``). Exact products need IEEE float32 matmuls: TF32 and reduced-precision
modes are switched off for the run (``_ieee_matmul``), and convolutions are unfold + matmul (an
exact sum of products), never cuDNN's FFT / Winograd algorithms, which round.

Imported only when the torch backend is asked for: ``sim`` itself stays numpy-only.
"""
from __future__ import annotations

import contextlib

import numpy as np
import torch
import torch.nn.functional as TF

from . import formats as F
from .simulator import ArrayOps, NeuronConstants, _GraphRun, layer_bounds, neuron_step

_ACT = 2.0 ** F.ACT_SHIFT
TORCH = ArrayOps(torch.mul, torch.trunc, torch.floor, torch.remainder, torch.clamp, torch.le, torch.logical_not,
                 lambda a: a.double())


def device_of(device) -> torch.device:
    """``device`` (None: CUDA when available, else CPU) as a ``torch.device``, or a clear error."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device must be a torch device such as 'cpu' or 'cuda:0', got {device!r}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r}: CUDA is not available here (torch {torch.__version__})")
    return dev


@contextlib.contextmanager
def _ieee_matmul():
    """float32 matmuls in full IEEE precision (no TF32) while the run lasts; restored after."""
    old = (torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32)
    torch.set_float32_matmul_precision("highest")
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(old[0])
        torch.backends.cudnn.allow_tf32 = old[1]


class _TorchSynapse:
    """A numpy ``_Synapse`` (its prepared weight, dtype and kind) evaluated with torch."""

    def __init__(self, syn, device):
        self.np = syn
        self.kind = syn.kind
        self.w = None if syn.kind == "pool" else torch.from_numpy(syn.w).to(device)

    def __call__(self, s: torch.Tensor) -> torch.Tensor:
        """``(M, *in)`` spikes or payloads -> ``(M, N)`` ``a << 6``; the products here, the shift
        and wraps by the numpy operator's own ``finish``."""
        syn, m = self.np, s.shape[0]
        if self.kind == "dense":
            return syn.finish(s.reshape(m, -1).to(self.w.dtype) @ self.w, TORCH)
        if self.kind == "pool":
            c, oh, ow = syn.out_shape
            k = syn.k
            x = s.reshape(m, *syn.in_shape)[:, :, :oh * k, :ow * k].double()
            return syn.finish(x.reshape(m, c, oh, k, ow, k).sum(dim=(3, 5)).reshape(m, -1), TORCH)
        c, h, w = syn.in_shape
        x = s.reshape(m, c, h, w).to(self.w.dtype)
        cols = TF.unfold(x, (syn.kh, syn.kw), padding=syn.padding, stride=syn.stride)  # (m, C*kh*kw, oh*ow)
        a = cols.transpose(1, 2) @ self.w  # (m, oh*ow, C_out)
        return syn.finish(a.transpose(1, 2).reshape(m, -1), TORCH)

    def bound(self, in_max: float = 1.0) -> float:
        return self.np.bound(in_max)


class _TorchDelayed:
    """A numpy ``_DelayedSynapse`` (one ``_Synapse`` per delay value) evaluated with torch."""

    def __init__(self, syn, device):
        self.np = syn
        self.parts = [(k, _TorchSynapse(part, device)) for k, part in syn.parts]
        self.n_out = syn.n_out

    def sequence(self, s: torch.Tensor, T: int, B: int) -> torch.Tensor:
        total = torch.zeros((T, B, self.n_out), dtype=torch.float64, device=s.device)
        flat = s.reshape(T * B, -1)
        for k, part in self.parts:
            if k < T:
                total[k:] += part(flat[:(T - k) * B]).reshape(T - k, B, -1)
        return total

    def step(self, sent: torch.Tensor, t: int):
        total = 0.0
        for k, part in self.parts:
            if t - 1 - k >= 0:
                total = total + part(sent[t - 1 - k].to(torch.uint8))
        return total

    def bound(self, in_max: float = 1.0) -> float:
        return self.np.bound(in_max)


def _torch_synapse(syn, device):
    return _TorchDelayed(syn, device) if hasattr(syn, "parts") else _TorchSynapse(syn, device)


class TorchGraphRun(_GraphRun):
    """``_GraphRun`` on torch tensors: takes and returns numpy arrays, computes on ``device``."""

    def __init__(self, graph, syns, consts, depth, timing, proto, record, device):
        from .graph import refuse_unless_lif

        refuse_unless_lif(graph, "the torch backend")  # resonator_step is numpy only
        super().__init__(graph, syns, consts, depth, timing, proto, record)
        self.device = device
        self.np_syns = syns
        self.syns = {k: _torch_synapse(s, device) for k, s in syns.items()}

    def _t(self, arr, dtype=None) -> torch.Tensor:
        return torch.as_tensor(arr).to(device=self.device, dtype=dtype)

    def __call__(self, xb: dict, T: int, B: int, bias) -> dict:
        # xb: (T, B, N) views of (B, T, N) arrays; those travel as they are (no host-side copy)
        # and are transposed on the device
        seqs = {n: self._t(np.ascontiguousarray(x.transpose(1, 0, 2))).permute(1, 0, 2) for n, x in xb.items()}
        with _ieee_matmul(), torch.no_grad():
            res = super().__call__(seqs, T, B, bias)
        return {k: {n: a.cpu().numpy() for n, a in d.items()} for k, d in res.items()}

    def _external(self, n, comp, spikes, T, B, direct):
        total = None
        for p in self.into.get(n, []):
            if p.src in comp:
                continue
            syn = self.syns[id(p)]
            if isinstance(syn, _TorchDelayed):
                a = syn.sequence(spikes[p.src], T, B)
            else:
                a = syn(spikes[p.src].reshape(T * B, -1)).reshape(T, B, -1)
            total = a if total is None else total + a
        if direct is not None:  # an input group's own input: straight into a_in, no synapse, no delay
            return direct.double() * _ACT, False
        if total is None:
            total = torch.zeros((T, B, self.g.size(n)), dtype=torch.float64, device=self.device)
        return total, self.timing == "hardware"

    def _tconsts(self, c: NeuronConstants) -> NeuronConstants:
        return NeuronConstants(self._t(c.cu), self._t(c.cv), self._t(c.bias), self._t(c.vth), c.no_current)

    def _component(self, comp, xb, spikes, us, vs, T, B, bias):
        internal = [p for n in comp for p in self.into.get(n, []) if p.src in comp]
        ext = {n: self._external(n, comp, spikes, T, B, xb.get(n)) for n in comp}
        consts = {n: self._constants(n, bias) for n in comp}  # numpy, as the numpy run has them
        flags = {}
        for n in comp:
            a_max = float(ext[n][0].abs().max()) if ext[n][0].numel() else 0.0
            a_max += sum(self.syns[id(p)].bound() for p in internal if p.dst == n)
            c = consts[n]
            bias_max = np.abs(c.bias).reshape(-1, c.cu.size).max(axis=0)
            flags[n] = layer_bounds(a_max, NeuronConstants(c.cu, c.cv, bias_max, c.vth, c.no_current))
        tc = {n: self._tconsts(consts[n]) for n in comp}
        reset = self.proto.reset_interval
        phase = {n: self.proto.phase(self.depth[n]) for n in comp} if reset is not None else {}

        def zeros(n, *lead, dtype=torch.float64):
            return torch.zeros((*lead, self.g.size(n)), dtype=dtype, device=self.device)

        u = {n: zeros(n, B) for n in comp}
        v = {n: zeros(n, B) for n in comp}
        out = {n: zeros(n, T, B, dtype=torch.bool) for n in comp}
        if self.record:
            for n in comp:
                us[n] = zeros(n, T, B, dtype=torch.int32)
                vs[n] = zeros(n, T, B, dtype=torch.int32)
        idle = {n: zeros(n, B) for n in comp}
        for t in range(T):
            for n in comp:
                a, late = ext[n]
                at = (a[t - 1] if t else idle[n]) if late else a[t]
                if internal and t:  # what the component's groups sent at t - 1 (always one step late)
                    at = at.to(torch.float64, copy=True)  # float32 input plus recurrent input: float64
                    for p in internal:
                        if p.dst != n:
                            continue
                        syn = self.syns[id(p)]
                        if isinstance(syn, _TorchDelayed):
                            at += syn.step(out[p.src], t)
                        else:
                            at += syn(out[p.src][t - 1].to(torch.uint8))
                if reset is not None and (t + 1) % reset == phase[n]:
                    u[n].zero_()
                    v[n].zero_()
                c = tc[n]
                if c.bias.ndim == 3:
                    c = NeuronConstants(c.cu, c.cv, c.bias[t], c.vth, c.no_current)
                ut = neuron_step(u[n], v[n], at, c, out[n][t], *flags[n], ops=TORCH)
                if self.record:
                    us[n][t] = ut.to(torch.int32)
                    vs[n][t] = v[n].to(torch.int32)
        for n in comp:
            spikes[n] = out[n].to(torch.uint8)
