"""What the scripts that write lava-dl slayer's own netx files share (run in the Lava runtime:
``spikeport lava python scripts/make_*.py``): a pass of the blocks, slayer's own block-by-block
``export_hdf5``, and the versions that wrote the files."""
import json
from importlib.metadata import version
from pathlib import Path

import h5py
import torch


def run_blocks(blocks, z, train: bool = False):
    """``z`` (slayer's order, time last) through the blocks without gradients; ``train``: in
    training mode (the statistics of a normalisation are updated, as in a training step)."""
    if train:
        blocks.train()
    with torch.no_grad():
        for b in blocks:
            z = b(z)
    return z


def write_netx(blocks, path: Path) -> None:
    """The blocks as one netx file, each written by slayer's own ``Block.export_hdf5``."""
    with h5py.File(path, "w") as f:
        layer = f.create_group("layer")
        for i, b in enumerate(blocks):
            b.export_hdf5(layer.create_group(f"{i}"))
    print(f"wrote {path}")


def write_versions(out: Path) -> None:
    """``versions.json``: lava-dl, lava-nc and torch as installed where the files were written."""
    (Path(out) / "versions.json").write_text(json.dumps({n: version(n) for n in ("lava-dl", "lava-nc", "torch")},
                                                        indent=1))
