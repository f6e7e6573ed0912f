"""train.py estimator on the synthetic world: a short CPU training separates corrupted from clean images from the
diffusion model's x0 estimates, checkpoints load for the nodes, resume is bit-exact, and bad options are named."""


import os

import numpy as np
import pytest
import torch

from stepwise.kernels.artifact import auroc
from stepwise.models import checkpoint
from stepwise.models.world import make_data, shape_image
from stepwise.nodes.artifact import load_estimator
from stepwise.trainers import EstimatorOptions, train_estimator
from stepwise.trainers.base import DiffusionBase
from stepwise.trainers.estimator import corrupted_pairs, evaluate, to_tensor
from stepwise_dev import paths, refiners


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("shapes"))
    make_data("shapes", 120, 32, out, seed=3)
    return out


@pytest.fixture(scope="module")
def base(zoo):
    return refiners.demo_refiner(zoo)  # a pixel-space shapes model trained on t in [0, 500)


def _opts(data, base, out, **kw):
    args = dict(data=data, out=out, base=base, arch="small", t_range=(0, 250), steps=200, batch=8, lr=2e-3, ema=0.0,
                resolution=32, seed=4, clean_share=0.5, probes=(0.75, 1.0), eval_steps=10)
    args.update(kw)
    return EstimatorOptions(**args)


@pytest.fixture(scope="module")
def trained(shapes, base, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("estimator") / "estimator.safetensors")
    meta = train_estimator(_opts(shapes, base, out))
    return out, meta


def test_short_training_separates_corrupted_from_clean(trained, base):
    out, meta = trained
    assert meta["kind"] == "estimator" and meta["latent_space"] == {"kind": "pixel", "channels": 3}
    assert meta["evaluation"]["probes"][-1]["probe"] == 1.0 and meta["evaluation"]["scheduler"] == "karras"
    est = load_estimator(out, "estimator.safetensors")
    model = DiffusionBase(base, None, torch.device("cpu"))
    held_out = torch.stack([to_tensor(shape_image(32, 77, i)[0][None])[0] for i in range(96)])  # unseen seed
    result = evaluate(est.net, model, held_out, (0.9, 1.0), 10, seed=12)
    # 96 pairs: a chance AUROC has a standard deviation of about 0.04; 200 steps reach about 0.66 (image) and
    # 0.75 (pixel) here, and without the ranking loss the image AUROC stays at 0.5
    for row in result["probes"]:
        assert row["image_auroc"] > 0.6 and row["pixel_auroc"] > 0.65, row


def test_heatmap_shape_and_range(trained):
    out, _ = trained
    est = load_estimator(out, "estimator.safetensors")
    clean = np.stack([shape_image(32, 5, i)[0] for i in range(3)])
    bad, _ = corrupted_pairs(clean, np.random.default_rng(0))
    heat, score = est(to_tensor(bad), 0.0)
    assert heat.shape == (3, 32, 32) and score.shape == (3,)
    assert float(heat.min()) >= 0 and float(heat.max()) <= 1


def test_resume_is_bit_exact(shapes, base, tmp_path):
    straight = str(tmp_path / "a.safetensors")
    train_estimator(_opts(shapes, base, straight, steps=6, save_every=3, probes=()))
    resumed = str(tmp_path / "b.safetensors")
    train_estimator(_opts(shapes, base, resumed, steps=3, probes=()))
    train_estimator(_opts(shapes, base, resumed, steps=6, resume=True, probes=()))
    a, _ = checkpoint.load(straight)
    b, _ = checkpoint.load(resumed)
    assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("kw,match", [
    (dict(base=None), "--base is required"),
    (dict(t_range=(0, 800)), r"--t-range 0 800 lies outside the timesteps --base was trained on \[0, 500\)"),
    (dict(arch="huge"), "--arch 'huge'"),
    (dict(clean_share=1.0), "--clean-share 1.0"),
])
def test_bad_options_are_named(shapes, base, tmp_path, kw, match):
    kw = dict(kw)
    with pytest.raises(ValueError, match=match):
        train_estimator(_opts(shapes, kw.pop("base", base), str(tmp_path / "x.safetensors"), **kw))


def test_auroc_of_the_ranking_is_what_the_evaluation_reports(trained, base):
    out, meta = trained
    est = load_estimator(out, "estimator.safetensors")
    model = DiffusionBase(base, None, torch.device("cpu"))
    images = torch.stack([to_tensor(shape_image(32, 78, i)[0][None])[0] for i in range(10)])
    report = evaluate(est.net, model, images, (1.0,), 10, seed=3)
    rng = np.random.default_rng(3)
    clean = ((images.permute(0, 2, 3, 1).numpy() + 1) * 127.5).round().clip(0, 255).astype(np.uint8)
    bad, _ = corrupted_pairs(clean, rng)
    _, scores = est(to_tensor(np.concatenate([clean, bad])), 0.0)
    want = auroc(scores, torch.cat([torch.zeros(10), torch.ones(10)]))
    assert report["probes"][0]["image_auroc"] == pytest.approx(want, abs=1e-4)


def test_a_world_model_is_a_base_the_estimator_reads(tmp_path):
    """A from-scratch world checkpoint (train.py world) is a host checkpoint in SD1.5's layout that the host's model
    detection does not know: the estimator (and every trainer's --base) reads it through the pack's own loader, in
    the model's own (flow) noising, without registering anything with the host."""
    from stepwise.models.scenes import render, sample_scene, write_dataset

    world = paths.world_models()[paths.WORLD]
    model = DiffusionBase(world, None, torch.device("cpu"))
    assert model.parameterisation == "flow" and model.latent_space["vae"] == os.path.basename(world)
    x = model.encode(to_tensor(np.stack([render(sample_scene(32, 99, i, objects=(1, 1)))[0] for i in range(4)])))
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
    sigma = torch.full((4,), 0.5)
    x0 = model.x0(x, sigma, noise)
    torch.testing.assert_close(x0, model.denoise((1 - 0.5) * x + 0.5 * noise, sigma))  # flow: (1 − σ)·x + σ·n
    # a trained model: half-noised scenes come back far closer than the noisy input (a random UNet would not)
    assert (x0 - x).pow(2).mean() < 0.25 * ((0.5 * x + 0.5 * noise) - x).pow(2).mean()
    data = str(tmp_path / "scenes")
    write_dataset(data, 20, 32, seed=3, objects=(1, 1))
    out = str(tmp_path / "world-estimator.safetensors")
    meta = train_estimator(_opts(data, world, out, t_range=(0, 1000), steps=2, batch=2, probes=(0.5,)))
    assert meta["parameterisation"] == "flow" and meta["base"]["name"] == os.path.basename(world)
    # the held-out probe of a flow model is half way down the `simple` schedule its workflows use (σ 0.5 of 1)
    assert meta["evaluation"]["scheduler"] == "simple"
    assert meta["evaluation"]["probes"][0]["sigma"] == pytest.approx(0.5, abs=1e-3)
    assert load_estimator(out, "world-estimator.safetensors").net is not None
