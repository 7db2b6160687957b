"""The Loihi 2 mapping rules reproduce Intel's compiler placements (bench/chip_calibration.py).

The published figures live in the bench script, next to their sources; this test asserts the
rows that depend only on shapes and weight bits: cores per layer (all of PilotNet's 74 and
lava-dl MNIST's 5), and PilotNet's synapse words per core except fc1's (Intel's 7,253 is an
encoding of its trained, sparse weights; see bench/CALIBRATION.md).
"""
import importlib.util
from pathlib import Path

from spikeport.sim.chip import map_network

_spec = importlib.util.spec_from_file_location(
    "chip_calibration", Path(__file__).resolve().parents[1] / "bench" / "chip_calibration.py")
cal = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(cal)


def test_pilotnet_cores_and_synapse_words_match_intels_table():
    rows = {r["group"]: r for r in map_network(cal.pilotnet(), "loihi2").table_rows()}
    assert sum(r["cores"] for r in rows.values()) == cal.PILOTNET_TOTAL_CORES == 74
    for name, _axons_in, neurons, synapses, _axon_map, cores in cal.PILOTNET_INTEL:
        assert rows[name]["cores"] == cores, name
        if name != "fc1":
            assert rows[name]["synapses"] == synapses, name
        if name.startswith(("input", "conv")):
            assert rows[name]["neurons"] == neurons, name  # whole-column slices of power-of-two widths


def test_lava_dl_mnist_takes_three_one_and_one_cores():
    m = map_network(cal.mnist(), "loihi2")
    rows = m.table_rows()
    assert [r["cores"] for r in rows] == list(cal.MNIST_ISSUE["cores"])
    assert round(100 * rows[1]["synaptic_memory"]) == 17 and round(100 * rows[2]["synaptic_memory"]) == 2


def test_pilotnet_sdnn_with_the_input_on_the_host_takes_intels_61_cores():
    m = map_network(cal.pilotnet(sdnn=True), "loihi2")
    rows = {r["group"]: r for r in m.table_rows()}
    assert m.n_cores == cal.PILOTNET_SDNN_TOTAL_CORES == 61 and list(m.hosts) == ["input"]
    for name, _axons_in, _neurons, synapses, _axon_map, cores in cal.PILOTNET_SDNN_INTEL:
        assert rows[name]["cores"] == cores, name
        if name.startswith("conv"):
            assert rows[name]["synapses"] == synapses, name
