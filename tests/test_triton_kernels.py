"""The fused neuron kernels, Triton (train.triton_kernels) and C (train.native), against the torch
reference loop and against autograd through the step functions: spikes, and gradients of the input,
the decays, the threshold, the bias and the recurrent weights, for LIF and CUBA, every surrogate,
with and without recurrence.

Without a GPU the kernels run under Triton's interpreter (numpy, on CPU). ``TRITON_INTERPRET=1`` has
to be set before triton is imported, so the kernels run in a child process (this file run as a
script) and the environment of the test session stays untouched. With
``SPIKEPORT_TRITON_DEVICE=cuda`` the child runs the compiled kernels on the GPU instead
(``bench/gpu_check.sh``); the comparisons are the same.
"""
from __future__ import annotations

import os
import subprocess
import sys

if __name__ == "__main__" and os.environ.get("SPIKEPORT_TRITON_DEVICE", "cpu") == "cpu":
    os.environ["TRITON_INTERPRET"] = "1"  # before anything imports triton (child process only)

import pytest
import torch

from spikeport.train.neurons import (
    CubaParams,
    LIFParams,
    cuba_step,
    lif_step,
    neuron_sequence,
    resolve_backend,
)
from spikeport.train.surrogates import SURROGATES, Surrogate

F64 = torch.float64
DEVICE = os.environ.get("SPIKEPORT_TRITON_DEVICE", "cpu")


def _case(i, kind, surrogate, recurrent, detach_reset, layout="dense", per_neuron=True, dtype=F64,
          learn=("decay_syn", "decay_mem", "v_threshold", "bias", "w_rec"), has_bias=True):
    """Seeded inputs of one comparison; ``learn`` names the tensors that require a gradient."""
    gen = torch.Generator().manual_seed(1000 + i)
    xshape, pshape = {"dense": ((8, 3, 6), (6,)), "wide": ((5, 3, 50), (50,)),
                      "conv": ((6, 2, 3, 4, 5), (3, 1, 1))}[layout]
    if not per_neuron:
        pshape = ()

    def p(lo, hi):
        return (lo + (hi - lo) * torch.rand(pshape, generator=gen, dtype=F64)).to(dtype)

    prm = {"decay_mem": p(0.3, 0.9), "v_threshold": p(0.4, 0.8)}
    if has_bias:
        prm["bias"] = p(-0.1, 0.1)
    if kind == "cuba":
        prm["decay_syn"] = p(0.2, 0.7)
    n = xshape[-1]
    return {"kind": kind, "surrogate": Surrogate(surrogate, 0.7), "detach_reset": detach_reset,
            "x": (torch.randn(xshape, generator=gen, dtype=F64) * 0.5 + 0.3).to(dtype), "prm": prm,
            "w_rec": (torch.randn(n, n, generator=gen, dtype=F64) * 0.4).to(dtype) if recurrent else None,
            "up": torch.randn(xshape, generator=gen, dtype=F64).to(dtype), "learn": set(learn)}


def _cases():
    """LIF and CUBA x every surrogate x recurrent or not (reset gradient and detach_reset alternate),
    then layouts (conv, per-layer scalars, several programs with a partial last block), no bias,
    parameters that do not learn, float32."""
    out, i = {}, 0
    for kind in ("lif", "cuba"):
        for s in SURROGATES:
            for rec in (False, True):
                detach = (SURROGATES.index(s) + rec) % 2 == 1
                out[f"{kind}-{s}-{'rec' if rec else 'ff'}-{'detach' if detach else 'reset'}"] = (
                    i, kind, s, rec, detach, {})
                i += 1
    for kind in ("lif", "cuba"):
        for name, kw in (("conv", dict(layout="conv")), ("scalar", dict(per_neuron=False)),
                         ("wide", dict(layout="wide")), ("wide-rec", dict(layout="wide", recurrent=True)),
                         ("nobias", dict(has_bias=False)), ("fixed", dict(learn=("bias",))),
                         ("float32", dict(dtype=torch.float32))):
            rec = kw.pop("recurrent", False)
            out[f"{kind}-{name}"] = (i, kind, "sigmoid" if name == "float32" else "rectangular", rec, False, kw)
            i += 1
    return out


CASES = _cases()


def _build(key):
    i, kind, s, rec, detach, kw = CASES[key]
    return _case(i, kind, s, rec, detach, **kw)


def _run(c, fn, device="cpu"):
    """Spikes and gradients of one case through ``fn(kind, x, prm, w_rec, surrogate, detach_reset)``."""
    def leaf(v, learn):  # a fresh copy: gradients of earlier runs must not accumulate
        return v.to(device, copy=True).requires_grad_(learn)
    x = leaf(c["x"], True)
    prm = {k: leaf(v, k in c["learn"]) for k, v in c["prm"].items()}
    w = None if c["w_rec"] is None else leaf(c["w_rec"], "w_rec" in c["learn"])
    out = fn(c["kind"], x, prm, w, c["surrogate"], c["detach_reset"])
    (out * c["up"].to(device)).sum().backward()
    grads = {"x": x.grad, **{k: v.grad for k, v in prm.items()}, "w_rec": None if w is None else w.grad}
    return out.detach().cpu(), {k: None if g is None else g.cpu() for k, g in grads.items()}


def _sequence(backend):
    def fn(kind, x, prm, w, sg, detach):
        return neuron_sequence(x, prm["decay_mem"], prm["v_threshold"], decay_syn=prm.get("decay_syn"),
                               bias=prm.get("bias"), w_rec=w, surrogate=sg, detach_reset=detach, backend=backend)
    return fn


def _steps(kind, x, prm, w, sg, detach):
    """Autograd through the step functions (the definition), recurrent input ``o[t-1] @ w.T``."""
    bias = prm.get("bias", 0.0)
    if kind == "lif":
        step, p = lif_step, LIFParams(prm["decay_mem"], prm["v_threshold"], bias)
    else:
        step, p = cuba_step, CubaParams(prm["decay_syn"], prm["decay_mem"], prm["v_threshold"], bias)
    state, outs, o = None, [], None
    for t in range(x.shape[0]):
        inp = x[t] if (o is None or w is None) else x[t] + o @ w.T
        o, state = step(inp, state, p, sg)
        if detach:
            state = state._replace(o=state.o.detach())
        outs.append(o)
    return torch.stack(outs)


def _child(path_out):
    """Run every case through the Triton backend on DEVICE; save spikes, gradients and what 'auto' picks."""
    res = {}
    for key in CASES:
        c = _build(key)
        out, grads = _run(c, _sequence("triton"), DEVICE)
        res[key] = {"out": out, "grads": grads}
    probe = torch.zeros(2, 1, 3, device=DEVICE)
    res["@auto"] = resolve_backend(probe)
    res["@device"] = DEVICE
    torch.save(res, path_out)


@pytest.fixture(scope="module")
def triton_results(tmp_path_factory):
    path = tmp_path_factory.mktemp("triton") / "results.pt"
    env = {k: v for k, v in os.environ.items() if k not in ("TRITON_INTERPRET", "SPIKEPORT_NEURON_BACKEND")}
    p = subprocess.run([sys.executable, os.path.abspath(__file__), str(path)], env=env, capture_output=True,
                       text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    return torch.load(path)


def test_child_ran_where_asked(triton_results):
    assert triton_results["@device"] == DEVICE
    # 'auto' chooses the Triton kernels for CUDA tensors, the C loop for CPU tensors
    assert triton_results["@auto"] == ("triton" if DEVICE == "cuda" else "native")
    assert set(triton_results) - {"@auto", "@device"} == set(CASES)


@pytest.mark.parametrize("key", list(CASES))
def test_triton_equals_reference_and_steps(triton_results, key):
    c = _build(key)
    got = triton_results[key]
    out_r, g_r = _run(c, _sequence("reference"))
    out_s, g_s = _run(c, _steps)
    assert torch.equal(out_r, out_s)  # the two references agree (tested at length in test_neurons.py)
    assert torch.equal(got["out"], out_r)
    assert 0 < out_r.sum() < out_r.numel()  # some spikes, not all: resets happen
    tol = 1e-11 if c["x"].dtype == F64 else 2e-5
    expected = {"x"} | (c["learn"] & (set(c["prm"]) | ({"w_rec"} if c["w_rec"] is not None else set())))
    for k, g in g_r.items():
        if k not in expected:
            assert got["grads"][k] is None and g is None, k
            continue
        assert got["grads"][k].shape == g.shape and got["grads"][k].dtype == g.dtype, k
        assert g.abs().sum() > 0, k
        torch.testing.assert_close(got["grads"][k], g, rtol=tol, atol=tol, msg=f"{k} vs reference")
        torch.testing.assert_close(got["grads"][k], g_s[k], rtol=tol, atol=tol, msg=f"{k} vs step functions")


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("key", list(CASES))
def test_native_equals_reference_and_steps(key, threads, monkeypatch):
    """The C loop, in-process (with 2 threads the batch rows are split between two calls)."""
    c = _build(key)
    monkeypatch.setenv("SPIKEPORT_NATIVE_THREADS", str(threads))  # small layers are never split otherwise
    out_n, g_n = _run(c, _sequence("native"))
    out_r, g_r = _run(c, _sequence("reference"))
    out_s, g_s = _run(c, _steps)
    assert torch.equal(out_n, out_r) and torch.equal(out_r, out_s)
    assert 0 < out_r.sum() < out_r.numel()
    tol = 1e-11 if c["x"].dtype == F64 else 2e-5
    for k, g in g_r.items():
        if g is None:
            assert g_n[k] is None, k
            continue
        assert g_n[k].shape == g.shape and g_n[k].dtype == g.dtype and g.abs().sum() > 0, k
        torch.testing.assert_close(g_n[k], g, rtol=tol, atol=tol, msg=f"{k} vs reference")
        torch.testing.assert_close(g_n[k], g_s[k], rtol=tol, atol=tol, msg=f"{k} vs step functions")


def test_native_threads_follow_the_layer_size(monkeypatch):
    from spikeport.train.native import MIN_STEPS_PER_THREAD, threads_for
    monkeypatch.delenv("SPIKEPORT_NATIVE_THREADS", raising=False)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        assert threads_for(20 * 64 * 800) == 1  # 784-800-10's hidden layer: one thread is faster
        assert threads_for(4 * MIN_STEPS_PER_THREAD) == 2  # a large conv layer: as many as torch has
    finally:
        torch.set_num_threads(before)
    monkeypatch.setenv("SPIKEPORT_NATIVE_THREADS", "3")
    assert threads_for(1) == 3
    monkeypatch.setenv("SPIKEPORT_NATIVE_THREADS", "many")
    with pytest.raises(ValueError, match="SPIKEPORT_NATIVE_THREADS='many'"):
        threads_for(1)


def test_recurrence_and_detach_reset_matter():
    """The recurrent and detach_reset cases test something: each changes the spikes or the gradient."""
    a = _build("lif-rectangular-rec-detach")
    b = dict(a, w_rec=None)
    assert not torch.equal(_run(a, _sequence("reference"))[0], _run(b, _sequence("reference"))[0])
    c = _build("cuba-rectangular-ff-reset")
    d = dict(c, detach_reset=True)
    assert not torch.allclose(_run(c, _sequence("reference"))[1]["x"], _run(d, _sequence("reference"))[1]["x"])


def test_backend_choice_and_errors(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    monkeypatch.delenv("SPIKEPORT_NEURON_BACKEND", raising=False)
    x = torch.zeros(3, 2, 4)
    assert resolve_backend(x) == "native"  # CPU tensors: the C loop (this machine has a C compiler)
    assert resolve_backend(x, "reference") == "reference"
    assert resolve_backend(x.half()) == "reference"  # the kernels take float32/float64
    with pytest.raises(ValueError, match="'native' needs float32/float64 CPU tensors"):
        resolve_backend(x.half(), "native")
    with pytest.raises(ValueError, match="'cupy'"):
        resolve_backend(x, "cupy")
    with pytest.raises(ValueError, match="needs float32/float64 CUDA tensors"):
        neuron_sequence(x, 0.5, 0.5, backend="triton")
    with pytest.raises(ValueError, match="float16"):
        resolve_backend(x.half(), "triton")
    monkeypatch.setenv("SPIKEPORT_NEURON_BACKEND", "fast")
    with pytest.raises(ValueError, match="SPIKEPORT_NEURON_BACKEND='fast'"):
        resolve_backend(x)
    monkeypatch.setenv("SPIKEPORT_NEURON_BACKEND", "reference")
    assert resolve_backend(x) == "reference"
    monkeypatch.setenv("SPIKEPORT_NEURON_BACKEND", "triton")  # forced, but CPU without the interpreter
    with pytest.raises(ValueError, match="cpu"):
        resolve_backend(x)


if __name__ == "__main__":
    _child(sys.argv[1])
