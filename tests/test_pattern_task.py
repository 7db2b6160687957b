"""The built-in spike-pattern task: spike matching by hand, and a small run trained with QAT whose
integer network emits in Lava exactly the trains the simulator emits."""
import numpy as np
import pytest

from spikeport.pattern_task import pattern_metrics, run_pattern_task, spike_match
from spikeport.pipeline import _float_run, encode_split
from spikeport.train.config import make_config
from spikeport.train.trainer import make_model

SMALL = {"network": "64-200-10", "data.train_samples": 800, "data.test_samples": 60, "optim.epochs": 8}


def test_spike_match_counts_by_hand():
    # one sample, 6 steps, 2 neurons
    target = np.zeros((1, 6, 2), dtype=np.int8)
    out = np.zeros((1, 6, 2), dtype=np.int8)
    target[0, [1, 4], 0] = 1     # neuron 0 asked at steps 1 and 4
    target[0, 3, 1] = 1          # neuron 1 asked at step 3
    out[0, 1, 0] = 1             # exact hit
    out[0, 5, 0] = 1             # one step late for step 4
    out[0, 0, 1] = 1             # three steps early for step 3: spurious
    assert spike_match(out, target, 0) == (pytest.approx(1 / 3), pytest.approx(1 / 3))
    assert spike_match(out, target, 1) == (pytest.approx(2 / 3), pytest.approx(2 / 3))
    assert spike_match(out, target, 3) == (pytest.approx(1.0), pytest.approx(1.0))
    # neurons do not help each other: the same spikes on the other neuron match nothing
    assert spike_match(out[:, :, ::-1], target, 0) == (0.0, 0.0)


def test_pattern_task_learns_and_lava_emits_the_simulators_trains(tmp_path):
    """A short run (8 epochs, about 10 s on 2 cores; the preset trains 100): measured van Rossum
    0.068 against 0.162 untrained, own pattern nearest for 43-48% of samples (chance 10%)."""
    res = run_pattern_task(tmp_path, overrides=SMALL, lava_samples=6, log=lambda *_: None)
    assert res["samples"] == 60 and (tmp_path / "patterns.json").exists()
    cfg = make_config("digits-patterns", overrides=SMALL)
    x, labels = encode_split(cfg)
    untrained = pattern_metrics(_float_run(make_model(cfg, (1, 8, 8)), x)[0], labels, cfg)
    for model in ("float", "fake_quantized", "integer"):
        m = res[model]
        assert m["van_rossum"] < 0.6 * untrained["van_rossum"], (model, m, untrained)
        assert m["nearest_pattern_is_own"] > 0.25, (model, m)
    assert res["integer_equal_to_fake_quantized"] > 0.95
    assert res["lava_mismatches"] == 0 and res["lava_output_spikes"] > 0
    assert res["lava"] == res["integer_first_n"]


def test_pattern_task_needs_qat_and_delay(tmp_path):
    with pytest.raises(ValueError, match="synaptic_delay=False"):
        run_pattern_task(tmp_path, overrides={**SMALL, "quant.synaptic_delay": False}, log=lambda *_: None)
