"""The Lava runtime's side of the bridge (``targets/bridge.py`` documents the protocol).

Run by the bridge as ``<lava-runtime python> -I lava_worker.py REQUEST_DIR``, on Python 3.10 with
numpy < 2 and Lava. It must stay importable there: standard library and numpy only at top level;
``spikeport.sim`` and ``spikeport.targets`` are mounted from the directories the request names
(the project's environment is never put on ``sys.path``: its numpy 2 would not load here).
"""
import importlib.util
import json
import os
import signal
import sys
import traceback
import types
from pathlib import Path

PROTOCOL = 1


def mount(packages: dict) -> None:
    """Make ``spikeport.<name>`` importable from explicit directories, without ``spikeport``'s
    own ``__init__`` or anything else of the project's environment."""
    top = types.ModuleType("spikeport")
    top.__path__ = []
    sys.modules["spikeport"] = top
    for name, directory in packages.items():
        spec = importlib.util.spec_from_file_location(name, str(Path(directory) / "__init__.py"),
                                                      submodule_search_locations=[directory])
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        setattr(top, name.rpartition(".")[2], module)


def _write_response(d: Path, response: dict, outputs: dict | None = None) -> None:
    """``outputs.npz`` then ``response.json``, each written whole and renamed into place (the
    bridge reads the response only once the worker has gone)."""
    import numpy as np

    with open(d / "outputs.npz.part", "wb") as f:
        np.savez(f, **(outputs or {}))
    os.replace(d / "outputs.npz.part", d / "outputs.npz")
    (d / "response.json.part").write_text(json.dumps(response))
    os.replace(d / "response.json.part", d / "response.json")


def fail_fast(d: Path) -> None:
    """Make an exception inside a Lava process model end the call at once, with its traceback.

    Lava 0.10 runs each process model in a forked process. When a model's command handler raises,
    ``AbstractPyProcessModel.run`` (lava/magma/core/model/py/model.py 228-231) sends ERROR to the
    runtime service and then joins its ports before re-raising; the join waits on peers that wait on
    it, so the run hangs with nothing printed (seen with a model raising at step 3 of 10). Here each
    handler is wrapped, in the worker before Lava forks (so every model process inherits it): the
    first exception writes the error response and kills the worker's process session, which the
    bridge started for this call alone; the bridge then reads the response as usual.
    """
    from lava.magma.core.model.py.model import AbstractPyProcessModel

    original_start = AbstractPyProcessModel.start
    if getattr(original_start, "_spikeport_fail_fast", False):
        return

    def reporting(handler, model: str):
        def run_handler():
            try:
                return handler()
            except BaseException as err:  # noqa: BLE001 - reported, then the session ends
                _write_response(d, {"protocol": PROTOCOL, "ok": False, "error_type": type(err).__name__,
                                    "error": f"{err} (raised in Lava's process model {model})",
                                    "traceback": traceback.format_exc()})
                os.killpg(os.getpgrp(), signal.SIGKILL)
                raise
        return run_handler

    def start(self):
        model = type(self).__name__
        self._cmd_handlers = {cmd: reporting(h, model) for cmd, h in self._cmd_handlers.items()}
        return original_start(self)

    start._spikeport_fail_fast = True
    AbstractPyProcessModel.start = start


def _result_arrays(res) -> dict:
    out = {"output": res.output}
    for key in ("spikes", "u", "v"):
        for i, arr in enumerate(getattr(res, key) or []):
            out[f"{key}.{i}"] = arr
    return out


def op_graph(d: Path, params: dict, arrays: dict):
    from spikeport.sim.graph import load_record
    from spikeport.targets import lava_procs

    graph = load_record(d / "network.npz")
    xs = {k[2:]: v for k, v in arrays.items() if k.startswith("x.")}
    out, timing = lava_procs.run_graph(graph, xs, int(params["steps"]), arrays.get("input_bias"),
                                       params.get("reset_interval"), int(params.get("reset_offset", 0)),
                                       bool(params.get("record")), bool(params.get("progress")))
    return {"timing": timing}, out


def op_float(d: Path, params: dict, arrays: dict):
    from spikeport.targets import lava_procs

    specs = []
    for i, spec in enumerate(params["specs"]):
        spec = dict(spec, weight=arrays[f"spec.{i}.weight"], bias=arrays[f"spec.{i}.bias"])
        specs.append(spec)
    res = lava_procs.run_float(tuple(params["in_shape"]), specs, arrays["x"], record=bool(params.get("record")),
                               progress=bool(params.get("progress")))
    return {}, _result_arrays(res)


def op_netx(d: Path, params: dict, arrays: dict):
    from spikeport.targets import lava_procs

    out = lava_procs.run_netx(params["path"], arrays.get("x"), int(params["steps"]), arrays.get("input_bias"),
                              params.get("reset_interval"), int(params.get("reset_offset", 0)),
                              bool(params.get("record")))
    return {"blocks": sum(1 for k in out if k.startswith("v."))}, out


def op_netx_optimize_weight_bits(d: Path, params: dict, arrays: dict):
    import numpy as np

    from spikeport.targets import lava_procs

    res = lava_procs.netx_optimize_weight_bits([arrays[f"w.{i}"] for i in range(int(params["count"]))])
    out = {}
    for i, (w, bits, exp) in enumerate(res):
        out[f"w.{i}"], out[f"bits.{i}"], out[f"exp.{i}"] = w, np.array(bits), np.array(exp)
    return {}, out


def op_netx_dense_synapse(d: Path, params: dict, arrays: dict):
    from spikeport.targets import lava_procs

    res = lava_procs.netx_dense_synapse(params["path"])
    return ({k: res[k] for k in ("num_weight_bits", "weight_exp", "sign_mode")},
            {"weights": res["weights"], "effective": res["effective"]})


def op_versions(d: Path, params: dict, arrays: dict):
    import importlib.metadata as md

    info = {"python": sys.version.split()[0]}
    for name in ("lava-nc", "lava-dl", "numpy", "torch"):
        info[name] = md.version(name)
    return info, {}


OPS = {"graph": op_graph, "float": op_float, "netx": op_netx, "versions": op_versions,
       "netx_optimize_weight_bits": op_netx_optimize_weight_bits, "netx_dense_synapse": op_netx_dense_synapse}


def main(argv) -> int:
    import numpy as np

    d = Path(argv[1])
    response = {"protocol": PROTOCOL, "ok": False}
    outputs = {}
    try:
        request = json.loads((d / "request.json").read_text())
        if request.get("protocol") != PROTOCOL:
            raise RuntimeError(f"request speaks protocol {request.get('protocol')!r}, this worker {PROTOCOL}")
        op = OPS.get(request.get("op"))
        if op is None:
            raise RuntimeError(f"unknown op {request.get('op')!r} (known: {', '.join(OPS)})")
        mount(request["packages"])
        fail_fast(d)
        with np.load(d / "inputs.npz", allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
        info, outputs = op(d, request.get("params", {}), arrays)
        response.update(ok=True, info=info)
    except Exception as err:  # noqa: BLE001 - every failure goes back to the caller, typed
        response.update(error_type=type(err).__name__, error=str(err), traceback=traceback.format_exc())
    _write_response(d, response, outputs)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
