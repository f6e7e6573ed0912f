"""train.py refiner / make-data on the synthetic world: loss falls, resume is bit-exact, bad data is named."""

import os
import subprocess
import sys

import pytest
import torch

from stepwise.models import checkpoint
from stepwise.models.images import load_images
from stepwise.models.world import make_data
from stepwise.trainers import RefinerOptions, train_refiner
from stepwise_dev import paths

TRAIN_PY = os.path.join(paths.REPO, "train.py")


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("shapes"))
    make_data("shapes", 48, 32, out, seed=3)
    return out


def _opts(data, out, **kw):
    base = dict(data=data, out=out, arch="tiny", space="pixel", t_range=(0, 500), steps=60, batch=8, lr=1e-3,
                ema=0.99, resolution=32, seed=5)
    base.update(kw)
    return RefinerOptions(**base)


def test_short_run_lowers_the_loss_and_writes_a_refiner(shapes, tmp_path):
    out = str(tmp_path / "r.safetensors")
    meta = train_refiner(_opts(shapes, out, steps=80))
    losses = meta["losses"]
    tenth = len(losses) // 10
    assert sum(losses[-tenth:]) / tenth < sum(losses[:tenth]) / tenth
    tensors, saved = checkpoint.load(out, kind="refiner")
    assert saved["timestep_range"] == [0, 500] and saved["training"]["steps"] == 80
    assert saved["latent_space"] == {"kind": "pixel", "channels": 3} and saved["parameterisation"] == "eps"


def test_resume_continues_bit_exactly(shapes, tmp_path):
    straight = str(tmp_path / "straight.safetensors")
    train_refiner(_opts(shapes, straight, steps=24, save_every=12))
    resumed = str(tmp_path / "resumed.safetensors")
    train_refiner(_opts(shapes, resumed, steps=12))
    meta = train_refiner(_opts(shapes, resumed, steps=24, resume=True))
    a, _ = checkpoint.load(straight)
    b, _ = checkpoint.load(resumed)
    assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)
    assert meta["training"]["steps"] == 24 and len(meta["losses"]) == 24


@pytest.mark.parametrize("parameterisation", ["v", "flow"])
def test_other_parameterisations_train(shapes, tmp_path, parameterisation):
    meta = train_refiner(_opts(shapes, str(tmp_path / "p.safetensors"), steps=30, parameterisation=parameterisation))
    assert meta["parameterisation"] == parameterisation and all(map(lambda v: v == v, meta["losses"]))


def test_latent_space_refiner_with_a_vae(shapes, tmp_path, zoo):
    out = str(tmp_path / "latent.safetensors")
    meta = train_refiner(_opts(shapes, out, steps=10, space="latent", vae=os.path.join(zoo, paths.TINY_SD15),
                               resolution=64))
    assert meta["latent_space"]["kind"] == "vae" and meta["latent_space"]["channels"] == 4


def test_unreadable_images_are_skipped_and_counted(shapes, tmp_path):
    data = tmp_path / "mixed"
    make_data("shapes", 3, 32, str(data), seed=1)
    (data / "broken.png").write_bytes(b"not a png")
    images, captions, skipped = load_images(str(data), 32)
    assert images.shape == (3, 3, 32, 32) and skipped == 1 and all(c for c in captions)
    assert images.min() >= -1 and images.max() <= 1


@pytest.mark.parametrize("setup,match", [("empty", "has no readable images"), ("missing", "is not a folder"),
                                         ("range", r"--t-range 500 500"), ("resume", "no training state")])
def test_bad_trainer_input_is_named(tmp_path, shapes, setup, match):
    data = {"empty": str(tmp_path), "missing": str(tmp_path / "nope")}.get(setup, shapes)
    kw = {"range": {"t_range": (500, 500)}, "resume": {"resume": True}}.get(setup, {})
    with pytest.raises(ValueError, match=match):
        train_refiner(_opts(data, str(tmp_path / "x.safetensors"), **kw))


def test_command_line(tmp_path):
    data = tmp_path / "figs"
    run = lambda *a: subprocess.run([sys.executable, TRAIN_PY, *a], capture_output=True, text=True, timeout=300)  # noqa: E731
    out = run("make-data", "--kind", "figures", "--n", "4", "--size", "32", "--out", str(data))
    assert out.returncode == 0, out.stderr
    assert len(list(data.glob("*.json"))) == 4
    out = run("refiner", "--data", str(data), "--out", str(tmp_path / "r.safetensors"), "--steps", "4", "--batch", "2",
              "--resolution", "32", "--t-range", "0", "500", "--sample-every", "4")
    assert out.returncode == 0, out.stderr[-2000:]
    assert (tmp_path / "r.safetensors.samples" / "step_000004.png").is_file()
    out = run("refiner", "--data", str(tmp_path / "none"), "--out", str(tmp_path / "x.safetensors"))
    assert out.returncode == 2 and "is not a folder" in out.stderr


def test_fine_tuned_base_loads_through_the_pack_and_the_hosts_unet_loader(shapes, tmp_path, zoo, tiny_models):
    import comfy.sd

    from stepwise.models import diffusion

    out = str(tmp_path / "ft.safetensors")
    meta = train_refiner(_opts(shapes, out, steps=4, batch=2, resolution=64, base=os.path.join(zoo, paths.TINY_SD15)))
    assert meta["conditioning"] == "text" and meta["base"]["name"] == paths.TINY_SD15 and len(meta["base"]["sha256"]) == 64
    ours = diffusion.model_patcher(*checkpoint.load(out), "ft")
    host = comfy.sd.load_diffusion_model(out)  # the host's own UNet loader reads the same file
    x = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    ctx = torch.randn(1, 77, 64, generator=torch.Generator().manual_seed(1))
    a = ours.model.apply_model(x, torch.tensor([2.0]), c_crossattn=ctx)
    b = host.model.apply_model(x, torch.tensor([2.0]), c_crossattn=ctx)
    torch.testing.assert_close(a, b)
    base = tiny_models[paths.TINY_SD15][0].model.apply_model(x, torch.tensor([2.0]), c_crossattn=ctx)
    assert (a - base).abs().max() > 0  # it did train


def test_lora_mode_writes_a_lora_the_hosts_loader_applies(shapes, tmp_path, zoo, tiny_models):
    import comfy.lora
    import comfy.sd
    import comfy.utils

    from stepwise.models import diffusion

    out = str(tmp_path / "lora.safetensors")
    meta = train_refiner(_opts(shapes, out, steps=4, batch=2, resolution=64, lr=1e-2, lora_rank=4,
                               base=os.path.join(zoo, paths.TINY_SD15)))
    assert meta["network"]["class"] == "lora" and meta["training"]["lora_rank"] == 4
    lora_sd = comfy.utils.load_torch_file(out)
    base = tiny_models[paths.TINY_SD15][0]
    patches = comfy.lora.load_lora(lora_sd, comfy.lora.model_lora_keys_unet(base.model))
    assert len(patches) == sum(k.endswith(".lora_up.weight") for k in lora_sd) > 0  # every layer maps
    patched, _ = comfy.sd.load_lora_for_models(base, None, lora_sd, 1.0, 0)
    x = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    ctx = torch.randn(1, 77, 64, generator=torch.Generator().manual_seed(1))

    def predict(m):
        import comfy.model_management

        comfy.model_management.load_models_gpu([m])
        return m.model.apply_model(x, torch.tensor([2.0]), c_crossattn=ctx)

    assert (predict(patched) - predict(base)).abs().max() > 0
    with pytest.raises(checkpoint.CheckpointError, match="a LoRA for stepwise-tiny-sd15"):
        diffusion.model_patcher(*checkpoint.load(out), "lora")


def test_lora_without_base_is_refused(shapes, tmp_path):
    with pytest.raises(ValueError, match="--lora-rank needs --base"):
        train_refiner(_opts(shapes, str(tmp_path / "x.safetensors"), lora_rank=4))


def test_fine_tune_an_sdxl_shaped_base_with_pooled_and_size_conditioning(shapes, tmp_path, zoo, tiny_models):
    from stepwise.models import diffusion

    out = str(tmp_path / "xl.safetensors")
    meta = train_refiner(_opts(shapes, out, steps=3, batch=2, resolution=64, base=os.path.join(zoo, paths.TINY_SDXL)))
    assert meta["network"]["model_class"] == "SDXL" and meta["latent_space"]["latent_format"] == "SDXL"
    model = diffusion.model_patcher(*checkpoint.load(out), "xl")
    adm = meta["network"]["unet_config"]["adm_in_channels"]
    y = torch.zeros(1, adm)
    ctx = torch.zeros(1, 77, meta["network"]["unet_config"]["context_dim"])
    assert torch.isfinite(model.model.apply_model(torch.randn(1, 4, 8, 8), torch.tensor([1.0]), c_crossattn=ctx, y=y)).all()


def test_bf16_autocast_on_the_cpu(shapes, tmp_path):
    meta = train_refiner(_opts(shapes, str(tmp_path / "bf16.safetensors"), steps=6, precision="bf16"))
    assert all(v == v for v in meta["losses"]) and meta["training"]["precision"] == "bf16"


@pytest.mark.parametrize("arch", ["tiny"])  # a refiner from scratch has no context (the attention archs need one)
def test_gradient_checkpointing_trains_the_same_weights(shapes, tmp_path, arch):
    plain = str(tmp_path / "plain.safetensors")
    checkpointed = str(tmp_path / "ckpt.safetensors")
    train_refiner(_opts(shapes, plain, steps=4, arch=arch))
    train_refiner(_opts(shapes, checkpointed, steps=4, arch=arch, grad_checkpointing=True))
    a, _ = checkpoint.load(plain)
    b, _ = checkpoint.load(checkpointed)
    assert set(a) == set(b) and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_gradient_checkpointing_recomputes_every_block():
    from comfy.ldm.modules.attention import SpatialTransformer
    from comfy.ldm.modules.diffusionmodules.openaimodel import ResBlock

    from stepwise.models import diffusion
    from stepwise.models.init import seeded_init_
    from stepwise.trainers.loop import checkpoint_blocks

    model = diffusion.new_model(diffusion.unet_config("compact", 3, context_dim=8), "eps", "pixel")
    seeded_init_(model.diffusion_model, 0)
    unet = model.diffusion_model
    calls = []
    for layer in unet.modules():
        if isinstance(layer, (ResBlock, SpatialTransformer)):  # a sub-layer: recomputation calls it again
            next(layer.children()).register_forward_hook(lambda m, i, o: calls.append(m))
    x, t, ctx = torch.randn(2, 3, 16, 16), torch.rand(2), torch.randn(2, 4, 8)
    model.apply_model(x, t, c_crossattn=ctx).square().mean().backward()
    plain = len(calls)
    grads = [p.grad.clone() for p in unet.parameters() if p.grad is not None]
    unet.zero_grad(set_to_none=True)
    calls.clear()
    assert plain > 0 and checkpoint_blocks(unet) == plain
    model.apply_model(x, t, c_crossattn=ctx).square().mean().backward()
    assert len(calls) == 2 * plain  # each layer ran again in the backward pass
    assert all(torch.allclose(g, p.grad, atol=1e-6) for g, p in zip(grads, [p for p in unet.parameters()
                                                                            if p.grad is not None]))


def test_bad_ema_device_is_named(shapes, tmp_path):
    with pytest.raises(ValueError, match="--ema-device 'gpu'"):
        train_refiner(_opts(shapes, str(tmp_path / "x.safetensors"), ema_device="gpu"))


@pytest.mark.parametrize("arch", ["compact", "small"])
def test_a_from_scratch_refiner_with_cross_attention_is_refused_by_name(shapes, tmp_path, arch):
    with pytest.raises(ValueError, match=f"--arch {arch}: from scratch a refiner is unconditional"):
        train_refiner(_opts(shapes, str(tmp_path / "r.safetensors"), arch=arch))
