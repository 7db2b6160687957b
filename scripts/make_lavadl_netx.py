"""Write lava-dl slayer's own netx exports to tests/data/lava_dl/, with lava-dl itself.

Runs in the Lava runtime (Python 3.10, lava-dl 0.6.0), not in the project's environment::

    spikeport lava python scripts/make_lavadl_netx.py [--out tests/data/lava_dl]

Each network is built from slayer's CUBA blocks with seeded weights, run from a fresh state on a
fixed, seeded spike input (which also fixes slayer's shapes, as its networks need before export)
and exported block by block with ``Block.export_hdf5``, as slayer's own networks do in their
``export_hdf5`` methods. Next to each ``NAME.net`` goes ``NAME.npz``: ``x`` the input spikes
``(S, T, *input_shape)`` (our order) and ``y`` slayer's own float output spikes ``(S, T, N)`` on it
(``delay_shift`` on: every block, the input block included, delays its output by one step, so
slayer's ``y[:, t + 1]`` is netx's output at step ``t``). tests/test_netx.py reads the files with
``export.netx.read_netx``, runs them with netx in Lava through the bridge, and states the agreement
with ``y``.

    slayer_dense.net      Input (pass-through: vThMant 0, iDecay 4096) -> Dense 20->12 -> Dense 12->6
    slayer_conv.net       Input (integrating) -> Conv 2->4 3x3 pad 1 -> Flatten -> Dense 144->10 -> Dense 10->5
    slayer_recurrent.net  Input (integrating) -> Recurrent 16->24 (cuba.Recurrent: dense_rec) -> Dense 24->6
"""
import argparse
from pathlib import Path

import numpy as np
import torch
from lava.lib.dl import slayer
from slayer_files import run_blocks, write_netx, write_versions

PARAMS = dict(threshold=0.5, current_decay=0.25, voltage_decay=0.03)
SAMPLES, STEPS = 4, 24


def export(blocks, in_shape, rate, seed, path):
    """Run ``blocks`` from a fresh state on seeded spikes, save input and output, export the file."""
    rng = np.random.default_rng(seed)
    x = (rng.random((SAMPLES, STEPS, *in_shape)) < rate).astype(np.int8)   # (S, T, *shape), ours
    z = torch.as_tensor(np.moveaxis(x, 1, -1), dtype=torch.float32)       # (S, *shape, T), slayer's
    z = run_blocks(blocks, z)
    y = np.moveaxis(z.reshape(SAMPLES, -1, STEPS).numpy(), -1, 1)          # (S, T, N)
    np.savez_compressed(path.with_suffix(".npz"), x=x, y=(y > 0).astype(np.int8))
    write_netx(blocks, path)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "tests" / "data" / "lava_dl"))
    out = Path(ap.parse_args().out)
    out.mkdir(parents=True, exist_ok=True)

    torch.manual_seed(0)
    export(torch.nn.ModuleList([
        slayer.block.cuba.Input(dict(threshold=0.0, current_decay=1.0, voltage_decay=0.5)),
        slayer.block.cuba.Dense(PARAMS, 20, 12, weight_scale=4),
        slayer.block.cuba.Dense(PARAMS, 12, 6, weight_scale=4),
    ]), (20,), 0.5, 10, out / "slayer_dense.net")

    torch.manual_seed(1)
    export(torch.nn.ModuleList([
        slayer.block.cuba.Input(dict(threshold=0.1, current_decay=0.5, voltage_decay=0.1)),
        slayer.block.cuba.Conv(PARAMS, 2, 4, 3, padding=1, stride=1, weight_scale=3),
        slayer.block.cuba.Flatten(),
        slayer.block.cuba.Dense(PARAMS, 4 * 6 * 6, 10, weight_scale=3),
        slayer.block.cuba.Dense(PARAMS, 10, 5, weight_scale=3),
    ]), (2, 6, 6), 0.6, 11, out / "slayer_conv.net")

    torch.manual_seed(2)
    export(torch.nn.ModuleList([
        slayer.block.cuba.Input(dict(threshold=0.1, current_decay=0.5, voltage_decay=0.1)),
        slayer.block.cuba.Recurrent(PARAMS, 16, 24, weight_scale=3),
        slayer.block.cuba.Dense(PARAMS, 24, 6, weight_scale=3),
    ]), (16,), 0.5, 12, out / "slayer_recurrent.net")

    write_versions(out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
