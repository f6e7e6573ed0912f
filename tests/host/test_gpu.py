"""The node tests on a CUDA UNet in fp16 and bf16 (skipped without CUDA).

Users patch CUDA models in half precision; every technique issue adds its node tests here.
"""

import os

import pytest
import torch

from stepwise.nodes.anagram import VisualAnagram
from stepwise.nodes.hybrid import HybridNoise
from stepwise.nodes.schedule import SplitSigmasAtTimestep
from stepwise_dev import paths
from stepwise_dev.inprocess import encode, noise_for, sample_sigmas, scheduler_sigmas

pytestmark = pytest.mark.gpu

DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


@pytest.fixture(scope="module", params=[(m, d) for m in (paths.TINY_SD15, paths.TINY_SDXL) for d in DTYPES])
def cuda_model(request, zoo):
    import comfy.model_management
    import comfy.sd

    from stepwise_zoo.tiny import register

    register()
    name, dtype = request.param
    if dtype == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bf16")
    model, clip, vae, _ = comfy.sd.load_checkpoint_guess_config(os.path.join(zoo, name),
                                                                model_options={"dtype": DTYPES[dtype]})
    assert model.load_device.type == "cuda" and model.model.get_dtype() == DTYPES[dtype]
    yield model, clip, vae, DTYPES[dtype]
    comfy.model_management.unload_all_models()


def test_text_to_image_on_cuda(cuda_model):
    model, clip, vae, _ = cuda_model
    latent = torch.zeros(1, 4, 16, 16)
    out = sample_sigmas(model, encode(clip, "a red circle"), encode(clip, ""), latent, noise_for(latent.shape, 0),
                        scheduler_sigmas(model, "karras", 6))
    image = vae.decode(out)
    assert torch.isfinite(out).all() and torch.isfinite(image).all() and image.std() > 0.01


def test_split_sigmas_two_stages_equal_one_run_on_cuda(cuda_model):
    model, clip, _, dtype = cuda_model
    pos, neg = encode(clip, "a blue square"), encode(clip, "")
    latent = torch.zeros(1, 4, 16, 16)
    noise = noise_for(latent.shape, 1)
    high, low, _ = SplitSigmasAtTimestep.execute(model=model, sigmas=scheduler_sigmas(model, "karras", 8),
                                                 timestep=300).result
    one = sample_sigmas(model, pos, neg, latent, noise, torch.cat([high, low[1:]]))
    two = sample_sigmas(model, pos, neg, sample_sigmas(model, pos, neg, latent, noise, high), torch.zeros_like(noise), low)
    tol = 2e-2 if dtype == torch.float16 else 5e-2
    torch.testing.assert_close(two, one, rtol=tol, atol=tol)


def _sample(model, pos, neg, latent, noise, cfg=4.0):
    import comfy.sample

    return comfy.sample.sample(model, noise, 5, cfg, "euler", "normal", pos, neg, latent, disable_pbar=True, seed=3)


def test_anagram_equivariance_and_identity_on_cuda(cuda_model):
    model, clip, _, dtype = cuda_model
    a, b, neg = encode(clip, "a cat"), encode(clip, "a dog"), encode(clip, "")
    latent = torch.zeros(1, 4, 16, 16)
    noise = noise_for(latent.shape, 2)
    tol = 3e-2 if dtype == torch.float16 else 8e-2
    m, pos = VisualAnagram.execute(model=model, positive_1=a, view_1="identity", positive_2=a, view_2="identity").result
    plain = _sample(model, a, neg, latent, noise)
    torch.testing.assert_close(_sample(m, pos, neg, latent, noise), plain, rtol=tol, atol=tol * float(plain.abs().max()))
    m, pos = VisualAnagram.execute(model=model, positive_1=a, view_1="identity", positive_2=b, view_2="rot90").result
    image = _sample(m, pos, neg, latent, noise)
    m2, pos2 = VisualAnagram.execute(model=model, positive_1=b, view_1="identity", positive_2=a, view_2="rot270").result
    turned = _sample(m2, pos2, neg, latent, torch.rot90(noise, 1, dims=(-2, -1)))
    assert torch.isfinite(image).all()
    torch.testing.assert_close(turned, torch.rot90(image, 1, dims=(-2, -1)), rtol=tol, atol=tol * float(image.abs().max()))


def test_hybrid_equal_prompts_on_cuda(cuda_model):
    model, clip, _, dtype = cuda_model
    a, neg = encode(clip, "a skull"), encode(clip, "")
    latent = torch.zeros(1, 4, 16, 16)
    noise = noise_for(latent.shape, 3)
    m, pos = HybridNoise.execute(model=model, positive_a=a, positive_b=a).result
    plain = _sample(model, a, neg, latent, noise)
    tol = 3e-2 if dtype == torch.float16 else 8e-2
    torch.testing.assert_close(_sample(m, pos, neg, latent, noise), plain, rtol=tol, atol=tol * float(plain.abs().max()))


def test_late_step_refine_with_mask_and_refiner_on_cuda(cuda_model, tmp_path):
    from stepwise.models import checkpoint, diffusion
    from stepwise.nodes.refine import LateStepRefine
    from stepwise_dev import refiners
    from stepwise_dev.inprocess import recording_sigmas

    model, clip, _, dtype = cuda_model
    pos, neg = encode(clip, "a red circle"), encode(clip, "")
    path = str(tmp_path / "late.safetensors")
    refiners.copy_of_base(model, path, (0, 500))
    late, late_sigmas = recording_sigmas(diffusion.model_patcher(*checkpoint.load(path), "late"))
    latent = {"samples": noise_for((1, 4, 16, 16), 4)}
    mask = torch.zeros(16, 16)
    mask[:, 8:] = 1
    out = LateStepRefine.execute(model=model, refiner=late, positive=pos, negative=neg, latent=latent, seed=1, steps=6,
                                 cfg=4.0, sampler_name="dpmpp_2m", scheduler="karras", start_t=700, split_t=250,
                                 shape_model="refiner", detail_model="refiner", mask=mask).result[0]["samples"]
    assert torch.isfinite(out).all()
    assert torch.equal(out[..., :8], latent["samples"][..., :8])
    top = float(model.get_model_object("model_sampling").sigmas[499])
    assert late_sigmas and max(late_sigmas) <= top * 1.001


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_trainer_on_cuda_in_half_precision(tmp_path, precision):
    from stepwise.models.world import make_data
    from stepwise.trainers import RefinerOptions, train_refiner

    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bf16")
    data = str(tmp_path / "data")
    make_data("shapes", 16, 32, data, seed=0)
    meta = train_refiner(RefinerOptions(data=data, out=str(tmp_path / "r.safetensors"), steps=40, batch=8, lr=1e-3,
                                        resolution=32, precision=precision, device="cuda"))
    losses = meta["losses"]
    assert all(loss == loss for loss in losses) and sum(losses[-4:]) < sum(losses[:4])


def test_trainer_keeps_its_ema_on_the_cpu_and_checkpoints_gradients_on_cuda(tmp_path):
    from stepwise.models import checkpoint
    from stepwise.models.world import make_data
    from stepwise.trainers import RefinerOptions, train_refiner

    data = str(tmp_path / "data")
    make_data("shapes", 16, 32, data, seed=0)
    outs = {}
    for name, kw in {"plain": {}, "lean": {"ema_device": "cpu", "grad_checkpointing": True}}.items():
        outs[name] = str(tmp_path / f"{name}.safetensors")
        train_refiner(RefinerOptions(data=data, out=outs[name], steps=6, batch=8, lr=1e-3, resolution=32,
                                     device="cuda", **kw))
    a, _ = checkpoint.load(outs["plain"])
    b, _ = checkpoint.load(outs["lean"])
    assert set(a) == set(b) and all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)


def test_prompt_to_prompt_on_cuda(cuda_model):
    """Identical prompts give the plain image in both rows; an edit changes only the target; maps are recorded."""
    import comfy.sample

    from stepwise.nodes.p2p import PromptToPromptAttn
    from stepwise.nodes.p2p_maps import PromptToPromptMaps

    model, clip, _, dtype = cuda_model
    neg = encode(clip, "")
    kw = dict(mode="replace", cross_replace=0.8, word_cross_replace="", self_replace=0.4, reweight="dog:2",
              blend_words="dog", blend_threshold=0.3, blend_start=0.2, record_maps=True)
    latent = {"samples": torch.zeros(1, 4, 32, 32)}

    def run(m, pos, lat, sampler="euler_ancestral"):
        noise = comfy.sample.prepare_noise(lat["samples"], 5, lat.get("batch_index"))
        return comfy.sample.sample(m, noise, 6, 5.0, sampler, "karras", pos, neg, lat["samples"], disable_pbar=True,
                                   seed=5)

    plain = run(model, encode(clip, "a cat"), latent)
    neutral = {**kw, "reweight": "", "blend_words": ""}  # the words to reweight and blend are the edit's ("dog")
    m, pos, lat = PromptToPromptAttn.execute(model=model, clip=clip, source="a cat", target="a cat", latent=latent,
                                             **neutral).result
    same = run(m, pos, lat)
    tol = 2e-2 if dtype == torch.float16 else 5e-2
    scale = float(plain.abs().max())
    torch.testing.assert_close(same[0], plain[0], rtol=tol, atol=tol * scale)
    torch.testing.assert_close(same[1], plain[0], rtol=tol, atol=tol * scale)
    m, pos, lat = PromptToPromptAttn.execute(model=model, clip=clip, source="a cat", target="a dog", latent=latent,
                                             **kw).result
    edit = run(m, pos, lat)
    assert torch.isfinite(edit).all()
    torch.testing.assert_close(edit[0], plain[0], rtol=tol, atol=tol * scale)
    maps = PromptToPromptMaps.execute(samples={**lat, "samples": edit}, row="both", words="", height=64).result[0]
    assert maps.shape[0] == 4 and torch.isfinite(maps).all()
