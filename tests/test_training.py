"""Training: configs, checkpoints (bit-exact round trip, atomic), exact resume, errors."""

import json

import pytest
import torch

from difflab.checkpoint import CheckpointError, latest_checkpoint, load_checkpoint, save_checkpoint
from difflab.config import ConfigError, load_config
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


def test_compile_option_keeps_state_dict_keys(tmp_path, no_preview):
    """train.compile / difflab.load(compile=True) compile in place (nn.Module.compile): checkpoints and the
    EMA keep the plain keys, so compiled and eager runs share checkpoints. (Compilation is lazy: nothing is
    compiled here; the slow test below runs compiled code.)"""
    import difflab

    t = Trainer(tiny_cfg(tmp_path / "c", "max_steps=0", "compile=true"))
    assert t.cfg.train.compile and t.model._compiled_call_impl is not None and t.ema._compiled_call_impl is None
    assert not any("_orig_mod" in k for k in t.model.state_dict())
    t.save()
    D = difflab.load(tmp_path / "c", compile=True)
    assert D._compiled_call_impl is not None
    assert D.state_dict().keys() == difflab.load(tmp_path / "c").state_dict().keys()


@pytest.mark.slow
def test_compiled_training_and_sampling_match_eager(tmp_path, no_preview):
    """A compiled training step gives the eager step's loss and gradients (to float tolerance; weights after
    Adam are not compared: its first steps turn a near-zero gradient's rounding into a +-lr step), training
    runs compiled, and a compiled D gives the eager D's output, class labels included (minutes: the first
    compilation on a small CPU)."""
    import difflab
    from difflab.sampling.rng import make_generator

    eager = Trainer(tiny_cfg(tmp_path / "e", "max_steps=2"))
    comp = Trainer(tiny_cfg(tmp_path / "k", "max_steps=2", "compile=true"))
    losses, grads = [], []
    for t in (eager, comp):
        loss = t.compute_loss(t.get_batch(0), make_generator(0, 2, 0, 0))
        loss.backward()
        losses.append(loss.detach())
        grads.append([p.grad.clone() for p in t.model.parameters()])
        t.opt.zero_grad(set_to_none=True)
    torch.testing.assert_close(losses[1], losses[0], rtol=1e-5, atol=1e-6)
    for g_c, g_e in zip(*grads[::-1], strict=True):
        torch.testing.assert_close(g_c, g_e, rtol=1e-3, atol=1e-4 * float(g_e.abs().max()) + 1e-8)
    eager.run()
    comp.run()
    assert comp.step == 2 and all(torch.isfinite(p).all() for p in comp.model.parameters())
    D, Dc = difflab.load(tmp_path / "e"), difflab.load(tmp_path / "e", compile=True)
    x, s = torch.randn(4, 1, 28, 28), torch.full((4,), 1.5)
    y = torch.tensor([0, 3, 9, 10])
    with torch.no_grad():
        torch.testing.assert_close(Dc(x, s, class_labels=y), D(x, s, class_labels=y), rtol=1e-4, atol=1e-5)


def test_moved_names_keep_their_old_import_paths():
    """Issue 15 moves: storage to difflab.checkpoint, loaders to difflab.models, pick_device to utils, the ODE
    method lists public; the old paths are thin aliases of the same objects."""
    import difflab.checkpoint as ck
    import difflab.eval.classifier as clf
    import difflab.models as models
    import difflab.sampling.ode as ode
    import difflab.training.checkpoint as old_ck
    import difflab.training.trainer as trainer
    import difflab.utils as utils

    for name in ck.__all__:
        assert getattr(old_ck, name) is getattr(ck, name), name
    for name in ("load_classifier", "embedding", "model_id", "_CACHE"):
        assert getattr(clf, name) is getattr(models, name), name
    assert trainer.pick_device is utils.pick_device and trainer.TrainingDiverged is ck.TrainingDiverged
    assert ode._ADAPTIVE is ode.ADAPTIVE_METHODS and ode._FIXED is ode.FIXED_METHODS
    assert utils.pick_device("cpu") == torch.device("cpu")


def test_set_sigma_table_is_a_method_of_discrete_time_preconditioners():
    from difflab.diffusion.precond import VPEpsPrecond
    from difflab.interop import set_sigma_table
    from difflab.nets.unet import build_unet

    D = VPEpsPrecond(build_unet("tiny", img_resolution=8, in_channels=1, out_channels=1), T=10,
                     beta_schedule="cosine")
    table = torch.linspace(0.1, 5.0, 10, dtype=torch.float64)
    assert D.set_sigma_table(table) is D and D.sigma_max == 5.0 and torch.equal(D.sigmas_table, table.float())
    assert set_sigma_table(D, table * 2) is D and D.sigma_min == pytest.approx(0.2)  # the old function
    with pytest.raises(ValueError, match="increasing table of T=10"):
        D.set_sigma_table(table.flip(0))


@pytest.mark.parametrize("task", ["classifier", "noisy_classifier"])
def test_ce_objective_equals_the_former_trainer_branch_bit_for_bit(tmp_path, task):
    """The classifier losses moved from the trainer into losses.py (make_loss('ce')); same draws, same bits."""
    import torch.nn.functional as F

    from difflab.diffusion.losses import make_loss, objective_from_config, randn_rows
    from difflab.sampling.rng import make_generator

    cfg = load_config("configs/noisy_classifier.yaml", [f"out={tmp_path}", f"model.task={task}", "batch_size=16"])
    t = Trainer(cfg, dataset=[(torch.randn(1, 28, 28), i % 10) for i in range(16)])
    batch = t.get_batch(0)
    got = objective_from_config(cfg)(t.model, batch, make_generator(0, 2, 0, 0))
    gen, x0 = make_generator(0, 2, 0, 0), batch["x"]
    if task == "noisy_classifier":  # the former Trainer.compute_loss, verbatim
        z = randn_rows((x0.shape[0],), gen, device=x0.device)
        sigma = (z * cfg.loss.P_std + cfg.loss.P_mean).exp()
        noise = randn_rows(x0.shape, gen, device=x0.device)
        logits = t.model(x0 + sigma.view(-1, *[1] * (x0.ndim - 1)) * noise, sigma)
    else:
        logits = t.model(x0)
    assert torch.equal(got, F.cross_entropy(logits, batch["class_labels"]))
    ce = make_loss("ce", noisy=task == "noisy_classifier", P_mean=cfg.loss.P_mean, P_std=cfg.loss.P_std)
    per_sample = ce(t.model, x0, {"class_labels": batch["class_labels"]}, generator=make_generator(0, 2, 0, 0))
    assert per_sample.shape == (16,) and torch.allclose(per_sample.mean(), got)
    t.close()
