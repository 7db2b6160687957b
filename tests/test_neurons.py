"""Tests for train.neurons: step functions against scalar recurrences, the fused time loop against the
step functions (forward and gradients), tau/decay conversion, and the LIF/CUBA modules."""

import math

import pytest
import torch

from spikeport.train.neurons import (
    CUBA,
    LIF,
    CubaParams,
    CubaState,
    LIFParams,
    LIFState,
    cuba_step,
    decay_from_tau,
    lif_step,
    neuron_sequence,
    tau_from_decay,
)
from spikeport.train.surrogates import SURROGATES, Surrogate

F64 = torch.float64

# ----------------------------------------------------------------- scalar references (module docstring)


def ref_lif(xs, decay, v_th, bias):
    """u[t] = decay u[t-1] (1 - o[t-1]) + x[t] + bias; o[t] = 1 if u[t] > v_th; rest before t = 0."""
    us, os_ = [], []
    u_prev, o_prev = 0.0, 0.0
    for x in xs:
        u = decay * u_prev * (1 - o_prev) + x + bias
        o = 1.0 if u > v_th else 0.0
        us.append(u)
        os_.append(o)
        u_prev, o_prev = u, o
    return us, os_


def ref_cuba(xs, decay_syn, decay_mem, v_th, bias):
    """i[t] = ds i[t-1] + x[t]; v[t] = dm v[t-1] (1 - o[t-1]) + i[t] + bias; o[t] = 1 if v[t] > v_th."""
    is_, vs, os_ = [], [], []
    i_prev, v_prev, o_prev = 0.0, 0.0, 0.0
    for x in xs:
        i = decay_syn * i_prev + x
        v = decay_mem * v_prev * (1 - o_prev) + i + bias
        o = 1.0 if v > v_th else 0.0
        is_.append(i)
        vs.append(v)
        os_.append(o)
        i_prev, v_prev, o_prev = i, v, o
    return is_, vs, os_


# Three neurons, six steps: chosen so that every neuron fires and then has to reset.
XS = [
    [0.6, 0.5, 0.9, 0.2, 1.5, 0.0],
    [1.2, 0.1, 0.1, 0.8, 0.8, 0.8],
    [-0.3, 0.9, 0.4, 0.6, -1.0, 2.0],
]


def run_steps(step, x, params, surrogate, detach_reset=False):
    """Loop a step function over the time axis; with detach_reset the carried spikes are constants."""
    state, outs = None, []
    for t in range(x.shape[0]):
        o, state = step(x[t], state, params, surrogate)
        if detach_reset:
            state = state._replace(o=state.o.detach())
        outs.append(o)
    return torch.stack(outs)


# ----------------------------------------------------------------- step functions


def test_lif_step_matches_scalar_recurrence_with_reset():
    decay, v_th, bias = 0.5, 1.0, 0.1
    x = torch.tensor(XS, dtype=F64).T.contiguous()  # (T, N)
    state, us, os_ = None, [], []
    for t in range(x.shape[0]):
        o, state = lif_step(x[t], state, LIFParams(decay, v_th, bias), Surrogate())
        assert isinstance(state, LIFState)
        assert torch.equal(o, state.o)
        us.append(state.u.tolist())
        os_.append(o.tolist())
    for n, xs in enumerate(XS):
        ref_u, ref_o = ref_lif(xs, decay, v_th, bias)
        assert [row[n] for row in os_] == ref_o
        assert [row[n] for row in us] == pytest.approx(ref_u, rel=1e-14, abs=1e-14)
        # The reset is exercised: a spike that is not on the last step.
        assert 1.0 in ref_o[:-1]


def test_cuba_step_matches_scalar_recurrence_with_reset():
    ds, dm, v_th, bias = 0.5, 0.8, 1.0, -0.05
    x = torch.tensor(XS, dtype=F64).T.contiguous()
    state, is_, vs, os_ = None, [], [], []
    for t in range(x.shape[0]):
        o, state = cuba_step(x[t], state, CubaParams(ds, dm, v_th, bias), Surrogate())
        assert isinstance(state, CubaState)
        is_.append(state.i.tolist())
        vs.append(state.v.tolist())
        os_.append(o.tolist())
    for n, xs in enumerate(XS):
        ref_i, ref_v, ref_o = ref_cuba(xs, ds, dm, v_th, bias)
        assert [row[n] for row in os_] == ref_o
        assert [row[n] for row in vs] == pytest.approx(ref_v, rel=1e-14, abs=1e-14)
        assert [row[n] for row in is_] == pytest.approx(ref_i, rel=1e-14, abs=1e-14)
        assert 1.0 in ref_o[:-1]


def test_threshold_is_strict():
    # u exactly at the threshold does not fire.
    x = torch.tensor([0.5, 0.5 + 1e-9, 0.5 - 1e-9], dtype=F64)
    o, _ = lif_step(x, None, LIFParams(0.2, 0.5, 0.0), Surrogate())
    assert o.tolist() == [0.0, 1.0, 0.0]
    o, _ = cuba_step(x, None, CubaParams(0.5, 0.2, 0.5, 0.0), Surrogate())
    assert o.tolist() == [0.0, 1.0, 0.0]
    assert neuron_sequence(x[None, None], 0.2, 0.5).flatten().tolist() == [0.0, 1.0, 0.0]


def test_lif_equals_cuba_without_synaptic_decay():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(12, 4, 7, generator=gen, dtype=F64) * 0.7 + 0.3
    decay, v_th, bias = 0.6, 0.5, 0.05
    ls = cs = None
    fired = 0.0
    for t in range(x.shape[0]):
        lo, ls = lif_step(x[t], ls, LIFParams(decay, v_th, bias), Surrogate())
        co, cs = cuba_step(x[t], cs, CubaParams(0.0, decay, v_th, bias), Surrogate())
        assert torch.equal(lo, co)
        assert torch.equal(ls.u, cs.v)
        assert torch.equal(cs.i, x[t])  # no synaptic memory: the current is the input
        fired += lo.sum().item()
    assert 0 < fired < x.numel()
    # Same in the fused loop: decay_syn = 0 and decay_syn = None (STBP LIF) give the same spikes.
    a = neuron_sequence(x, decay, v_th, bias=bias)
    b = neuron_sequence(x, decay, v_th, bias=bias, decay_syn=0.0)
    assert torch.equal(a, b)


# ----------------------------------------------------------------- fused loop: forward


def _params(kind, shape, gen, per_neuron):
    """Random (or per-layer scalar) neuron parameters, float64 tensors."""
    def p(lo, hi):
        if per_neuron:
            return lo + (hi - lo) * torch.rand(shape, generator=gen, dtype=F64)
        return torch.tensor(lo + (hi - lo) * torch.rand((), generator=gen, dtype=F64).item(), dtype=F64)
    out = dict(decay_mem=p(0.3, 0.9), v_threshold=p(0.4, 0.8), bias=p(-0.1, 0.1))
    if kind == "cuba":
        out["decay_syn"] = p(0.2, 0.7)
    return out


def _reference(kind, x, prm, surrogate, detach_reset=False):
    if kind == "lif":
        lp = LIFParams(prm["decay_mem"], prm["v_threshold"], prm["bias"])
        return run_steps(lif_step, x, lp, surrogate, detach_reset)
    cp = CubaParams(prm["decay_syn"], prm["decay_mem"], prm["v_threshold"], prm["bias"])
    return run_steps(cuba_step, x, cp, surrogate, detach_reset)


def _fused(kind, x, prm, surrogate, detach_reset=False):
    return neuron_sequence(x, prm["decay_mem"], prm["v_threshold"], decay_syn=prm.get("decay_syn"),
                           bias=prm["bias"], surrogate=surrogate, detach_reset=detach_reset)


LAYOUTS = {
    # name: (input shape (T, B, *F), per-neuron parameter shape)
    "dense": ((9, 3, 6), (6,)),
    "conv": ((7, 2, 3, 4, 5), (3, 1, 1)),
}


@pytest.mark.parametrize("per_neuron", [False, True], ids=["per_layer", "per_neuron"])
@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("kind", ["lif", "cuba"])
def test_neuron_sequence_forward_equals_step_loop(kind, layout, per_neuron):
    xshape, pshape = LAYOUTS[layout]
    gen = torch.Generator().manual_seed(11)
    x = torch.randn(xshape, generator=gen, dtype=F64) * 0.6 + 0.25
    prm = _params(kind, pshape, gen, per_neuron)
    out = _fused(kind, x, prm, Surrogate())
    ref = _reference(kind, x, prm, Surrogate())
    assert out.shape == x.shape and out.dtype == x.dtype
    assert torch.equal(out, ref)
    assert 0 < out.sum() < out.numel()  # some spikes, not all


def test_neuron_sequence_float32_and_python_scalars():
    gen = torch.Generator().manual_seed(5)
    x = torch.rand(10, 2, 5, generator=gen) * 0.8
    out = neuron_sequence(x, 0.5, 0.6)
    ref = run_steps(lif_step, x, LIFParams(0.5, 0.6, 0.0), Surrogate())
    assert out.dtype == torch.float32
    assert torch.equal(out, ref)
    assert set(out.unique().tolist()) <= {0.0, 1.0}


def test_neuron_sequence_rejects_inputs_without_batch_axis():
    with pytest.raises(ValueError, match=r"\(5,\)"):
        neuron_sequence(torch.zeros(5), 0.5, 0.5)


# ----------------------------------------------------------------- fused loop: gradients


@pytest.mark.parametrize("detach_reset", [False, True], ids=["reset_grad", "detach_reset"])
@pytest.mark.parametrize("surrogate", SURROGATES)
@pytest.mark.parametrize("kind", ["lif", "cuba"])
def test_neuron_sequence_gradients_equal_autograd_through_steps(kind, surrogate, detach_reset):
    sg = Surrogate(surrogate, 0.7)
    gen = torch.Generator().manual_seed(100 * SURROGATES.index(surrogate) + 10 * (kind == "cuba") + detach_reset)
    for layout, per_neuron in (("dense", True), ("conv", True), ("dense", False)):
        xshape, pshape = LAYOUTS[layout]
        x0 = torch.randn(xshape, generator=gen, dtype=F64) * 0.5 + 0.3
        p0 = _params(kind, pshape, gen, per_neuron)
        w = torch.randn(xshape, generator=gen, dtype=F64)  # weights the outputs: a generic upstream gradient

        def grads(fn):
            x = x0.clone().requires_grad_()
            prm = {k: v.clone().requires_grad_() for k, v in p0.items()}
            out = fn(kind, x, prm, sg, detach_reset)
            (out * w).sum().backward()
            return out.detach(), x.grad, {k: v.grad for k, v in prm.items()}

        out_f, gx_f, gp_f = grads(_fused)
        out_r, gx_r, gp_r = grads(_reference)
        assert torch.equal(out_f, out_r)
        torch.testing.assert_close(gx_f, gx_r, rtol=0, atol=1e-12)
        assert gx_f.abs().sum() > 0
        assert set(gp_f) == set(gp_r) == ({"decay_mem", "v_threshold", "bias"} | ({"decay_syn"} if kind == "cuba"
                                                                                   else set()))
        for k in gp_r:
            assert gp_f[k].shape == p0[k].shape
            torch.testing.assert_close(gp_f[k], gp_r[k], rtol=0, atol=1e-12, msg=f"{k} ({layout})")
            assert gp_f[k].abs().sum() > 0, k


def test_detach_reset_changes_the_gradient():
    """The two reset modes differ in backward (else the detach_reset comparison above proves nothing)."""
    gen = torch.Generator().manual_seed(2)
    x0 = torch.randn(10, 2, 5, generator=gen, dtype=F64) * 0.5 + 0.4
    gs = []
    for detach in (False, True):
        x = x0.clone().requires_grad_()
        neuron_sequence(x, 0.8, 0.5, surrogate=Surrogate("sigmoid", 0.5), detach_reset=detach).sum().backward()
        gs.append(x.grad)
    assert not torch.allclose(gs[0], gs[1])


# ----------------------------------------------------------------- tau <-> decay


@pytest.mark.parametrize("tau,dt", [(4.0, 1.0), (1.0, 1.0), (10.0, 0.5), (0.3, 2.0), (1e-3, 1.0)])
def test_decay_from_tau_value_and_round_trip(tau, dt):
    d = decay_from_tau(tau, dt)
    assert d == pytest.approx(math.exp(-dt / tau), rel=1e-15)
    assert 0.0 <= d < 1.0
    if d > 0:
        assert tau_from_decay(d, dt) == pytest.approx(tau, rel=1e-12)


@pytest.mark.parametrize("decay", [0.2, 0.5, 0.9, 0.999])
def test_tau_from_decay_inverse(decay):
    tau = tau_from_decay(decay)
    assert tau == pytest.approx(-1.0 / math.log(decay), rel=1e-15)
    assert decay_from_tau(tau) == pytest.approx(decay, rel=1e-14)
    assert tau_from_decay(decay, dt=2.0) == pytest.approx(2 * tau, rel=1e-15)


def test_tau_decay_limits():
    assert decay_from_tau(math.inf) == 1.0
    assert decay_from_tau(0.0) == 0.0
    assert tau_from_decay(0.0) == 0.0
    assert tau_from_decay(1.0) == math.inf
    assert round(decay_from_tau(4.0, 1.0), 6) == round(math.exp(-0.25), 6)


@pytest.mark.parametrize("tau,dt,bad", [(-1.0, 1.0, "-1.0"), (1.0, 0.0, "dt=0.0"), (1.0, -2.0, "-2.0")])
def test_decay_from_tau_errors(tau, dt, bad):
    with pytest.raises(ValueError, match=bad):
        decay_from_tau(tau, dt)


@pytest.mark.parametrize("decay,dt,bad", [(-0.1, 1.0, "-0.1"), (1.5, 1.0, "1.5"), (0.5, 0.0, "dt=0.0"),
                                          (float("nan"), 1.0, "nan")])
def test_tau_from_decay_errors(decay, dt, bad):
    with pytest.raises(ValueError, match=bad):
        tau_from_decay(decay, dt)


# ----------------------------------------------------------------- modules


def _names(module):
    return {n for n, _ in module.named_parameters()}


def test_lif_module_defaults_learn_only_bias():
    m = LIF((5,))
    assert _names(m) == {"bias"}
    assert set(m.state_dict()) == {"decay_mem", "v_threshold", "bias"}
    assert m.decay_mem.shape == () and m.v_threshold.shape == ()
    assert m.bias.shape == (5,)  # the bias is always per neuron
    assert m.decay_mem.item() == pytest.approx(0.2) and m.v_threshold.item() == pytest.approx(0.5)
    assert torch.equal(m.bias, torch.zeros(5))


@pytest.mark.parametrize("learn_decay", [False, True])
@pytest.mark.parametrize("learn_threshold", [False, True])
@pytest.mark.parametrize("learn_bias", [False, True])
def test_learn_flags_choose_parameters_or_buffers(learn_decay, learn_threshold, learn_bias):
    flags = dict(learn_decay=learn_decay, learn_threshold=learn_threshold, learn_bias=learn_bias)
    for module, decays in ((LIF((4,), **flags), {"decay_mem"}),
                           (CUBA((4,), **flags), {"decay_syn", "decay_mem"})):
        want = (decays if learn_decay else set()) | ({"v_threshold"} if learn_threshold else set()) | (
            {"bias"} if learn_bias else set())
        assert _names(module) == want
        params = {id(p) for p in module.parameters()}
        buffers = {n for n, _ in module.named_buffers()}
        assert buffers == (decays | {"v_threshold", "bias"}) - want
        assert set(module.state_dict()) == decays | {"v_threshold", "bias"}  # all saved either way
        for n in want:
            assert id(getattr(module, n)) in params and getattr(module, n).requires_grad
        for n in buffers:
            assert not getattr(module, n).requires_grad


@pytest.mark.parametrize("pshape", [(6,), (3, 1, 1)])
def test_per_neuron_parameter_shapes(pshape):
    lif = LIF(pshape, decay=0.3, v_threshold=0.7, per_neuron=True)
    cuba = CUBA(pshape, decay_syn=0.4, decay_mem=0.85, v_threshold=1.2, per_neuron=True)
    for name, value in (("decay_mem", 0.3), ("v_threshold", 0.7)):
        assert getattr(lif, name).shape == pshape
        assert torch.allclose(getattr(lif, name), torch.full(pshape, value))
    for name, value in (("decay_syn", 0.4), ("decay_mem", 0.85), ("v_threshold", 1.2)):
        assert getattr(cuba, name).shape == pshape
        assert torch.allclose(getattr(cuba, name), torch.full(pshape, value))
    assert lif.bias.shape == pshape and cuba.bias.shape == pshape
    shared = CUBA(pshape, per_neuron=False)
    assert shared.decay_syn.shape == () and shared.bias.shape == pshape


@pytest.mark.parametrize("module_cls,step", [(LIF, lif_step), (CUBA, cuba_step)])
def test_module_forward_equals_steps_with_its_params(module_cls, step):
    torch.manual_seed(0)
    m = module_cls((3, 1, 1), per_neuron=True, learn_decay=True, learn_threshold=True)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.1 * torch.randn_like(p))
        m.decay_mem[0] = 1.4  # out of range: the module clamps it to 1
    x = torch.rand(6, 2, 3, 4, 4) * 0.9
    out = m(x)
    ref = run_steps(step, x, m.params(), m.surrogate)
    assert torch.equal(out, ref)
    prm = m.params()
    clamped = prm.decay_mem if module_cls is CUBA else prm.decay
    assert clamped[0].item() == 1.0 and torch.equal(clamped[1:], m.decay_mem[1:].clamp(0, 1))
    out.sum().backward()
    for n, p in m.named_parameters():
        assert p.grad is not None and p.grad.shape == p.shape, n


# ----------------------------------------------------------------- recurrence through the fused loop


def run_steps_rec(step, x, params, w_rec, surrogate, detach_reset=False):
    """The step function with the recurrent input ``o[t-1] @ w_rec.T`` (gradient through the spike)."""
    state, outs, o = None, [], None
    for t in range(x.shape[0]):
        inp = x[t] if o is None else x[t] + o @ w_rec.T
        o, state = step(inp, state, params, surrogate)
        if detach_reset:
            state = state._replace(o=state.o.detach())
        outs.append(o)
    return torch.stack(outs)


@pytest.mark.parametrize("detach_reset", [False, True], ids=["reset_grad", "detach_reset"])
@pytest.mark.parametrize("surrogate", SURROGATES)
@pytest.mark.parametrize("kind", ["lif", "cuba"])
def test_recurrent_gradients_equal_autograd_through_steps(kind, surrogate, detach_reset):
    sg = Surrogate(surrogate, 0.7)
    gen = torch.Generator().manual_seed(7 + SURROGATES.index(surrogate) + 20 * (kind == "cuba") + 40 * detach_reset)
    T, B, N = 12, 3, 7
    x0 = torch.randn(T, B, N, generator=gen, dtype=F64) * 0.5 + 0.3
    p0 = _params(kind, (N,), gen, True)
    w0 = torch.randn(N, N, generator=gen, dtype=F64) * 0.4
    up = torch.randn(T, B, N, generator=gen, dtype=F64)

    def grads(fused):
        x = x0.clone().requires_grad_()
        w = w0.clone().requires_grad_()
        prm = {k: v.clone().requires_grad_() for k, v in p0.items()}
        if fused:
            out = neuron_sequence(x, prm["decay_mem"], prm["v_threshold"], decay_syn=prm.get("decay_syn"),
                                  bias=prm["bias"], w_rec=w, surrogate=sg, detach_reset=detach_reset)
        elif kind == "lif":
            out = run_steps_rec(lif_step, x, LIFParams(prm["decay_mem"], prm["v_threshold"], prm["bias"]), w, sg,
                                detach_reset)
        else:
            out = run_steps_rec(cuba_step, x, CubaParams(prm["decay_syn"], prm["decay_mem"], prm["v_threshold"],
                                                         prm["bias"]), w, sg, detach_reset)
        (out * up).sum().backward()
        return out.detach(), x.grad, w.grad, {k: v.grad for k, v in prm.items()}

    out_f, gx_f, gw_f, gp_f = grads(True)
    out_r, gx_r, gw_r, gp_r = grads(False)
    assert torch.equal(out_f, out_r) and 0 < out_f.sum() < out_f.numel()
    # the recurrence matters: without it the spikes differ
    assert not torch.equal(out_f, _fused(kind, x0, p0, sg))
    torch.testing.assert_close(gx_f, gx_r, rtol=0, atol=1e-11)
    torch.testing.assert_close(gw_f, gw_r, rtol=0, atol=1e-11)
    assert gw_f.abs().sum() > 0
    for k in gp_r:
        torch.testing.assert_close(gp_f[k], gp_r[k], rtol=0, atol=1e-11, msg=k)


def test_recurrent_weights_need_flat_features():
    with pytest.raises(ValueError, match="flat"):
        neuron_sequence(torch.zeros(4, 2, 3, 2, 2), 0.5, 0.5, w_rec=torch.zeros(12, 12))
    with pytest.raises(ValueError, match="flat features"):
        LIF((3, 1, 1), recurrent=True)


# ----------------------------------------------------------------- backends (the C loop is the CPU default)


def test_cpu_default_is_the_native_loop_and_env_forces_the_reference(monkeypatch):
    from spikeport.train.neurons import resolve_backend
    monkeypatch.delenv("SPIKEPORT_NEURON_BACKEND", raising=False)
    x = torch.rand(6, 2, 5, dtype=F64)
    assert resolve_backend(x) == "native"
    monkeypatch.setenv("SPIKEPORT_NEURON_BACKEND", "reference")
    assert resolve_backend(x) == "reference"
    ref = neuron_sequence(x, 0.5, 0.4, surrogate=Surrogate("sigmoid"))
    monkeypatch.delenv("SPIKEPORT_NEURON_BACKEND")
    assert torch.equal(neuron_sequence(x, 0.5, 0.4, surrogate=Surrogate("sigmoid")), ref)


def test_native_library_is_built_once_into_the_cache(monkeypatch, tmp_path):
    from spikeport.train import native
    monkeypatch.setenv("SPIKEPORT_CACHE", str(tmp_path))
    lib = native.build()
    assert lib.parent == tmp_path / "native" and lib.exists()
    stamp = lib.stat().st_mtime_ns
    assert native.build() == lib and lib.stat().st_mtime_ns == stamp  # cached: not rebuilt
    assert [p.name for p in lib.parent.iterdir()] == [lib.name]  # no temporary files left


def test_native_build_names_a_missing_compiler(monkeypatch, tmp_path):
    from spikeport.train import native
    monkeypatch.setenv("SPIKEPORT_CACHE", str(tmp_path))
    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    with pytest.raises(RuntimeError, match="no-such-cc"):
        native.build()
