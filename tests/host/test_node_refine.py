"""LateStepRefine in the real host, in-process: noise levels, stages, the range guard, masks, bad input."""

import pytest
import torch

from stepwise.kernels.schedule import sigma_at_timestep
from stepwise.models import checkpoint, diffusion
from stepwise.nodes.common import sigma_table
from stepwise.nodes.refine import LateStepRefine
from stepwise_dev import paths, refiners
from stepwise_dev.inprocess import encode, recording_sigmas, with_parameterisation


@pytest.fixture(scope="module")
def sd15(tiny_models):
    model, clip, _ = tiny_models[paths.TINY_SD15]
    return model, encode(clip, "a red circle"), encode(clip, "")


@pytest.fixture(scope="module")
def refiner(sd15, tmp_path_factory):
    """The base's own weights as a refiner trained on [0, 500)."""
    path = str(tmp_path_factory.mktemp("refiner") / "late.safetensors")
    refiners.copy_of_base(sd15[0], path, (0, 500))
    return diffusion.model_patcher(*checkpoint.load(path), "late")


def _latent(seed=0, shape=(1, 4, 8, 8)):
    return {"samples": torch.randn(*shape, generator=torch.Generator().manual_seed(seed))}


def refine(sd15, **kw):
    model, pos, neg = sd15
    args = dict(positive=pos, negative=neg, latent=_latent(), seed=3, steps=6, cfg=4.0, sampler_name="euler",
                scheduler="normal", start_t=500, split_t=250, model=model)
    args.update(kw)
    return LateStepRefine.execute(**args).result[0]["samples"]


# --- noise levels ---

@pytest.mark.parametrize("kind", ["eps", "v"])
@pytest.mark.parametrize("scheduler", ["normal", "karras", "exponential", "sgm_uniform"])
def test_start_t_is_the_models_own_sigma_under_every_scheduler(sd15, kind, scheduler):
    model, sigmas = recording_sigmas(with_parameterisation(sd15[0], kind))
    ms = model.get_model_object("model_sampling")
    refine(sd15, model=model, start_t=700, split_t=0, scheduler=scheduler)
    assert sigmas[0] == pytest.approx(float(ms.sigma(torch.tensor(700.0))), rel=1e-5)
    assert sigmas[0] == pytest.approx(sigma_at_timestep(ms.sigmas, 700), rel=1e-6)
    assert len(sigmas) in (6, 7) and sigmas == sorted(sigmas, reverse=True)


def test_start_t_zero_and_an_empty_mask_return_the_input(sd15):
    latent = _latent()
    assert torch.equal(refine(sd15, latent=latent, start_t=0, split_t=0), latent["samples"])
    assert torch.equal(refine(sd15, latent=latent, mask=torch.zeros(64, 64)), latent["samples"])


def test_higher_start_t_changes_more(sd15):
    x = _latent()["samples"]
    d = [float((refine(sd15, start_t=t, split_t=0) - x).abs().mean()) for t in (100, 400, 800)]
    assert d[0] < d[1] < d[2]


@pytest.mark.parametrize("sampler", ["euler", "dpmpp_2m", "euler_ancestral"])
def test_one_model_gives_one_run_whatever_split_t(sd15, sampler):
    single = refine(sd15, split_t=0, sampler_name=sampler)
    for split_t in (500, 250, 100):
        assert torch.equal(refine(sd15, split_t=split_t, sampler_name=sampler), single)


# --- base and refiner ---

def test_refiner_is_never_asked_outside_its_range_and_the_base_covers_the_rest(sd15, refiner):
    base, base_sigmas = recording_sigmas(sd15[0], "test.base")
    late, late_sigmas = recording_sigmas(refiner, "test.refiner")
    table = sigma_table(sd15[0])
    refine(sd15, model=base, refiner=late, start_t=800, split_t=0, shape_model="refiner", sampler_name="heun")
    top = sigma_at_timestep(table, 499)
    assert late_sigmas and max(late_sigmas) <= top * (1 + 1e-5)
    assert base_sigmas and min(base_sigmas) >= top * (1 - 1e-5)
    assert max(base_sigmas) == pytest.approx(sigma_at_timestep(table, 800), rel=1e-5)


def test_shape_stage_base_detail_stage_refiner(sd15, refiner):
    base, base_sigmas = recording_sigmas(sd15[0], "test.base")
    late, late_sigmas = recording_sigmas(refiner, "test.refiner")
    split = sigma_at_timestep(sigma_table(sd15[0]), 250)
    refine(sd15, model=base, refiner=late, start_t=500, split_t=250)
    assert min(base_sigmas) >= split * (1 - 1e-5) and max(late_sigmas) <= split * (1 + 1e-5)
    assert late_sigmas[0] == pytest.approx(split, rel=1e-5)


@pytest.mark.parametrize("masked", [False, True])
def test_stages_continue_exactly(sd15, refiner, masked):
    """Base then refiner (the same weights) equals one run over the joined levels, also under a mask."""
    import comfy.sample

    from stepwise.kernels.masks import latent_mask
    from stepwise.kernels.schedule import segment_schedule
    from stepwise.nodes.refine import late_schedule

    model, pos, neg = sd15
    latent = _latent(2)
    x = latent["samples"]
    mask = None
    if masked:
        mask = torch.zeros(8, 8)
        mask[1:7, 2:8] = 1
    table = sigma_table(model)
    schedule = late_schedule(model, "normal", 6, sigma_at_timestep(table, 500))
    high, low = segment_schedule(schedule, [sigma_at_timestep(table, 250)])
    noise = comfy.sample.prepare_noise(x, 3, None)
    lmask = None if mask is None else latent_mask(mask, 1, 8, 8)
    expected = comfy.sample.sample_custom(model, noise, 4.0, comfy.samplers.sampler_object("euler"),
                                          torch.cat([high, low[1:]]), pos, neg, x, noise_mask=lmask,
                                          disable_pbar=True, seed=3)
    if lmask is not None:
        expected = expected * lmask + x * (1 - lmask)
    two = refine(sd15, latent=latent, refiner=refiner, start_t=500, split_t=250, mask=mask)
    scale = float(expected.abs().max())
    torch.testing.assert_close(two, expected, rtol=1e-4, atol=1e-5 * scale)


def test_refiner_alone_beyond_its_range_is_an_error_naming_the_ranges(sd15, refiner):
    # the uncovered timesteps are named exactly: 500 (the first above the refiner's [0, 500)) to 800 (start_t)
    with pytest.raises(ValueError, match=r"trained on timesteps 500 to 800 of .* refiner on \[0, 500\)"):
        refine(sd15, model=None, refiner=refiner, start_t=800, split_t=0)
    with pytest.raises(ValueError, match=r"trained on timesteps 500 to 999 of"):
        refine(sd15, model=None, refiner=refiner, start_t=999, split_t=0)
    out = refine(sd15, model=None, refiner=refiner, start_t=400, split_t=0)
    assert torch.isfinite(out).all()


# --- masks ---

def test_mask_changes_only_the_masked_area(sd15):
    latent = _latent()
    mask = torch.zeros(64, 64)
    mask[:, 32:] = 1
    out = refine(sd15, latent=latent, mask=mask, refiner=None)
    x = latent["samples"]
    assert torch.equal(out[..., :4], x[..., :4])
    assert float((out[..., 4:] - x[..., 4:]).abs().mean()) > 0.1


def test_mask_with_two_stages_and_soft_values(sd15, refiner):
    latent = _latent(1)
    mask = torch.zeros(8, 8)
    mask[2:6, 2:6] = 1.0
    mask[0, 0] = 0.5
    out = refine(sd15, latent=latent, mask=mask, refiner=refiner, feather=0.0)
    x = latent["samples"]
    outside = torch.ones(8, 8, dtype=torch.bool)
    outside[2:6, 2:6] = False
    outside[0, 0] = False
    assert torch.equal(out[..., outside], x[..., outside])
    assert float((out[..., 2:6, 2:6] - x[..., 2:6, 2:6]).abs().mean()) > 0.1


def test_latent_noise_mask_is_used_when_no_mask_is_connected(sd15):
    latent = _latent()
    latent["noise_mask"] = torch.zeros(1, 64, 64)
    latent["noise_mask"][..., :32, :] = 1
    out = refine(sd15, latent=latent)
    assert torch.equal(out[..., 4:, :], latent["samples"][..., 4:, :])


# --- bad input ---

@pytest.mark.parametrize("kw,match", [({"start_t": 1000}, "start_t 1000 is out of range"),
                                      ({"start_t": 200, "split_t": 300}, r"split_t \(300\) must not exceed start_t \(200\)"),
                                      ({"mask": torch.ones(3, 8, 8)}, "batch of 3 but the latent has 1"),
                                      ({"model": None}, "needs a model")])
def test_bad_input_is_named(sd15, kw, match):
    with pytest.raises(ValueError, match=match):
        refine(sd15, **kw)


def test_latent_of_another_space_is_refused(sd15, tmp_path):
    path = str(tmp_path / "pixel.safetensors")
    refiners.from_scratch(path, channels=3, latent="pixel")
    pixel = diffusion.model_patcher(*checkpoint.load(path), "pixel")
    with pytest.raises(ValueError, match="refiner works on 3-channel latents but the latent has 4"):
        refine(sd15, refiner=pixel)
