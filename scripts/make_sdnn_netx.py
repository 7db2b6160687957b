"""Write lava-dl slayer's own sigma-delta (SDNN) netx exports to tests/data/sdnn/, with lava-dl itself.

Runs in the Lava runtime (Python 3.10, lava-dl 0.6.0), not in the project's environment::

    spikeport lava python scripts/make_sdnn_netx.py [--out tests/data/sdnn]

(Not in tests/data/lava_dl: tests/test_fuzz_inputs.py mutates every CUBA file there and expects the
CUBA reader's refusals.)

The network is built from slayer's ``block.sigma_delta`` blocks (ReLU sigma-delta neurons, as
lava-dl's PilotNet SDNN is) with seeded weights, run once in training mode on a seeded float input
(which fixes slayer's shapes, as its networks need before export, and moves the mean-only batch
norm's running mean, so that the first dense layer exports a non-zero ``bias``), and exported block
by block with ``Block.export_hdf5``, as slayer's own networks do in their ``export_hdf5`` methods:

    sdnn_dense.net   Input (Delta encoder) -> Dense 16->12 (SDNN ReLU, batch-norm bias)
                     -> Dense 12->8 (SDNN ReLU) -> Dense 8->4 (SDNN ReLU)

tests/test_sdnn.py reads the file with ``export.netx.read_netx``, simulates it and runs it with
netx in Lava (``hdf5.Network``, ``Loihi2SimCfg(select_tag='fixed_pt')``) through the bridge, live.
"""
import argparse
import json
from pathlib import Path

import h5py
import numpy as np
import torch
import torch.nn.functional as Fn
from lava.lib.dl import slayer

SAMPLES, STEPS = 2, 16


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "tests" / "data" / "sdnn"))
    out = Path(ap.parse_args().out)
    out.mkdir(parents=True, exist_ok=True)

    torch.manual_seed(3)
    params = dict(threshold=0.1, tau_grad=0.5, scale_grad=1, requires_grad=False, shared_param=True,
                  activation=Fn.relu)
    blocks = torch.nn.ModuleList([
        slayer.block.sigma_delta.Input(params),
        slayer.block.sigma_delta.Dense({**params, "norm": slayer.neuron.norm.MeanOnlyBatchNorm}, 16, 12,
                                       weight_scale=2),
        slayer.block.sigma_delta.Dense(params, 12, 8, weight_scale=2),
        slayer.block.sigma_delta.Dense(params, 8, 4, weight_scale=2),
    ])
    rng = np.random.default_rng(13)
    z = torch.as_tensor(rng.random((SAMPLES, 16, STEPS)), dtype=torch.float32)  # (S, N, T), slayer's order
    blocks.train()
    with torch.no_grad():
        for b in blocks:
            z = b(z)
    path = out / "sdnn_dense.net"
    with h5py.File(path, "w") as f:
        layer = f.create_group("layer")
        for i, b in enumerate(blocks):
            b.export_hdf5(layer.create_group(f"{i}"))

    from importlib.metadata import version
    (out / "versions.json").write_text(json.dumps({n: version(n) for n in ("lava-dl", "lava-nc", "torch")}, indent=1))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
