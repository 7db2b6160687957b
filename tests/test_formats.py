"""Tests for sim.formats: register formats and every float <-> integer convention.

Expected values are derived in the tests from the rules in the module docstring (and LOIHI.md),
one Python integer at a time, never pasted.
"""
import math

import numpy as np
import pytest

from spikeport.sim import formats as F

FORMATS = [F.DU, F.DV, F.VTH, F.BIAS_MANT, F.BIAS_EXP, F.WEIGHT, F.WEIGHT_EXP, F.NUM_WEIGHT_BITS]


def _round(x: float) -> int:
    """Round half to even, as documented (Python's round on a float)."""
    return int(round(x))


# ----------------------------------------------------------------------------------- decays

def ref_du(d: float) -> int:
    """Lava multiplies u by (4096 - (du + 1)) / 4096: du = round((1 - d) 4096) - 1, clipped to 12 bits."""
    return min(max(_round((1.0 - d) * 4096) - 1, 0), 4095)


def ref_dv(d: float) -> int:
    return min(max(_round((1.0 - d) * 4096), 0), 4095)


def test_decay_to_du_and_dv_match_the_rule_elementwise():
    rng = np.random.default_rng(0)
    d = np.concatenate([rng.random(200), [0.0, 1.0, 0.5, 1 / 4096, 4095 / 4096, 0.25 / 4096, 1 - 0.25 / 4096]])
    du, dv = F.decay_to_du(d), F.decay_to_dv(d)
    assert du.dtype == np.int64 and dv.dtype == np.int64
    assert du.tolist() == [ref_du(float(x)) for x in d]
    assert dv.tolist() == [ref_dv(float(x)) for x in d]


def test_du_offset_and_ends():
    # decay 0 (STBP LIF, no synaptic memory) -> the full decay 4096 = du + 1 -> du = 4095
    assert int(F.decay_to_du(0.0)) == 4096 - 1
    assert float(F.du_to_decay(4095)) == 0.0
    # one step of decay below unity: (4096 - (du + 1)) = 4095 -> du = 0; decay 1 is not representable
    assert int(F.decay_to_du(4095 / 4096)) == 0
    assert int(F.decay_to_du(1.0)) == 0  # round(0) - 1 = -1 clipped to 0
    assert float(F.du_to_decay(0)) == 4095 / 4096
    # dv has no offset: decay 1 -> dv 0; decay 0 would need 4096, clipped to 4095
    assert int(F.decay_to_dv(1.0)) == 0
    assert int(F.decay_to_dv(0.0)) == 4095
    assert float(F.dv_to_decay(4095)) == 1 / 4096
    assert float(F.dv_to_decay(0)) == 1.0


def test_inverses_round_trip_every_register_value():
    k = np.arange(4096)
    assert F.decay_to_du(F.du_to_decay(k)).tolist() == k.tolist()
    assert F.decay_to_dv(F.dv_to_decay(k)).tolist() == k.tolist()
    # and the float values are the documented factors
    assert np.array_equal(F.du_to_decay(k), 1.0 - (k + 1) / 4096.0)
    assert np.array_equal(F.dv_to_decay(k), 1.0 - k / 4096.0)


def test_decay_quantization_error_is_at_most_half_a_step_inside_the_representable_range():
    rng = np.random.default_rng(1)
    d = rng.random(1000)
    # du represents [0, 4095/4096], dv represents [1/4096, 1]
    in_du = d[d <= 4095 / 4096]
    in_dv = d[d >= 1 / 4096]
    assert np.max(np.abs(F.du_to_decay(F.decay_to_du(in_du)) - in_du)) <= 0.5 / 4096 + 1e-15
    assert np.max(np.abs(F.dv_to_decay(F.decay_to_dv(in_dv)) - in_dv)) <= 0.5 / 4096 + 1e-15


def test_decay_conversions_keep_shape_for_scalars_and_arrays():
    assert F.decay_to_du(0.3).shape == ()
    assert F.decay_to_dv(0.3).shape == ()
    arr = np.linspace(0, 1, 6).reshape(2, 3)
    assert F.decay_to_du(arr).shape == (2, 3)
    assert F.decay_to_dv(arr).shape == (2, 3)
    assert F.du_to_decay(np.arange(6).reshape(3, 2)).shape == (3, 2)
    assert F.dv_to_decay(7).shape == ()


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan"), float("inf")])
def test_invalid_decay_is_a_value_error_naming_the_value(bad):
    with pytest.raises(ValueError, match="decay_syn") as e1:
        F.decay_to_du(bad)
    assert repr(bad) in str(e1.value) or str(bad) in str(e1.value)
    with pytest.raises(ValueError, match="decay_mem") as e2:
        F.decay_to_dv(np.array([0.1, 0.2, bad, 0.3]))
    assert str(bad) in str(e2.value)


# ------------------------------------------------------------------------------- IntFormat

@pytest.mark.parametrize("fmt", FORMATS, ids=lambda f: f.name)
def test_intformat_range_matches_bits_and_sign(fmt):
    lo = -(2 ** (fmt.bits - 1)) if fmt.signed else 0
    hi = 2 ** (fmt.bits - 1) - 1 if fmt.signed else 2 ** fmt.bits - 1
    assert (fmt.min, fmt.max) == (lo, hi)
    ok = fmt.check(np.array([lo, hi, (lo + hi) // 2]), "here")
    assert ok.dtype == np.int64 and ok.tolist() == [lo, hi, (lo + hi) // 2]
    for bad in (lo - 1, hi + 1):
        if bad in fmt.special:  # netx's default neuron (tested below); one further is still refused
            bad += -1 if bad < lo else 1
        with pytest.raises(ValueError) as err:
            fmt.check(np.array([lo, bad, hi]), "layer 3")
        msg = str(err.value)
        assert "layer 3" in msg and fmt.name in msg and str(bad) in msg
        assert f"[{lo}, {hi}]" in msg


def test_netx_default_neuron_values_are_admitted():
    """lava-dl netx's default neuron (hdf5.py 349-355: iDecay 0, vDecay 4096, vThMant 1 << 17) gives
    Lava du = iDecay - 1 = -1, dv = 4096, vth = 2**17: admitted as the only values beyond the range."""
    assert F.DU.check(-1, "x").tolist() == -1 and F.DU.special == (F.NETX_DEFAULT_DU,) == (0 - 1,)
    assert F.DV.check(4096, "x").tolist() == 2 ** 12 and F.DV.special == (2 ** 12,)
    assert F.VTH.check(2 ** 17, "x").tolist() == 2 ** 17 and F.VTH.special == (2 ** 17,)
    # their factors: the current is kept whole, the voltage not at all
    assert float(F.du_to_decay(-1)) == 1.0 and float(F.dv_to_decay(4096)) == 0.0
    with pytest.raises(ValueError, match=r"du = -2 .*\[0, 4095\] \(or -1\)"):
        F.DU.check([-1, -2], "x")
    # quantization never produces them
    assert F.VTH.saturate(np.array([2 ** 17]))[0].tolist() == [2 ** 17 - 1]


def test_known_register_ranges():
    assert (F.DU.min, F.DU.max) == (0, 4095)
    assert (F.VTH.min, F.VTH.max) == (0, 2 ** 17 - 1)
    assert (F.BIAS_MANT.min, F.BIAS_MANT.max) == (-4096, 4095)
    assert (F.BIAS_EXP.min, F.BIAS_EXP.max) == (0, 7)
    assert (F.WEIGHT.min, F.WEIGHT.max) == (-256, 255)
    assert (F.WEIGHT_EXP.min, F.WEIGHT_EXP.max) == (-8, 7)


def test_check_names_the_first_bad_value():
    with pytest.raises(ValueError, match="= 5000 "):
        F.DU.check([0, 5000, 6000], "x")


def test_check_accepts_integral_floats_and_scalars():
    assert F.VTH.check(3.0, "w").tolist() == 3
    assert F.BIAS_MANT.check(np.array([-4.0, 7.0]), "w").tolist() == [-4, 7]
    assert F.DU.check(np.array([True, False]), "w").tolist() == [1, 0]


@pytest.mark.parametrize("bad", [2.5, float("nan"), float("inf")])
def test_check_rejects_non_integer_floats(bad):
    with pytest.raises(ValueError, match="must be integers") as err:
        F.VTH.check(np.array([1.0, bad]), "layer 0")
    assert "layer 0" in str(err.value) and "vth" in str(err.value) and str(bad) in str(err.value)


def test_check_rejects_non_numeric_dtype():
    with pytest.raises(ValueError, match="must be integers"):
        F.DU.check(np.array(["1"]), "w")


def test_saturate_clips_and_counts():
    rng = np.random.default_rng(2)
    for fmt in FORMATS:
        vals = rng.integers(fmt.min - 50, fmt.max + 50, 300)
        clipped, n = fmt.saturate(vals)
        assert clipped.dtype == np.int64
        assert clipped.tolist() == [min(max(int(v), fmt.min), fmt.max) for v in vals]
        assert n == sum(1 for v in vals if not fmt.min <= int(v) <= fmt.max)
    assert F.VTH.saturate(np.array([1, 2]))[1] == 0


# ----------------------------------------------------------------------------------- biases

def _representable_bias():
    """Every value bias_mant << bias_exp can take, sorted."""
    return np.unique(np.array([m << e for e in range(8) for m in range(-4096, 4096)], dtype=np.int64))


def _nearest_distance(values, rep):
    idx = np.clip(np.searchsorted(rep, values), 1, len(rep) - 1)
    return np.minimum(np.abs(rep[idx] - values), np.abs(rep[idx - 1] - values))


def test_split_bias_smallest_exponent_and_nearest_representable():
    rng = np.random.default_rng(3)
    v = np.concatenate([rng.integers(-600_000, 600_000, 400), rng.integers(-9000, 9000, 200),
                        [0, 4095, 4096, -4096, -4097, 8191, 8190, -8193, 4095 * 128, 4096 * 128, -4096 * 128,
                         -4096 * 128 - 65]]).astype(np.float64)
    mant, exp, n_sat = F.split_bias(v)
    rep = _representable_bias()
    n_expected_sat = 0
    for x, m, e in zip(v.tolist(), mant.tolist(), exp.tolist()):
        fits = [k for k in range(8) if -4096 <= _round(x / 2 ** k) <= 4095]
        if fits:
            assert e == fits[0], (x, e)           # the smallest exponent whose rounded mantissa fits
            assert m == _round(x / 2 ** e), (x, m)
        else:
            n_expected_sat += 1
            assert (m, e) == ((4095 if x > 0 else -4096), 7), x
    assert n_sat == n_expected_sat > 0
    ok = np.array([-4096 * 128 <= x <= 4095 * 128 for x in v])
    got = (mant << exp)[ok]
    assert np.array_equal(np.abs(got - v[ok]), _nearest_distance(v[ok], rep.astype(np.float64)))


def test_split_bias_shapes_and_docstring_case():
    m, e, n = F.split_bias(np.array([[100.0, 5000.0], [-1e6, 0.0]]))
    assert m.shape == e.shape == (2, 2)
    assert (m[0, 0] << e[0, 0]) == 100 and e[0, 0] == 0
    assert (m[0, 1] << e[0, 1]) == 5000 and e[0, 1] == 1       # 5000 needs 14 bits
    assert (m[1, 0], e[1, 0], n) == (-4096, 7, 1)
    m0, e0, n0 = F.split_bias(3.0)
    assert m0.shape == () and int(m0) == 3 and int(e0) == 0 and n0 == 0


# ------------------------------------------------------------------------------ thresholds

def test_threshold_to_vth_rounds_scales_and_saturates():
    rng = np.random.default_rng(4)
    th = np.concatenate([rng.random(50) * 3, [-0.2, 1e9]])
    scale = 1234.5678
    vth, n = F.threshold_to_vth(th, scale)
    expected = [min(max(_round(t * scale), 0), 2 ** 17 - 1) for t in th.tolist()]
    assert vth.tolist() == expected
    assert n == sum(1 for t in th if not 0 <= _round(t * scale) <= 2 ** 17 - 1) == 2


# ----------------------------------------------------------------------------- sign modes

@pytest.mark.parametrize("w,mode", [([], "excitatory"), ([0, 0], "excitatory"), ([0, 3], "excitatory"),
                                    ([0, -1], "inhibitory"), ([-2, -1], "inhibitory"), ([1, -1], "mixed"),
                                    ([[0, 5], [-5, 0]], "mixed")])
def test_sign_mode_of(w, mode):
    assert F.sign_mode_of(np.array(w)) == mode


def ref_effective(w: int, nb: int, mode: str) -> int:
    """Lava: clip per sign mode (inhibitory on the magnitude), then floor-drop 8 - nb + mixed bits."""
    mixed = mode == "mixed"
    if mode == "inhibitory":
        w = -w
    w = min(max(w, -256 if mixed else 0), 255)
    drop = 8 - nb + (1 if mixed else 0)
    w = (w >> drop) << drop
    return -w if mode == "inhibitory" else w


@pytest.mark.parametrize("nb", range(8, 0, -1))
def test_dense_effective_weights_every_bit_width_and_mode(nb):
    rng = np.random.default_rng(100 + nb)
    cases = {"mixed": rng.integers(-300, 300, (7, 9)), "excitatory": rng.integers(0, 300, (7, 9)),
             "inhibitory": rng.integers(-300, 1, (7, 9))}
    for mode, w in cases.items():
        assert F.sign_mode_of(w) == mode
        expected = [[ref_effective(int(x), nb, mode) for x in row] for row in w]
        assert F.dense_effective_weights(w, nb).tolist() == expected          # mode from the weights
        assert F.dense_effective_weights(w, nb, mode).tolist() == expected    # mode given
    # an explicit sign mode overrides the weights' own: negatives clip to 0 when declared excitatory
    w = cases["mixed"]
    for mode in ("excitatory", "inhibitory"):
        expected = [[ref_effective(int(x), nb, mode) for x in row] for row in w]
        assert F.dense_effective_weights(w, nb, mode).tolist() == expected


def test_dense_effective_weights_odd_mixed_lose_lowest_bit():
    w = np.array([1, 3, -1])
    assert F.dense_effective_weights(w).tolist() == [(1 >> 1) << 1, (3 >> 1) << 1, (-1 >> 1) << 1]
    # inhibitory truncation is on the magnitude: -3 keeps -3 at 8 bits, -2 at 7 bits
    assert F.dense_effective_weights(np.array([-3, -1]), 7).tolist() == [-((3 >> 1) << 1), -((1 >> 1) << 1)]


# --------------------------------------------------------------------------------- weights

def test_weight_exponent_is_smallest_that_fits():
    rng = np.random.default_rng(5)
    for m in np.concatenate([10.0 ** rng.uniform(-3, 5, 300), [254.0, 255.0, 254 * 8.0, 254 * 8.0 + 1e-6]]):
        e = F.weight_exponent(float(m))
        assert -8 <= e <= 7
        if -8 < e < 7:
            assert m / 2.0 ** e <= 254 < m / 2.0 ** (e - 1), m
        elif e == 7:
            assert m / 2.0 ** 6 > 254
        else:
            assert m / 2.0 ** -8 <= 254
    assert F.weight_exponent(254 * 8.0) == 3
    assert F.weight_exponent(254 * 8.0 + 1e-6) == 4
    assert F.weight_exponent(0.0) == 0
    assert F.weight_exponent(1e12) == 7
    assert F.weight_exponent(1e-9) == -8
    assert F.weight_exponent(300.0, mant_max=255) == 1


def ref_quantize(w, e, nb, mode, rounding):
    step = 2 ** (8 - nb + (1 if mode == "mixed" else 0))
    hi = 255 // step
    lo = -256 // step if mode == "mixed" else (-hi if mode == "inhibitory" else 0)
    out, clipped = [], 0
    for x in w:
        q = x / 2.0 ** e / step
        q = math.floor(q) if rounding == "floor" else _round(q)
        if q < lo or q > hi:
            clipped += 1
        out.append(min(max(q, lo), hi) * step)
    return out, clipped


@pytest.mark.parametrize("rounding", ["nearest", "floor"])
@pytest.mark.parametrize("nb", [8, 6, 3, 1])
def test_quantize_weights_grid_clipping_and_errors(nb, rounding):
    rng = np.random.default_rng(nb * 10 + len(rounding))
    e = -2
    base = rng.normal(0, 30, 80)
    cases = {"mixed": base, "excitatory": np.abs(base), "inhibitory": -np.abs(base)}
    for mode, w in cases.items():
        m, rep = F.quantize_weights(w, e, nb, rounding)
        exp_m, exp_clipped = ref_quantize(w.tolist(), e, nb, mode, rounding)
        assert m.dtype == np.int64 and m.tolist() == exp_m
        assert rep["clipped"] == exp_clipped
        assert exp_clipped > 0  # sigma 30 at 2**-2: some beyond 255 quarter units
        # the mantissas are already on Lava's grid: the Dense model keeps them unchanged
        assert F.dense_effective_weights(m, nb, F.sign_mode_of(w)).tolist() == m.tolist()
        if mode == "mixed" and nb == 8:
            assert np.all(m % 2 == 0)
        r = [mi * 2.0 ** e for mi in exp_m]
        diff = [a - b for a, b in zip(r, w.tolist())]
        assert rep["max_abs_error"] == pytest.approx(max(abs(d) for d in diff), rel=1e-12)
        rel = math.sqrt(sum(d * d for d in diff)) / math.sqrt(sum(x * x for x in w.tolist()))
        assert rep["rel_error"] == pytest.approx(rel, rel=1e-12)


def test_quantize_weights_floor_differs_from_nearest_and_bad_rounding():
    w = np.array([2.75, 1.0, 0.0])  # excitatory, step 1 at e = 0
    assert F.quantize_weights(w, 0, rounding="floor")[0].tolist() == [math.floor(2.75), 1, 0]
    assert F.quantize_weights(w, 0, rounding="nearest")[0].tolist() == [_round(2.75), 1, 0]
    with pytest.raises(ValueError, match="rounding"):
        F.quantize_weights(w, 0, rounding="stochastic")


def test_quantize_weights_positive_exponent_and_empty():
    w = np.array([-1000.0, 500.0, 3.0])
    m, rep = F.quantize_weights(w, 3)
    assert m.tolist() == [_round(x / 8 / 2) * 2 for x in w]
    m0, rep0 = F.quantize_weights(np.zeros((0, 3)), 0)
    assert m0.shape == (0, 3) and rep0["max_abs_error"] == 0.0 and rep0["clipped"] == 0


def test_relative_error():
    rng = np.random.default_rng(6)
    a, b = rng.normal(size=(4, 5)), rng.normal(size=(4, 5))
    expected = math.sqrt(sum((x - y) ** 2 for x, y in zip(a.ravel(), b.ravel()))) / math.sqrt(
        sum(y * y for y in b.ravel()))
    assert F.relative_error(a, b) == pytest.approx(expected, rel=1e-12)
    assert F.relative_error(b, b) == 0.0
    # exact all zero: the absolute error
    assert F.relative_error([3.0, 4.0], [0.0, 0.0]) == pytest.approx(5.0)
    assert F.relative_error([], []) == 0.0


def test_non_finite_thresholds_and_biases_are_refused():
    with pytest.raises(ValueError, match="v_threshold.*nan"):
        F.threshold_to_vth(np.array([0.5, np.nan]), 10.0)
    with pytest.raises(ValueError, match="bias.*inf"):
        F.split_bias(np.array([np.inf]))
