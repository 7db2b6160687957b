"""Run a lava-dl netx HDF5 file in Lava ``fixed_pt``: the reference ``export.netx`` is tested against.

The run happens in the Lava runtime through the bridge (``targets/bridge.py``); the netx side is
``targets/lava_procs.run_netx``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from . import bridge


def run_netx(path, x, num_layers=None) -> np.ndarray:
    """Load ``path`` with ``lava.lib.dl.netx.hdf5.Network`` and run it in Lava ``fixed_pt`` on input
    spikes ``x`` ``(S, T, *input_shape)`` (our PyTorch order). Returns the output spikes
    ``(S, T, N)`` int8, flattened in ``(C, H, W)`` order. Samples run one after another, each from rest.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such netx file")
    x = np.asarray(x)
    if x.ndim < 3:
        raise ValueError(f"input must have shape (samples, T, *input_shape), got {x.shape}")
    params = {"path": str(path.resolve()), "num_layers": None if num_layers is None else int(num_layers)}
    _, out = bridge.call("netx", params, {"x": x})
    return out["output"]


def lavadl_optimize_weight_bits(ws: list) -> list:
    """lava-dl's own ``netx.utils.optimize_weight_bits`` on each weight matrix, run in the Lava runtime:
    ``[(weights, num_weight_bits, weight_exp), ...]`` (the reference ``export.netx`` ports)."""
    arrays = {f"w.{i}": np.asarray(w) for i, w in enumerate(ws)}
    _, out = bridge.call("netx_optimize_weight_bits", {"count": len(ws)}, arrays)
    return [(out[f"w.{i}"], int(out[f"bits.{i}"]), int(out[f"exp.{i}"])) for i in range(len(ws))]


def netx_dense_synapse(path) -> dict:
    """The first dense synapse netx builds from ``path`` (in the Lava runtime): ``weights``,
    ``num_weight_bits``, ``weight_exp``, ``sign_mode`` and ``effective`` (what Lava's bit-accurate
    Dense model makes of the weights after clipping and truncation)."""
    info, out = bridge.call("netx_dense_synapse", {"path": str(Path(path).resolve())})
    return dict(info, **out)
