"""The command line: a user-caused failure is one line naming the file, field or value (exit 2); a
traceback only for a genuine bug, with a hint to report it."""
from pathlib import Path

import numpy as np
import pytest

import spikeport.train.trainer as trainer
from spikeport import cliargs
from spikeport.cli import main as cli_main
from spikeport.train.config import make_config


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "run"
    cfg = make_config("digits-mlp", overrides={"data.train_samples": 64, "data.test_samples": 32, "data.T": 4,
                                               "optim.epochs": 1, "network": "64-20-10"})
    trainer.train(cfg, out, progress=False, log=lambda *_: None)
    return out


def run_cli(argv, capsys):
    """(exit code, stderr) of one command line; argparse's own exits count as exit codes."""
    try:
        code = cli_main(argv)
    except SystemExit as exc:
        code = exc.code
    return code, capsys.readouterr().err


def assert_one_line(code, err, *names):
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    for name in names:
        assert str(name) in err, (name, err)


@pytest.mark.parametrize("argv,names", [
    (["simulate", "{run}", "--dataset", "digits", "--samples", "0"], ["--samples", "0"]),
    (["simulate", "{run}", "--dataset", "digits", "--T", "-2"], ["--T", "-2"]),
    (["simulate", "{run}", "--input", "{tmp}/missing.npy"], ["missing.npy"]),
    (["simulate", "{run}", "--dataset", "digits", "--output", "{tmp}"], ["--output"]),
    (["simulate", "{run}", "--dataset", "digits", "--output", "{tmp}/no/such/dir/y.npy"], ["no/such/dir"]),
    (["simulate", "{run}", "--dt", "nan"], ["--dt", "nan"]),
    (["evaluate", "{run}", "--device", "tpu"], ["--device", "tpu"]),
    (["train", "--out", "{file}/sub"], ["--out", "file"]),
    (["train", "--out", "{tmp}", "--device", "tpu"], ["tpu"]),
    (["train", "--out", "{tmp}/new", "--set", "optim.batch_size=-4"], ["optim.batch_size", "-4"]),
    (["train", "--out", "{tmp}/new", "--set", "neuron.decay=nan"], ["neuron.decay", "nan"]),
    (["train", "--out", "{tmp}/new", "--set", "neuron.v_threshold=-1"], ["neuron.v_threshold"]),
    (["train", "--out", "{tmp}/new", "--config", "{tmp}/missing.yaml"], ["missing.yaml"]),
    (["train", "--out", "{tmp}/new", "--resume", "--overwrite"], ["resume", "overwrite"]),
    (["export", "{run}", "--out", "{tmp}"], ["is a directory"]),
    (["export", "{run}", "--out", "{tmp}/no/such/net.npz", "--format", "npz"], ["no/such"]),
    (["export", "{tmp}/missing-run", "--out", "{tmp}/x.nir"], ["missing-run"]),
    (["traffic", "{run}", "--dataset", "digits", "--samples", "0", "--out", "{tmp}/t"], ["--samples"]),
    (["traffic", "{run}", "--input", "{tmp}/missing.npy", "--out", "{tmp}/t"], ["missing.npy"]),
    (["study", "quant", "{run}", "--out", "{tmp}/s", "--workers", "0"], ["--workers"]),
    (["study", "quant", "{run}", "--out", "{tmp}/s", "--qat-lr", "-1"], ["--qat-lr"]),
    (["validate", "{run}", "--lava-samples", "0"], ["--lava-samples"]),
    (["simulate", "{run}", "--samples", "abc"], ["abc"]),
    (["nonsense"], ["nonsense"]),
])
def test_bad_command_lines_are_one_line_exit_2(run_dir, tmp_path, capsys, argv, names):
    (tmp_path / "file").write_text("a file, not a folder")
    argv = [a.format(run=run_dir, tmp=tmp_path, file=tmp_path / "file") for a in argv]
    code, err = run_cli(argv, capsys)
    assert_one_line(code, err, *names)


def npy_header(shape, descr="<f4") -> bytes:
    import io

    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": descr, "fortran_order": False, "shape": shape})
    return buf.getvalue()


@pytest.mark.parametrize("content,match", [
    (b"not an npy file", "not a .npy array"),
    (None, "dtype object"),
    (npy_header((1000000, 10)), "holds 0 bytes"),
    (npy_header((3,)) + bytes(16), "holds 16 bytes"),
    (npy_header((10 ** 13,), "<f8"), "MAX_INPUT_BYTES"),
    (npy_header((2,), "<U3") + bytes(24), "not a plain numeric type"),
])
def test_bad_input_arrays_are_refused_before_reading(run_dir, tmp_path, capsys, content, match):
    path = tmp_path / "x.npy"
    if content is None:
        np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)  # a pickled object array
    else:
        path.write_bytes(content)
    code, err = run_cli(["simulate", str(run_dir), "--input", str(path)], capsys)
    assert_one_line(code, err, path, match.split()[0])
    assert match in err


def test_output_name_is_the_name_written(run_dir, tmp_path, capsys):
    code, err = run_cli(["simulate", str(run_dir), "--dataset", "digits", "--samples", "3", "--output",
                         str(tmp_path / "y"), "--no-progress"], capsys)
    assert code == 0, err
    assert (tmp_path / "y.npy").is_file() and not (tmp_path / "y").exists()


def test_a_bug_gives_the_traceback_and_a_hint(monkeypatch, capsys, run_dir):
    import spikeport.train.trainer as tr

    def broken(*args, **kw):
        raise KeyError("internal")

    monkeypatch.setattr(tr, "evaluate_model", broken)
    code, err = run_cli(["evaluate", str(run_dir), "--no-progress"], capsys)
    assert code == 1
    assert "Traceback" in err and "bug in spikeport" in err and "report" in err


def test_os_errors_name_the_file(monkeypatch, capsys, run_dir):
    import spikeport.train.trainer as tr

    def unreadable(*args, **kw):
        raise PermissionError(13, "Permission denied", "/data/mnist/train-images-idx3-ubyte")

    monkeypatch.setattr(tr, "load_test_split", unreadable)
    code, err = run_cli(["evaluate", str(run_dir), "--no-progress"], capsys)
    assert_one_line(code, err, "/data/mnist/train-images-idx3-ubyte", "Permission denied")


def test_argument_types_accept_good_values(tmp_path):
    assert cliargs.positive_int("3") == 3 and cliargs.positive_float("1e-3") == 1e-3
    assert cliargs.device("cuda:1") == "cuda:1"
    assert cliargs.output_npy(str(tmp_path / "y")) == str(tmp_path / "y.npy")
    assert cliargs.output_dir(str(tmp_path / "a" / "b")) == str(tmp_path / "a" / "b")
    x = np.ones((2, 3, 4), dtype=np.int8)
    np.save(tmp_path / "x.npy", x)
    assert np.array_equal(cliargs.load_input_spikes(Path(tmp_path / "x.npy")), x)


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return os.system, (f"touch {self.marker}",)


def test_malicious_cifar_batch_through_simulate_runs_nothing(run_dir, tmp_path, capsys):
    import pickle

    marker = tmp_path / "marker"
    batch = {b"data": np.zeros((2, 3072), np.uint8), b"labels": [1, _RunsCode(marker)]}
    (tmp_path / "test_batch").write_bytes(pickle.dumps(batch))
    code, err = run_cli(["simulate", str(run_dir), "--dataset", "cifar10", "--data-dir", str(tmp_path),
                         "--no-progress"], capsys)
    assert not marker.exists()
    assert_one_line(code, err, tmp_path / "test_batch", "refused to unpickle")
