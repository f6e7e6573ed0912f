"""Host-free reference tests for kernels.p2p_plan: prompts, plans, windows and per-call decisions of
Prompt-to-Prompt, on hand-made token ids and word lists."""

import math

import pytest
import torch

from stepwise.kernels import attention_edit as ae
from stepwise.kernels import p2p_plan as pp
from stepwise.kernels.token_align import replace_mapper

START, END = 49406, 49407
VOCAB = {"a": [320], "cat": [2368], "dog": [1929], "riding": [6765], "bicycle": [11652], "red": [736],
         "hippopotamus": [9291, 11714, 1855], "big": [1205]}
DEFAULTS = dict(mode="replace", cross_replace=0.8, word_cross_replace="", self_replace=0.4, reweight="",
                blend_words="", blend_threshold=0.3, blend_start=0.2, record=True)


def chunks(text: str, weight: float = 1.0, length: int = 77) -> list[list[tuple]]:
    """What the host's tokenizer gives for a plain prompt: one chunk of (id, weight, word index) tuples."""
    ids = [START] + [t for w in text.split() for t in VOCAB[w]] + [END]
    ids += [END] * (length - len(ids))
    return [[(i, weight if 0 < p < len(ids) - 1 else 1.0, 0) for p, i in enumerate(ids)]]


def prompt(text: str, name: str = "source") -> pp.Prompt:
    return pp.read_prompt(text, name, chunks(text), [VOCAB[w] for w in text.split()])


def plan(source: str, target: str, **kw) -> pp.Plan:
    return pp.make_plan(prompt(source), prompt(target, "target"), **{**DEFAULTS, **kw})


CAT, DOG = "a cat riding a bicycle", "a dog riding a bicycle"


# --- prompts ---

def test_read_prompt_word_by_word():
    p = prompt("a hippopotamus riding a bicycle")
    assert p.words == ("a", "hippopotamus", "riding", "a", "bicycle")
    assert p.ids[:9] == (START, 320, 9291, 11714, 1855, 6765, 320, 11652, END) and len(p.ids) == 77
    assert p.word_ids[:10] == (0, 1, 2, 2, 2, 3, 4, 5, 0, 0) and p.length == 9


def test_read_prompt_refuses_weights_embeddings_and_long_prompts():
    per_word = [VOCAB[w] for w in CAT.split()]
    with pytest.raises(ValueError, match=r"source prompt 'a cat riding a bicycle' uses prompt weights"):
        pp.read_prompt(CAT, "source", chunks(CAT, weight=1.3), per_word)
    embedded = chunks(CAT)
    embedded[0][2] = (torch.zeros(8), 1.0, 0)  # an embedding in place of a token id
    with pytest.raises(ValueError, match="uses prompt weights such as"):
        pp.read_prompt(CAT, "source", embedded, per_word)
    with pytest.raises(ValueError, match="uses prompt weights such as"):  # the host's tokens are not the words'
        pp.read_prompt(CAT, "source", chunks(DOG), per_word)
    long = "cat " * 80
    with pytest.raises(ValueError, match="the target prompt has 80 tokens; .* up to 75 tokens"):
        pp.read_prompt(long, "target", chunks("cat", length=77) * 2, [[2368]] * 80)


# --- plans ---

def test_replace_plan_is_the_word_swap_map():
    p = plan(CAT, DOG)
    assert torch.equal(p.mapping, replace_mapper(list(p.source.word_ids), list(p.target.word_ids)))
    assert torch.equal(p.mapping, torch.eye(77)) and not p.keep.any() and p.tokens == 77
    assert torch.equal(p.weights, torch.ones(77)) and torch.equal(p.cross_fractions, torch.full((77,), 0.8))
    assert not p.blend and p.needs_maps


def test_refine_plan_maps_the_end_token_to_the_end_token():
    """The correctness fix, through the plan: a lengthened prompt's end token (7) takes the source's end token (6);
    a shortened one's end token (6) the source's (7)."""
    longer = plan("a cat riding a bicycle", "a cat riding a red bicycle", mode="refine")
    assert longer.mapping[6, 7] == 1 and longer.mapping[:, 7].sum() == 1
    assert longer.keep.nonzero().flatten().tolist() == [5]  # "red"
    shorter = plan("a cat riding a red bicycle", "a cat riding a bicycle", mode="refine")
    assert shorter.mapping[7, 6] == 1 and shorter.mapping[:, 6].sum() == 1
    assert shorter.keep.nonzero().flatten().tolist() == [76]  # the padding position the source has no twin for


def test_per_word_values_and_blend_positions():
    p = plan(CAT, DOG, word_cross_replace="dog:0.2, bicycle:1", reweight="dog:3, a:-0.5", blend_words="cat, dog")
    assert p.cross_fractions[2] == pytest.approx(0.2) and p.cross_fractions[5] == 1.0 and p.cross_fractions[3] == 0.8
    assert p.weights[2] == 3 and p.weights[1] == p.weights[4] == -0.5 and p.weights[3] == 1
    assert p.blend_src == (2,) and p.blend_tgt == (2,) and p.blend
    assert plan(CAT, CAT, mode="reweight", reweight="cat:2").mapping.equal(torch.eye(77))
    assert not plan(CAT, DOG, record=False).needs_maps
    assert plan(CAT, DOG).map_level == pp.MAP_LEVEL == 2 and plan(CAT, DOG, map_scale="1/2").map_level == 1
    assert pp.map_size(32, 32, plan(CAT, DOG, map_scale="1/2").map_level) == (16, 16)


BAD = [
    (dict(target="a big cat riding a bicycle"), "got 5 source and 6 target words"),
    (dict(mode="reweight"), "reweight edits one prompt"),
    (dict(reweight="horse:2"), "reweight: the word 'horse' is not in 'a dog riding a bicycle'"),
    (dict(reweight="dog=2"), r"'dog=2' is not word:value"),
    (dict(word_cross_replace="dog:1.5"), r"outside \[0, 1\]"),
    (dict(blend_words="horse"), "blend_words: the word 'horse' is not in 'a cat riding a bicycle' or"),
    (dict(mode="swap"), "mode 'swap' is not one of replace, refine, reweight"),
    (dict(cross_replace=1.5), "cross_replace must be between 0 and 1, got 1.5"),
    (dict(blend_start=-0.1), "blend_start must be between 0 and 1"),
    (dict(map_scale="1/8"), "map_scale '1/8' is not one of 1/4, 1/2"),
]


@pytest.mark.parametrize("kw,message", BAD, ids=[b[1][:30] for b in BAD])
def test_bad_plans_are_refused_naming_the_value(kw, message):
    kw = dict(kw)
    target = kw.pop("target", DOG)
    with pytest.raises(ValueError, match=message):
        plan(CAT, target, **kw)


# --- decisions per model call ---

def test_windows_and_step_decisions_follow_sigma():
    sched = torch.tensor([10.0, 5.0, 2.0, 1.0, 0.0])  # 4 steps
    p = plan(CAT, DOG, cross_replace=0.5, word_cross_replace="dog:0.25", self_replace=0.75, blend_words="dog",
             blend_start=0.5)
    ends = pp.windows(p, sched)
    assert ends.cross == {0.5: 2.0, 0.25: 5.0} and ends.self_end == 1.0 and ends.blend_end == 2.0
    first = pp.step(p, ends, 10.0)
    assert first.alpha is not None and first.alpha.sum() == 77 and first.alpha[2] == 1  # every token edited
    assert first.self_inject and not first.blend
    second = pp.step(p, ends, 5.0)
    assert second.alpha[2] == 0 and second.alpha[1] == 1  # "dog"'s own window ended
    third = pp.step(p, ends, 2.0)
    assert third.alpha is None and third.self_inject and third.blend  # no edit at all: None
    assert not pp.step(p, ends, 1.0).self_inject
    off = plan(CAT, DOG, cross_replace=0.0, self_replace=0.0)
    assert pp.windows(off, sched).cross == {0.0: math.inf} and pp.step(off, pp.windows(off, sched), 10.0).alpha is None


def test_edit_tensors_are_made_once_per_call_and_device():
    p = plan("a cat riding a bicycle", "a cat riding a red bicycle", mode="refine", reweight="red:2")
    current = pp.step(p, pp.windows(p, torch.tensor([3.0, 1.0, 0.0])), 3.0)
    t = pp.edit_tensors(p, current, torch.device("cpu"), torch.float16)
    w_src, w_own = ae.edit_weights(current.alpha, p.keep, p.weights)
    assert t["m"].dtype == torch.float16 and torch.equal(t["w_src"], w_src.half()) and torch.equal(t["w_own"],
                                                                                                 w_own.half())
    assert pp.edit_tensors(p, current, torch.device("cpu"), torch.float16) is t
    replace = plan(CAT, DOG)
    current = pp.step(replace, pp.windows(replace, torch.tensor([3.0, 1.0, 0.0])), 3.0)
    assert pp.edit_tensors(replace, current, torch.device("cpu"), torch.float32)["w_own"] is None  # no own share


def test_pair_rows_find_the_pair_by_uuid_in_any_layout():
    assert pp.pair_rows(["other", "ours"], {"ours"}, 4) == ([2], [3])
    assert pp.pair_rows(["ours", "other", "ours"], {"ours"}, 6) == ([0, 4], [1, 5])
    assert pp.pair_rows(["other"], {"ours"}, 2) is None and pp.pair_rows([], {"ours"}, 2) is None


def test_map_size_halves_and_rounds_up():
    assert pp.map_size(64, 64) == (16, 16) and pp.map_size(15, 9) == (4, 3) and pp.map_size(8, 8, 0) == (8, 8)


def test_pair_probs_average_the_pairs_chunks():
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(4, 6, 8, generator=g), torch.randn(4, 77, 8, generator=g)
    out = pp.pair_probs(q, k, 2, 77, [0, 2], [1, 3])
    ref = ae.token_probs(q, k, 2, 77)
    torch.testing.assert_close(out, torch.stack([(ref[0] + ref[2]) / 2, (ref[1] + ref[3]) / 2]))


def test_blend_denoised_keeps_the_source_outside_the_blend_words_maps():
    p = plan(CAT, DOG, blend_words="dog", blend_threshold=0.5)
    maps = torch.zeros(2, 4, 4, 77)
    maps[1, 0, 0, 2] = 1.0  # "dog" attends to the top-left corner only
    denoised = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    out = pp.blend_denoised(denoised, maps.reshape(2, 16, 77), (4, 4), p)
    mask = ae.blend_mask(maps[:, ..., 2], 8, 8, 0.5)[0, 0].bool()
    assert mask.any() and not mask.all()
    assert torch.equal(out[0], denoised[0])
    assert torch.equal(out[1][:, ~mask], denoised[0][:, ~mask])
    torch.testing.assert_close(out[1][:, mask], denoised[1][:, mask])  # s + 1·(t − s): t up to rounding
