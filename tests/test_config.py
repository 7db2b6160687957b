"""Tests for train.config: presets, overrides, type checks, --set parsing, files and precedence."""

import copy
import json

import pytest
import yaml

from spikeport.train.config import PRESETS, Config, DataConfig, OptimConfig, load_file, make_config, parse_set
from spikeport.train.losses import LossSpec
from spikeport.train.network import NeuronSpec, build_network

# ----------------------------------------------------------------- helpers


def deep_merge(base, overrides):
    """Independent reference merge: nested dicts, dotted keys split into nesting."""
    out = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict):
            for k2, v2 in value.items():
                out = deep_merge(out, {f"{key}.{k2}": v2})
            continue
        node = out
        *parents, leaf = key.split(".")
        for p in parents:
            node = node[p]
        node[leaf] = value
    return out


def toml_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)  # a TOML basic string for plain text
    raise TypeError(v)


def to_toml(d):
    """Minimal TOML writer for a configuration dict (None values are left out: TOML has no null)."""
    lines = [f"{k} = {toml_value(v)}" for k, v in d.items() if not isinstance(v, dict) and v is not None]
    for section, table in d.items():
        if isinstance(table, dict):
            lines.append(f"\n[{section}]")
            lines += [f"{k} = {toml_value(v)}" for k, v in table.items() if v is not None]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------- presets


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_build(name):
    cfg = make_config(name)
    assert isinstance(cfg, Config)
    assert cfg.to_dict() == deep_merge(Config().to_dict(), PRESETS[name])
    assert isinstance(cfg.data, DataConfig) and isinstance(cfg.optim, OptimConfig)
    assert isinstance(cfg.neuron, NeuronSpec) and isinstance(cfg.loss, LossSpec)
    # Every preset's network spec and neuron settings make a network.
    net = build_network(cfg.network, cfg.neuron)
    assert net.n_out == 10
    assert all(m.kind == cfg.neuron.model for m in net.neuron_layers())


def test_default_config_and_unknown_preset():
    assert make_config() == Config()
    with pytest.raises(ValueError, match="'cifar-resnet'"):
        make_config("cifar-resnet")


def test_to_dict_from_dict_round_trip():
    cfg = make_config("nmnist-seq", overrides={"optim.grad_clip": 1.5, "data.train_samples": 100})
    assert Config.from_dict(cfg.to_dict()) == cfg
    assert Config.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


# ----------------------------------------------------------------- overrides


def test_with_overrides_dotted_and_nested():
    base = Config()
    dotted = base.with_overrides({"optim.lr": 0.01, "neuron.model": "cuba", "network": "64-10", "data.T": 7})
    nested = base.with_overrides({"optim": {"lr": 0.01}, "neuron": {"model": "cuba"}, "network": "64-10",
                                  "data": {"T": 7}})
    mixed = base.with_overrides({"optim.lr": 0.01, "neuron": {"model": "cuba"}, "network": "64-10", "data": {"T": 7}})
    assert dotted == nested == mixed
    assert (dotted.optim.lr, dotted.neuron.model, dotted.network, dotted.data.T) == (0.01, "cuba", "64-10", 7)
    # Everything else is untouched, and the original is not modified.
    want = deep_merge(base.to_dict(), {"optim.lr": 0.01, "neuron.model": "cuba", "network": "64-10", "data.T": 7})
    assert dotted.to_dict() == want
    assert base == Config()


def test_with_overrides_composes():
    cfg = Config().with_overrides({"optim.lr": 0.5}).with_overrides({"optim": {"epochs": 2}})
    assert (cfg.optim.lr, cfg.optim.epochs) == (0.5, 2)


@pytest.mark.parametrize("overrides,key", [
    ({"optim.lrr": 0.1}, "optim.lrr"),
    ({"bogus": 1}, "bogus"),
    ({"foo.bar": 1}, "foo.bar"),
    ({"optim.lr.x": 1}, "optim.lr.x"),
    ({"neuron": {"colour": "red"}}, "neuron.colour"),
    ({"data": {"T": 5, "frames": 3}}, "data.frames"),
])
def test_unknown_key_names_the_key(overrides, key):
    with pytest.raises(ValueError) as err:
        Config().with_overrides(overrides)
    assert repr(key) in str(err.value)


def test_from_dict_unknown_key_names_it():
    with pytest.raises(ValueError, match="data.frames"):
        Config.from_dict({"data": {"frames": 3}})


@pytest.mark.parametrize("key,value", [
    ("optim.epochs", "abc"),
    ("optim.epochs", 2.5),
    ("optim.epochs", True),
    ("data.T", "20"),
    ("optim.lr", "fast"),
    ("optim.lr", False),
    ("neuron.per_neuron", "yes"),
    ("neuron.per_neuron", 1),
    ("network", 784),
    ("optim.grad_clip", "none"),
])
def test_type_errors_name_the_key(key, value):
    with pytest.raises(ValueError) as err:
        Config().with_overrides({key: value})
    assert repr(key) in str(err.value)
    assert repr(value) in str(err.value)


def test_section_must_be_a_table():
    with pytest.raises(ValueError, match="data"):
        Config().with_overrides({"data": 3})


def test_numeric_coercion():
    cfg = Config().with_overrides({"data.T": 8.0, "optim.lr": 1, "optim.grad_clip": 2, "data.train_samples": 50})
    assert cfg.data.T == 8 and type(cfg.data.T) is int
    assert cfg.optim.lr == 1.0 and type(cfg.optim.lr) is float
    assert cfg.optim.grad_clip == 2.0 and type(cfg.optim.grad_clip) is float
    assert cfg.data.train_samples == 50
    back = cfg.with_overrides({"optim.grad_clip": None, "data.train_samples": None})
    assert back.optim.grad_clip is None and back.data.train_samples is None


# ----------------------------------------------------------------- --set parsing


def test_parse_set_values():
    got = parse_set([
        "optim.lr=0.01",
        "data.T=25",
        "neuron.learn_decay=true",
        "neuron.per_neuron=False",
        "neuron.model=cuba",
        "network=28x28-15C5-10",
        "optim.device=cuda:1",
        " loss.name = van_rossum",
        "data.data_dir=",
        "data.dataset=a=b",
        "loss.tau=5",
        "optim.lr=-2.5",
    ])
    assert got == {
        "optim.lr": -2.5,  # the last of repeated keys wins
        "data.T": 25,
        "neuron.learn_decay": True,
        "neuron.per_neuron": False,
        "neuron.model": "cuba",
        "network": "28x28-15C5-10",
        "optim.device": "cuda:1",
        "loss.name": "van_rossum",
        "data.data_dir": None,
        "data.dataset": "a=b",
        "loss.tau": 5,
    }
    assert type(got["data.T"]) is int and type(got["optim.lr"]) is float
    cfg = Config().with_overrides({k: v for k, v in got.items() if k not in ("data.dataset", "optim.lr")})
    assert cfg.loss.tau == 5.0 and type(cfg.loss.tau) is float
    assert cfg.neuron.learn_decay is True and cfg.optim.device == "cuda:1"


def test_parse_set_empty_and_errors():
    assert parse_set(None) == {} and parse_set([]) == {}
    with pytest.raises(ValueError, match="'optim.lr'"):
        parse_set(["optim.lr"])


# ----------------------------------------------------------------- files


def custom_config():
    return make_config("nmnist-seq", overrides={
        "data.data_dir": "/data/n mnist", "data.train_samples": 500, "data.event_duration_us": 300000.0,
        "optim.grad_clip": 1.0, "optim.lr": 3e-4, "optim.weight_decay": 1e-5, "neuron.per_neuron": True,
        "neuron.learn_threshold": True, "neuron.surrogate": "arctan", "loss.tau": 2.5,
    })


def test_yaml_round_trip(tmp_path):
    cfg = custom_config()
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(cfg.to_dict()))
    assert load_file(path) == cfg.to_dict()
    assert make_config(file=path) == cfg
    yml = tmp_path / "run.yml"
    yml.write_text("optim:\n  epochs: 3\n")
    assert make_config(file=yml).optim.epochs == 3


def test_toml_round_trip(tmp_path):
    cfg = custom_config()
    path = tmp_path / "run.toml"
    path.write_text(to_toml(cfg.to_dict()))
    loaded = load_file(path)
    assert loaded == {k: ({kk: vv for kk, vv in v.items() if vv is not None} if isinstance(v, dict) else v)
                      for k, v in cfg.to_dict().items()}
    assert make_config(file=str(path)) == cfg


def test_json_file(tmp_path):
    path = tmp_path / "run.json"
    path.write_text(json.dumps({"optim": {"lr": 0.2}}))
    assert make_config(file=path).optim.lr == 0.2


def test_load_file_errors(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        load_file(tmp_path / "missing.yaml")
    txt = tmp_path / "run.txt"
    txt.write_text("a: 1\n")
    with pytest.raises(ValueError, match="run.txt"):
        load_file(txt)
    lst = tmp_path / "list.yaml"
    lst.write_text("- 1\n- 2\n")
    with pytest.raises(ValueError, match="mapping"):
        load_file(lst)
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert load_file(empty) == {}
    bad = tmp_path / "bad.yaml"
    bad.write_text("optim:\n  epochz: 3\n")
    with pytest.raises(ValueError, match="optim.epochz"):
        make_config(file=bad)


# ----------------------------------------------------------------- precedence


def test_make_config_precedence(tmp_path):
    preset = "mnist-mlp"
    file_values = {"data": {"T": 12, "data_dir": "/from/file"}, "optim": {"lr": 0.5, "epochs": 3}}
    overrides = {"optim.lr": 0.25, "data.data_dir": "/from/overrides", "neuron.decay": 0.4}
    data_dir = "/from/arg"
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(file_values))

    cfg = make_config(preset, path, overrides, data_dir)
    want = deep_merge(deep_merge(deep_merge(Config().to_dict(), PRESETS[preset]), file_values), overrides)
    want["data"]["data_dir"] = data_dir
    assert cfg.to_dict() == want
    # Spot checks, one per level of precedence.
    assert cfg.network == PRESETS[preset]["network"]  # preset over default
    assert cfg.optim.batch_size == PRESETS[preset]["optim"]["batch_size"]
    assert cfg.data.T == 12 and cfg.optim.epochs == 3  # file over preset
    assert cfg.optim.lr == 0.25 and cfg.neuron.decay == 0.4  # overrides over file
    assert cfg.data.data_dir == "/from/arg"  # data_dir over everything
    assert cfg.optim.optimizer == Config().optim.optimizer  # untouched default

    # Without data_dir the override's directory stands; without overrides the file's.
    assert make_config(preset, path, overrides).data.data_dir == "/from/overrides"
    assert make_config(preset, path).data.data_dir == "/from/file"
    assert make_config(preset, path).optim.lr == 0.5
    assert make_config(preset).optim.lr == PRESETS[preset]["optim"]["lr"]


def test_scientific_notation_is_a_float_in_set_and_yaml(tmp_path):
    from spikeport.train.config import make_config, parse_set

    cfg = make_config(overrides=parse_set(["optim.lr=1e-3", "optim.weight_decay=5e-4"]))
    assert cfg.optim.lr == 0.001 and cfg.optim.weight_decay == 0.0005
    f = tmp_path / "c.yaml"
    f.write_text("optim:\n  lr: 2e-3\n")
    assert make_config(file=f).optim.lr == 0.002
    with pytest.raises(ValueError, match="optim.lr"):
        make_config(overrides=parse_set(["optim.lr=fast"]))


# ----------------------------------------------------------------- value ranges


@pytest.mark.parametrize("key,value", [
    ("optim.batch_size", 0), ("optim.batch_size", -4), ("data.T", 0), ("data.T", -2),
    ("neuron.decay", float("nan")), ("neuron.decay", 1.5), ("neuron.decay", -0.1),
    ("neuron.decay_syn", float("inf")), ("neuron.decay_mem", 2.0),
    ("neuron.v_threshold", -1.0), ("neuron.v_threshold", 0.0), ("neuron.v_threshold", float("nan")),
    ("optim.lr", 0.0), ("optim.lr", -2.5), ("optim.lr", float("inf")), ("optim.lr", "nan"),
    ("optim.epochs", -1), ("optim.momentum", 1.0), ("optim.weight_decay", -1e-4),
    ("optim.grad_clip", 0.0), ("optim.seed", -1), ("optim.device", "tpu"), ("optim.device", "cuda:x"),
    ("optim.eval_batch_size", 0), ("optim.checkpoint_every", -1), ("optim.optimizer", "adagrad"),
    ("optim.schedule", "step"), ("data.train_samples", 0), ("data.test_samples", -5),
    ("data.event_duration_us", 0.0), ("data.dataset", "imagenet"), ("data.encoder", "latency"),
    ("data.data_dir", ""), ("init_gain", 0.0), ("loss.tau", -1.0), ("loss.target_rate", 0.0),
    ("loss.target_rate", 1.5), ("loss.name", "l2"), ("neuron.surrogate", "relu"),
    ("neuron.surrogate_width", 0.0), ("neuron.model", "izhikevich"), ("quant.num_weight_bits", 9),
    ("quant.decay_bits", 0), ("quant.vth_bits", 18), ("quant.target_vth", 0), ("quant.bias_exp", 8),
    ("quant.rounding", "up"), ("network", "784-0-10"), ("network", "28x28-4C5s0-10"), ("network", "abc"),
    ("network", "784"), ("data.T", 10 ** 9),
])
def test_out_of_range_values_are_refused_naming_the_key(key, value):
    with pytest.raises(ValueError) as err:
        Config().with_overrides({key: value})
    assert repr(key) in str(err.value) and "\n" not in str(err.value)


def test_boundary_values_are_accepted():
    cfg = Config().with_overrides({
        "neuron.decay": 0.0, "neuron.decay_mem": 1.0, "optim.epochs": 0, "optim.momentum": 0.0,
        "optim.checkpoint_every": 0, "optim.seed": 2 ** 63 - 1, "optim.device": "cuda:0",
        "loss.target_rate": 1.0, "quant.num_weight_bits": 1, "quant.bias_exp": 0, "data.T": 1,
        "network": "34x34x2-12C5p2s2-S2-D0.5-10"})
    assert cfg.optim.seed == 2 ** 63 - 1 and cfg.neuron.decay == 0.0


def test_direct_construction_is_checked_too():
    with pytest.raises(ValueError, match="'optim.lr'"):
        Config(optim=OptimConfig(lr=float("nan")))


def test_quant_rules_match_the_quantizer():
    """The config's quant ranges are QuantSpec's: a value passes one exactly when it passes the other."""
    from spikeport.export.quantize import QuantSpec

    for field_name, values in (("num_weight_bits", range(-1, 12)), ("decay_bits", range(-1, 16)),
                               ("vth_bits", range(-1, 20)), ("bias_exp", [None, *range(-2, 10)]),
                               ("target_vth", [0, 1, 2 ** 17 - 1, 2 ** 17]),
                               ("rounding", ["nearest", "floor", "up"])):
        for v in values:
            try:
                QuantSpec(**{field_name: v})
                spec_ok = True
            except ValueError:
                spec_ok = False
            try:
                Config().with_overrides({f"quant.{field_name}": v})
                cfg_ok = True
            except ValueError:
                cfg_ok = False
            assert spec_ok == cfg_ok, (field_name, v)


# ----------------------------------------------------------------- hostile files


@pytest.mark.parametrize("name,text,match", [
    ("scan.yaml", "optim: [\n", "invalid YAML"),
    ("tab.yaml", "optim:\n\tlr: 1\n", "invalid YAML"),
    ("deep.yaml", "[" * 5000, "invalid YAML"),
    ("deep.json", "[" * 100000, "invalid JSON"),
    ("list.json", "[1, 2]", "mapping"),
    ("null.json", "null", "mapping"),
    ("bad.json", "{'a': 1}", "invalid JSON"),
    ("bad.toml", "a = [\n", "invalid TOML"),
    ("twice.toml", "x = 1\nx = 2\n", "invalid TOML"),
    ("binary.yaml", "\x00\x01\x02", "invalid YAML"),
    ("key.yaml", "{1: 2}", "keys must be strings"),
    ("complex.yaml", "? [a, b]\n: 1\n", "invalid YAML"),
    ("nan.yaml", "optim:\n  lr: .nan\n", "'optim.lr'"),
])
def test_config_file_errors_are_one_line_naming_the_file(tmp_path, name, text, match):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ValueError, match=match) as err:
        make_config(file=path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_config_file_not_utf8_or_too_large(tmp_path):
    raw = tmp_path / "raw.yaml"
    raw.write_bytes(b"optim:\n  lr: \xff\xfe\n")
    with pytest.raises(ValueError, match="not UTF-8"):
        load_file(raw)
    big = tmp_path / "big.yaml"
    big.write_text("#" * (2 << 20))
    with pytest.raises(ValueError, match="at most"):
        load_file(big)


def test_yaml_alias_bomb_is_refused_quickly(tmp_path):
    """Aliases make a small file name an exponential tree; keys are checked on the way down, so
    the refusal comes at the first unknown key, without walking the tree."""
    import time

    lines = ["a0: &a0 {x: 1, y: 1}"] + [f"a{i}: &a{i} {{x: *a{i - 1}, y: *a{i - 1}}}" for i in range(1, 60)]
    lines.append("optim: *a59")
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(lines) + "\n")
    t0 = time.perf_counter()
    with pytest.raises(ValueError, match="unknown configuration key"):
        make_config(file=path)
    assert time.perf_counter() - t0 < 5.0


def test_set_with_a_yaml_error_names_the_key():
    with pytest.raises(ValueError, match="--set optim.lr") as err:
        parse_set(["optim.lr=["])
    assert "\n" not in str(err.value)
