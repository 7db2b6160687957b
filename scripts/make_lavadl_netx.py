"""Write lava-dl slayer's own netx exports to tests/data/lava_dl/, with lava-dl itself.

Runs in the Lava runtime (Python 3.10, lava-dl 0.6.0), not in the project's environment::

    spikeport lava python scripts/make_lavadl_netx.py [--out tests/data/lava_dl]

Each network is built from slayer's CUBA blocks with seeded weights, run once on zeros (slayer fixes
its shapes on the first call) and exported block by block with ``Block.export_hdf5``, as slayer's
own networks do in their ``export_hdf5`` methods. tests/test_netx.py reads these files with
``export.netx.read_netx`` and runs them with netx in Lava through the bridge.

    slayer_dense.net   Input (pass-through: vThMant 0, iDecay 4096) -> Dense 20->12 -> Dense 12->6
    slayer_conv.net    Input (integrating) -> Conv 2->4 3x3 pad 1 -> Flatten -> Dense 144->10 -> Dense 10->5
"""
import argparse
import json
from pathlib import Path

import h5py
import torch
from lava.lib.dl import slayer

PARAMS = dict(threshold=0.5, current_decay=0.25, voltage_decay=0.03)


def export(blocks, x, path):
    with torch.no_grad():
        for b in blocks:
            x = b(x)
    with h5py.File(path, "w") as f:
        layer = f.create_group("layer")
        for i, b in enumerate(blocks):
            b.export_hdf5(layer.create_group(f"{i}"))


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
    ]), torch.zeros(1, 20, 4), out / "slayer_dense.net")

    torch.manual_seed(1)
    export(torch.nn.ModuleList([
        slayer.block.cuba.Input(dict(threshold=0.1, current_decay=0.5, voltage_decay=0.1)),
        slayer.block.cuba.Conv(PARAMS, 2, 4, 3, padding=1, stride=1, weight_scale=3),
        slayer.block.cuba.Flatten(),
        slayer.block.cuba.Dense(PARAMS, 4 * 6 * 6, 10, weight_scale=3),
        slayer.block.cuba.Dense(PARAMS, 10, 5, weight_scale=3),
    ]), torch.zeros(1, 2, 6, 6, 4), out / "slayer_conv.net")

    from importlib.metadata import version
    (out / "versions.json").write_text(json.dumps({n: version(n) for n in ("lava-dl", "lava-nc", "torch")}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
