"""Training: configs, checkpoints (bit-exact round trip, atomic), exact resume, errors."""

import json

import pytest
import torch

from difflab.config import ConfigError, load_config
from difflab.training.checkpoint import CheckpointError, latest_checkpoint, load_checkpoint, save_checkpoint
from difflab.training.trainer import Trainer


def tiny_cfg(out, *extra):
    return load_config("configs/tiny.yaml", [f"out={out}", "progress=false", "limit=64", *extra])


@pytest.fixture
def no_preview(monkeypatch):
    monkeypatch.setattr(Trainer, "preview", lambda self: None)


def _state(trainer):
    return ({k: v.clone() for k, v in trainer.model.state_dict().items()},
            {k: v.clone() for k, v in trainer.ema.state_dict().items()},
            trainer.opt.state_dict())


def test_resume_equals_uninterrupted(tmp_path, no_preview):
    full = Trainer(tiny_cfg(tmp_path / "a", "max_steps=12", "ckpt_every=100"))
    full.run()
    part = Trainer(tiny_cfg(tmp_path / "b", "max_steps=5", "ckpt_every=100"))
    part.run()
    rest = Trainer(tiny_cfg(tmp_path / "b", "max_steps=12", "ckpt_every=100"), resume=True)
    assert rest.step == 5
    rest.run()
    m1, e1, o1 = _state(full)
    m2, e2, o2 = _state(rest)
    for k in m1:
        assert torch.equal(m1[k], m2[k]), k
        assert torch.equal(e1[k], e2[k]), k
    for i, st in o1["state"].items():
        for k, v in st.items():
            assert torch.equal(torch.as_tensor(v), torch.as_tensor(o2["state"][i][k]))


def test_checkpoint_round_trip_bit_exact(tmp_path, no_preview):
    t = Trainer(tiny_cfg(tmp_path / "r", "max_steps=3"))
    t.run()
    ck = latest_checkpoint(tmp_path / "r")
    data = load_checkpoint(ck, need_train_state=True)
    for k, v in t.model.state_dict().items():
        assert torch.equal(v, data["model"][k])
    import difflab

    D = difflab.load(tmp_path / "r")
    for k, v in t.ema.state_dict().items():
        assert torch.equal(v, D.state_dict()[k])


def test_failed_write_keeps_previous_checkpoint(tmp_path):
    good = save_checkpoint(tmp_path / "checkpoints" / "ckpt-00000001", config={"a": 1},
                           model={"w": torch.ones(3)})
    with pytest.raises(RuntimeError, match="injected"):
        save_checkpoint(tmp_path / "checkpoints" / "ckpt-00000002", config={"a": 2},
                        model={"w": torch.zeros(3)}, fail_before_rename=True)
    assert latest_checkpoint(tmp_path) == good
    assert torch.equal(load_checkpoint(good)["model"]["w"], torch.ones(3))


def test_truncated_weights_name_the_file(tmp_path):
    ck = save_checkpoint(tmp_path / "ck", config={}, model={"w": torch.ones(100)})
    f = ck / "model.safetensors"
    f.write_bytes(f.read_bytes()[:50])
    with pytest.raises(CheckpointError, match="model.safetensors"):
        load_checkpoint(ck)


@pytest.mark.parametrize("override,msg", [
    ("max_stepz=3", "did you mean 'max_steps'"),
    ("batch_size=0", "batch_size"),
    ("lr=-1", "train.lr"),
    ("precond=ddpm", "model.precond"),
    ("ema_decay=abc", "ema_decay"),
    ("size=30", "data.size"),
])
def test_bad_config_values_are_named(override, msg):
    with pytest.raises(ConfigError, match=msg):
        load_config("configs/tiny.yaml", [override])


def test_bad_config_file(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("train: {batch_size: 4}\nbogus: 1\n")
    with pytest.raises(ConfigError, match="bogus"):
        load_config(p)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    p.write_text(json.dumps({"version": 99}))
    with pytest.raises(ConfigError, match="version 99"):
        load_config(p)


def test_all_shipped_configs_parse():
    import glob

    for f in glob.glob("configs/*.yaml"):
        if "sweep" in f:
            continue
        load_config(f)


def test_init_from_copies_weights_with_a_fresh_optimizer(tmp_path, no_preview):
    src = Trainer(tiny_cfg(tmp_path / "src", "max_steps=3"))
    src.run()
    ft = Trainer(tiny_cfg(tmp_path / "ft", "max_steps=3", f"init_from={tmp_path / 'src'}"))
    assert ft.step == 0 and not ft.opt.state
    for k, v in src.model.state_dict().items():
        assert torch.equal(v, ft.model.state_dict()[k])
