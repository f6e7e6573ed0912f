"""ArtifactEstimator and ArtifactEarlyReject in the real host, in-process: kept seeds equal direct sampling for
every kind of sampler, the model-call count, heatmap shapes and ranges, both modes, and errors naming values."""

import json

import comfy.samplers
import nodes
import pytest
import torch

from stepwise.kernels import artifact
from stepwise.nodes.artifact import SIGMA_KEY, ArtifactEstimator, LoadedEstimator
from stepwise.nodes.early_reject import ArtifactEarlyReject
from stepwise_dev import paths
from stepwise_dev.inprocess import encode

SAMPLERS = ["euler", "dpmpp_2m", "euler_ancestral", "dpmpp_sde"]


def conds(models, name):
    clip = models[name][1]
    return encode(clip, "a red circle"), encode(clip, "")


def reject(models, name=paths.TINY_SD15, model=None, **kw):
    positive, negative = conds(models, name)
    args = dict(model=model or models[name][0], positive=positive, negative=negative,
                latent_image={"samples": torch.zeros(1, 4, 8, 8)}, seed=5, seeds=4, keep=2, steps=6, cfg=3.0,
                sampler_name="euler", scheduler="normal", probe=0.5, mode="training-free", window=2, denoise=1.0)
    args.update(kw)
    return ArtifactEarlyReject.execute(**args).result


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_kept_seeds_equal_sampling_each_seed_alone(tiny_models, sampler):
    kept, scores, maps, report = reject(tiny_models, sampler_name=sampler)
    report = json.loads(report)
    assert kept["samples"].shape == (2, 4, 8, 8) and len(scores) == 2 and scores == sorted(scores)
    assert maps.shape == (2, 64, 64) and float(maps.min()) >= 0 and float(maps.max()) <= 1
    all_scores = {r["seed"]: r["score"] for r in report["seeds"]}
    assert report["kept_seeds"] == sorted(all_scores, key=all_scores.get)[:2]
    positive, negative = conds(tiny_models, paths.TINY_SD15)
    for row, s in enumerate(report["kept_seeds"]):
        alone = nodes.common_ksampler(tiny_models[paths.TINY_SD15][0], s, 6, 3.0, sampler, "normal", positive,
                                      negative, {"samples": torch.zeros(1, 4, 8, 8)})[0]["samples"]
        assert torch.equal(kept["samples"][row:row + 1], alone), f"seed {s} differs from sampling it alone"


def test_model_calls_are_k_times_probe_plus_m_times_the_rest(tiny_models):
    model = tiny_models[paths.TINY_SD15][0].clone()
    calls = []

    def count(apply_model, args):
        calls.append(args["input"].shape[0])
        return apply_model(args["input"], args["timestep"], **args["c"])

    model.set_model_unet_function_wrapper(count)
    _, _, _, report = reject(tiny_models, model=model, seeds=5, keep=2, steps=10, probe=0.3, cfg=1.0)
    report = json.loads(report)
    k = report["probe_step"]
    assert k == 3 and len(calls) == 5 * k + 2 * (10 - k) == artifact.early_reject_calls(5, k, 2, 10)
    assert report["model_calls"] == report["model_calls_formula"] == len(calls)


def test_a_run_is_repeatable_and_the_next_run_starts_clean(tiny_models):
    a = reject(tiny_models, sampler_name="euler_ancestral")
    b = reject(tiny_models, sampler_name="euler_ancestral")
    assert torch.equal(a[0]["samples"], b[0]["samples"]) and a[3] == b[3]


def shapes_latent(vae, n=2, size=32):
    """Finished latents: synthetic shapes images encoded by the model's VAE."""
    from stepwise.models.world import shape_image

    pixels = torch.stack([torch.from_numpy(shape_image(size, 4, i)[0].copy()).float() / 255 for i in range(n)])
    return {"samples": vae.encode(pixels)}


def test_estimator_training_free_on_finished_and_mid_schedule_latents(tiny_models):
    model, clip, vae = tiny_models[paths.TINY_PIXEL]
    positive, negative = conds(tiny_models, paths.TINY_PIXEL)
    latent = shapes_latent(vae)
    base = dict(model=model, positive=positive, negative=negative, mode="training-free", probe_sigma=1.0, cfg=1.0,
                seed=0)
    scores, heat, over = ArtifactEstimator.execute(latent=latent, sigma=0.0, vae=vae, **base).result
    assert len(scores) == 2 and heat.shape == (2, 32, 32) and over.shape == (2, 32, 32, 3)
    assert float(heat.min()) >= 0 and float(heat.max()) == pytest.approx(1.0, abs=1e-4)
    # a latent returned mid-schedule with leftover noise: its sigma from the schedule and the step
    sigmas = comfy.samplers.calculate_sigmas(model.get_model_object("model_sampling"), "normal", 8)
    noisy = nodes.common_ksampler(model, 1, 8, 3.0, "euler", "normal", positive, negative, shapes_latent(vae, 1),
                                  start_step=0, last_step=3)[0]
    with pytest.raises(ValueError, match=r"looks unfinished \(estimated noise"):
        ArtifactEstimator.execute(latent=noisy, sigma=0.0, **base)
    s2, h2, _ = ArtifactEstimator.execute(latent=noisy, sigma=0.0, sigmas=sigmas, step=3, **base).result
    assert h2.shape == (1, 32, 32) and all(map(lambda v: v == v, s2))
    s3, _, _ = ArtifactEstimator.execute(latent={**noisy, SIGMA_KEY: float(sigmas[3])}, sigma=0.0, **base).result
    assert s3 == s2
    with pytest.raises(ValueError, match="step 9 is outside the 8-step schedule"):
        ArtifactEstimator.execute(latent=noisy, sigma=0.0, sigmas=sigmas, step=9, **base)


@pytest.mark.parametrize("kw,match", [
    (dict(keep=5), r"keep \(5\) must not exceed seeds \(4\)"),
    (dict(probe=1.0), "probe 1.0 must lie strictly between 0 and 1"),
    (dict(mode="trained"), "mode 'trained' needs an estimator"),
    (dict(latent_image={"samples": torch.zeros(2, 4, 8, 8)}), "batch size 2"),
])
def test_bad_early_reject_input_is_named(tiny_models, kw, match):
    with pytest.raises(ValueError, match=match):
        reject(tiny_models, **kw)


def test_estimator_for_another_latent_space_is_refused(tiny_models):
    from stepwise.models.estimator import ArtifactEstimatorNet

    pixel = LoadedEstimator(ArtifactEstimatorNet(3, width=8), {"latent_space": {"kind": "pixel", "channels": 3}},
                            "pixel.safetensors")
    with pytest.raises(ValueError, match=r"'pixel.safetensors' was trained on pixel \(3 channels\) but the model "
                                         r"works in SD15 \(4 channels\)"):
        reject(tiny_models, mode="trained", estimator=pixel)
    pixel.check_model(tiny_models[paths.TINY_PIXEL][0])  # the pixel-space model is fine


@pytest.mark.parametrize("mode", ["trained", "training-free"])
@pytest.mark.parametrize("size", [(1, 1), (2, 2), (7, 16)])
def test_a_latent_too_small_to_estimate_is_named(tiny_models, mode, size):
    from stepwise.models.estimator import ArtifactEstimatorNet

    model, clip, _ = tiny_models[paths.TINY_PIXEL]
    positive, negative = conds(tiny_models, paths.TINY_PIXEL)
    estimator = LoadedEstimator(ArtifactEstimatorNet(3, width=8), {"latent_space": {"kind": "pixel", "channels": 3}},
                                "pixel.safetensors")
    h, w = size
    with pytest.raises(ValueError, match=rf"the latent is {h}×{w}; Artifact Estimator needs at least 8×8 latent cells"):
        ArtifactEstimator.execute(model=model, positive=positive, negative=negative,
                                  latent={"samples": torch.zeros(1, 3, h, w)}, mode=mode, sigma=0.0, probe_sigma=1.0,
                                  cfg=1.0, seed=0, estimator=estimator)
    with pytest.raises(ValueError, match="x0 is 1×1; the artifact estimator needs at least 2 latent cells"):
        estimator(torch.zeros(1, 3, 1, 1), 0.0)  # Artifact Early Reject's path to the network


def test_auto_probe_sigma_is_the_models_half_signal_level(tiny_models):
    """probe_sigma 0 (the default) re-noises to where signal equals noise in the model's own noising: σ 1 on an
    SD-style model, σ 1/2 on a flow model (the world model), where σ 1 is pure noise and is refused."""
    from stepwise.models import checkpoint, world_model
    from stepwise.models.scenes import render, sample_scene
    from stepwise.nodes.artifact import probe_level

    eps = tiny_models[paths.TINY_PIXEL][0]
    assert probe_level(eps, 0.0) == pytest.approx(1.0, rel=1e-6) and probe_level(eps, 2.5) == 2.5
    tensors, _ = checkpoint.load(paths.world_models()[paths.WORLD], "world")
    flow, clip, vae = world_model.load_parts(tensors)
    assert probe_level(flow, 0.0) == pytest.approx(0.5, rel=1e-6)
    with pytest.raises(ValueError, match=r"probe_sigma 1 is at or above this model's largest sigma \(1\): .* use 0 "
                                         r"\(auto: 0.5 for this model\) or a value below 1"):
        probe_level(flow, 1.0)
    pixels = torch.stack([torch.from_numpy(render(sample_scene(32, 99, i, objects=(1, 1)))[0].copy()).float() / 255
                          for i in range(2)])
    args = dict(model=flow, positive=encode(clip, "a red circle"), negative=encode(clip, ""),
                latent={"samples": vae.encode(pixels)}, mode="training-free", sigma=0.0, cfg=1.0, seed=0)
    auto = ArtifactEstimator.execute(probe_sigma=0.0, **args).result
    half = ArtifactEstimator.execute(probe_sigma=0.5, **args).result
    assert auto[0] == pytest.approx(half[0], rel=1e-5) and torch.allclose(auto[1], half[1], atol=1e-5)
    with pytest.raises(ValueError, match="probe_sigma 1 is at or above"):
        ArtifactEstimator.execute(probe_sigma=1.0, **args)
