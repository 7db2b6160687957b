"""Write the peer NIR fixtures in tests/data/peer_nir/ with snnTorch's and Norse's own NIR exporters.

Each network is built the way the library's documentation builds one (seeded random weights), exported
with the library's own function (``snntorch.export_nir.export_to_nir``, ``norse.torch.to_nir``) and
written with ``nir.write``; then the library itself runs the network on a fixed seeded 0/1 input. Per
network ``<name>`` this writes

    <name>.nir          the library's NIR graph (nir.write, uncompressed: smaller for tiny arrays)
    <name>_input.npy    uint8 (T, B, 20) input spikes, T = 30, B = 4
    <name>_output.npy   uint8 (T, B, 5) the library's own output spikes
    <name>.json         library versions, the dt its exporter assumes (read from its installed source),
                        the neuron settings and the spike rates

tests/test_nir_peers.py reads these files with export.nir and needs neither library. Regenerate with

    .venv/bin/pip install --no-deps snntorch norse nirtorch   # keeps the environment's torch/numpy
    .venv/bin/python scripts/make_peer_nir.py [--out tests/data/peer_nir]
"""
from __future__ import annotations

import argparse
import inspect
import json
import re
import warnings
from importlib.metadata import version
from pathlib import Path

import numpy as np
import torch
from torch import nn

T, B, N_IN, N_HID, N_OUT = 30, 4, 20, 16, 5
INPUT_RATE = 0.3


def spikes_in(seed: int) -> np.ndarray:
    return (np.random.default_rng(seed).random((T, B, N_IN)) < INPUT_RATE).astype(np.uint8)


def seeded_linears(seed: int, scale: float) -> tuple[nn.Linear, nn.Linear]:
    """nn.Linear(20, 16) and nn.Linear(16, 5) with PyTorch's default init from ``seed``, weights and
    biases scaled by ``scale`` so that the layers spike at a moderate rate."""
    torch.manual_seed(seed)
    fc1, fc2 = nn.Linear(N_IN, N_HID), nn.Linear(N_HID, N_OUT)
    with torch.no_grad():
        for fc in (fc1, fc2):
            fc.weight.mul_(scale)
            fc.bias.mul_(scale * 0.3)
    return fc1, fc2


def versions(*names) -> dict:
    return {n: version(n) for n in ("torch", "numpy", "nir", "nirtorch", *names)}


def save(out: Path, name: str, graph, x: np.ndarray, y: np.ndarray, info: dict) -> None:
    import nir

    x, y = x.astype(np.uint8), y.astype(np.uint8)
    nir.write(str(out / f"{name}.nir"), graph, compression=None)
    np.save(out / f"{name}_input.npy", x)
    np.save(out / f"{name}_output.npy", y)
    info = {**info, "input_shape": list(x.shape), "output_shape": list(y.shape),
            "input_rate": round(float(x.mean()), 4), "output_rate": round(float(y.mean()), 4)}
    (out / f"{name}.json").write_text(json.dumps(info, indent=1) + "\n")
    print(f"{name}: output rate {y.mean():.3f}, {(out / f'{name}.nir').stat().st_size} bytes")


# --- snnTorch -----------------------------------------------------------------------------------

def snntorch_dt() -> list[float]:
    """The dt values hard-coded in snnTorch's exporter (``dt = 1e-4`` per neuron type)."""
    from snntorch import export_nir

    src = inspect.getsource(export_nir._extract_snntorch_module)
    return sorted({float(v) for v in re.findall(r"\bdt\s*=\s*([0-9.eE+-]+)", src)})


def make_snntorch(out: Path) -> None:
    import snntorch as snn
    from snntorch import utils as snn_utils
    from snntorch.export_nir import export_to_nir

    dts = snntorch_dt()
    assert dts == [1e-4], f"snnTorch's exporter changed its dt: {dts}"

    def leaky(n, **kw):
        # beta and threshold per neuron: with a scalar threshold snnTorch 1.0 builds nir.LIF with a
        # 0-d v_threshold next to (n,) tau, which nir rejects ("All parameters must have the same
        # shape"); with scalar beta and threshold, export_to_nir's own infer_types() fails on the 0-d
        # LIF input type. Vectors are the form its exporter accepts.
        return snn.Leaky(beta=torch.full((n,), 0.8), threshold=torch.ones(n), reset_mechanism="zero",
                         init_hidden=True, **kw)

    def synaptic(n, **kw):
        return snn.Synaptic(alpha=torch.full((n,), 0.5), beta=torch.full((n,), 0.8), threshold=torch.ones(n),
                            reset_mechanism="zero", init_hidden=True, **kw)

    for name, cell, seed, scale in (("snntorch_leaky", leaky, 1, 4.0), ("snntorch_synaptic", synaptic, 2, 4.0)):
        fc1, fc2 = seeded_linears(seed, scale)
        net = nn.Sequential(fc1, cell(N_HID), fc2, cell(N_OUT, output=True))
        # batch dimension dropped from the input type as snnTorch's tutorials do (ignore_dims=[0])
        graph = export_to_nir(net, torch.zeros(1, N_IN), ignore_dims=[0])
        x = spikes_in(seed + 100)
        snn_utils.reset(net)
        ys = []
        with torch.no_grad():
            for t in range(T):
                ys.append(net(torch.from_numpy(x[t]).float())[0].numpy())
        y = np.stack(ys)
        save(out, name, graph, x, y, {
            "library": "snntorch", "versions": versions("snntorch"),
            "export": "snntorch.export_nir.export_to_nir(net, torch.zeros(1, 20), ignore_dims=[0])",
            "dt": 1e-4, "dt_found_in_source": dts,
            "dt_source": "snntorch/export_nir.py _extract_snntorch_module hard-codes dt = 1e-4 for Leaky, "
                         "Synaptic, RLeaky and RSynaptic (tau = dt/(1-beta), r = tau/dt, w_in = tau_syn/dt)",
            "neuron": ("snn.Leaky(beta=0.8, threshold=1, reset_mechanism='zero', init_hidden=True)"
                       if cell is leaky else
                       "snn.Synaptic(alpha=0.5, beta=0.8, threshold=1, reset_mechanism='zero', init_hidden=True)"),
            "weights": f"nn.Linear default init, torch.manual_seed({seed}), weight x {scale}, bias x {scale * 0.3}",
        })


# --- Norse --------------------------------------------------------------------------------------

def norse_dt() -> float:
    from norse.torch.utils import export_nir

    return float(inspect.signature(export_nir.to_nir).parameters["dt"].default)


def make_norse(out: Path) -> None:
    import norse.torch as nt

    dt = norse_dt()
    assert dt == 1e-3, f"Norse's to_nir changed its default dt: {dt}"

    def lifbox(n):
        return nt.LIFBoxCell(nt.LIFBoxParameters(tau_mem_inv=torch.tensor(200.0), v_th=torch.tensor(1.0),
                                                 v_reset=torch.tensor(0.0), v_leak=torch.tensor(0.0)), dt=dt)

    def lif(n):
        return nt.LIFCell(nt.LIFParameters(tau_syn_inv=torch.tensor(500.0), tau_mem_inv=torch.tensor(200.0),
                                           v_th=torch.tensor(1.0), v_reset=torch.tensor(0.0),
                                           v_leak=torch.tensor(0.0)), dt=dt)

    for name, cell, seed, scale in (("norse_lifbox", lifbox, 3, 50.0), ("norse_lif", lif, 4, 10.0)):
        fc1, fc2 = seeded_linears(seed, scale)
        net = nt.SequentialState(fc1, cell(N_HID), fc2, cell(N_OUT))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # nirtorch: extract_nir_graph is deprecated
            graph = nt.to_nir(net, torch.zeros(1, N_IN), dt=dt)  # sample with a batch of 1, as Norse's docs
        x = spikes_in(seed + 100)
        state, ys = None, []
        with torch.no_grad():
            for t in range(T):
                z, state = net(torch.from_numpy(x[t]).float(), state)
                ys.append(z.numpy())
        y = np.stack(ys)
        save(out, name, graph, x, y, {
            "library": "norse", "versions": versions("norse"),
            "export": "norse.torch.to_nir(net, torch.zeros(1, 20), dt=1e-3)",
            "dt": dt, "dt_found_in_source": [dt],
            "dt_source": "norse/torch/utils/export_nir.py: to_nir(..., dt=0.001) and the cells' dt=0.001; it "
                         "writes tau = dt / tau_mem_inv (= dt * tau, norse issue #411) and r = 1, w_in not set "
                         "(NIR default 1)",
            "neuron": ("LIFBoxCell(LIFBoxParameters(tau_mem_inv=200, v_th=1, v_reset=0, v_leak=0))"
                       if cell is lifbox else
                       "LIFCell(LIFParameters(tau_syn_inv=500, tau_mem_inv=200, v_th=1, v_reset=0, v_leak=0))"),
            "weights": f"nn.Linear default init, torch.manual_seed({seed}), weight x {scale}, bias x {scale * 0.3}",
        })


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent.parent / "tests" / "data" / "peer_nir"))
    ap.add_argument("--only", choices=("snntorch", "norse"), help="one library only")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.only in (None, "snntorch"):
        make_snntorch(out)
    if args.only in (None, "norse"):
        make_norse(out)


if __name__ == "__main__":
    main()
