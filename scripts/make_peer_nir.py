"""Write the peer NIR fixtures in tests/data/peer_nir/ with snnTorch's, Norse's and sinabs' own NIR exporters.

Each network is built the way the library's documentation builds one (seeded random weights), exported
with the library's own function (``snntorch.export_nir.export_to_nir``, ``norse.torch.to_nir``,
``sinabs.nir.to_nir``) and written with ``nir.write``; then the library itself runs the network on a
fixed seeded 0/1 input. Per network ``<name>`` this writes

    <name>.nir          the library's NIR graph (nir.write, uncompressed: smaller for tiny arrays)
    <name>_input.npy    uint8 (T, B, *input_shape) input spikes
    <name>_output.npy   uint8 (T, B, n_out) the library's own output (spike counts for sinabs' MultiSpike)
    <name>.json         library versions, the dt its exporter assumes (read from its installed source),
                        the neuron settings and the spike rates

The networks: feed-forward ``Leaky`` and ``Synaptic`` (snnTorch) and ``LIFBoxCell``, ``LIFCell`` (Norse),
20-16-5 on (T, B) = (30, 4); recurrent ``RLeaky`` (reset to zero, without and with snnTorch's default
reset by subtraction) and ``RSynaptic`` (snnTorch), 20-16(recurrent)-5; a snnTorch CNN (Conv2d, AvgPool2d,
Leaky twice, Flatten, Linear, Leaky) and a sinabs CNN in the NIR paper's style (Conv2d, IF, SumPool2d
into Conv2d, IF, SumPool2d, Flatten, Linear, IF) on 2x8x8 inputs, (T, B) = (20, 4). The sinabs network
is also run with ``SingleSpike`` and ``MembraneReset`` (``sinabs_cnn_output_single.npy``): one spike per
step and reset to zero, the semantics of the file's IF and of Loihi.

tests/test_nir_peers.py and tests/test_nir_peer_graphs.py read these files with export.nir and need
none of the libraries. Regenerate with

    .venv/bin/pip install --no-deps snntorch norse nirtorch   # keeps the environment's torch/numpy
    .venv/bin/python scripts/make_peer_nir.py --only snntorch norse snntorch-graphs

sinabs 3.1.3 pins nir <= 1.0.4 (and its exporter needs nirtorch 1.0's extract_nir_graph, whose 2.x
form passes nir 1.0.5's type_check), so it runs in a venv of its own that borrows torch and numpy:

    python3.12 -m venv /tmp/venv-sinabs
    echo $PWD/.venv/lib/python3.12/site-packages > /tmp/venv-sinabs/lib/python3.12/site-packages/zz.pth
    /tmp/venv-sinabs/bin/pip install --no-deps sinabs==3.1.3 nir==1.0.4 nirtorch==1.0 pbr
    /tmp/venv-sinabs/bin/python scripts/make_peer_nir.py --only sinabs
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
REC_SCALE = 2.0      # recurrent weights x 2: the recurrence changes the spikes
SINABS_SCALE = 2.0   # IF neurons without leak on sparse input: spiking at a moderate rate


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
    # nir >= 1.0.5 compresses by default (larger for tiny arrays); nir 1.0.4 (sinabs' pin) never does
    plain = {"compression": None} if "compression" in inspect.signature(nir.write).parameters else {}
    nir.write(str(out / f"{name}.nir"), graph, **plain)
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


# --- graphs: snnTorch recurrent and convolutional networks, a sinabs CNN ------------------------------

T_CNN, IN_CNN = 20, (2, 8, 8)


def cnn_spikes_in(seed: int, rate: float = 0.3) -> np.ndarray:
    return (np.random.default_rng(seed).random((T_CNN, B, *IN_CNN)) < rate).astype(np.uint8)


def run_steps(net, x: np.ndarray) -> np.ndarray:
    """Step an ``init_hidden`` snnTorch network through ``x`` (T, B, ...): its output spikes (T, B, n)."""
    from snntorch import utils as snn_utils

    snn_utils.reset(net)
    with torch.no_grad():
        return np.stack([net(torch.from_numpy(x[t]).float())[0].numpy() for t in range(x.shape[0])])


def make_snntorch_graphs(out: Path) -> None:
    import snntorch as snn
    from snntorch.export_nir import export_to_nir

    dts = snntorch_dt()
    assert dts == [1e-4], f"snnTorch's exporter changed its dt: {dts}"
    common = {"library": "snntorch", "versions": versions("snntorch"), "dt": 1e-4, "dt_found_in_source": dts,
              "dt_source": "snntorch/export_nir.py _extract_snntorch_module hard-codes dt = 1e-4 for Leaky, "
                           "Synaptic, RLeaky and RSynaptic (tau = dt/(1-beta), r = tau/dt, w_in = tau_syn/dt)"}

    def vec(shape, value):
        return torch.full(shape if isinstance(shape, tuple) else (shape,), value)

    # recurrent: fc1 -> R-neuron (its own nn.Linear(16, 16) with bias, the previous step's spikes) -> fc2 -> neuron
    recurrent = {
        "snntorch_rleaky": (
            11, "RLeaky(beta=0.8, threshold=1, linear_features=16, reset_mechanism='zero', reset_delay=False)",
            lambda: snn.RLeaky(beta=vec(N_HID, 0.8), threshold=vec(N_HID, 1.0), linear_features=N_HID,
                               reset_mechanism="zero", reset_delay=False, init_hidden=True),
            lambda: snn.Leaky(beta=vec(N_OUT, 0.8), threshold=vec(N_OUT, 1.0), reset_mechanism="zero",
                              init_hidden=True, output=True)),
        "snntorch_rleaky_subtract": (
            12, "RLeaky(beta=0.8, threshold=1, linear_features=16) with snnTorch's default reset: subtract, "
                "reset_delay=True; output Leaky(beta=0.8, threshold=1) likewise",
            lambda: snn.RLeaky(beta=vec(N_HID, 0.8), threshold=vec(N_HID, 1.0), linear_features=N_HID,
                               init_hidden=True),
            lambda: snn.Leaky(beta=vec(N_OUT, 0.8), threshold=vec(N_OUT, 1.0), init_hidden=True, output=True)),
        # RSynaptic(reset_delay=False) fails with init_hidden=True in snnTorch 1.0 (its forward divides the
        # `spk` argument, None); the default reset_delay=True is the form that runs
        "snntorch_rsynaptic": (
            13, "RSynaptic(alpha=0.5, beta=0.8, threshold=1, linear_features=16, reset_mechanism='zero'); "
                "output Synaptic(alpha=0.5, beta=0.8, threshold=1, reset_mechanism='zero')",
            lambda: snn.RSynaptic(alpha=vec(N_HID, 0.5), beta=vec(N_HID, 0.8), threshold=vec(N_HID, 1.0),
                                  linear_features=N_HID, reset_mechanism="zero", init_hidden=True),
            lambda: snn.Synaptic(alpha=vec(N_OUT, 0.5), beta=vec(N_OUT, 0.8), threshold=vec(N_OUT, 1.0),
                                 reset_mechanism="zero", init_hidden=True, output=True)),
    }
    for name, (seed, neuron, hidden, output) in recurrent.items():
        fc1, fc2 = seeded_linears(seed, 4.0)
        rec = hidden()
        with torch.no_grad():
            rec.recurrent.weight.mul_(REC_SCALE)
            rec.recurrent.bias.mul_(REC_SCALE * 0.3)
        net = nn.Sequential(fc1, rec, fc2, output())
        graph = export_to_nir(net, torch.zeros(1, N_IN), ignore_dims=[0])
        x = spikes_in(seed + 100)
        save(out, name, graph, x, run_steps(net, x), {
            **common, "export": "snntorch.export_nir.export_to_nir(net, torch.zeros(1, 20), ignore_dims=[0])",
            "neuron": neuron,
            "weights": f"nn.Linear default init, torch.manual_seed({seed}), fc weights x 4, biases x 1.2; the "
                       f"recurrent nn.Linear(16, 16) weight x {REC_SCALE}, bias x {REC_SCALE * 0.3}",
        })

    # convolutional: snnTorch has no SumPool2d in its exporter; AvgPool2d after each convolution
    seed = 14
    torch.manual_seed(seed)
    c1, c2, fc = nn.Conv2d(2, 4, 3, padding=1), nn.Conv2d(4, 8, 3, padding=1), nn.Linear(32, N_OUT)
    with torch.no_grad():
        for m, g in ((c1, 6.0), (c2, 6.0), (fc, 4.0)):
            m.weight.mul_(g)
            m.bias.mul_(g * 0.3)

    def leaky(shape, **kw):
        return snn.Leaky(beta=vec(shape, 0.8), threshold=vec(shape, 1.0), reset_mechanism="zero", init_hidden=True,
                         **kw)

    net = nn.Sequential(c1, nn.AvgPool2d(2), leaky((4, 4, 4)), c2, nn.AvgPool2d(2), leaky((8, 2, 2)), nn.Flatten(),
                        fc, leaky(N_OUT, output=True))
    graph = export_to_nir(net, torch.zeros(1, *IN_CNN), ignore_dims=[0])
    x = cnn_spikes_in(seed + 100)
    save(out, "snntorch_conv", graph, x, run_steps(net, x), {
        **common, "export": "snntorch.export_nir.export_to_nir(net, torch.zeros(1, 2, 8, 8), ignore_dims=[0])",
        "network": "Conv2d(2, 4, 3, padding=1), AvgPool2d(2), Leaky, Conv2d(4, 8, 3, padding=1), AvgPool2d(2), "
                   "Leaky, Flatten, Linear(32, 5), Leaky",
        "neuron": "snn.Leaky(beta=0.8, threshold=1, reset_mechanism='zero', init_hidden=True), per-neuron tensors",
        "weights": f"PyTorch default init, torch.manual_seed({seed}), conv weights x 6 (biases x 1.8), linear x 4 "
                   "(bias x 1.2)",
    })


def make_sinabs(out: Path) -> None:
    import sinabs.activation as sa
    import sinabs.layers as sl
    from sinabs.nir import to_nir as sinabs_to_nir

    seed = 15
    torch.manual_seed(seed)

    def cnn(**iaf):
        return nn.Sequential(
            nn.Conv2d(2, 4, 3, padding=1, bias=False), sl.IAFSqueeze(batch_size=B, **iaf), sl.SumPool2d(2),
            nn.Conv2d(4, 8, 3, padding=1, bias=False), sl.IAFSqueeze(batch_size=B, **iaf), sl.SumPool2d(2),
            nn.Flatten(), nn.Linear(32, N_OUT, bias=False), sl.IAFSqueeze(batch_size=B, **iaf))

    net = cnn()
    with torch.no_grad():  # the weights only: IAF's spike_threshold is a parameter too
        for m in net:
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                m.weight.mul_(SINABS_SCALE)
    single = cnn(spike_fn=sa.SingleSpike, reset_fn=sa.MembraneReset())
    single.load_state_dict(net.state_dict())
    x = cnn_spikes_in(seed + 100)
    xb = torch.from_numpy(x.transpose(1, 0, 2, 3, 4).reshape(B * T_CNN, *IN_CNN)).float()  # (B*T, C, H, W)

    def run(m):
        for layer in m:
            if isinstance(layer, sl.IAFSqueeze):
                layer.reset_states()
        with torch.no_grad():
            return m(xb).reshape(B, T_CNN, N_OUT).transpose(0, 1).numpy()  # (T, B, n)

    y, y_single = run(net), run(single)
    assert y.max() < 256
    with torch.no_grad():
        graph = sinabs_to_nir(net, xb)
    # sinabs leaves Conv2d.input_shape None, which nir.write cannot store: infer it (nir's own pass)
    graph.infer_types()
    np.save(out / "sinabs_cnn_output_single.npy", y_single.astype(np.uint8))
    import sinabs

    save(out, "sinabs_cnn", graph, x, y, {
        "library": "sinabs", "versions": {**versions("sinabs"), "sinabs": sinabs.__version__},
        "export": "sinabs.nir.to_nir(net, x) (nirtorch 1.0 extract_nir_graph, ignore_dims=[0]); then "
                  "graph.infer_types() to fill Conv2d.input_shape, which sinabs leaves None",
        "dt": None, "dt_found_in_source": [],
        "dt_source": "sinabs' IF has no time constant: the file needs no dt",
        "network": "Conv2d(2, 4, 3, padding=1), IAF, SumPool2d(2), Conv2d(4, 8, 3, padding=1), IAF, SumPool2d(2), "
                   "Flatten, Linear(32, 5), IAF (IAFSqueeze, no biases)",
        "neuron": "sinabs.layers.IAFSqueeze(batch_size=4) defaults: spike_threshold=1, spike_fn=MultiSpike "
                  "(several spikes per step), reset_fn=MembraneSubtract(), min_v_mem=None",
        "output_single": "sinabs_cnn_output_single.npy: the same network with spike_fn=SingleSpike, "
                         "reset_fn=MembraneReset() (one spike per step, reset to zero)",
        "output_single_rate": round(float(y_single.mean()), 4), "output_max_count": int(y.max()),
        "weights": f"PyTorch default init, torch.manual_seed({seed}), every weight x {SINABS_SCALE}",
    })


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent.parent / "tests" / "data" / "peer_nir"))
    ap.add_argument("--only", nargs="+", choices=tuple(MAKERS), default=tuple(MAKERS),
                    help="these sets only (sinabs needs its own venv: see the module docstring)")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for key in args.only:
        MAKERS[key](out)


MAKERS = {"snntorch": make_snntorch, "norse": make_norse, "snntorch-graphs": make_snntorch_graphs,
          "sinabs": make_sinabs}

if __name__ == "__main__":
    main()
