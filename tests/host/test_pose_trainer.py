"""train.py pose on the stick-figure world: the loss falls, resume is bit-exact (encoder included), the checkpoint
loads through the pack's loader and samples with CFG against the null pose, and bad options are named."""

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from stepwise.models import checkpoint, diffusion
from stepwise.models.pose import POSE_KEY
from stepwise.models.world import make_data
from stepwise.trainers import PoseOptions, train_pose
from stepwise.trainers.pose import generate
from stepwise_dev import paths

TRAIN_PY = os.path.join(paths.REPO, "train.py")


@pytest.fixture(scope="module")
def figures(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("figures"))
    make_data("figures", 48, 32, out, seed=3)
    return out


def _opts(data, out, **kw):
    base = dict(data=data, out=out, arch="compact", space="pixel", steps=60, batch=8, lr=1e-3, ema=0.99,
                resolution=32, seed=5, context_dim=32, bands=4)
    base.update(kw)
    return PoseOptions(**base)


def _loaded(path):
    tensors, meta = checkpoint.load(path, "pose")
    return diffusion.model_patcher(tensors, meta, os.path.basename(path)), meta


@pytest.mark.parametrize("tokens", ["fourier", "grid"])
def test_short_run_on_stick_figures_lowers_the_loss(figures, tmp_path, tokens):
    out = str(tmp_path / "pose.safetensors")
    meta = train_pose(_opts(figures, out, tokens=tokens, steps=60 if tokens == "fourier" else 30))
    losses = meta["losses"]
    tenth = max(1, len(losses) // 10)
    assert np.mean(losses[-tenth:]) < 0.5 * np.mean(losses[:tenth])
    tensors, saved = checkpoint.load(out, "pose")
    assert saved["conditioning"] == "keypoints" and saved["timestep_range"] == [0, 1000]
    assert saved["network"]["pose"] == {"encoder": {"context_dim": 32, "tokens": tokens, "bands": 4, "max_people": 1,
                                                    "grid": 32, "canvas": 512}, "text": False}
    assert any(k.startswith("pose_encoder.") for k in tensors) and saved["training"]["cond_dropout"] == 0.1


def test_resume_continues_bit_exactly_including_the_encoder(figures, tmp_path):
    straight = str(tmp_path / "straight.safetensors")
    train_pose(_opts(figures, straight, steps=16, save_every=8))
    resumed = str(tmp_path / "resumed.safetensors")
    train_pose(_opts(figures, resumed, steps=8))
    train_pose(_opts(figures, resumed, steps=16, resume=True))
    a, _ = checkpoint.load(straight)
    b, _ = checkpoint.load(resumed)
    assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)
    assert any(k.startswith("pose_encoder.") for k in a)


def test_the_encoder_trains_and_dropout_one_never_sees_a_pose(figures, tmp_path):
    """Condition dropout 1.0 trains on null poses only: the joint embedding and projection keep their initial
    values (no gradient reaches them), while the null tokens and the UNet move."""
    ran = {}
    for dropout in (0.1, 1.0):
        out = str(tmp_path / f"d{dropout}.safetensors")
        train_pose(_opts(figures, out, steps=6, ema=0.0, cond_dropout=dropout))
        ran[dropout] = checkpoint.load(out)[0]
    init = diffusion.new_model(diffusion.unet_config("compact", 3, 32), "eps", "pixel",
                               pose=checkpoint.load(str(tmp_path / "d1.0.safetensors"))[1]["network"]["pose"])
    from stepwise.models.init import seeded_init_

    seeded_init_(init.pose_encoder, 6)
    start = {f"pose_encoder.{k}": v for k, v in init.pose_encoder.state_dict().items()}
    assert torch.equal(ran[1.0]["pose_encoder.joint"], start["pose_encoder.joint"])
    assert torch.equal(ran[1.0]["pose_encoder.proj.0.weight"], start["pose_encoder.proj.0.weight"])
    assert not torch.equal(ran[1.0]["pose_encoder.null"], start["pose_encoder.null"])
    assert not torch.equal(ran[0.1]["pose_encoder.joint"], start["pose_encoder.joint"])


def test_checkpoint_samples_with_cfg_against_the_null_pose(figures, tmp_path):
    out = str(tmp_path / "pose.safetensors")
    train_pose(_opts(figures, out, steps=20))
    patcher, meta = _loaded(out)
    poses = torch.zeros(2, 1, 17, 3)
    poses[0, 0] = torch.cat([torch.rand(17, 2, generator=torch.Generator().manual_seed(0)) * 0.5 + 0.25,
                             torch.ones(17, 1)], 1)
    a = generate(patcher, poses, seed=4, steps=4, cfg=3.0, shape=(3, 32, 32))
    assert a.shape == (2, 3, 32, 32) and torch.isfinite(a).all()
    # row 1 asks for the null pose: positive == negative, so CFG changes nothing and the sample is the plain one
    # (up to float error: with cfg > 1 the host batches both and amplifies round-off by the scale)
    null = generate(patcher, poses[1:], seed=5, steps=4, cfg=1.0, shape=(3, 32, 32))
    torch.testing.assert_close(a[1:], null, atol=3e-4, rtol=0)
    b = generate(patcher, poses[:1], seed=4, steps=4, cfg=1.0, shape=(3, 32, 32))
    assert (a[:1] - b).abs().max() > 1e-2  # the guidance acts when a pose is given


def test_text_fine_tune_puts_text_then_pose_tokens_in_the_context(figures, tmp_path, zoo, tiny_models):
    out = str(tmp_path / "text_pose.safetensors")
    meta = train_pose(_opts(figures, out, steps=3, batch=2, resolution=64, base=os.path.join(zoo, paths.TINY_SD15)))
    assert meta["conditioning"] == "text+keypoints" and meta["base"]["name"] == paths.TINY_SD15
    patcher, _ = _loaded(out)
    model, clip = patcher.model, tiny_models[paths.TINY_SD15][1]
    text, pooled = clip.encode_from_tokens(clip.tokenize("a stick figure"), return_pooled=True)
    pose = torch.cat([torch.full((17, 2), 0.5), torch.ones(17, 1)], 1).unsqueeze(0)
    extra = model.extra_conds(cross_attn=text, pooled_output=pooled, **{POSE_KEY: pose})
    context = extra["c_crossattn"].cond
    assert context.shape == (1, text.shape[1] + 17, text.shape[2])
    torch.testing.assert_close(context[:, :text.shape[1]], text)
    with pytest.raises(ValueError, match="trained with text"):
        model.extra_conds(**{POSE_KEY: pose})


def test_command_line_writes_a_sample_grid_with_the_skeletons(figures, tmp_path):
    out = tmp_path / "p.safetensors"
    run = subprocess.run([sys.executable, TRAIN_PY, "pose", "--data", figures, "--out", str(out), "--steps", "2",
                          "--batch", "2", "--resolution", "32", "--context-dim", "32", "--sample-every", "2"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    from PIL import Image

    grid = np.asarray(Image.open(out.parent / "p.safetensors.samples" / "step_000002.png"))
    assert grid.shape == (64, 4 * 32, 3)
    assert (grid[:32].max(-1) > 200).sum() > 20  # the top row shows the requested skeletons' coloured joints


@pytest.mark.parametrize("kw,match", [
    (dict(arch="tiny"), "--arch tiny has no cross-attention"),
    (dict(tokens="pixels"), "--tokens 'pixels'"),
    (dict(lora_rank=4), "--lora-rank needs --base"),
    (dict(cond_dropout=1.5), "--cond-dropout 1.5"),
    (dict(min_scale=0.0), "--min-scale 0.0"),
])
def test_bad_options_are_named(figures, tmp_path, kw, match):
    with pytest.raises(ValueError, match=match):
        train_pose(_opts(figures, str(tmp_path / "x.safetensors"), **kw))


def test_data_without_keypoints_is_named(tmp_path):
    make_data("shapes", 3, 32, str(tmp_path), seed=1)
    with pytest.raises(ValueError, match="no readable images with keypoints"):
        train_pose(_opts(str(tmp_path), str(tmp_path / "x.safetensors")))


def test_lora_fine_tune_writes_a_full_pose_checkpoint_with_the_layers_merged(figures, tmp_path, zoo, tiny_models):
    from safetensors.torch import load_file

    from stepwise.models.lora import DEFAULT_TARGETS

    base_path = os.path.join(zoo, paths.TINY_SD15)
    full, low = str(tmp_path / "full.safetensors"), str(tmp_path / "lora.safetensors")
    train_pose(_opts(figures, full, steps=2, batch=2, resolution=64, base=base_path, ema=0.0))
    meta = train_pose(_opts(figures, low, steps=3, batch=2, resolution=64, base=base_path, ema=0.0, lr=1e-2,
                            lora_rank=4))
    assert meta["training"]["lora_rank"] == 4 and meta["network"]["class"] == "comfy_unet"
    a, b = checkpoint.load(full, "pose")[0], checkpoint.load(low, "pose")[0]
    assert set(a) == set(b)  # the same layout as a full fine-tune: the Stepwise loader reads it
    _loaded(low)
    base = {k[len("model.diffusion_model."):]: v for k, v in load_file(base_path).items()
            if k.startswith("model.diffusion_model.")}
    targeted = [k for k in base if any(k.endswith(t + ".weight") for t in DEFAULT_TARGETS) and base[k].ndim == 2]
    assert targeted and all(not torch.equal(b[k], base[k]) for k in targeted)  # merged: W + up @ down moved
    assert all(torch.equal(b[k], base[k]) for k in base if k not in targeted)  # everything else is the base's
    state = load_file(low + ".train-state")
    trained = sum(v.numel() for k, v in state.items() if k.startswith("opt.") and k.endswith(".exp_avg"))
    assert trained < sum(v.numel() for v in base.values()) / 4  # AdamW keeps state for the LoRA layers and encoder
