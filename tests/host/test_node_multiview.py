"""VisualAnagram and HybridNoise in the real host, in-process, through the host's own samplers."""

import comfy.patcher_extension
import comfy.sample
import nodes
import pytest
import torch

from stepwise.nodes.anagram import VisualAnagram
from stepwise.nodes.hybrid import HybridNoise
from stepwise.nodes.multiview import WRAPPER_KEY
from stepwise_dev import paths
from stepwise_dev.inprocess import counting, encode, noise_for, with_parameterisation

SAMPLERS = ["euler", "euler_ancestral", "heun", "dpmpp_2m", "dpmpp_2m_sde", "uni_pc"]
DETERMINISTIC = ["euler", "heun", "dpmpp_2m", "uni_pc"]
MODELS = [paths.TINY_SD15, paths.TINY_SDXL]
WM = comfy.patcher_extension.WrappersMP


def sample(model, positive, negative, latent, noise, sampler="euler", cfg=4.0, steps=5, scheduler="normal"):
    return comfy.sample.sample(model, noise, steps, cfg, sampler, scheduler, positive, negative, latent,
                               disable_pbar=True, seed=7)


def assert_same(a, b):
    """Equal up to float rounding (batch sizes differ, so BLAS may round differently)."""
    scale = float(b.detach().abs().max()) + 1e-6
    torch.testing.assert_close(a, b, rtol=1e-4, atol=2e-5 * scale)


@pytest.fixture(scope="module")
def prompts(tiny_models):
    out = {}
    for name, (model, clip, _) in tiny_models.items():
        out[name] = {t: encode(clip, t) for t in ("a cat", "a dog", "a ship", "")}
    return out


def anagram(model, conds_views, **kw):
    args = {}
    for i, (c, v) in enumerate(conds_views, start=1):
        args[f"positive_{i}"], args[f"view_{i}"] = c, v
    return VisualAnagram.execute(model=model, **args, **kw).result


# --- invariants ---

# Neutral settings of each node: identity views of one prompt, or the same prompt for both bands.
NEUTRAL = {
    "anagram_identity_views": lambda model, c: anagram(model, [(c, "identity"), (c, "identity")]),
    "hybrid_a_equals_b": lambda model, c: HybridNoise.execute(model=model, positive_a=c, positive_b=c).result,
}


@pytest.mark.parametrize("neutral", NEUTRAL)
@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("sampler", SAMPLERS)
@pytest.mark.parametrize("cfg", [1.0, 4.0])
def test_neutral_settings_give_the_plain_sample(tiny_models, prompts, neutral, name, sampler, cfg):
    model = tiny_models[name][0]
    p = prompts[name]
    latent = torch.zeros(1, 4, 16, 16)
    noise = noise_for(latent.shape, 1)
    plain = sample(model, p["a cat"], p[""], latent, noise, sampler, cfg)
    m, pos = NEUTRAL[neutral](model, p["a cat"])
    assert_same(sample(m, pos, p[""], latent, noise, sampler, cfg), plain)


def test_three_band_hybrid_with_equal_prompts_gives_the_plain_sample(tiny_models, prompts):
    model = tiny_models[paths.TINY_SD15][0]
    p = prompts[paths.TINY_SD15]
    latent = torch.zeros(1, 4, 16, 16)
    noise = noise_for(latent.shape, 3)
    plain = sample(model, p["a dog"], p[""], latent, noise)
    m, pos = HybridNoise.execute(model=model, positive_a=p["a dog"], positive_b=p["a dog"], positive_c=p["a dog"],
                                 split="low_mid_high").result
    assert_same(sample(m, pos, p[""], latent, noise), plain)


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("sampler", DETERMINISTIC)
@pytest.mark.parametrize("cfg", [1.0, 4.0])
def test_swapped_prompts_and_flipped_noise_give_the_flipped_image(tiny_models, prompts, name, sampler, cfg):
    model = tiny_models[name][0]
    p = prompts[name]
    latent = torch.zeros(1, 4, 8, 8)
    noise = noise_for(latent.shape, 4)
    m, pos = anagram(model, [(p["a cat"], "identity"), (p["a dog"], "flip_ud")])
    image = sample(m, pos, p[""], latent, noise, sampler, cfg)
    m2, pos2 = anagram(model, [(p["a dog"], "identity"), (p["a cat"], "flip_ud")])
    swapped = sample(m2, pos2, p[""], latent, noise.flip(-2), sampler, cfg)
    assert_same(swapped, image.flip(-2))
    assert (image - sample(model, p["a cat"], p[""], latent, noise, sampler, cfg)).abs().max() > 1e-3


# (view, its inverse as a view, node options): swapping the prompts needs the inverse view, since
# anagram(B: id, A: v^-1)(v x) = v · anagram(A: id, B: v)(x)
INVERSE_PAIRS = [("flip_lr", "flip_lr", {}, {}), ("rot90", "rot270", {}, {}), ("rot180", "rot180", {}, {}),
                 ("skew", "skew", {"skew": 1.5}, {"skew": -1.5}), ("inner_rotate180", "inner_rotate180", {}, {})]


@pytest.mark.parametrize("kind", ["eps", "v", "flow"])
@pytest.mark.parametrize("view,inverse,kw,kw_inverse", INVERSE_PAIRS, ids=[p[0] for p in INVERSE_PAIRS])
def test_equivariance_for_every_parameterisation(tiny_models, prompts, kind, view, inverse, kw, kw_inverse):
    from stepwise.kernels.views import View

    model = with_parameterisation(tiny_models[paths.TINY_SD15][0], kind)
    p = prompts[paths.TINY_SD15]
    latent = torch.zeros(1, 4, 8, 8)
    noise = noise_for(latent.shape, 5)
    m, pos = anagram(model, [(p["a cat"], "identity"), (p["a ship"], view)], **kw)
    image = sample(m, pos, p[""], latent, noise, scheduler="simple")
    v = View(view, **kw)
    m2, pos2 = anagram(model, [(p["a ship"], "identity"), (p["a cat"], inverse)], **kw_inverse)
    assert_same(sample(m2, pos2, p[""], latent, v.apply(noise), scheduler="simple"), v.apply(image))


@pytest.mark.parametrize("view", ["patch_permute", "inner_rotate90"])
def test_permutation_views_sample_a_different_finite_image(tiny_models, prompts, view):
    model = tiny_models[paths.TINY_SD15][0]
    p = prompts[paths.TINY_SD15]
    latent, noise = torch.zeros(1, 4, 8, 8), noise_for((1, 4, 8, 8), 12)
    m, pos = anagram(model, [(p["a cat"], "identity"), (p["a ship"], view)], patch_grid=2, patch_seed=9)
    image = sample(m, pos, p[""], latent, noise)
    assert torch.isfinite(image).all()
    assert (image - sample(model, p["a cat"], p[""], latent, noise)).abs().max() > 1e-3


# --- one batched model call per step ---

@pytest.mark.parametrize("cfg,rows", [(4.0, 4), (1.0, 2)])
def test_two_view_anagram_is_one_model_call_per_step(tiny_models, prompts, cfg, rows):
    model, calls = counting(tiny_models[paths.TINY_SD15][0])
    p = prompts[paths.TINY_SD15]
    m, pos = anagram(model, [(p["a cat"], "identity"), (p["a dog"], "flip_ud")])
    sample(m, pos, p[""], torch.zeros(1, 4, 8, 8), noise_for((1, 4, 8, 8), 0), "euler", cfg, steps=5)
    assert calls == [rows] * 5


def test_four_view_anagram_with_cfg_is_eight_rows_in_one_call(tiny_models, prompts):
    model, calls = counting(tiny_models[paths.TINY_SDXL][0])
    p = prompts[paths.TINY_SDXL]
    m, pos = anagram(model, [(p["a cat"], "identity"), (p["a dog"], "flip_ud"), (p["a ship"], "rot90"),
                             (p["a cat"], "flip_lr")])
    sample(m, pos, p[""], torch.zeros(2, 4, 8, 8), noise_for((2, 4, 8, 8), 0), "euler", 4.0, steps=3)
    assert calls == [2 * 8] * 3  # batch of 2 latents x (4 views + 4 per-view negatives)


def test_hybrid_is_three_rows_per_step(tiny_models, prompts):
    model, calls = counting(tiny_models[paths.TINY_SD15][0])
    p = prompts[paths.TINY_SD15]
    m, pos = HybridNoise.execute(model=model, positive_a=p["a cat"], positive_b=p["a dog"]).result
    sample(m, pos, p[""], torch.zeros(1, 4, 16, 16), noise_for((1, 4, 16, 16), 0), "heun", 4.0, steps=4)
    assert set(calls) == {3} and len(calls) == 2 * 4 - 1  # heun: two evaluations per step but the last


def test_alternate_mode_runs_one_view_per_step_chosen_by_sigma(tiny_models, prompts):
    model, calls = counting(tiny_models[paths.TINY_SD15][0])
    p = prompts[paths.TINY_SD15]
    latent, noise = torch.zeros(1, 4, 8, 8), noise_for((1, 4, 8, 8), 6)
    m, pos = anagram(model, [(p["a cat"], "identity"), (p["a cat"], "identity")], mode="alternate")
    assert_same(sample(m, pos, p[""], latent, noise, "heun"), sample(model, p["a cat"], p[""], latent, noise, "heun"))
    assert set(calls) == {2}
    m, pos = anagram(model, [(p["a cat"], "identity"), (p["a dog"], "flip_ud")], mode="alternate")
    alt = sample(m, pos, p[""], latent, noise, "heun")
    m_avg, pos_avg = anagram(model, [(p["a cat"], "identity"), (p["a dog"], "flip_ud")])
    assert (alt - sample(m_avg, pos_avg, p[""], latent, noise, "heun")).abs().max() > 1e-3
    assert torch.equal(alt, sample(m, pos, p[""], latent, noise, "heun"))


# --- attaching ---

def test_input_model_is_not_mutated_and_patching_twice_installs_once(tiny_models, prompts):
    model = tiny_models[paths.TINY_SD15][0]
    p = prompts[paths.TINY_SD15]
    before = {k: {kk: list(vv) for kk, vv in v.items()} for k, v in model.wrappers.items()}
    m, pos = anagram(model, [(p["a cat"], "identity"), (p["a dog"], "flip_ud")])
    assert {k: {kk: list(vv) for kk, vv in v.items()} for k, v in model.wrappers.items()} == before
    m2, _ = anagram(m, [(p["a cat"], "identity"), (p["a dog"], "flip_ud")])
    for kind in (WM.OUTER_SAMPLE, WM.CALC_COND_BATCH, WM.APPLY_MODEL):
        assert len(m2.get_wrappers(kind, WRAPPER_KEY)) == 1


def test_wrappers_already_on_the_model_keep_running(tiny_models, prompts):
    model = tiny_models[paths.TINY_SD15][0].clone()
    p = prompts[paths.TINY_SD15]
    seen = []

    def other(executor, model_, conds, *args, **kwargs):
        seen.append(len(conds[0]))
        return executor(model_, conds, *args, **kwargs)

    model.add_wrapper_with_key(WM.CALC_COND_BATCH, "another.node", other)
    m, pos = anagram(model, [(p["a cat"], "identity"), (p["a dog"], "flip_ud")])
    sample(m, pos, p[""], torch.zeros(1, 4, 8, 8), noise_for((1, 4, 8, 8), 0), steps=3)
    assert len(seen) == 3


def test_plain_conditioning_through_the_patched_model_samples_plainly(tiny_models, prompts):
    model = tiny_models[paths.TINY_SD15][0]
    p = prompts[paths.TINY_SD15]
    latent, noise = torch.zeros(1, 4, 8, 8), noise_for((1, 4, 8, 8), 8)
    m, _ = anagram(model, [(p["a cat"], "identity"), (p["a dog"], "flip_ud")])
    assert torch.equal(sample(m, p["a cat"], p[""], latent, noise), sample(model, p["a cat"], p[""], latent, noise))


# --- pixel-space models ---

@pytest.fixture(scope="module")
def pixel(tiny_models, prompts):
    model, clip, _ = tiny_models[paths.TINY_PIXEL]
    return model, prompts[paths.TINY_PIXEL]


def test_negate_view_equivariance_on_a_pixel_space_model(pixel):
    model, p = pixel
    latent, noise = torch.zeros(1, 3, 16, 16), noise_for((1, 3, 16, 16), 10)
    m, pos = anagram(model, [(p["a cat"], "identity"), (p["a dog"], "negate")])
    image = sample(m, pos, p[""], latent, noise)
    m2, pos2 = anagram(model, [(p["a dog"], "identity"), (p["a cat"], "negate")])
    assert_same(sample(m2, pos2, p[""], latent, -noise), -image)


def test_gray_color_hybrid_on_a_pixel_space_model(pixel):
    from stepwise.kernels.frequency import gray

    model, p = pixel
    latent, noise = torch.zeros(1, 3, 16, 16), noise_for((1, 3, 16, 16), 11)
    plain = sample(model, p["a cat"], p[""], latent, noise)
    m, pos = HybridNoise.execute(model=model, positive_a=p["a cat"], positive_b=p["a cat"], split="gray_color").result
    assert_same(sample(m, pos, p[""], latent, noise), plain)
    m, pos = HybridNoise.execute(model=model, positive_a=p["a cat"], positive_b=p["a dog"], split="gray_color").result
    mixed = sample(m, pos, p[""], latent, noise)
    assert torch.isfinite(mixed).all() and (gray(mixed) - gray(plain)).abs().max() > 0


# --- bad input: ValueError naming the value, before sampling ---

def _no_calls_raise(model, pos, neg, latent, match):
    counted, calls = counting(model)
    with pytest.raises(ValueError, match=match):
        sample(counted, pos, neg, latent, noise_for(latent.shape, 0))
    assert calls == []


def test_rotation_on_a_non_square_latent(tiny_models, prompts):
    p = prompts[paths.TINY_SD15]
    m, pos = anagram(tiny_models[paths.TINY_SD15][0], [(p["a cat"], "identity"), (p["a dog"], "rot90")])
    _no_calls_raise(m, pos, p[""], torch.zeros(1, 4, 8, 12),
                    r"^Visual Anagram: view_2 is rot90, which needs a square image, but the sampler got 64x96 px "
                    r"\(height x width; a 8x12 latent, 8 px per latent pixel")


def test_patch_grid_that_does_not_divide(tiny_models, prompts):
    p = prompts[paths.TINY_SD15]
    m, pos = anagram(tiny_models[paths.TINY_SD15][0], [(p["a cat"], "identity"), (p["a dog"], "patch_permute")],
                     patch_grid=3)
    _no_calls_raise(m, pos, p[""], torch.zeros(1, 4, 8, 8), "grid 3")


def test_blur_kernel_larger_than_the_latent(tiny_models, prompts):
    p = prompts[paths.TINY_SD15]
    m, pos = HybridNoise.execute(model=tiny_models[paths.TINY_SD15][0], positive_a=p["a cat"], positive_b=p["a dog"],
                                 auto_sigma=False, blur_sigma=2.0, kernel_size=33).result
    _no_calls_raise(m, pos, p[""], torch.zeros(1, 4, 8, 8), "kernel 33 is too large")


def test_area_restricted_negative(tiny_models, prompts):
    p = prompts[paths.TINY_SD15]
    neg = nodes.ConditioningSetArea().append(p[""], 32, 32, 0, 0, 1.0)[0]
    m, pos = anagram(tiny_models[paths.TINY_SD15][0], [(p["a cat"], "identity"), (p["a dog"], "flip_ud")])
    _no_calls_raise(m, pos, neg, torch.zeros(1, 4, 8, 8), "negative entry 0 is restricted.*area")


def test_prompts_combined_after_the_node(tiny_models, prompts):
    p = prompts[paths.TINY_SD15]
    m, pos = anagram(tiny_models[paths.TINY_SD15][0], [(p["a cat"], "identity"), (p["a dog"], "flip_ud")])
    combined = nodes.ConditioningCombine().combine(pos, p["a ship"])[0]
    _no_calls_raise(m, combined, p[""], torch.zeros(1, 4, 8, 8), "combine prompts before the Stepwise node")


def test_node_level_bad_inputs(tiny_models, prompts):
    model = tiny_models[paths.TINY_SD15][0]
    p = prompts[paths.TINY_SD15]
    with pytest.raises(ValueError, match="view_2 is negate.*pixel-space"):
        anagram(model, [(p["a cat"], "identity"), (p["a dog"], "negate")])
    with pytest.raises(ValueError, match="at least two prompts, got 1"):
        VisualAnagram.execute(model=model, positive_1=p["a cat"], view_1="identity", positive_2=None, view_2="flip_ud")
    with pytest.raises(ValueError, match="positive_2 is empty"):
        anagram(model, [(p["a cat"], "identity"), ([], "flip_ud")])
    area = nodes.ConditioningSetArea().append(p["a dog"], 32, 32, 0, 0, 1.0)[0]
    with pytest.raises(ValueError, match="positive_2 entry 0 is restricted.*area"):
        anagram(model, [(p["a cat"], "identity"), (area, "flip_ud")])
    masked = nodes.ConditioningSetMask().append(p["a dog"], torch.ones(1, 8, 8), "default", 1.0)[0]
    with pytest.raises(ValueError, match="positive_b entry 0 is restricted.*mask"):
        HybridNoise.execute(model=model, positive_a=p["a cat"], positive_b=masked)
    with pytest.raises(ValueError, match="gray_color needs a pixel-space model"):
        HybridNoise.execute(model=model, positive_a=p["a cat"], positive_b=p["a dog"], split="gray_color")
    with pytest.raises(ValueError, match="blur_sigma must be > 0, got 0.0"):
        HybridNoise.execute(model=model, positive_a=p["a cat"], positive_b=p["a dog"], auto_sigma=False, blur_sigma=0.0)
    with pytest.raises(ValueError, match="needs three prompts"):
        HybridNoise.execute(model=model, positive_a=p["a cat"], positive_b=p["a dog"], split="low_mid_high")
    with pytest.raises(ValueError, match="positive_c is only used by split low_mid_high"):
        HybridNoise.execute(model=model, positive_a=p["a cat"], positive_b=p["a dog"], positive_c=p["a ship"])
    with pytest.raises(ValueError, match="blur_sigma_fine must be > 0 and smaller"):
        HybridNoise.execute(model=model, positive_a=p["a cat"], positive_b=p["a dog"], positive_c=p["a ship"],
                            split="low_mid_high", auto_sigma=False, blur_sigma=1.0, blur_sigma_fine=2.0)
    with pytest.raises(ValueError, match="kernel_size must be odd"):
        HybridNoise.execute(model=model, positive_a=p["a cat"], positive_b=p["a dog"], kernel_size=8)


def test_views_also_transform_c_concat_image_conditioning():
    """Inpainting/pix2pix models get image conditioning as c_concat: each chunk is viewed like its x."""
    import uuid as uuidlib

    from stepwise.kernels.views import View
    from stepwise.nodes.multiview import TAG, _apply_model, _Call

    u_id, u_flip = uuidlib.uuid4(), uuidlib.uuid4()
    call = _Call(views={u_id: View("identity"), u_flip: View("flip_ud")}, keep={u_id, u_flip})
    x = noise_for((4, 4, 8, 8), 0)  # two chunks (one per uuid) of 2 latents
    c_concat = noise_for((4, 5, 8, 8), 1)
    seen = {}

    def executor(x_, t, c_concat_, c_crossattn, control, transformer_options, **kwargs):
        seen["x"], seen["c"] = x_, c_concat_
        return x_ * 2  # a "denoiser" that is equivariant, so the inverse view must undo the view exactly

    out = _apply_model(executor, x, torch.ones(4), c_concat, None, None, {TAG: call, "uuids": [u_id, u_flip]})
    assert torch.equal(seen["x"][:2], x[:2]) and torch.equal(seen["x"][2:], x[2:].flip(-2))
    assert torch.equal(seen["c"][:2], c_concat[:2]) and torch.equal(seen["c"][2:], c_concat[2:].flip(-2))
    assert torch.equal(out, x * 2)
    assert torch.equal(call.stash[u_flip], x[2:] * 2)
