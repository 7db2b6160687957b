"""Command line: ``spikeport train | evaluate | presets | export | simulate | deploy | validate | pipeline |
study | traffic | lava``."""
from __future__ import annotations

import argparse
from pathlib import Path
import json
import sys
import time

from spikeport import cliargs


def _cmd_train(args) -> int:
    from spikeport.train.config import make_config, parse_set
    from spikeport.train.trainer import CONFIG, train

    if args.resume and args.preset is None and args.config is None:
        # resume a run from its own saved configuration
        from pathlib import Path

        from spikeport.train.config import Config
        from spikeport.train.trainer import CHECKPOINT, read_checkpoint

        saved = Path(args.out) / CONFIG
        if saved.exists():
            try:
                cfg = Config.from_dict(json.loads(saved.read_text()))
            except ValueError as err:
                raise ValueError(f"--resume: {saved}: {err}") from None
        elif (Path(args.out) / CHECKPOINT).exists():  # killed between its first two writes
            cfg = Config.from_dict(read_checkpoint(Path(args.out) / CHECKPOINT)["config"])
        else:
            raise ValueError(f"--resume: {saved} not found; give --preset/--config to start a new run")
        cfg = cfg.with_overrides(parse_set(args.set))
    else:
        cfg = make_config(args.preset or "digits-mlp" if args.config is None else args.preset, args.config,
                          parse_set(args.set), args.data_dir)
    if args.device:
        cfg = cfg.with_overrides({"optim.device": args.device})
    from spikeport.export.quantize import attach_fake_quant
    from spikeport.pipeline import quant_spec

    metrics = train(cfg, args.out, resume=args.resume, overwrite=args.overwrite, progress=not args.no_progress,
                    fake_quant=lambda m: attach_fake_quant(m, quant_spec(cfg)))
    if metrics:
        print(f"test accuracy: {100 * metrics['test_accuracy']:.2f}% "
              f"({metrics['test_samples']} {cfg.data.dataset} test samples) -> {args.out}")
    return 0


def _cmd_evaluate(args) -> int:
    from spikeport.train.trainer import evaluate

    res = evaluate(args.run_dir, data_dir=args.data_dir, device=args.device or "auto",
                   progress=not args.no_progress)
    print(json.dumps(res) if args.json else
          f"test accuracy: {100 * res['accuracy']:.2f}%  loss {res['loss']:.4f}  ({res['samples']} samples)")
    return 0


def _cmd_export(args) -> int:
    from spikeport.pipeline import load_network
    from spikeport.sim.network import IntNetwork

    loaded = load_network(args.network, dt=args.dt)
    if args.format == "npz":
        loaded.net.save(args.out)
    elif args.format == "nir":
        from spikeport.export.nir import write_nir

        if loaded.model is None:  # any integer network: the floats its integers stand for, plus the record
            from spikeport.export.nir import write_nir_graph
            from spikeport.sim.graph import as_graph

            graph = as_graph(loaded.net)
            for note in write_nir_graph(args.out, graph, args.dt, flavor=args.nir_flavor):
                print(f"note: {note}")
            print(f"wrote {args.out}: {len(graph.groups())} neuron groups, {len(graph.projections())} projections")
            return 0
        if loaded.cfg is not None and loaded.cfg.quant.qat:
            from spikeport.export.quantize import attach_fake_quant
            from spikeport.pipeline import quant_spec

            attach_fake_quant(loaded.model, quant_spec(loaded.cfg))
        for note in write_nir(args.out, loaded.model, loaded.net, args.dt, flavor=args.nir_flavor):
            print(f"note: {note}")
    elif args.format == "netx":
        import dataclasses

        from spikeport.export.netx import write_netx
        from spikeport.export.quantize import NETX, quantize_network
        from spikeport.pipeline import quant_spec

        net = loaded.net
        if loaded.model is not None:  # requantize the run in the form netx can hold
            spec = dataclasses.replace(quant_spec(loaded.cfg), **NETX) if loaded.cfg else None
            net, report = quantize_network(loaded.model, spec)
            worst = max(r["weights"]["rel_error"] for r in report)
            print(f"quantized for netx (no weight exponent, bias_exp 6): worst weight error {worst:.4f}")
        write_netx(net, args.out)
    elif args.format == "onnx":
        from spikeport.export.onnx import write_onnx

        if write_onnx(loaded.net, args.out, timing=args.timing) == "graph":
            print("the network is not a plain chain: wrote the graph step model (export.onnx.graph_to_onnx)")
    else:
        raise ValueError(f"unknown format {args.format!r}")
    net = loaded.net
    if isinstance(net, IntNetwork):
        print(f"wrote {args.out}: {len(net.layers)} layers, input {net.input_shape}, {net.output_size} outputs")
    else:
        print(f"wrote {args.out}: {len(net.groups())} neuron groups, {len(net.projections())} projections")
    return 0


def _inputs(args, loaded):
    """(x, labels or None) from --input X.npy or --dataset/--samples."""
    from spikeport.pipeline import encode_split

    if args.input:
        return cliargs.load_input_spikes(args.input), None
    if not args.dataset and loaded.cfg is None:
        raise ValueError("give --input X.npy, or --dataset NAME (with --T for an exported network)")
    from spikeport.train.config import Config

    cfg = loaded.cfg or Config()
    over = {}
    if args.dataset:
        over["data.dataset"] = args.dataset
    if args.T:
        over["data.T"] = args.T
    return encode_split(cfg.with_overrides(over) if over else cfg, args.samples, args.data_dir)


def _report_outputs(args, out, labels, loaded, what: str = "simulator", seconds: float | None = None) -> None:
    """What a run produced: always one summary line (who ran, shape, spike count and rate, time),
    then the file written (--output) and the accuracy where the input had labels."""
    import numpy as np

    from spikeport.pipeline import accuracy

    spikes = int(np.count_nonzero(out))
    rate = spikes / out.size if out.size else 0.0
    took = f" in {seconds:.2f} s" if seconds is not None else ""
    hint = "" if args.output else "; --output FILE.npy saves them"
    print(f"{what}: output spikes {tuple(out.shape)} (samples, T, outputs){took}: {spikes} spikes, "
          f"{rate:.4f} per output and step{hint}")
    if args.output:
        np.save(args.output, out.astype(np.int8))
        print(f"wrote {args.output}: output spikes {out.shape}")
    if labels is not None:
        print(f"accuracy: {100 * accuracy(out, labels, loaded.cfg):.2f}% on {len(labels)} samples")


def _protocol(args, loaded) -> dict:
    """The deployment protocol from the command line (the same for simulate, deploy and traffic)."""
    kw = {"reset_interval": args.reset_interval, "reset_offset": args.reset_offset or 0}
    if args.input_bias:
        kw["input_bias"] = cliargs.load_input_spikes(args.input_bias)
        kw["steps"] = args.steps
    elif args.steps is not None:
        raise ValueError("--steps goes with --input-bias (with --input, T is the input's second dimension)")
    if args.reset_offset and args.reset_interval is None:
        raise ValueError("--reset-offset needs --reset-interval")
    return kw


def _run_inputs(args, loaded):
    """(x or None, labels or None): --input-bias alone drives the input neurons without spikes."""
    if args.input_bias and not args.input and not args.dataset:
        return None, None
    return _inputs(args, loaded)


def _record(args, res, graph) -> None:
    """--record DIR: spikes, u and v of every neuron group, one ``<group>.npz`` each."""
    import numpy as np

    rec = Path(args.record)
    rec.mkdir(parents=True, exist_ok=True)
    for name in graph.groups():
        np.savez_compressed(rec / f"{name}.npz", spikes=res.spikes[name], u=res.u[name], v=res.v[name])
    print(f"recorded spikes, u and v of {len(graph.groups())} neuron groups in {rec}")


def _cmd_simulate(args) -> int:
    from spikeport.pipeline import load_network
    from spikeport.sim.graph import as_graph
    from spikeport.sim.simulator import simulate

    loaded = load_network(args.network, dt=args.dt, convention=args.nir_convention)
    _print_notes(loaded)
    x, labels = _run_inputs(args, loaded)
    graph = as_graph(loaded.net)
    t0 = time.perf_counter()
    res = simulate(graph, x, timing=args.timing, record=bool(args.record), progress=not args.no_progress,
                   backend=args.backend, device=args.device, **_protocol(args, loaded))
    took = time.perf_counter() - t0
    if args.record:
        _record(args, res, graph)
    _report_outputs(args, res.output, labels, loaded, f"simulator ({args.backend}, {args.timing} timing)", took)
    return 0


def _cmd_deploy(args) -> int:
    from spikeport.pipeline import load_network
    from spikeport.sim.graph import as_graph

    if args.target != "lava":
        raise ValueError(f"unknown target {args.target!r}; available: lava")
    from spikeport.targets.lava import run_lava

    loaded = load_network(args.network, dt=args.dt, convention=args.nir_convention)
    _print_notes(loaded)
    x, labels = _run_inputs(args, loaded)
    graph = as_graph(loaded.net)
    t0 = time.perf_counter()
    res = run_lava(graph, x, record=bool(args.record), progress=not args.no_progress, **_protocol(args, loaded))
    took = time.perf_counter() - t0
    if args.record:
        _record(args, res, graph)
    _report_outputs(args, res.output, labels, loaded, "Lava fixed_pt", took)
    return 0


def _print_notes(loaded) -> None:
    for note in (loaded.notes or []):
        print(f"note: {note}", file=sys.stderr)


def _cmd_validate(args) -> int:
    from pathlib import Path

    from spikeport.pipeline import format_validation, validate, write_json

    protocol = None
    if args.input or args.input_bias or args.reset_interval is not None:
        protocol = _protocol(args, None)
        if args.input:
            protocol["x"] = cliargs.load_input_spikes(args.input)
    res = validate(args.run_dir, samples=args.samples, lava_samples=args.lava_samples, data_dir=args.data_dir,
                   progress=not args.no_progress, protocol=protocol)
    print(format_validation(res))
    write_json(Path(args.run_dir) / "validation.json", res)
    return 0


def _cmd_pipeline(args) -> int:
    from spikeport.train.config import parse_set

    from spikeport.pipeline import run_pipeline

    over = parse_set(args.set)
    if not args.no_qat:
        over.setdefault("quant.qat", True)
    run_pipeline(args.preset, args.out, over, lava_samples=args.lava_samples, dt=args.dt,
                 progress=not args.no_progress)
    return 0


def _add_input_args(p) -> None:
    cliargs.add_network_args(p)
    p.add_argument("--input", type=cliargs.input_file,
                   help="input spikes .npy of shape (samples, T, *input_shape), 0/1")
    p.add_argument("--output", type=cliargs.output_npy,
                   help="write output spikes (samples, T, n_out) int8 to this .npy")
    p.add_argument("--dataset", help="encode this dataset's test split instead of --input")
    p.add_argument("--samples", type=cliargs.positive_int, help="number of dataset samples (default: all)")
    p.add_argument("--T", type=cliargs.positive_int, help="time steps per sample for --dataset (default: the run's)")
    p.add_argument("--data-dir", help="dataset folder")
    cliargs.add_protocol_args(p)
    p.add_argument("--record", type=cliargs.output_dir,
                   help="write spikes, u and v of every neuron group to DIR/<group>.npz")
    p.add_argument("--no-progress", action="store_true")


def _cmd_lava(args) -> int:
    """``spikeport lava setup | status | python``: the managed Lava runtime (targets/lava_env.py)."""
    import subprocess

    from spikeport.targets import lava_env

    try:
        if args.lava_command == "setup":
            py = lava_env.setup(force=args.force, python=args.python)
            print(f"Lava runtime: {py}")
        elif args.lava_command == "status":
            info = lava_env.status()
            if args.json:
                print(json.dumps(info, indent=1))
            else:
                print(f"runtime    {info['runtime']}")
                print(f"ready      {'yes' if info['ready'] else 'no'}")
                for k, v in info.get("versions", {}).items():
                    print(f"{k:10s} {v}")
                if not info["ready"]:
                    found = info.get("python3.10_found")
                    print(info.get("error") or (f"run `spikeport lava setup` (Python 3.10 found: {found})" if found
                                                else lava_env.HOW_TO_GET_310))
            return 0 if info["ready"] else 1
        else:  # python: run the runtime's interpreter (regeneration scripts that need lava-dl itself)
            return subprocess.call([str(lava_env.ensure()), *args.args])
    except lava_env.LavaRuntimeMissing as err:
        print(f"spikeport lava: error: {err}", file=sys.stderr)
        return 2
    return 0


def _cmd_presets(args) -> int:
    from spikeport.train.config import PRESETS

    for name, p in PRESETS.items():
        d = p["data"]
        print(f"{name:12s} {p['network']:32s} {d['dataset']:8s} T={d['T']:<3d} "
              f"{p['neuron']['model']:5s} {p['loss']['name']}")
    return 0


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line (the option and what is wrong), exit code 2; subcommands inherit it."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="spikeport", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a spiking network with STBP")
    t.add_argument("--preset", help="named configuration (see `spikeport presets`); default digits-mlp")
    t.add_argument("--config", help="YAML or TOML configuration file (applied over the preset)")
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override one field, e.g. --set optim.lr=0.01 (repeatable)")
    t.add_argument("--data-dir", help="folder with the dataset's files")
    t.add_argument("--out", required=True, type=cliargs.output_dir, help="run directory (config, checkpoint, metrics)")
    again = t.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true", help="continue from the run directory's checkpoint")
    again.add_argument("--overwrite", action="store_true",
                       help="replace the run in --out (its config, checkpoint and metrics; other files stay)")
    t.add_argument("--device", type=cliargs.device, help="cpu, cuda, cuda:N (default: auto)")
    t.add_argument("--no-progress", action="store_true", help="no progress bars")
    t.set_defaults(func=_cmd_train)

    e = sub.add_parser("evaluate", help="test accuracy of a trained run")
    e.add_argument("run_dir")
    e.add_argument("--data-dir", help="dataset folder, if it moved since training")
    e.add_argument("--device", type=cliargs.device)
    e.add_argument("--json", action="store_true", help="print the result as JSON")
    e.add_argument("--no-progress", action="store_true")
    e.set_defaults(func=_cmd_evaluate)

    s = sub.add_parser("presets", help="list the named configurations")
    s.set_defaults(func=_cmd_presets)

    x = sub.add_parser("export", help="quantize a trained run and write the network")
    x.add_argument("network", help="training run directory (npz/onnx also take a .nir or .npz network)")
    x.add_argument("--format", default="nir", choices=["nir", "npz", "onnx", "netx"],
                   help="nir: NIR graph with the integer network in its metadata (default); "
                        "npz: spikeport's integer network record; onnx: one integer time step with state I/O; "
                        "netx: lava-dl's HDF5 (requantized without weight exponent)")
    x.add_argument("--timing", default="hardware", choices=["hardware", "ideal"],
                   help="onnx only: synaptic delay per layer as Lava (hardware) or none (ideal)")
    x.add_argument("--dt", type=cliargs.positive_float, default=1e-3,
                   help="seconds per time step written to NIR (default 1e-3)")
    x.add_argument("--nir-flavor", default="nir", choices=["nir", "snntorch", "sinabs", "norse"],
                   help="nir: NIR's equations with the bias as v_leak (default); snntorch, sinabs, norse: the form "
                        "that library's NIR import runs as the float model (bias in the Affine, its dt or tau "
                        "units; what is lost is printed); the integer network is in the metadata either way")
    x.add_argument("--out", required=True, type=cliargs.output_file)
    x.set_defaults(func=_cmd_export)

    m = sub.add_parser("simulate", help="run the integer network in the bit-accurate simulator")
    _add_input_args(m)
    m.add_argument("--timing", default="hardware", choices=["hardware", "ideal"],
                   help="hardware: Lava's one-step delay per synaptic layer (default); ideal: no delays")
    m.add_argument("--backend", default="numpy", choices=["numpy", "torch"],
                   help="numpy (default) or torch (the same integer arithmetic on torch tensors, e.g. on a GPU)")
    m.add_argument("--device", help="torch backend: device such as cpu or cuda:0 (default: cuda when available)")
    m.set_defaults(func=_cmd_simulate)

    d = sub.add_parser("deploy", help="run the integer network on a target (Lava fixed_pt)")
    _add_input_args(d)
    d.add_argument("--target", default="lava")
    d.set_defaults(func=_cmd_deploy)

    pl = sub.add_parser("pipeline", help="train (QAT), export NIR, simulate, run on Lava, validate: the whole path")
    pl.add_argument("--preset", default="digits-mlp")
    pl.add_argument("--out", default="runs/digits-mlp", type=cliargs.output_dir)
    pl.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    pl.add_argument("--no-qat", action="store_true", help="train in float and quantize after training")
    pl.add_argument("--lava-samples", type=cliargs.positive_int, default=100,
                    help="test samples run in Lava (slow: ~1 ms/step)")
    pl.add_argument("--dt", type=cliargs.positive_float, default=1e-3, help="seconds per step written to the NIR file")
    pl.add_argument("--no-progress", action="store_true")
    pl.set_defaults(func=_cmd_pipeline)

    v = sub.add_parser("validate", help="float vs fake-quantized vs integer vs Lava on the test split",
                       description="With --input, --input-bias or --reset-interval, also compares simulator and "
                                   "Lava on every neuron group's spikes under that deployment protocol.")
    v.add_argument("run_dir")
    v.add_argument("--samples", type=cliargs.positive_int, help="test samples (default: all)")
    v.add_argument("--lava-samples", type=cliargs.positive_int, help="samples run in Lava (default: as --samples)")
    v.add_argument("--data-dir")
    v.add_argument("--input", type=cliargs.input_file,
                   help="also compare simulator and Lava on these inputs (samples, T, *input_shape) under the "
                        "protocol options")
    cliargs.add_protocol_args(v)
    v.add_argument("--no-progress", action="store_true")
    v.set_defaults(func=_cmd_validate)

    lv = sub.add_parser("lava", help="the managed Lava runtime (Python 3.10, lava-nc 0.10, lava-dl 0.6)")
    lsub = lv.add_subparsers(dest="lava_command", required=True)
    ls = lsub.add_parser("setup", help="create the Lava runtime (once; downloads lava-nc, lava-dl, torch 2.3)")
    ls.add_argument("--force", action="store_true", help="rebuild it even if it is current")
    ls.add_argument("--python", help="the Python 3.10 interpreter to build it from (default: found)")
    lst = lsub.add_parser("status", help="where the runtime is and what it holds")
    lst.add_argument("--json", action="store_true")
    lp = lsub.add_parser("python", help="run the runtime's Python (e.g. scripts/make_lavadl_netx.py)")
    lp.add_argument("args", nargs=argparse.REMAINDER)
    lv.set_defaults(func=_cmd_lava)

    from spikeport.study import add_study_parser
    from spikeport.traffic import add_traffic_parser

    add_traffic_parser(sub)
    add_study_parser(sub)
    return p


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:2] == ["lava", "python"] and argv[2:3] not in (["-h"], ["--help"]):
        # everything after `lava python` belongs to that interpreter (argparse would take its options)
        return _cmd_lava(argparse.Namespace(lava_command="python", args=argv[2:]))
    args = build_parser().parse_args(argv)
    prog = f"spikeport {args.command}"
    try:
        return args.func(args)
    except ValueError as err:  # bad input (a file, field or value): one clear line, no traceback
        print(f"{prog}: error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    except OSError as err:
        if err.filename is None:  # not about a file the user named: treat as a bug below
            return _report_bug(prog)
        print(f"{prog}: error: {err.filename}: {err.strerror or err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except Exception:
        return _report_bug(prog)


def _report_bug(prog: str) -> int:
    """A failure no input check explains: the traceback, and where to report it."""
    import traceback

    traceback.print_exc()
    print(f"{prog}: internal error: this is a bug in spikeport, not in your input; please report it with the "
          "command line and the traceback above", file=sys.stderr)
    return 1
