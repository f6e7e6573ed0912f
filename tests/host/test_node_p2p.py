"""PromptToPromptAttn and its attention-map node in the real host, in-process, through the host's own samplers."""

import comfy.model_management
import comfy.patcher_extension
import comfy.sample
import comfy.samplers
import nodes
import pytest
import torch

from stepwise.kernels import attention_edit as ae
from stepwise.kernels import p2p_plan
from stepwise.kernels.token_align import word_ids
from stepwise.nodes import p2p_runtime as runtime
from stepwise.nodes.p2p import PromptToPromptAttn
from stepwise.nodes.p2p_handover import MAPS_KEY, HandOver, find_record
from stepwise.nodes.p2p_maps import PromptToPromptMaps
from stepwise.nodes.p2p_pair import tokenize
from stepwise_dev import paths
from stepwise_dev.inprocess import encode

SAMPLERS = ["euler", "euler_ancestral", "heun", "dpmpp_2m", "dpmpp_sde"]
MODELS = [paths.TINY_SD15, paths.TINY_SDXL]
SEED = 11
DEFAULTS = dict(mode="replace", cross_replace=0.8, word_cross_replace="", self_replace=0.4, reweight="",
                blend_words="", blend_threshold=0.3, blend_start=0.2, record_maps=True)


def assert_same(a, b):
    """Equal up to float rounding (batch sizes differ, so BLAS may round differently)."""
    scale = float(b.detach().abs().max()) + 1e-6
    torch.testing.assert_close(a, b, rtol=1e-4, atol=2e-5 * scale)


def differ(a, b) -> float:
    return float((a - b).abs().max() / (b.abs().max() + 1e-6))


def empty(size=16):
    return {"samples": torch.zeros(1, 4, size, size)}


def p2p_node(models, name, source, target, latent=None, **kw):
    model, clip, _ = models[name]
    return PromptToPromptAttn.execute(model=model, clip=clip, source=source, target=target,
                                      latent=latent or empty(), **{**DEFAULTS, **kw}).result


def ksample(model, positive, negative, latent, sampler="euler", cfg=4.0, steps=5, callback=None):
    """What KSampler does: noise from the seed and the latent's batch_index, then the host's sampler."""
    noise = comfy.sample.prepare_noise(latent["samples"], SEED, latent.get("batch_index"))
    return comfy.sample.sample(model, noise, steps, cfg, sampler, "normal", positive, negative, latent["samples"],
                               disable_pbar=True, seed=SEED, callback=callback)


def run(models, name, source, target, sampler="euler", cfg=4.0, steps=5, **kw):
    m, pos, lat = p2p_node(models, name, source, target, **kw)
    return ksample(m, pos, encode(models[name][1], ""), lat, sampler, cfg, steps), lat


def plain(models, name, text, sampler="euler", cfg=4.0, steps=5, model=None):
    _, clip, _ = models[name]
    return ksample(model or models[name][0], encode(clip, text), encode(clip, ""), empty(), sampler, cfg, steps)[0]


CAT, DOG = "a cat riding a bicycle", "a dog riding a bicycle"


# --- invariants ---

@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("sampler", SAMPLERS)
@pytest.mark.parametrize("cfg", [1.0, 4.0])
def test_identical_prompts_give_the_plain_sample_in_both_rows(tiny_models, name, sampler, cfg):
    out, _ = run(tiny_models, name, CAT, CAT, sampler, cfg)
    reference = plain(tiny_models, name, CAT, sampler, cfg)
    assert_same(out[0], reference)
    assert_same(out[1], reference)


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("sampler", SAMPLERS)
def test_no_windows_give_the_plain_target_and_an_edit_changes_only_the_target(tiny_models, name, sampler):
    off, _ = run(tiny_models, name, CAT, DOG, sampler, cross_replace=0.0, self_replace=0.0)
    source = plain(tiny_models, name, CAT, sampler)
    assert_same(off[0], source)
    assert_same(off[1], plain(tiny_models, name, DOG, sampler))
    edited, _ = run(tiny_models, name, CAT, DOG, sampler)
    assert_same(edited[0], source)
    assert differ(edited[1], off[1]) > 1e-3


EDITS = {
    "replace": dict(mode="replace", target=DOG),
    "replace_word_window": dict(mode="replace", target=DOG, word_cross_replace="dog:0.2"),
    "refine": dict(mode="refine", target="a cat riding a red bicycle"),
    "reweight": dict(mode="reweight", target="", reweight="riding:4, cat:-0.5"),
    "replace_reweight_blend": dict(mode="replace", target=DOG, reweight="dog:2", blend_words="cat, dog"),
    "refine_blend": dict(mode="refine", target="a cat riding a red bicycle", blend_words="red",
                         blend_threshold=0.5, blend_start=0.0),
}


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("edit", EDITS)
def test_the_source_row_is_never_changed(tiny_models, name, edit):
    kw = dict(EDITS[edit])
    out, _ = run(tiny_models, name, CAT, kw.pop("target"), "dpmpp_2m", **kw)
    assert_same(out[0], plain(tiny_models, name, CAT, "dpmpp_2m"))
    assert differ(out[1], out[0]) > 1e-3


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("mode,target", [("replace", DOG), ("refine", "a cat riding a red bicycle"),
                                         ("reweight", "")])
def test_reweight_with_all_values_one_is_a_no_op(tiny_models, name, mode, target):
    base, _ = run(tiny_models, name, CAT, target, "heun", mode=mode)
    words = (target or CAT).split()
    ones, _ = run(tiny_models, name, CAT, target, "heun", mode=mode, reweight=", ".join(f"{w}:1" for w in words))
    assert torch.equal(ones, base)


# --- windows are decided by σ ---

def split_run(models, name, sampler, fraction, window):
    """The same edit as one run with ``window`` = fraction, made as two runs: the first ``E`` steps with the window
    over all of them, then the rest with it off (first-order and Heun samplers continue exactly)."""
    model, clip, _ = models[name]
    negative = encode(clip, "")
    steps = 6
    sigmas = comfy.samplers.calculate_sigmas(model.get_model_object("model_sampling"), "normal", steps).cpu()
    end = int(fraction * steps)
    first = dict(cross_replace=0.0, self_replace=0.0)
    first[window] = 1.0
    m1, pos1, lat = p2p_node(models, name, CAT, DOG, **first)
    noise = comfy.sample.prepare_noise(lat["samples"], SEED, lat["batch_index"])
    sampler_obj = comfy.samplers.sampler_object(sampler)
    x = comfy.sample.sample_custom(m1, noise, 4.0, sampler_obj, sigmas[:end + 1], pos1, negative, lat["samples"],
                                   disable_pbar=True, seed=SEED)
    m2, pos2, _ = p2p_node(models, name, CAT, DOG, cross_replace=0.0, self_replace=0.0)
    x = comfy.sample.sample_custom(m2, torch.zeros_like(noise), 4.0, sampler_obj, sigmas[end:], pos2, negative, x,
                                   disable_pbar=True, seed=SEED)
    whole = dict(cross_replace=0.0, self_replace=0.0)
    whole[window] = fraction
    m3, pos3, _ = p2p_node(models, name, CAT, DOG, **whole)
    one = comfy.sample.sample_custom(m3, noise, 4.0, sampler_obj, sigmas, pos3, negative, lat["samples"],
                                     disable_pbar=True, seed=SEED)
    return x, one


@pytest.mark.parametrize("sampler", ["euler", "heun"])
@pytest.mark.parametrize("window", ["cross_replace", "self_replace"])
def test_windows_follow_sigma_not_the_number_of_calls(tiny_models, sampler, window):
    split, one = split_run(tiny_models, paths.TINY_SD15, sampler, 0.5, window)
    assert_same(one, split)


def test_per_word_windows(tiny_models):
    """A word's own window shorter than the default: equal to the default window when both are equal, different
    otherwise."""
    same, _ = run(tiny_models, paths.TINY_SD15, CAT, DOG, cross_replace=0.6, word_cross_replace="dog:0.6")
    default, _ = run(tiny_models, paths.TINY_SD15, CAT, DOG, cross_replace=0.6)
    assert torch.equal(same, default)
    short, _ = run(tiny_models, paths.TINY_SD15, CAT, DOG, cross_replace=0.6, word_cross_replace="dog:0.2")
    assert differ(short[1], default[1]) > 1e-4


# --- local blend and maps ---

@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("sampler", ["euler", "dpmpp_2m", "euler_ancestral"])
def test_local_blend_keeps_the_source_outside_the_mask(tiny_models, name, sampler):
    # The tiny random models' maps are flat: a high threshold gives a mask that is neither empty nor full.
    kw = dict(mode="refine", blend_words="red", blend_threshold=0.9, latent=empty(32))
    out, lat = run(tiny_models, name, CAT, "a cat riding a red bicycle", sampler, **kw)
    record = find_record({**lat, "samples": out})
    red = [i for i, w in enumerate(record.target.word_ids) if w == 5]
    mask = ae.blend_mask(record.maps[1][..., red].sum(-1).unsqueeze(0), 32, 32, 0.9)[0, 0]
    assert 0 < float(mask.mean()) < 1
    outside = (mask == 0).expand_as(out[1])
    scale = float(out.abs().max())
    assert float((out[1] - out[0])[outside].abs().max()) < 1e-4 * scale
    assert float((out[1] - out[0])[~outside].abs().max()) > 1e-3 * scale


def test_attention_map_node_renders_every_word_of_the_run(tiny_models):
    out, lat = run(tiny_models, paths.TINY_SD15, CAT, DOG)
    samples = {**lat, "samples": out}
    images = PromptToPromptMaps.execute(samples=samples, row="both", words="", height=64).result[0]
    assert images.shape == (8, 64 + 20, 64, 3)  # a, cat|dog, riding, bicycle; a label strip under each map
    assert 0.0 <= float(images.min()) and float(images.max()) <= 1.0
    target = PromptToPromptMaps.execute(samples=samples, row="target", words="dog, bicycle", height=32).result[0]
    assert target.shape[0] == 2
    # The maps are the model's: different words attend differently.
    assert differ(target[0, :32], target[1, :32]) > 1e-3
    decoded = torch.rand(2, 48, 48, 3)
    over = PromptToPromptMaps.execute(samples=samples, row="source", words="cat", height=64, image=decoded).result[0]
    assert over.shape == (1, 48 + 20, 48, 3)


@pytest.mark.parametrize("name", MODELS)
def test_map_scale_picks_the_layers_the_maps_and_the_blend_come_from(tiny_models, name):
    latent = empty(32)
    quarter, lat_q = run(tiny_models, name, CAT, DOG, latent=latent)
    half, lat_h = run(tiny_models, name, CAT, DOG, latent=latent, map_scale="1/2")
    assert find_record({**lat_q, "samples": quarter}).maps.shape[:3] == (2, 8, 8)
    assert find_record({**lat_h, "samples": half}).maps.shape[:3] == (2, 16, 16)
    # Without blend the maps are only read: the samples do not depend on where they are taken.
    assert_same(half, quarter)
    # With blend the mask comes from the chosen layers, so the edit differs.
    kw = dict(mode="refine", blend_words="red", blend_threshold=0.9, latent=latent)
    blend_q, _ = run(tiny_models, name, CAT, "a cat riding a red bicycle", **kw)
    blend_h, _ = run(tiny_models, name, CAT, "a cat riding a red bicycle", map_scale="1/2", **kw)
    assert_same(blend_h[0], blend_q[0])
    assert differ(blend_h[1], blend_q[1]) > 1e-4


def test_attention_map_node_refuses_foreign_samples(tiny_models):
    out, lat = run(tiny_models, paths.TINY_SD15, CAT, DOG)
    with pytest.raises(ValueError, match="not the output of a run"):
        PromptToPromptMaps.execute(samples={**lat, "samples": out + 1}, row="target", words="", height=32)
    with pytest.raises(ValueError, match="does not come|do not come"):
        PromptToPromptMaps.execute(samples={"samples": out}, row="target", words="", height=32)
    with pytest.raises(ValueError, match="'horse' is not in the target"):
        PromptToPromptMaps.execute(samples={**lat, "samples": out}, row="target", words="horse", height=32)
    off, lat_off = run(tiny_models, paths.TINY_SD15, CAT, DOG, record_maps=False)
    with pytest.raises(ValueError, match="record_maps"):
        PromptToPromptMaps.execute(samples={**lat_off, "samples": off}, row="target", words="", height=32)


# --- the patch itself, on real projections, in every chunk layout ---

def _hooks(tiny_models, source=CAT, target=DOG, **kw):
    m, pos, lat = p2p_node(tiny_models, paths.TINY_SD15, source, target, **kw)
    plan = pos[0][1][runtime.TAG]
    return runtime.Hooks(plan, HandOver()), plan


@pytest.mark.parametrize("layout", [(1, 0), (0, 1), (0,), (1,), (0, 0, 1)])
def test_attention_patch_edits_only_the_target_row_of_its_own_chunk(tiny_models, layout):
    hooks, plan = _hooks(tiny_models, reweight="dog:3", word_cross_replace="dog:1")
    ours = "ours"
    uuids = [ours if c == 0 and i == layout.index(0) else f"other{i}" for i, c in enumerate(layout)]
    run = runtime.Run(plan, {ours})
    run.step = p2p_plan.Step(1.0, torch.ones(77))
    g = torch.Generator().manual_seed(0)
    rows, heads, d = 2 * len(layout), 2, 8
    q = torch.randn(rows, 16, heads * d, generator=g)
    k, v = torch.randn(rows, 154, heads * d, generator=g), torch.randn(rows, 154, heads * d, generator=g)
    k[:, 77:], v[:, 77:] = k[:, :77], v[:, :77]  # the host repeats a 77-token context to a longer negative's
    extra = {"n_heads": heads, "uuids": uuids, "cond_or_uncond": list(layout), "attn_precision": None,
             runtime.STATE_KEY: run}  # the run's state, as the host hands the run's transformer_options on
    expected = runtime._default_attention(q.clone(), k.clone(), v.clone(), extra)
    out = hooks.attn2(("input", 1, 0), q.clone(), k.clone(), v.clone(), extra)
    if 0 in layout:
        c = layout.index(0)
        s, t = 2 * c, 2 * c + 1

        def split(x):
            heads_first = x.reshape(1, -1, heads, d).transpose(1, 2)
            return heads_first[..., :77, :] if x.shape[1] == 154 else heads_first

        ref = ae.edit_reference(split(q[s:s + 1]), split(k[s:s + 1]), split(q[t:t + 1]), split(k[t:t + 1]),
                                split(v[t:t + 1]), plan.mapping, torch.ones(77), plan.keep, plan.weights)
        torch.testing.assert_close(out[t], ref.transpose(1, 2).reshape(16, heads * d).float(), rtol=1e-4, atol=1e-4)
        assert not torch.allclose(out[t], expected[t])
        untouched = [r for r in range(rows) if r != t]
    else:
        untouched = list(range(rows))
    torch.testing.assert_close(out[untouched], expected[untouched])


@pytest.mark.parametrize("name", MODELS)
def test_an_extra_positive_prompt_is_its_own_chunk_and_left_alone(tiny_models, name):
    """ConditioningCombine of the pair with another prompt: the host batches the other prompt as an extra positive
    chunk; only the pair's target row is edited, so the source row equals the unpatched model's."""
    model, clip, _ = tiny_models[name]
    m, pos, lat = p2p_node(tiny_models, name, CAT, DOG)
    combined = nodes.ConditioningCombine().combine(pos, encode(clip, "a watercolor painting"))[0]
    negative = encode(clip, "")
    edited = ksample(m, combined, negative, lat)
    unpatched = ksample(model, combined, negative, lat)
    assert_same(edited[0], unpatched[0])
    assert differ(edited[1], unpatched[1]) > 1e-3


def test_an_attention_patch_already_in_the_slot_is_chained(tiny_models):
    model, clip, _ = tiny_models[paths.TINY_SD15]
    calls = []

    def other(q, k, v, extra):  # another node's patch: halves the attention output
        calls.append(q.shape[0])
        return 0.5 * runtime._default_attention(q, k, v, extra)

    patched = model.clone()
    for key in runtime.transformer_blocks(patched):
        patched.set_model_attn2_replace(other, key[0], key[1])  # registered without the transformer index
    reference = plain(tiny_models, paths.TINY_SD15, CAT, model=patched)
    n = len(calls)
    assert n > 0
    m, pos, lat = PromptToPromptAttn.execute(model=patched, clip=clip, source=CAT, target=CAT, latent=empty(),
                                             **DEFAULTS).result
    out = ksample(m, pos, encode(clip, ""), lat)
    assert len(calls) > n
    assert_same(out[0], reference)
    assert_same(out[1], reference)
    # the incoming model is not mutated
    assert all(v is other for v in patched.model_options["transformer_options"]["patches_replace"]["attn2"].values())


def test_state_is_fresh_per_run_and_gone_after_an_interrupt(tiny_models):
    model, clip, _ = tiny_models[paths.TINY_SD15]
    m, pos, lat = p2p_node(tiny_models, paths.TINY_SD15, CAT, DOG, blend_words="dog")
    negative = encode(clip, "")
    first = ksample(m, pos, negative, lat)
    stop = comfy.model_management.InterruptProcessingException

    def interrupt(step, x0, x, total):
        if step == 2:
            raise stop()

    with pytest.raises(stop):
        ksample(m, pos, negative, lat, callback=interrupt)
    owners = [w for w in m.get_wrappers(comfy.patcher_extension.WrappersMP.OUTER_SAMPLE, runtime.WRAPPER_KEY)]
    # nothing of a run is left: not on the hooks (they hold no run), not in the model's options
    assert owners and not any(isinstance(v, runtime.Run) for v in vars(owners[0].__self__).values())
    assert runtime.STATE_KEY not in m.model_options.get("transformer_options", {})
    assert torch.equal(ksample(m, pos, negative, lat), first)


class _Guider:
    """What the OUTER_SAMPLE wrapper sees of the host's CFGGuider: its conditions and its model options."""

    def __init__(self, pos, model_options):
        self.conds = {"positive": [{**pos[0][1], "uuid": "pair"}]}
        self.model_options = model_options


class _Executor:
    def __init__(self, guider, inner):
        self.class_obj, self.inner = guider, inner

    def __call__(self, *args):
        return self.inner(self.class_obj.model_options)


def test_interleaved_runs_of_one_patched_model_each_see_their_own_state(tiny_models):
    """A run inside another run of the same model (the host's OUTER_SAMPLE protocol, as a CFGGuider drives it):
    each run's hooks find that run's state in the options they are handed, the inner run does not end the outer
    one's, and every guider gets its own options back with no state in them."""
    m, pos, lat = p2p_node(tiny_models, paths.TINY_SD15, CAT, DOG)
    wrapper = m.get_wrappers(comfy.patcher_extension.WrappersMP.OUTER_SAMPLE, runtime.WRAPPER_KEY)[0]
    hooks = wrapper.__self__
    seen = {}

    def run(name, inner=None):
        guider = _Guider(pos, m.model_options)
        original = guider.model_options

        def body(options):
            state = runtime.run_of(options["transformer_options"], hooks.plan)
            assert state is not None and state.ours == {"pair"}
            state.calls += 1
            if inner is not None:
                inner()
            seen[name] = (state, runtime.run_of(options["transformer_options"], hooks.plan))
            return torch.zeros(2, 4, 8, 8)

        wrapper(_Executor(guider, body), torch.zeros(2, 4, 8, 8), lat["samples"], None, torch.ones(3))
        assert guider.model_options is original and runtime.STATE_KEY not in original["transformer_options"]

    run("outer", inner=lambda: run("inner"))
    assert seen["outer"][0] is seen["outer"][1] and seen["inner"][0] is seen["inner"][1]
    assert seen["outer"][0] is not seen["inner"][0] and seen["outer"][0].calls == seen["inner"][0].calls == 1
    assert not any(isinstance(v, runtime.Run) for v in vars(hooks).values())
    # a hook handed options without this plan's run does nothing
    assert runtime.run_of(m.model_options.get("transformer_options"), hooks.plan) is None


def test_two_runs_of_one_patched_model_sampled_alternately_keep_their_results(tiny_models):
    """Sequential runs with different samplers and the same model give each exactly its standalone result."""
    model, clip, _ = tiny_models[paths.TINY_SD15]
    m, pos, lat = p2p_node(tiny_models, paths.TINY_SD15, CAT, DOG, blend_words="dog")
    negative = encode(clip, "")
    first = [ksample(m, pos, negative, lat, sampler) for sampler in ("euler", "dpmpp_sde")]
    again = [ksample(m, pos, negative, lat, sampler) for sampler in ("dpmpp_sde", "euler")][::-1]
    assert all(torch.equal(a, b) for a, b in zip(first, again))


def test_refine_plan_maps_the_end_token_to_the_end_token(tiny_models):
    """The host's end token and padding share id 49407: a lengthened (shortened) target's end token takes the
    source's end token, not a padding position (nor nothing)."""
    _, pos, _ = p2p_node(tiny_models, paths.TINY_SD15, CAT, "a cat riding a red bicycle", mode="refine")
    plan = pos[0][1][runtime.TAG]
    assert plan.source.length == 7 and plan.target.length == 8
    assert plan.mapping[6, 7] == 1 and plan.mapping[:, 7].sum() == 1 and plan.keep.nonzero().flatten().tolist() == [5]
    _, pos, _ = p2p_node(tiny_models, paths.TINY_SD15, "a cat riding a red bicycle", CAT, mode="refine")
    plan = pos[0][1][runtime.TAG]
    assert plan.mapping[7, 6] == 1 and plan.mapping[:, 6].sum() == 1 and plan.keep.nonzero().flatten().tolist() == [76]


def test_one_node_feeding_two_samplers_gives_each_its_own_maps(tiny_models):
    m, pos, lat = p2p_node(tiny_models, paths.TINY_SD15, CAT, DOG)
    negative = encode(tiny_models[paths.TINY_SD15][1], "")
    a = {**lat, "samples": ksample(m, pos, negative, lat, "euler", steps=4)}
    b = {**lat, "samples": ksample(m, pos, negative, lat, "dpmpp_2m", steps=6)}
    record_a, record_b = find_record(a), find_record(b)
    assert record_a is not record_b and differ(record_a.maps, record_b.maps) > 1e-6
    assert find_record(a) is record_a  # in either order
    for out in (a, b):
        assert PromptToPromptMaps.execute(samples=out, row="target", words="dog", height=32).result[0].shape[0] == 1


def test_the_hand_over_keeps_the_last_runs_only(tiny_models):
    m, pos, lat = p2p_node(tiny_models, paths.TINY_SD15, CAT, DOG)
    negative = encode(tiny_models[paths.TINY_SD15][1], "")
    outs = [{**lat, "samples": ksample(m, pos, negative, lat, steps=2 + i)} for i in range(HandOver.KEEP + 2)]
    handover = lat[MAPS_KEY]
    assert len(handover.runs) == HandOver.KEEP
    for out in outs[-HandOver.KEEP:]:
        find_record(out)
    with pytest.raises(ValueError, match="not the output of a run"):
        find_record(outs[0])


def test_sampler_custom_denoised_output_finds_the_maps_of_its_run(tiny_models):
    from comfy_extras.nodes_custom_sampler import SamplerCustom

    model, clip, _ = tiny_models[paths.TINY_SD15]
    m, pos, lat = p2p_node(tiny_models, paths.TINY_SD15, CAT, DOG)
    sigmas = comfy.samplers.calculate_sigmas(model.get_model_object("model_sampling"), "karras", 4).cpu()[:3]
    out, denoised = SamplerCustom().sample(m, True, SEED, 4.0, pos, encode(clip, ""),
                                           comfy.samplers.sampler_object("euler"), sigmas, lat)
    assert not torch.equal(out["samples"], denoised["samples"])
    assert find_record(denoised) is find_record(out)
    assert PromptToPromptMaps.execute(samples=denoised, row="both", words="", height=32).result[0].shape[0] == 8


def test_sdxl_pairs_the_pooled_outputs(tiny_models):
    model, clip, _ = tiny_models[paths.TINY_SDXL]
    _, pos, lat = p2p_node(tiny_models, paths.TINY_SDXL, CAT, DOG)
    plain_src, plain_tgt = encode(clip, CAT), encode(clip, DOG)
    assert pos[0][0].shape[0] == 2 and pos[0][1]["pooled_output"].shape[0] == 2
    assert torch.equal(pos[0][0][0], plain_src[0][0][0]) and torch.equal(pos[0][0][1], plain_tgt[0][0][0])
    assert torch.equal(pos[0][1]["pooled_output"][1], plain_tgt[0][1]["pooled_output"][0])
    assert lat["samples"].shape[0] == 2 and lat["batch_index"] == [0, 0]


def test_pair_latent_repeats_the_batch_index_and_mask(tiny_models):
    latent = {"samples": torch.randn(1, 4, 16, 16), "batch_index": [3], "noise_mask": torch.ones(1, 1, 16, 16)}
    _, _, lat = p2p_node(tiny_models, paths.TINY_SD15, CAT, DOG, latent=latent)
    assert lat["batch_index"] == [3, 3] and lat["noise_mask"].shape[0] == 2
    assert torch.equal(lat["samples"][0], lat["samples"][1])


# --- prompts and bad input ---

def test_prompts_are_read_word_by_word_like_the_host(tiny_models):
    clip = tiny_models[paths.TINY_SD15][1]
    prompt, _ = tokenize(clip, "a photo of a hippopotamus, trending", "source")
    assert prompt.words == ("a", "photo", "of", "a", "hippopotamus,", "trending")
    assert list(prompt.word_ids) == word_ids([1, 1, 1, 1, 4, 1], 77)  # hippo-pot-amus + ","


BAD = [
    (dict(source="a cat", target="a big cat", mode="replace"), "got 2 source and 3 target words"),
    (dict(source="a cat", target="a dog", mode="reweight"), "reweight edits one prompt"),
    (dict(source="a (cat:1.3)", target="a dog"), r"prompt weights such as \(word:1.2\)"),
    (dict(source="cat " * 80, target="dog"), "has 80 tokens; .* up to 75 tokens"),
    (dict(source="a cat", target="a dog", reweight="horse:2"), "reweight: the word 'horse' is not in 'a dog'"),
    (dict(source="a cat", target="a dog", reweight="dog=2"), r"'dog=2' is not word:value"),
    (dict(source="a cat", target="a dog", word_cross_replace="dog:1.5"), r"outside \[0, 1\]"),
    (dict(source="a cat", target="a dog", blend_words="horse"), "blend_words: the word 'horse' is not in 'a cat' or"),
    (dict(source="a cat", target="a dog", mode="swap"), "mode 'swap' is not one of"),
    (dict(source="a cat", target="a dog", cross_replace=1.5), "cross_replace must be between 0 and 1"),
    (dict(source="a cat", target="a dog", map_scale="1/3"), "map_scale '1/3' is not one of 1/4, 1/2"),
    (dict(source="a cat", target="a dog", latent={"samples": torch.zeros(2, 4, 16, 16)}), "latent has 2 images"),
]


@pytest.mark.parametrize("kw,message", BAD, ids=[b[1][:30] for b in BAD])
def test_bad_input_is_refused_with_a_clear_message(tiny_models, kw, message):
    kw = dict(kw)
    source, target = kw.pop("source"), kw.pop("target")
    with pytest.raises(ValueError, match=message):
        p2p_node(tiny_models, paths.TINY_SD15, source, target, **kw)


def test_sampling_the_pair_with_another_latent_is_refused(tiny_models):
    m, pos, lat = p2p_node(tiny_models, paths.TINY_SD15, CAT, DOG)
    with pytest.raises(ValueError, match="needs its two-row LATENT; the sampler got 1 rows"):
        ksample(m, pos, encode(tiny_models[paths.TINY_SD15][1], ""), empty())
    _, other_pos, _ = p2p_node(tiny_models, paths.TINY_SD15, CAT, DOG)
    with pytest.raises(ValueError, match="different PromptToPromptAttn node"):
        ksample(m, other_pos, encode(tiny_models[paths.TINY_SD15][1], ""), lat)
    with pytest.raises(ValueError, match="connected to negative"):
        ksample(m, encode(tiny_models[paths.TINY_SD15][1], ""), pos, lat)
