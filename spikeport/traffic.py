"""``spikeport traffic``: map an integer network onto chip cores and report its spike traffic.

``run_traffic`` runs the bit-accurate simulator with recording, places the network with
``sim.chip.map_network``, counts the traffic of the recorded spikes with ``sim.chip.count_traffic``
(policies in that module's docstring) and writes into ``out_dir``:

- ``summary.json``: ``Traffic.summary()`` plus the input description and the files written;
- ``per_step.csv``: one row per time step, means per inference;
- ``cores.txt``: the per-core table in the columns of Intel's Loihi 2 compiler (``Mapping.table``);
- ``occupancy.png``, ``traffic.png``, ``spikes_per_layer.png``, ``raster.png``;
- ``report.md``: the profile with every number's source, the input, the mapping, the totals,
  NeuroBench's metrics (``sim.metrics``; also the ``neurobench`` block of ``summary.json``) and
  the plots;
- ``report.html``: the same report as one self-contained page, plots embedded (``report_html``).

Sigma-delta (SDNN) graphs are mapped and counted like CUBA ones: their nonzero int32 payloads are
the messages, charged as binary spikes (``sim.chip.GRADED_CHARGE``, printed in the report) and
counted apart as graded messages. NeuroBench's metrics are computed for CUBA graphs only
(``sim.metrics`` reads CUBA registers); for a graph with sigma-delta groups the ``neurobench``
block says why it is missing.

Plots are drawn on ``matplotlib.figure.Figure`` objects (Agg rendering, no pyplot global state).
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from spikeport import cliargs
from spikeport.report_html import write_html
from spikeport.sim.chip import COEFFICIENT_UNITS, STRUCTURE, Traffic, count_traffic, load_profile, map_network
from spikeport.sim.metrics import neurobench_metrics
from spikeport.sim.graph import SigmaDelta, as_graph
from spikeport.sim.simulator import TIMINGS, prepare_inputs, simulate

PLOTS = {"occupancy": "occupancy.png", "traffic": "traffic.png", "spikes": "spikes_per_layer.png",
         "raster": "raster.png"}
RASTER_NEURONS = 16  # most active neurons shown per population in the raster


def run_traffic(net, x, profile, out_dir, timing: str = "hardware", description: str | None = None,
                **protocol) -> dict:
    """Simulate ``net`` on ``x``, map it on ``profile``, count traffic and write the report files.

    Parameters
    ----------
    net : IntGraph or IntNetwork
        Any integer graph (merges, recurrence, inputs with neurons) or a chain.
    x : array or dict or None
        ``(S, T, *input_shape)`` 0/1 spikes or graded payloads per input (``simulate``'s ``x``);
        None when ``input_bias`` alone drives the input neurons.
    profile : ChipProfile or str
        A profile, a built-in name (``loihi1``, ``loihi2``) or a profile JSON path.
    out_dir : path
        Created if missing; existing files of the same names are replaced.
    timing : str
        Simulator timing, ``hardware`` (Lava's one-step delay per layer) or ``ideal``.
    description : str, optional
        What the input is (dataset, encoder, samples), printed in the report.
    protocol
        ``input_bias``, ``steps``, ``reset_interval``, ``reset_offset``: as ``simulate``.

    Returns
    -------
    dict
        The summary written to ``summary.json`` (with the per-core table in ``mapping.table`` and
        as text in ``cores.txt``).
    """
    if timing not in TIMINGS:
        raise ValueError(f"timing must be one of {TIMINGS}, got {timing!r}")
    profile = load_profile(profile)
    graph = as_graph(net)
    mapping = map_network(graph, profile)
    rec = simulate(graph, x, timing=timing, record=True, **protocol)
    xs, _, _ = prepare_inputs(graph, x, protocol.get("input_bias"), protocol.get("steps"),
                              protocol.get("reset_interval"), protocol.get("reset_offset", 0))
    traffic = count_traffic(graph, mapping, rec.spikes, {n: xs[n] for n in mapping.hosts})
    shape = list(next(iter(xs.values())).shape) if xs else list(rec.output.shape[:2])
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary = traffic.summary()
    summary["input"].update(description=description or f"input of shape {shape}", timing=timing,
                            protocol={k: v for k, v in protocol.items() if k != "input_bias"}
                            | {"input_bias": protocol.get("input_bias") is not None})
    sdnn = [n for n in graph.groups() if isinstance(graph.neurons(n), SigmaDelta)]
    if sdnn:  # sim.metrics counts CUBA registers (footprint, u and v state): not computed, and said so
        summary["neurobench"] = {"skipped": f"NeuroBench metrics are computed for CUBA groups only (sim.metrics); "
                                            f"this graph has sigma-delta groups {sdnn}"}
    else:
        summary["neurobench"] = neurobench_metrics(graph, rec, x).summary()
    summary["files"] = ["summary.json", "per_step.csv", "cores.txt", "report.md", "report.html", *PLOTS.values()]
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out / "cores.txt").write_text(mapping.table() + "\n")
    rows = traffic.per_step_rows()
    with open(out / "per_step.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    _plot_occupancy(traffic, out / PLOTS["occupancy"])
    _plot_traffic(traffic, out / PLOTS["traffic"])
    _plot_spikes(traffic, out / PLOTS["spikes"])
    _plot_raster(traffic.labels, [xs[n] if n in mapping.hosts else rec.spikes[n] for n in traffic.labels],
                 out / PLOTS["raster"])
    report = _report(summary)
    (out / "report.md").write_text(report)
    write_html(report, out, summary)
    return summary


# --- plots -------------------------------------------------------------------------------------

def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _mesh_grid(traffic: Traffic, values: np.ndarray, host_value: float | None) -> np.ndarray:
    """Per-location values on the global mesh ``(rows, 1 + chips * cols)``, host column first; NaN where unused."""
    m = traffic.mapping
    cols, rows = m.profile.mesh
    grid = np.full((rows, 1 + m.n_chips * cols), np.nan)
    X, Y = m.locations()
    grid[Y[:-1], X[:-1] + 1] = values[:-1]
    if host_value is not None:
        grid[0, 0] = host_value
    return grid


def _mesh_axes(ax, traffic: Traffic) -> None:
    """Grey unused nodes, cell edges, chip boundaries and labels on a ``_mesh_grid`` image."""
    cols, rows = traffic.mapping.profile.mesh
    chips = traffic.mapping.n_chips
    ax.set_facecolor("0.92")
    ax.set_xticks(np.arange(chips * cols + 1) + 0.5, minor=True)
    ax.set_yticks(np.arange(rows) + 0.5, minor=True)
    ax.grid(which="minor", color="white", lw=0.5)
    ax.tick_params(which="minor", length=0)
    for k in range(chips + 1):
        ax.axvline(0.5 + k * cols, color="black", lw=1.5)
    ax.set_xticks([0] + [1 + k * cols + (cols - 1) / 2 for k in range(chips)],
                  ["host"] + [f"chip {k}" for k in range(chips)])
    ax.set_yticks(np.arange(rows))
    ax.set_ylabel("y")


def _plot_occupancy(traffic: Traffic, path: Path) -> None:
    m = traffic.mapping
    used = np.array([c.neurons for c in m.cores] + [0]) / m.profile.neurons_per_core
    grid = _mesh_grid(traffic, used, None)
    fig = _figure(max(6.5, 0.5 * grid.shape[1] + 2), max(3.0, 0.5 * grid.shape[0] + 1.5))
    ax = fig.add_subplot()
    im = ax.imshow(grid, cmap="viridis", vmin=0, vmax=1, origin="upper")
    if grid.size <= 512:
        for c in m.cores:
            ax.text(c.chip * m.profile.mesh[0] + c.x + 1, c.y, f"{c.index}\nL{','.join(map(str, c.layers))}",
                    ha="center", va="center", fontsize=6, color="white")
    _mesh_axes(ax, traffic)
    ax.set_title(f"{m.profile.name}: {m.n_cores} cores on {m.n_chips} chip(s); fraction of "
                 f"{m.profile.neurons_per_core} neurons used (label: core, layers)", fontsize=8)
    fig.colorbar(im, ax=ax, label="neurons used / neurons per core")
    fig.savefig(path, dpi=120)


def _plot_traffic(traffic: Traffic, path: Path) -> None:
    S, m = traffic.samples, traffic.mapping
    received = traffic.core_messages_in.sum(0) / S
    sent_by_host = traffic.core_messages_out[:, m.host].sum() / S
    grid = _mesh_grid(traffic, received, 0.0)
    fig = _figure(max(6.5, 0.5 * grid.shape[1] + 2.5), max(3.0, 0.5 * grid.shape[0] + 1.5))
    ax = fig.add_subplot()
    im = ax.imshow(grid, cmap="magma", origin="upper")
    ax.text(0, 0, "host", ha="center", va="center", fontsize=6, color="cyan")
    loads = {d: v.sum(0) / S for d, v in traffic.links.items()}
    peak = max((float(v.max()) for v in loads.values() if v.size), default=0.0)
    offset = {"+x": (0, -0.12), "-x": (0, 0.12), "+y": (0.12, 0), "-y": (-0.12, 0)}
    step = {"+x": (1, 0), "-x": (1, 0), "+y": (0, 1), "-y": (0, 1)}
    for d, v in loads.items():
        for y, xx in zip(*np.nonzero(v)):
            (ox, oy), (sx, sy) = offset[d], step[d]
            ax.plot([xx + ox, xx + sx + ox], [y + oy, y + sy + oy], color="tab:cyan", alpha=0.8,
                    lw=0.5 + 3.5 * float(v[y, xx]) / peak)
    _mesh_axes(ax, traffic)
    ax.set_title(f"messages received per core per inference (host sends {sent_by_host:.1f});\n"
                 f"lines: directed link loads, width up to {peak:.1f} messages per inference", fontsize=8)
    fig.colorbar(im, ax=ax, label="messages received per inference")
    fig.savefig(path, dpi=120)


def _plot_spikes(traffic: Traffic, path: Path) -> None:
    fig = _figure(6, 3.5)
    ax = fig.add_subplot()
    for i, label in enumerate(traffic.labels):
        ax.plot(np.arange(traffic.steps), traffic.spikes[:, i] / traffic.samples, marker=".", label=label)
    what = "spikes and graded messages" if any(traffic.graded) else "spikes"  # sigma-delta payloads count when nonzero
    ax.set_xlabel("time step")
    ax.set_ylabel(f"{what} per inference")
    ax.set_title(f"{what} per layer over time (mean over samples)", fontsize=9)
    ax.legend(fontsize=7)
    fig.savefig(path, dpi=120)


def _plot_raster(labels: tuple, spikes: list, path: Path) -> None:
    """Sample 0: the ``RASTER_NEURONS`` most active neurons of every population, stacked."""
    fig = _figure(6, 4.5)
    ax = fig.add_subplot()
    row, ticks = 0, []
    for label, s in zip(labels, spikes):
        s0 = np.asarray(s[0])  # (T, N)
        chosen = np.sort(np.argsort(-s0.sum(0), kind="stable")[:RASTER_NEURONS])
        t, k = np.nonzero(s0[:, chosen])
        ax.scatter(t, row + k, s=6, marker="|")
        ticks.append((row + (len(chosen) - 1) / 2, label))
        row += len(chosen)
        ax.axhline(row - 0.5, color="gray", lw=0.5)
    ax.set_yticks([p for p, _ in ticks], [lab for _, lab in ticks])
    ax.set_xlabel("time step")
    ax.set_title(f"raster, sample 0: up to {RASTER_NEURONS} most active neurons per layer", fontsize=9)
    fig.savefig(path, dpi=120)


# --- report ------------------------------------------------------------------------------------

def _cell(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _report(summary: dict) -> str:
    prof, inp, mapping, per = summary["profile"], summary["input"], summary["mapping"], summary["per_inference"]
    lines = [f"# Spike traffic on {prof['name']}", "", prof["description"], "",
             "## Input", "", f"- {inp['description']}",
             f"- {inp['samples']} samples x {inp['steps']} steps, input shape {inp['shape']} "
             f"({inp['neurons']} neurons), simulator timing `{inp['timing']}`", "",
             "## Chip profile", "", "| parameter | value | source |", "|---|---|---|"]
    for key in STRUCTURE:
        e = prof["structure"][key]
        lines.append(f"| {key} | {_cell(e['value'])} | {_cell(e['source'])} |")
    lines += ["", "### Coefficients", "", "| coefficient | value | unit | source |", "|---|---|---|---|"]
    for key in COEFFICIENT_UNITS:
        e = prof["coefficients"][key]
        lines.append(f"| {key} | {e['value']} | {e['unit']} | {_cell(e['source'])} |")
    lines += [""] + [f"- {n}" for n in prof["notes"]]
    lines += ["", "## Mapping", "",
              f"{mapping['cores_used']} cores on {mapping['chips_used']} chip(s) "
              f"(capacity {mapping['core_capacity']} cores).", "",
              "| layer | kind | shape | neurons | fan-in | bits/neuron | cores |", "|---|---|---|---|---|---|---|"]
    for p in mapping["layers"]:
        lines.append(f"| {p['label']} | {p['kind']} | {p['shape']} | {p['neurons']} | {p['fan_in']} | "
                     f"{p['memory_bits_per_neuron']} | {_cores(p['cores'])} |")
    lines += ["", "Policy:", ""] + [f"- {t}" for t in mapping["policy"]]
    lines += ["", "![core occupancy](occupancy.png)", "",
              "## Traffic per inference", "", "| quantity | per inference |", "|---|---|"]
    for key in ("spikes", "messages", "synaptic_ops", "neuron_updates", "hops", "chip_crossings",
                "graded_messages", "graded_synaptic_ops"):
        lines.append(f"| {key.replace('_', ' ')} | {per[key]:.6g} |")
    for key, value in per["energy_pj"].items():
        lines.append(f"| energy: {key.replace('_', ' ')} (pJ) | {value:.6g} |")
    lines += [f"| latency (ns) | {per['latency_ns']:.6g} |",
              f"| latency per step, mean / max (ns) | {per['latency_per_step_ns']['mean']:.6g} / "
              f"{per['latency_per_step_ns']['max']:.6g} |", "",
              "| layer | neurons | spikes or payloads | firing rate | messages sent | payload bits | synaptic ops | "
              "cores |", "|---|---|---|---|---|---|---|---|"]
    for p in summary["layers"]:
        lines.append(f"| {p['label']} | {p['neuron_kind'] or 'host'} | {p['spikes']:.6g} | {p['firing_rate']:.4f} | "
                     f"{p['messages']:.6g} | {p['payload_bits']}{' (graded)' if p['graded'] else ''} | "
                     f"{p['synaptic_ops']:.6g} | {_cores(p['cores'])} |")
    graded = summary["graded_payloads"]
    if graded["populations"]:
        lines += ["", f"Graded payloads from {', '.join(graded['populations'])}: {graded['basis']}."]
    link = summary["busiest_link"]
    lines += ["", "Busiest link: " + (f"{link['from']} -> {link['to']} ({link['direction']}), "
                                      f"{link['messages_per_inference']:.6g} messages per inference"
                                      if link else "none (no messages)"),
              "", "Counting policy:", ""] + [f"- {t}" for t in summary["traffic_policy"]]
    lines += ["", "![traffic over the mesh](traffic.png)", "", "![spikes per layer](spikes_per_layer.png)", "",
              "![raster](raster.png)", ""]
    if "skipped" in summary.get("neurobench", {}):
        lines += ["## NeuroBench metrics", "", summary["neurobench"]["skipped"] + ".", ""]
    elif "neurobench" in summary:
        lines += _report_neurobench(summary["neurobench"])
    lines += ["Per-step counts: `per_step.csv`; everything above: `summary.json`.", ""]
    return "\n".join(lines)


def _report_neurobench(nb: dict) -> list:
    """The NeuroBench section of ``report.md``: totals, then per operator and per group."""
    ops = nb["synaptic_operations"]
    lines = ["## NeuroBench metrics", "", f"As {nb['definitions']}, on the recorded run ({nb['samples']} samples x "
             f"{nb['steps']} steps); per sample where a count.", "", "| metric | value |", "|---|---|",
             f"| footprint, Loihi integer formats (bytes) | {nb['footprint_bytes']} |",
             f"| footprint, float32 mirror (bytes) | {nb['float32_footprint_bytes']} |",
             f"| neuron state u, v (bytes, not in the footprint) | {nb['state_bytes']} |",
             f"| parameters (synaptic weights) | {nb['parameter_count']} |",
             f"| connection sparsity | {nb['connection_sparsity']:.4f} |",
             f"| activation sparsity | {nb['activation_sparsity']:.4f} |",
             f"| synaptic operations, dense | {ops['Dense']:.6g} |",
             f"| synaptic operations, effective ACs | {ops['Effective_ACs']:.6g} |",
             f"| synaptic operations, effective MACs | {ops['Effective_MACs']:.6g} |",
             f"| membrane updates | {nb['membrane_updates']:.6g} |", "",
             "| operator | kind | reads | weights | connection sparsity | dense | effective ACs | effective MACs |",
             "|---|---|---|---|---|---|---|---|"]
    for o in nb["operators"]:
        reads = _cell(o["source"]) + (" (recurrent)" if o["recurrent"] else "")
        lines.append(f"| {_cell(o['name'])} | {o['kind']} | {reads} | {o['weights']} | {o['connection_sparsity']:.4f} | "
                     f"{o['dense']:.6g} | "
                     f"{o['effective_acs']:.6g} | {o['effective_macs']:.6g} |")
    lines += ["", "| group | neurons | spikes | activation sparsity | membrane updates |", "|---|---|---|---|---|"]
    for g in nb["groups"]:
        lines.append(f"| {_cell(g['name'])} | {g['neurons']} | {g['spikes']:.6g} | {g['activation_sparsity']:.4f} | "
                     f"{g['membrane_updates']:.6g} |")
    return lines + [""] + [f"- {_cell(t)}" for t in nb["notes"]] + [""]


def _cores(cores: list) -> str:
    if len(cores) > 8:
        return f"{cores[0]}..{cores[-1]} ({len(cores)})"
    return ", ".join(map(str, cores))


# --- command line ------------------------------------------------------------------------------

def _cmd_traffic(args) -> int:
    from spikeport.cli import _print_notes, _protocol
    from spikeport.pipeline import encode_split, load_network

    loaded = load_network(args.network, dt=args.dt, convention=args.nir_convention)
    _print_notes(loaded)
    protocol = _protocol(args, loaded)
    if args.input:
        x = cliargs.load_input_spikes(args.input)
        description = f"{args.input}: input of shape {list(x.shape)}"
    elif args.dataset:
        from spikeport.train.config import Config

        cfg = loaded.cfg or Config()
        overrides = {"data.dataset": args.dataset} | ({"data.T": args.T} if args.T else {})
        cfg = cfg.with_overrides(overrides)
        x, _ = encode_split(cfg, args.samples, args.data_dir)
        description = (f"{args.dataset} test split: first {x.shape[0]} samples, T = {x.shape[1]}, "
                       f"encoder {cfg.data.encoder}")
    elif args.input_bias:
        x, description = None, f"{args.input_bias}: input bias, {args.steps} steps per sample"
    else:
        raise ValueError("give --input, --dataset or --input-bias")
    summary = run_traffic(loaded.net, x, args.profile, args.out, timing=args.timing, description=description,
                          **protocol)
    per = summary["per_inference"]
    print(Path(args.out, "cores.txt").read_text(), end="")
    print(f"{summary['profile']['name']}: {summary['mapping']['cores_used']} cores on "
          f"{summary['mapping']['chips_used']} chip(s); per inference {per['spikes']:.0f} spikes, "
          f"{per['messages']:.0f} messages, {per['synaptic_ops']:.0f} synaptic ops, "
          f"{per['energy_pj']['dynamic'] / 1e6:.4g} uJ dynamic ({per['energy_pj']['total'] / 1e6:.4g} uJ total), "
          f"{per['latency_ns'] / 1e3:.4g} us -> {args.out}")
    return 0


def add_traffic_parser(subparsers) -> None:
    """Register ``spikeport traffic`` on an ``argparse`` subparsers object."""
    t = subparsers.add_parser("traffic", help="map the integer network onto chip cores and count spike traffic")
    cliargs.add_network_args(t)
    source = t.add_mutually_exclusive_group()
    source.add_argument("--input", type=cliargs.input_file,
                        help="input .npy of shape (samples, T, *input_shape): 0/1 spikes or graded integers")
    source.add_argument("--dataset", help="encode this dataset's test split")
    cliargs.add_protocol_args(t)
    t.add_argument("--samples", type=cliargs.positive_int, default=100, help="dataset samples (default 100)")
    t.add_argument("--T", type=cliargs.positive_int, help="time steps per sample for --dataset (default: the run's)")
    t.add_argument("--data-dir", help="dataset folder")
    t.add_argument("--out", required=True, type=cliargs.output_dir,
                   help="output folder (summary.json, per_step.csv, plots, report.md)")
    t.add_argument("--profile", default="loihi2",
                   help="chip profile: loihi2 (default), loihi1, or a profile .json path")
    t.add_argument("--timing", default="hardware", choices=list(TIMINGS),
                   help="simulator timing (default hardware: one step of delay per layer)")
    t.set_defaults(func=_cmd_traffic)
