"""Write lava-dl slayer's own resonate-and-fire (RF, RF_IZ) netx exports to tests/data/rf/, with lava-dl itself.

Runs in the Lava runtime (Python 3.10, lava-dl 0.6.0), not in the project's environment::

    spikeport lava python scripts/make_rf_netx.py [--out tests/data/rf]

Each network is built from slayer's own complex-synapse blocks with seeded weights, run once on a
seeded float input (which fixes slayer's neuron shapes, as its networks need before export) and
exported block by block with ``Block.export_hdf5``, as slayer's networks do in their
``export_hdf5`` methods. Every block writes ``weight/real`` and ``weight/imag`` (its complex
synapse) and a ``neuron`` group ``{type, sinDecay, cosDecay, vThMant, gradedSpike}``:

    rf.net      slayer.block.rf.Dense (type 'RF_PHASE', which netx builds as Lava's ``RF``):
                16 -> 12 (period 6, decay 0.05) -> 8 (period 9, decay 0.02)
    rf_iz.net   slayer.block.rf_iz.Dense (type 'RF_IZHIKEVICH', Lava's ``RF_IZ``):
                16 -> 12 (period 5, decay 0.05) -> 8 (period 12, decay 0.002: a slowly decaying
                resonator whose state the tests drive into Lava's 24-bit clip)

tests/test_rf.py reads the files with ``export.netx.read_netx``, simulates them and runs them with
netx in Lava (``hdf5.Network``, ``Loihi2SimCfg(select_tag='fixed_pt')``) through the bridge, live.
"""
import argparse
from pathlib import Path

import numpy as np
import torch
from lava.lib.dl import slayer
from slayer_files import run_blocks, write_netx, write_versions

SAMPLES, STEPS = 2, 16


def params(threshold, period, decay):
    return dict(threshold=threshold, period=period, decay=decay, requires_grad=False, shared_param=True)


def export(blocks, z, path: Path) -> None:
    """One pass on ``z`` (slayer's order, time last; a complex block takes the real input alone),
    then slayer's own export."""
    run_blocks(blocks, z)
    write_netx(blocks, path)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "tests" / "data" / "rf"))
    out = Path(ap.parse_args().out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(17)

    torch.manual_seed(7)
    rf = slayer.block.rf
    blocks = torch.nn.ModuleList([
        rf.Dense(params(0.5, 6, 0.05), 16, 12, weight_scale=4),
        rf.Dense(params(0.5, 9, 0.02), 12, 8, weight_scale=4),
    ])
    export(blocks, torch.as_tensor(rng.random((SAMPLES, 16, STEPS)) < 0.3, dtype=torch.float32), out / "rf.net")

    torch.manual_seed(11)
    rf_iz = slayer.block.rf_iz
    blocks = torch.nn.ModuleList([
        rf_iz.Dense(params(0.5, 5, 0.05), 16, 12, weight_scale=4),
        rf_iz.Dense(params(4.0, 12, 0.002), 12, 8, weight_scale=4),
    ])
    export(blocks, torch.as_tensor(rng.random((SAMPLES, 16, STEPS)) < 0.3, dtype=torch.float32), out / "rf_iz.net")

    write_versions(out)


if __name__ == "__main__":
    main()
