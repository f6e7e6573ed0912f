"""Host-free reference tests for kernels.token_align and kernels.attention_edit (Prompt-to-Prompt), on hand-made
token ids (the host's CLIP tokenizer is tested against in tests/host/test_kernels_p2p.py)."""

import pytest
import torch

from stepwise.kernels import attention_edit as ae
from stepwise.kernels.token_align import global_alignment, prompt_length, refine_alignment, word_ids

START, END = 49406, 49407
VOCAB = {"a": 320, "painting": 3086, "of": 539, "cat": 2368, "watercolor": 14211, "red": 736, "blue": 1746,
         "car": 1615, "big": 1205, "fluffy": 11366, "hippopotamus": [9291, 11714, 1855]}


def ids(prompt: str, pad: int = END, length: int = 77) -> tuple[list[int], list[int]]:
    """Token ids (start, words, end, padding with ``pad``) and word ids of a prompt over the hand-made VOCAB."""
    per_word = [VOCAB[w] if isinstance(VOCAB[w], list) else [VOCAB[w]] for w in prompt.split()]
    tokens = [START] + [t for w in per_word for t in w] + [END]
    return tokens + [pad] * (length - len(tokens)), word_ids([len(w) for w in per_word], length)


def refine(source: str, target: str, pad: int = END):
    (s, sw), (t, tw) = ids(source, pad), ids(target, pad)
    return refine_alignment(s, t, prompt_length(sw), prompt_length(tw))


def pairs(m: torch.Tensor) -> dict[int, int]:
    """target position -> source position of a 0/1 correspondence."""
    return {int(t): int(s) for s, t in m.nonzero().tolist()}


# --- moved from tests/host/test_kernels_p2p.py (they need no tokenizer) ---

def test_word_ids_layout_and_length_limit():
    assert word_ids([1, 3, 1], length=8) == [0, 1, 2, 2, 2, 3, 0, 0]
    with pytest.raises(ValueError, match="needs 77 tokens but a chunk holds 76"):
        word_ids([75], length=76)


def test_global_alignment_hand_worked():
    assert global_alignment([1, 2, 3], [1, 9, 2, 3]) == [0, -1, 1, 2]
    assert global_alignment([1, 2, 3], [1, 3]) == [0, 2]
    assert global_alignment([1, 2, 3], [1, 5, 3]) == [0, -1, 2]
    assert global_alignment([4, 4], [4, 4]) == [0, 1]


# --- the prompt's own tokens and the end token ---

def test_prompt_length_counts_start_words_and_end():
    assert prompt_length(word_ids([1, 3, 1], length=8)) == 7  # start, 5 word tokens, end
    assert prompt_length(word_ids([], length=8)) == 2  # an empty prompt: start and end
    assert prompt_length([1, 1, 2, 0, 0], start_token=False) == 4
    assert prompt_length(ids("a hippopotamus")[1]) == 6


def test_refine_lengthened_prompt_maps_end_to_end_and_padding_to_padding():
    """'a painting of a cat' (7 tokens) -> 'a watercolor painting of a cat' (8): the target's end token (7) takes
    the source's end token (6), not the source's first padding position (7), as the old alignment of the padded
    ids did (end and padding share id 49407). Padding follows in order: target 8.. <- source 7.., and the
    source's last padding position (76) has no target counterpart."""
    m, keep = refine("a painting of a cat", "a watercolor painting of a cat")
    expected = {0: 0, 1: 1, 3: 2, 4: 3, 5: 4, 6: 5, 7: 6}  # start, a, painting, of, a, cat, end
    expected.update({t: t - 1 for t in range(8, 77)})
    assert pairs(m) == expected
    assert keep.nonzero().flatten().tolist() == [2]  # only "watercolor" keeps its own attention
    assert m[6, 7] == 1 and m[:, 7].sum() == 1 and m[76].sum() == 0


def test_refine_shortened_prompt_maps_end_to_end_and_padding_to_padding():
    """'a watercolor painting of a cat' (8) -> 'a painting of a cat' (7): end 6 <- end 7 (the old alignment left
    the target's end token unaligned); padding 7..75 <- 8..76 in order; the target's last padding position (76)
    has no source padding left and keeps its own attention."""
    m, keep = refine("a watercolor painting of a cat", "a painting of a cat")
    expected = {0: 0, 1: 1, 2: 3, 3: 4, 4: 5, 5: 6, 6: 7}
    expected.update({t: t + 1 for t in range(7, 76)})
    assert pairs(m) == expected
    assert keep.nonzero().flatten().tolist() == [76]
    assert m[2].sum() == 0  # "watercolor" is gone from the target
    assert torch.equal(m.sum(0) + keep, torch.ones(77))


def test_refine_added_and_changed_words():
    """Two words added ('a cat' -> 'a big fluffy cat'), and a word changed ('a red car' -> 'a blue car': it
    matches nothing, so it keeps its own attention, as an added word does)."""
    m, keep = refine("a cat", "a big fluffy cat")
    expected = {0: 0, 1: 1, 4: 2, 5: 3}  # start, a, cat, end
    expected.update({t: t - 2 for t in range(6, 77)})
    assert pairs(m) == expected and keep.nonzero().flatten().tolist() == [2, 3]
    m, keep = refine("a red car", "a blue car")
    expected = {0: 0, 1: 1, 3: 3, 4: 4}
    expected.update({t: t for t in range(5, 77)})
    assert pairs(m) == expected and keep.nonzero().flatten().tolist() == [2]


def test_refine_multi_token_word_and_identical_prompts():
    m, keep = refine("a cat", "a hippopotamus cat")  # a three-token word added
    assert keep.nonzero().flatten().tolist() == [2, 3, 4] and m[3, 6] == 1  # end 3 -> end 6
    m, keep = refine("a painting of a cat", "a painting of a cat")
    assert torch.equal(m, torch.eye(77)) and not keep.any()


@pytest.mark.parametrize("source,target", [("a painting of a cat", "a watercolor painting of a cat"),
                                           ("a watercolor painting of a cat", "a painting of a cat"),
                                           ("a cat", "a big fluffy cat")])
def test_refine_does_not_depend_on_the_padding_id(source, target):
    """SD2's OpenCLIP pads with 0, SD1's CLIP with the end token's id: the same correspondence."""
    assert all(torch.equal(a, b) for a, b in zip(refine(source, target, pad=0), refine(source, target, pad=END)))


def test_refine_without_lengths_aligns_the_whole_sequences():
    m, keep = refine_alignment([1, 2, 3], [1, 9, 2, 3])
    assert pairs(m) == {0: 0, 2: 1, 3: 2} and keep.tolist() == [0, 1, 0, 0]
    with pytest.raises(ValueError, match="prompt lengths 9 and 3 must be between 1 and"):
        refine_alignment([1, 2, 3], [1, 2, 3], 9, 3)


# --- attention edits (moved from tests/host/test_kernels_p2p.py, and the batched form) ---

TOL = {torch.float32: 1e-5, torch.float16: 3e-3, torch.bfloat16: 3e-2}


def test_neutral_edits_are_plain_attention(qkv):
    (q_s, k_s, q_t, k_t, v_t), dtype = qkv
    plain = ae.sdpa(q_t, k_t, v_t)
    tol = TOL[dtype]
    torch.testing.assert_close(ae.reweight(q_t, k_t, v_t, torch.ones(77)), plain, rtol=tol, atol=tol)
    torch.testing.assert_close(ae.replace(q_t, k_t, v_t, torch.eye(77)), plain, rtol=tol, atol=tol)
    zero = torch.zeros(77)
    torch.testing.assert_close(ae.replace(q_s, k_s, v_t, torch.eye(77), alpha=zero, q_tgt=q_t, k_tgt=k_t), plain,
                               rtol=tol, atol=tol)


def test_refine_edit_with_the_fixed_alignment_equals_the_materialised_reference(qkv):
    (q_s, k_s, q_t, k_t, v_t), dtype = qkv
    tol = TOL[dtype]
    m, keep = refine("a painting of a cat", "a watercolor painting of a cat")
    weights = torch.ones(77)
    weights[[2, 7]] = torch.tensor([3.0, 0.5])
    alpha = torch.ones(77)
    alpha[3] = 0.0
    fast = ae.edit(q_s, k_s, q_t, k_t, v_t, m, alpha=alpha, keep=keep, weights=weights)
    ref = ae.edit_reference(q_s, k_s, q_t, k_t, v_t, m, alpha, keep, weights)
    torch.testing.assert_close(fast.float(), ref.float(), rtol=tol, atol=tol)


def test_edit_rows_is_the_edit_on_the_hosts_batched_layout():
    """Rows × tokens × (heads·dim), pairs at any rows, a repeated context: the target rows get :func:`edit`, every
    other row plain attention; the own term runs through its own attention function."""
    g = torch.Generator().manual_seed(3)
    heads, d, rows = 2, 4, 4
    q = torch.randn(rows, 10, heads * d, generator=g, dtype=torch.float64)
    k, v = (torch.randn(rows, 77, heads * d, generator=g, dtype=torch.float64) for _ in range(2))
    k, v = k.repeat(1, 2, 1), v.repeat(1, 2, 1)  # the host repeats a 77-token context

    def split(x):
        return x.reshape(x.shape[0], -1, heads, d).transpose(1, 2)

    def merge(x):
        return x.transpose(1, 2).reshape(x.shape[0], -1, heads * d)

    def attention(q_, k_, v_):
        return merge(ae.sdpa(split(q_), split(k_), split(v_)))

    m, keep = refine("a painting of a cat", "a watercolor painting of a cat")
    weights = torch.linspace(0.5, 2.0, 77)
    alpha = torch.ones(77)
    alpha[5] = 0.0
    w_src, w_own = ae.edit_weights(alpha, keep, weights)
    src, tgt = [2], [3]
    calls = []

    def own(q_, k_, v_):
        calls.append(q_.shape[0])
        return attention(q_, k_, v_)

    out = ae.edit_rows(q.clone(), k.clone(), v.clone(), src, tgt, m.double(), w_src.double(), w_own.double(),
                       attention, own)
    ref = ae.edit(split(q[2:3]), split(k[2:3]), split(q[3:4]), split(k[3:4]), split(v[3:4]), m.double(),
                  alpha=alpha, keep=keep, weights=weights)
    torch.testing.assert_close(out[3], merge(ref)[0])
    torch.testing.assert_close(out[[0, 1, 2]], attention(q, k, v)[[0, 1, 2]])
    assert calls == [1]
    calls.clear()
    ae.edit_rows(q.clone(), k.clone(), v.clone(), src, tgt, m.double(), w_src.double(), None, attention, own)
    assert calls == []  # no own share, no own call


def test_take_source_attention_copies_queries_and_keys_in_place():
    q, k = torch.arange(12.0).reshape(4, 3), -torch.arange(12.0).reshape(4, 3)
    ae.take_source_attention(q, k, [0, 2], [1, 3])
    assert torch.equal(q[1], q[0]) and torch.equal(q[3], q[2]) and torch.equal(k[3], k[2])
    assert torch.equal(q[0], torch.tensor([0.0, 1.0, 2.0]))


def test_token_probs_are_the_softmax_averaged_over_heads():
    g = torch.Generator().manual_seed(2)
    heads, d = 3, 4
    q, k = torch.randn(2, 10, heads * d, generator=g), torch.randn(2, 77, heads * d, generator=g)

    def split(x):
        return x.reshape(2, -1, heads, d).transpose(1, 2)

    ref = ae.probs(split(q), split(k)).mean(dim=1).float()
    torch.testing.assert_close(ae.token_probs(q, k, heads, 77), ref)
    torch.testing.assert_close(ae.token_probs(q, k.repeat(1, 2, 1), heads, 77), ref)  # folded context
    assert torch.allclose(ref.sum(-1), torch.ones(2, 10))


def test_blend_mask_hand_worked():
    src = torch.zeros(4, 4)
    src[0, 0] = 1.0  # one hot spot in the source word's map ...
    tgt = torch.zeros(4, 4)
    tgt[3, 3], tgt[0, 3] = 1.0, 0.2  # ... and one (plus a weak one) in the target's
    mask = ae.blend_mask(torch.stack([src, tgt]), 4, 4, threshold=0.3, pool=0)
    expected = torch.zeros(1, 1, 4, 4)
    expected[0, 0, 0, 0] = expected[0, 0, 3, 3] = 1.0  # union; 0.2 < 0.3 is out
    assert torch.equal(mask, expected)
    pooled = ae.blend_mask(torch.stack([src, tgt]), 8, 8, threshold=0.3, pool=1)  # 3x3 max-pool, then upsampled
    assert pooled.shape == (1, 1, 8, 8) and pooled[0, 0, :4, :4].all() and pooled[0, 0, 4:, 4:].all()
    assert not pooled[0, 0, 6:, :2].any()
    assert not ae.blend_mask(torch.zeros(2, 4, 4), 4, 4).any()  # no attention, no mask


# --- attention in query chunks (interrupt checks between them) ---

def test_chunked_attention_equals_one_call_and_checks_before_every_chunk():
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 50, 8, generator=g) for _ in range(3))

    def attention(q_, k_, v_):
        return ae.sdpa(q_.unsqueeze(1), k_.unsqueeze(1), v_.unsqueeze(1)).squeeze(1)

    checks = []
    whole = ae.chunked(attention, q, k, v, budget=10**9, between=lambda: checks.append(1))
    assert len(checks) == 1 and torch.equal(whole, attention(q, k, v))
    checks.clear()
    budget = 2 * 50 * 8 * 7  # 7 queries per chunk: 8 chunks, the last of 1
    parts = ae.chunked(attention, q, k, v, budget=budget, between=lambda: checks.append(1))
    assert len(checks) == 8
    torch.testing.assert_close(parts, whole, rtol=1e-6, atol=1e-6)
    assert ae.query_chunks(2, 50, 50, 8, 1) == 1  # never fewer than one query


def test_chunked_attention_stops_at_the_first_failing_check():
    q = k = v = torch.zeros(1, 10, 4)
    calls = []

    def attention(q_, k_, v_):
        calls.append(q_.shape[1])
        return q_

    def between():
        if len(calls) == 2:
            raise InterruptedError

    with pytest.raises(InterruptedError):
        ae.chunked(attention, q, k, v, budget=10 * 4 * 3, between=between)
    assert calls == [3, 3]
