"""Our NIR exports run by snnTorch, Norse and sinabs themselves: the fixtures in tests/data/peer_runs/.

Two steps, because each library lives in its own environment (sinabs 3.1.3 pins nir <= 1.0.4):

1. ``write`` (the project's venv): four small seeded networks of ours -- ``lif_mlp`` (20-16-5 STBP LIF,
   per-neuron thresholds, biases), ``cuba_mlp`` (20-16-5 CUBA, biases), ``lif_rnn`` (20-16R-5: a
   recurrent hidden layer) and ``lif_conv`` (2x8x8 input, 4C3p1, S2 sum pooling, 5; per-channel
   biases) -- are quantized and written with ``export.nir.write_nir`` in each flavor a library reads
   (``<net>.<flavor>.nir``; sinabs reads no CubaLIF and runs no recurrence), plus ``lif_mlp.nir.nir`` (the plain flavor, to record what the libraries make of it),
   the seeded 0/1 input ``<net>_input.npy`` (T, B, *shape), T = 30, B = 4, and ``nets.json`` (how to
   rebuild the networks: tests/test_nir_export_peers.py does, and checks the files are what
   ``write_nir`` writes today).
2. ``run --library L`` (L's venv): L's own NIR importer loads each file meant for it and runs it on the
   input: ``<net>.<flavor>.<L>.npy`` (T, B, n_out) uint8 output spikes (sinabs also
   ``...sinabs_single.npy``: its layers set to ``SingleSpike``/``MembraneReset``), and ``<L>.json``: the
   versions, how each file was loaded and run, and what the library said where it refused a file.
   The library runs import neither spikeport nor its numbers: only numpy, torch, nir and L.

Regenerate (venvs as in scripts/make_peer_nir.py: they borrow torch and numpy from .venv):

    .venv/bin/python scripts/make_peer_runs.py write
    .venv/bin/python scripts/make_peer_runs.py run --library snntorch
    /tmp/venv-norse/bin/python scripts/make_peer_runs.py run --library norse     # pip install --no-deps norse==1.1.0
    /tmp/venv-sinabs/bin/python scripts/make_peer_runs.py run --library sinabs   # sinabs==3.1.3 nir==1.0.4 nirtorch==1.0 pbr
"""
from __future__ import annotations

import argparse
import json
import traceback
from importlib.metadata import version
from pathlib import Path

import numpy as np
import torch

OUT = Path(__file__).resolve().parent.parent / "tests" / "data" / "peer_runs"
T, B, DT = 30, 4, 1e-3
# name: (spec, neuron settings, input shape, seed, flavors written)
NETS = {
    "lif_mlp": ("20-16-5", {"model": "lif", "decay": 0.8, "v_threshold": 0.5, "per_neuron": True}, (20,), 0,
                ("nir", "snntorch", "sinabs", "norse")),
    "cuba_mlp": ("20-16-5", {"model": "cuba", "decay_syn": 0.5, "decay_mem": 0.8, "v_threshold": 0.5}, (20,), 1,
                 ("snntorch", "norse")),
    "lif_rnn": ("20-16R-5", {"model": "lif", "decay": 0.8, "v_threshold": 0.5}, (20,), 3,
                ("snntorch", "norse")),
    "lif_conv": ("8x8x2-4C3p1-S2-5", {"model": "lif", "decay": 0.8, "v_threshold": 0.5}, (2, 8, 8), 4,
                 ("snntorch", "sinabs", "norse")),
}
LIBRARY_OF = {"snntorch": "snntorch", "sinabs": "sinabs", "norse": "norse"}


def build(name):
    """The seeded float network ``name`` (PyTorch default init from the seed; biases uniform in
    [-0.05, 0.1], per-neuron thresholds in [0.4, 0.6] where the layer has them, weights x 2)."""
    from spikeport.train.network import NeuronSpec, build_network

    spec, neuron, _, seed, _ = NETS[name]
    torch.manual_seed(seed)
    model = build_network(spec, NeuronSpec(**neuron)).eval()
    with torch.no_grad():
        for n in model.neuron_layers():
            n.bias.uniform_(-0.05, 0.1)
            if n.v_threshold.numel() > 1:
                n.v_threshold.uniform_(0.4, 0.6)
        for syn, *_ in model.blocks():
            if hasattr(syn, "weight"):
                syn.weight.mul_(2.0)
    return model


def spikes_in(name) -> np.ndarray:
    _, _, shape, seed, _ = NETS[name]
    return (np.random.default_rng(seed + 100).random((T, B, *shape)) < 0.3).astype(np.uint8)


def write(out: Path) -> None:
    from spikeport.export.qat import quantize_network
    from spikeport.export.nir import write_nir

    out.mkdir(parents=True, exist_ok=True)
    info = {}
    for name, (spec, neuron, shape, seed, flavors) in NETS.items():
        model = build(name)
        net, _ = quantize_network(model)
        notes = {fl: write_nir(out / f"{name}.{fl}.nir", model, net, DT, flavor=fl, compression=None)
                 for fl in flavors}
        np.save(out / f"{name}_input.npy", spikes_in(name))
        info[name] = {"spec": spec, "neuron": neuron, "input_shape": list(shape), "seed": seed, "flavors": list(flavors),
                      "dt": DT, "notes": notes}
        print(name, {fl: (out / f"{name}.{fl}.nir").stat().st_size for fl in flavors})
    (out / "nets.json").write_text(json.dumps({"T": T, "B": B, "nets": info}, indent=1) + "\n")


# --- the libraries' own runs (no spikeport here) ------------------------------------------------

def _steps(module, x, stateful):
    """Run a NIR-imported module step by step on x (T, B, ...): output spikes (T, B, n)."""
    state, ys = None, []
    with torch.no_grad():
        for t in range(x.shape[0]):
            out = module(torch.as_tensor(x[t], dtype=torch.float32), state) if stateful else \
                module(torch.as_tensor(x[t], dtype=torch.float32))
            if isinstance(out, tuple):
                out, state = out[0], out[1]
            ys.append(out.reshape(out.shape[0], -1).numpy())
    return np.stack(ys)


def run_snntorch(graph, x):
    from snntorch.import_nir import import_from_nir

    # import_from_nir builds init_hidden neurons and a nirtorch GraphExecutor that takes (input, state)
    return {"": _steps(import_from_nir(graph), x, stateful=True)}, \
        "snntorch.import_nir.import_from_nir(nir.read(path)); called per step as module(x[t], state)"


def run_norse(graph, x):
    import norse.torch as nt

    return {"": _steps(nt.from_nir(graph, dt=DT), x, stateful=True)}, \
        f"norse.torch.from_nir(nir.read(path), dt={DT}); called per step as module(x[t], state)"


def run_sinabs(graph, x):
    import sinabs.activation as sa
    import sinabs.layers as sl
    from sinabs.nir import from_nir

    module = from_nir(graph, batch_size=B)
    xb = torch.as_tensor(x.swapaxes(0, 1).reshape(B * x.shape[0], *x.shape[2:]), dtype=torch.float32)  # (B*T, ...)
    outs = {}
    for key, single in (("", False), ("_single", True)):
        for layer in module.modules():
            if isinstance(layer, sl.StatefulLayer):
                layer.reset_states()
                if single:
                    layer.spike_fn, layer.reset_fn = sa.SingleSpike, sa.MembraneReset()
        with torch.no_grad():
            y = module(xb)
        y = y[0] if isinstance(y, tuple) else y
        outs[key] = y.reshape(B, x.shape[0], -1).swapaxes(0, 1).numpy()
    return outs, ("sinabs.nir.from_nir(nir.read(path), batch_size=4) on (B*T, ...) input (Squeeze layers); "
                  "'_single': the same module with spike_fn=SingleSpike, reset_fn=MembraneReset() on every layer")


RUNNERS = {"snntorch": run_snntorch, "norse": run_norse, "sinabs": run_sinabs}


def run(out: Path, library: str) -> None:
    import warnings

    import nir

    warnings.simplefilter("ignore")
    nets = json.loads((out / "nets.json").read_text())["nets"]
    report = {"library": library, "versions": {n: version(n) for n in ("torch", "numpy", "nir", "nirtorch", library)},
              "files": {}}
    for name, info in nets.items():
        x = np.load(out / f"{name}_input.npy")
        for flavor in info["flavors"]:
            if flavor not in ("nir", library):
                continue
            path = out / f"{name}.{flavor}.nir"
            entry = {"file": path.name}
            try:
                outs, how = RUNNERS[library](nir.read(str(path)), x)
            except Exception as err:  # noqa: BLE001 - what the library says is the record
                entry["refused"] = f"{type(err).__name__}: {err}".strip().splitlines()[0][:300]
                entry["where"] = traceback.extract_tb(err.__traceback__)[-1].filename.split("site-packages/")[-1]
                print(name, flavor, "refused:", entry["refused"])
            else:
                entry["how"] = how
                for key, y in outs.items():
                    assert y.shape == (T, B, 5) and y.min() >= 0 and y.max() < 256, y.shape
                    np.save(out / f"{name}.{flavor}.{library}{key}.npy", y.astype(np.uint8))
                    entry[f"output{key}"] = f"{name}.{flavor}.{library}{key}.npy"
                    entry[f"output{key}_max"] = int(y.max())
                    print(name, flavor, library + key, "spikes", int(y.sum()))
            report["files"][f"{name}.{flavor}"] = entry
    (out / f"{library}.json").write_text(json.dumps(report, indent=1) + "\n")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("step", choices=("write", "run"))
    ap.add_argument("--library", choices=tuple(RUNNERS))
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args(argv)
    if args.step == "write":
        write(Path(args.out))
    elif args.library is None:
        ap.error("run needs --library")
    else:
        run(Path(args.out), args.library)


if __name__ == "__main__":
    main()
