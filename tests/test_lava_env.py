"""The managed Lava runtime's installer: what it says when the disk is short, and that a failed
install leaves no half-built environment behind (CI once ran out of disk inside pip)."""
import subprocess
from pathlib import Path

import pytest

from targets import lava_env


def test_space_note_names_the_free_space_and_the_way_out(tmp_path):
    assert lava_env.space_note(tmp_path, needs=1) is None
    note = lava_env.space_note(tmp_path / "not" / "yet" / "made", needs=10**18)  # nearest parent counts
    assert note is not None and "GB free for" in note and "SPIKEPORT_LAVA_HOME" in note
    assert str(tmp_path / "not" / "yet" / "made") in note


def test_failed_install_removes_the_partial_runtime_and_says_why(tmp_path, monkeypatch):
    env = tmp_path / "lava-runtime"
    monkeypatch.setenv("SPIKEPORT_LAVA_HOME", str(env))
    monkeypatch.delenv("SPIKEPORT_LAVA_PYTHON", raising=False)
    monkeypatch.setattr(lava_env, "_is_python310", lambda exe: True)
    monkeypatch.setattr(lava_env, "NEEDS_BYTES", 10**18)  # this disk is "short"
    calls = []

    def fake_run(cmd, check=False, **kw):
        calls.append(cmd)
        if cmd[1:3] == ["-m", "venv"]:
            (Path(cmd[3]) / "bin").mkdir(parents=True)
            return subprocess.CompletedProcess(cmd, 0)
        if "--upgrade" in cmd:
            return subprocess.CompletedProcess(cmd, 0)
        (env / "lib" / "half-installed").mkdir(parents=True)
        raise subprocess.CalledProcessError(1, cmd)

    monkeypatch.setattr(lava_env.subprocess, "run", fake_run)
    with pytest.raises(lava_env.LavaRuntimeMissing) as err:
        lava_env.setup(python="/fake/python3.10", quiet=True)
    msg = str(err.value)
    assert "failed" in msg and "GB free" in msg and "--force" in msg and "\n" not in msg
    assert not env.exists()
    pip_installs = [c for c in calls if c[1:4] == ["-m", "pip", "install"]]
    assert pip_installs and all("--no-cache-dir" in c for c in pip_installs)
