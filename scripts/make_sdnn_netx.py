"""Write lava-dl slayer's own sigma-delta (SDNN) netx exports to tests/data/sdnn/, with lava-dl itself.

Runs in the Lava runtime (Python 3.10, lava-dl 0.6.0), not in the project's environment::

    spikeport lava python scripts/make_sdnn_netx.py [--out tests/data/sdnn]

(Not in tests/data/lava_dl: tests/test_fuzz_inputs.py mutates every CUBA file there and expects the
CUBA reader's refusals.)

Each network is built from slayer's ``block.sigma_delta`` blocks (ReLU sigma-delta neurons, as
lava-dl's PilotNet SDNN is) with seeded weights, run once in training mode on a seeded float input
(which fixes slayer's shapes, as its networks need before export, and moves the mean-only batch
norms' running means, so that the layers with a norm export a non-zero ``bias``), and exported block
by block with ``Block.export_hdf5``, as slayer's own networks do in their ``export_hdf5`` methods:

    sdnn_dense.net   Input (Delta encoder) -> Dense 16->12 (SDNN ReLU, batch-norm bias)
                     -> Dense 12->8 (SDNN ReLU) -> Dense 8->4 (SDNN ReLU)
    sdnn_conv.net    a small PilotNet SDNN (lava-dl's tutorials/lava/lib/dl/slayer/pilotnet/train.ipynb:
                     its blocks and parameters, fewer and smaller layers): Input (Delta encoder,
                     (3, 16, 16)) -> Conv 3->8, 3x3, stride 2 (SDNN ReLU, batch-norm bias per
                     channel, (8, 7, 7)) -> Conv 8->6, 3x3, padding (1, 0), stride (2, 1) (as its
                     third conv; (6, 4, 5)) -> Flatten -> Dense 120->16 (SDNN ReLU, batch norm)
                     -> Output 16->2 (Sigma accumulator)

tests/test_sdnn.py reads the files with ``export.netx.read_netx``, simulates it and runs it with
netx in Lava (``hdf5.Network``, ``Loihi2SimCfg(select_tag='fixed_pt')``) through the bridge, live.
"""
import argparse
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as Fn
from lava.lib.dl import slayer
from slayer_files import run_blocks, write_netx, write_versions

SAMPLES, STEPS = 2, 16


# lava-dl's PilotNet SDNN tutorial's neuron parameters (sdnn_params, sdnn_cnn_params), gradients off
PARAMS = dict(threshold=0.1, tau_grad=0.5, scale_grad=1, requires_grad=False, shared_param=True, activation=Fn.relu)
NORM = {**PARAMS, "norm": slayer.neuron.norm.MeanOnlyBatchNorm}


def export(blocks, z, path: Path) -> None:
    """One training-mode pass on ``z`` (slayer's order, time last), then slayer's own export."""
    run_blocks(blocks, z, train=True)
    write_netx(blocks, path)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "tests" / "data" / "sdnn"))
    out = Path(ap.parse_args().out)
    out.mkdir(parents=True, exist_ok=True)
    sd = slayer.block.sigma_delta

    torch.manual_seed(3)
    blocks = torch.nn.ModuleList([
        sd.Input(PARAMS),
        sd.Dense(NORM, 16, 12, weight_scale=2),
        sd.Dense(PARAMS, 12, 8, weight_scale=2),
        sd.Dense(PARAMS, 8, 4, weight_scale=2),
    ])
    rng = np.random.default_rng(13)
    export(blocks, torch.as_tensor(rng.random((SAMPLES, 16, STEPS)), dtype=torch.float32),  # (S, N, T)
           out / "sdnn_dense.net")

    # PilotNet SDNN's block sequence (train.ipynb's Network: Input, Conv with stride, Flatten, Dense, Output)
    torch.manual_seed(5)
    blocks = torch.nn.ModuleList([
        sd.Input(PARAMS),
        sd.Conv(NORM, 3, 8, 3, padding=0, stride=2, weight_scale=2, weight_norm=True),
        sd.Conv(NORM, 8, 6, 3, padding=(1, 0), stride=(2, 1), weight_scale=2, weight_norm=True),
        sd.Flatten(),
        sd.Dense(NORM, 6 * 4 * 5, 16, weight_scale=2, weight_norm=True),
        sd.Output(PARAMS, 16, 2, weight_scale=2, weight_norm=True),
    ])
    export(blocks, torch.as_tensor(rng.random((SAMPLES, 3, 16, 16, STEPS)), dtype=torch.float32),  # (S, C, H, W, T)
           out / "sdnn_conv.net")

    write_versions(out)


if __name__ == "__main__":
    main()
