"""Reference tests for kernels.token_align and kernels.attention_edit (Prompt-to-Prompt) against the host's CLIP
tokenizer; the tests on hand-made token ids are in tests/unit/test_kernels_p2p_align.py."""

import comfy.sd1_clip
import pytest
import torch

from stepwise.kernels import attention_edit as ae
from stepwise.kernels.token_align import prompt_length, refine_alignment, replace_mapper, word_ids


@pytest.fixture(scope="module")
def tok():
    return comfy.sd1_clip.SD1Tokenizer().clip_l.tokenizer  # the host's bundled CLIP tokenizer


def encode(tok, prompt):
    """Token ids (77, with start/end/padding) and word ids of a prompt, word by word."""
    words = prompt.split()
    per_word = [tok(w, add_special_tokens=False)["input_ids"] for w in words]
    ids = [49406] + [t for w in per_word for t in w] + [49407]
    ids += [49407] * (77 - len(ids))
    return ids, word_ids([len(w) for w in per_word]), words


def test_word_by_word_tokens_equal_the_whole_prompts_tokens(tok):
    for prompt in ("a photo of a hippopotamus", "a watercolor painting of a cat, trending", "bumpy road"):
        whole = tok(prompt)["input_ids"]
        ids, _, _ = encode(tok, prompt)
        assert ids[:len(whole)] == whole


def test_replace_one_to_one_word_swap(tok):
    src, src_w, sw = encode(tok, "a rat cooking in an apartment")
    tgt, tgt_w, tw = encode(tok, "a dog cooking in an apartment")
    m = replace_mapper(src_w, tgt_w, sw, tw)
    assert torch.equal(m, torch.eye(77))


def test_replace_multi_token_word_spreads_attention_evenly(tok):
    src, src_w, sw = encode(tok, "a photo of a lion")
    tgt, tgt_w, tw = encode(tok, "a photo of a hippopotamus")
    assert src_w[:7] == [0, 1, 2, 3, 4, 5, 0] and tgt_w[:9] == [0, 1, 2, 3, 4, 5, 5, 5, 0]
    m = replace_mapper(src_w, tgt_w, sw, tw)
    lion, hippo = 5, [5, 6, 7]
    assert torch.allclose(m[lion, hippo], torch.full((3,), 1 / 3)) and m[lion].sum() == 1
    for p in range(5):
        assert m[p, p] == 1  # start token and the unchanged words
    assert m[6, 8] == 1  # source end token -> target end token
    assert torch.allclose(m.sum(0), torch.tensor([1.0] * 5 + [1 / 3] * 3 + [1.0] * 69))


def test_replace_word_count_mismatch_names_both_counts(tok):
    _, src_w, sw = encode(tok, "a photo of a lion")
    _, tgt_w, tw = encode(tok, "a photo of a big lion")
    with pytest.raises(ValueError, match="same number of words, got 5 source and 6 target words.*big lion"):
        replace_mapper(src_w, tgt_w, sw, tw)


def test_refine_aligns_everything_but_the_inserted_word(tok):
    src, _, _ = encode(tok, "a painting of a cat")
    tgt, _, _ = encode(tok, "a watercolor painting of a cat")
    m, keep = refine_alignment(src, tgt)
    assert keep[2] == 1 and keep.sum() == 1  # only "watercolor" is new
    assert m[1, 1] == 1 and m[2, 3] == 1 and m[5, 6] == 1  # a, painting, cat moved by one
    assert torch.equal(m.sum(0) + keep, torch.ones(77))


@pytest.mark.parametrize("source,target", [("a painting of a cat", "a watercolor painting of a cat"),
                                           ("a watercolor painting of a cat", "a painting of a cat"),
                                           ("a photo of a lion", "a photo of a hippopotamus on the grass")])
def test_refine_maps_the_end_token_to_the_end_token_on_real_tokens(tok, source, target):
    """The host's end token and padding share id 49407; the alignment of the prompts' own tokens pairs the end
    tokens, and the padding follows in order."""
    (src, src_w, _), (tgt, tgt_w, _) = encode(tok, source), encode(tok, target)
    ns, nt = prompt_length(src_w), prompt_length(tgt_w)
    assert src[ns - 1] == tgt[nt - 1] == 49407 and src[ns] == 49407  # end and padding look alike
    m, keep = refine_alignment(src, tgt, ns, nt)
    assert m[ns - 1, nt - 1] == 1 and m[:, nt - 1].sum() == 1
    for t in range(nt, 77):
        s = ns + t - nt
        assert (m[s, t] == 1) if s < 77 else (keep[t] == 1)
    assert torch.equal(m.sum(0) + keep, torch.ones(77))


TOL = {torch.float32: 1e-5, torch.float16: 3e-3, torch.bfloat16: 3e-2}


def test_fast_edits_equal_the_materialised_reference(qkv, tok):
    (q_s, k_s, q_t, k_t, v_t), dtype = qkv
    tol = TOL[dtype]
    _, src_w, _ = encode(tok, "a photo of a lion")
    _, tgt_w, _ = encode(tok, "a photo of a hippopotamus")
    m = replace_mapper(src_w, tgt_w)
    alpha = torch.ones(77)
    alpha[5:8] = 0.4
    weights = torch.ones(77)
    weights[5:8] = torch.tensor([2.0, 5.0, -0.5])
    src, _, _ = encode(tok, "a painting of a cat")
    tgt, _, _ = encode(tok, "a watercolor painting of a cat")
    rm, keep = refine_alignment(src, tgt)
    cases = [
        (ae.replace(q_s, k_s, v_t, m), ae.replace_reference(q_s, k_s, v_t, m)),
        (ae.replace(q_s, k_s, v_t, m, alpha=alpha, q_tgt=q_t, k_tgt=k_t),
         ae.replace_reference(q_s, k_s, v_t, m, alpha=alpha, q_tgt=q_t, k_tgt=k_t)),
        (ae.refine(q_s, k_s, q_t, k_t, v_t, rm, keep), ae.refine_reference(q_s, k_s, q_t, k_t, v_t, rm, keep)),
        (ae.reweight(q_t, k_t, v_t, weights), ae.reweight_reference(q_t, k_t, v_t, weights)),
    ]
    for fast, ref in cases:
        assert fast.dtype == dtype
        torch.testing.assert_close(fast.float(), ref.float(), rtol=tol, atol=tol)


def test_general_edit_equals_the_materialised_reference(qkv, tok):
    """Replace/refine with per-token windows and reweighting, as one formula (fp32, fp16, bf16)."""
    (q_s, k_s, q_t, k_t, v_t), dtype = qkv
    tol = TOL[dtype]
    src, _, _ = encode(tok, "a painting of a cat")
    tgt, _, _ = encode(tok, "a watercolor painting of a cat")
    m, keep = refine_alignment(src, tgt)
    alpha = torch.ones(77)
    alpha[[2, 6]] = 0.0  # two tokens outside their window
    weights = torch.ones(77)
    weights[[2, 3]] = torch.tensor([5.0, -0.5])
    for a, kp, w in [(alpha, keep, weights), (torch.ones(77), torch.zeros(77), weights), (alpha, keep, torch.ones(77)),
                     (torch.zeros(77), keep, weights)]:
        fast = ae.edit(q_s, k_s, q_t, k_t, v_t, m, alpha=a, keep=kp, weights=w)
        ref = ae.edit_reference(q_s, k_s, q_t, k_t, v_t, m, a, kp, w)
        torch.testing.assert_close(fast.float(), ref.float(), rtol=tol, atol=tol)
    # outside every window the edit is the target's own attention
    torch.testing.assert_close(ae.edit(q_s, k_s, q_t, k_t, v_t, m, alpha=torch.zeros(77), keep=keep),
                               ae.sdpa(q_t, k_t, v_t), rtol=tol, atol=tol)


def test_a_repeated_context_is_folded_before_mapping(tok):
    """The host repeats a 77-token conditioning to a longer batch-mate's length; the edit must not change."""
    g = torch.Generator().manual_seed(1)
    q_s, q_t = torch.randn(2, 1, 16, 8, generator=g), torch.randn(2, 1, 16, 8, generator=g)
    k_s, k_t, v_t = (torch.randn(2, 1, 77, 8, generator=g, dtype=torch.float64) for _ in range(3))
    q_s, q_t = q_s.double(), q_t.double()
    _, src_w, _ = encode(tok, "a photo of a lion")
    _, tgt_w, _ = encode(tok, "a photo of a hippopotamus")
    m = replace_mapper(src_w, tgt_w)
    weights = torch.linspace(-1, 3, 77)

    def rep(x):
        return x.repeat(1, 1, 3, 1)  # 231 tokens

    once = ae.edit(q_s, k_s, q_t, k_t, v_t, m, weights=weights)
    thrice = ae.edit(q_s, rep(k_s), q_t, rep(k_t), rep(v_t), m, weights=weights)
    torch.testing.assert_close(thrice, once)
    with pytest.raises(ValueError, match="not a multiple of the prompt's 77"):
        ae.map_tokens(torch.zeros(1, 100, 8), m)
