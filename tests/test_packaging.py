"""The wheel: built from the repository, installed into a clean virtual environment outside it.

The clean environment borrows its dependencies (torch, numpy, nir, ...) from the project's
environment through a ``.pth`` line rather than downloading them again; a path added that way is
not a site directory, so the project's editable install (a ``.pth`` hook there) stays inactive and
only the wheel provides ``spikeport``. Everything runs with the working directory outside the
repository and without ``PYTHONPATH``.
"""
import json
import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import numpy as np
import pytest

from spikeport.sim.network import Dense, IntNetwork, Layer, Neurons
from spikeport.sim.simulator import simulate

REPO = Path(__file__).resolve().parents[1]
GENERIC = ("train", "sim", "export", "targets", "tests")


def run(cmd, cwd, env_extra=None, **kw):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")} | (env_extra or {})
    return subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=600, **kw)


@pytest.fixture(scope="module")
def wheel_env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("wheel")
    built = run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", tmp / "dist",
                 REPO], cwd=tmp)
    assert built.returncode == 0, built.stderr
    (wheel,) = (tmp / "dist").glob("spikeport-*.whl")
    venv = tmp / "venv"
    made = run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=tmp)
    assert made.returncode == 0, made.stderr
    py = venv / "bin" / "python"
    purelib = Path(run([py, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], cwd=tmp).stdout.strip())
    (purelib / "_deps_from_project_env.pth").write_text(sysconfig.get_path("purelib") + "\n")
    inst = run([sys.executable, "-m", "pip", "--python", py, "install", "--no-deps", "-q", wheel], cwd=tmp)
    assert inst.returncode == 0, inst.stderr
    return tmp, wheel, venv


def test_wheel_holds_only_spikeport(wheel_env):
    _, wheel, _ = wheel_env
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"spikeport"}
    for needed in ("spikeport/sim/profiles/loihi2.json", "spikeport/targets/lava_worker.py",
                   "spikeport/train/neurons.py", "spikeport/export/nir.py", "spikeport/cli.py",
                   "spikeport/train/native/neuron_loop.c", "spikeport/train/native/__init__.py",
                   "spikeport/sim/native/neuron_steps.c", "spikeport/sim/native/__init__.py"):
        assert needed in names, needed


def test_nothing_generic_importable_from_the_wheel_env(wheel_env):
    tmp, _, venv = wheel_env
    code = ("import importlib.util as u, json, spikeport.sim.network as n; "
            f"print(json.dumps([[m for m in {GENERIC!r} if u.find_spec(m)], n.__file__]))")
    out = run([venv / "bin" / "python", "-c", code], cwd=tmp)
    assert out.returncode == 0, out.stderr
    found, where = json.loads(out.stdout)
    assert found == []
    assert str(venv) in where and str(REPO) not in where  # the wheel's copy, not the checkout's


def test_cli_help_and_a_small_simulate_from_the_wheel(wheel_env):
    tmp, _, venv = wheel_env
    helped = run([venv / "bin" / "spikeport", "--help"], cwd=tmp)
    assert helped.returncode == 0 and "simulate" in helped.stdout and "lava" in helped.stdout
    rng = np.random.default_rng(0)
    net = IntNetwork((12,), (Layer(Dense(rng.integers(-60, 90, (7, 12))), Neurons(du=2000, dv=300, vth=40)),
                             Layer(Dense(rng.integers(-40, 120, (3, 7))), Neurons(du=4095, dv=100, vth=30))))
    net.save(tmp / "net.npz")
    x = (rng.random((4, 15, 12)) < 0.4).astype(np.uint8)
    np.save(tmp / "x.npy", x)
    sim = run([venv / "bin" / "spikeport", "simulate", "net.npz", "--input", "x.npy", "--output", "y.npy",
               "--no-progress"], cwd=tmp, env_extra={"SPIKEPORT_CACHE": str(tmp / "cache")})
    assert sim.returncode == 0, sim.stderr
    expected = simulate(net, x).output
    assert expected.any()
    assert np.array_equal(np.load(tmp / "y.npy"), expected)
    assert list((tmp / "cache" / "native").glob("neuron_steps-*.so"))  # the wheel's C source, built and used
