"""Token correspondences between a source and a target prompt, for Prompt-to-Prompt (Hertz et al. 2022).

A correspondence is a matrix ``M`` (source tokens × target tokens): the edited target attention is
``A_src @ M``, i.e. target token t attends where the source tokens mapped onto it attended. Tokens are the
text encoder's positions (start token, words' sub-tokens, end and padding). Words are identified by per-position
word ids (0 for start/end/padding, 1, 2, ... for the words in order), built by :func:`word_ids` from each word's
token count (CLIP's BPE tokenizes whitespace-separated words independently, so tokenizing word by word gives the
prompt's tokens).

- :func:`replace_mapper` (word swap): prompts with the same number of words; unchanged words map one to one;
  a swapped word whose token counts differ spreads each source token's attention evenly over the target word's
  tokens, so a word's total attention is kept.
- :func:`refine_alignment` (added or changed words): a global alignment of the prompts' own tokens (start, words,
  end: :func:`prompt_length`); aligned target tokens take their source token's attention, new tokens keep their
  own; the padding after the end token maps to the source's padding, in order. CLIP's end token and its padding
  share one id (49407): aligning the padded ids instead pairs a longer target's end token with a padding
  position of the source. As in the reference implementation (google/prompt-to-prompt,
  ``seq_aligner.get_refinement_mapper``), the prompts' tokens are aligned and the rest is mapped.
"""

from __future__ import annotations

import torch


def word_ids(token_counts: list[int], length: int = 77, start_token: bool = True) -> list[int]:
    """Per-position word ids of a prompt whose words have ``token_counts`` tokens, padded to ``length``."""
    ids = [0] if start_token else []
    for w, count in enumerate(token_counts, start=1):
        if count < 1:
            raise ValueError(f"word {w} has no tokens")
        ids += [w] * count
    if len(ids) + 1 > length:  # the end token must fit too
        raise ValueError(f"the prompt needs {len(ids) + 1} tokens but a chunk holds {length}; shorten the prompt")
    return ids + [0] * (length - len(ids))


def prompt_length(word_ids: list[int], start_token: bool = True) -> int:
    """Number of a prompt's own tokens (start token, words' tokens, end token) from its per-position word ids
    (:func:`word_ids`); the positions after them are padding."""
    last = max((p for p, w in enumerate(word_ids) if w > 0), default=0 if start_token else -1)
    return last + 2


def _word_spans(word_ids: list[int]) -> dict[int, list[int]]:
    spans: dict[int, list[int]] = {}
    for pos, w in enumerate(word_ids):
        if w > 0:
            spans.setdefault(w, []).append(pos)
    return spans


def replace_mapper(src_word_ids: list[int], tgt_word_ids: list[int], src_words: list[str] | None = None,
                   tgt_words: list[str] | None = None) -> torch.Tensor:
    """Source→target token map (n×n) for a word-swap edit; both sequences have the same length n.

    ``src_words``/``tgt_words`` (the prompts' words) only improve the error message.
    """
    if len(src_word_ids) != len(tgt_word_ids):
        raise ValueError(f"token sequences differ in length ({len(src_word_ids)} vs {len(tgt_word_ids)}); pad both "
                         "to the same length")
    src, tgt = _word_spans(src_word_ids), _word_spans(tgt_word_ids)
    if len(src) != len(tgt):
        names = ""
        if src_words is not None and tgt_words is not None:
            names = f" ({' '.join(src_words)!r} vs {' '.join(tgt_words)!r})"
        raise ValueError(f"replace needs prompts with the same number of words, got {len(src)} source and {len(tgt)} "
                         f"target words{names}; use refine for added or removed words")
    n = len(src_word_ids)
    m = torch.zeros(n, n)
    # Non-word positions (start token, end token, padding): in order, one to one, as far as both have them.
    src_rest = [p for p, w in enumerate(src_word_ids) if w == 0]
    tgt_rest = [p for p, w in enumerate(tgt_word_ids) if w == 0]
    for s, t in zip(src_rest, tgt_rest):
        m[s, t] = 1.0
    for w in sorted(src):
        s_pos, t_pos = src[w], tgt[w]
        if len(s_pos) == len(t_pos):
            for s, t in zip(s_pos, t_pos):
                m[s, t] = 1.0
        else:
            m[torch.tensor(s_pos).unsqueeze(1), torch.tensor(t_pos).unsqueeze(0)] = 1.0 / len(t_pos)
    return m


def global_alignment(src: list[int], tgt: list[int], match: int = 1, mismatch: int = -1,
                     gap: int = 0) -> list[int]:
    """Needleman–Wunsch global alignment of two token-id sequences. Returns, for each target position, the source
    position it is aligned to with equal ids, or -1 (inserted or changed token)."""
    ns, nt = len(src), len(tgt)
    score = [[0] * (nt + 1) for _ in range(ns + 1)]
    for i in range(1, ns + 1):
        score[i][0] = i * gap
    for j in range(1, nt + 1):
        score[0][j] = j * gap
    for i in range(1, ns + 1):
        for j in range(1, nt + 1):
            diag = score[i - 1][j - 1] + (match if src[i - 1] == tgt[j - 1] else mismatch)
            score[i][j] = max(diag, score[i - 1][j] + gap, score[i][j - 1] + gap)
    out = [-1] * nt
    i, j = ns, nt
    while i > 0 and j > 0:
        same = src[i - 1] == tgt[j - 1]
        if score[i][j] == score[i - 1][j - 1] + (match if same else mismatch):
            if same:
                out[j - 1] = i - 1
            i, j = i - 1, j - 1
        elif score[i][j] == score[i][j - 1] + gap:
            j -= 1
        else:
            i -= 1
    return out


def refine_alignment(src_ids: list[int], tgt_ids: list[int], src_length: int | None = None,
                     tgt_length: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(M, keep)`` for a refine edit: ``M`` (n_src × n_tgt) maps each aligned target token to its source token;
    ``keep`` (n_tgt) is 1 for target tokens with no source counterpart (they keep their own attention).

    ``src_length``/``tgt_length`` (:func:`prompt_length`) count the prompts' own tokens (start, words, end); only
    these are aligned (:func:`global_alignment`). Both end with the end token, which matches nothing else, so the
    end tokens are always aligned to each other. The positions after them (padding) map to the source's padding
    one to one, in order; a shorter target's padding beyond the source's keeps its own attention. ``None``: the
    whole sequence is the prompt."""
    ns = len(src_ids) if src_length is None else src_length
    nt = len(tgt_ids) if tgt_length is None else tgt_length
    if not (0 < ns <= len(src_ids) and 0 < nt <= len(tgt_ids)):
        raise ValueError(f"prompt lengths {src_length} and {tgt_length} must be between 1 and the token sequences' "
                         f"lengths ({len(src_ids)} and {len(tgt_ids)})")
    aligned = global_alignment(list(src_ids[:ns]), list(tgt_ids[:nt]))
    aligned += [s if s < len(src_ids) else -1 for s in range(ns, ns + len(tgt_ids) - nt)]  # padding, in order
    m = torch.zeros(len(src_ids), len(tgt_ids))
    keep = torch.ones(len(tgt_ids))
    for t, s in enumerate(aligned):
        if s >= 0:
            m[s, t] = 1.0
            keep[t] = 0.0
    return m, keep


def normalise_word(word: str) -> str:
    """A prompt word as it is looked up: lower case, surrounding punctuation dropped (``"Cat,"`` → ``"cat"``)."""
    return word.lower().strip(".,;:!?\"'()[]{}")


def find_word(words: list[str], word_ids: list[int], word: str) -> list[int]:
    """Token positions of every occurrence of ``word`` in a prompt split into ``words`` (``word_ids`` from
    :func:`word_ids`); empty when it does not occur."""
    key = normalise_word(word)
    hits = {i + 1 for i, w in enumerate(words) if normalise_word(w) == key}
    return [pos for pos, w in enumerate(word_ids) if w in hits]


def parse_word_values(text: str, name: str) -> list[tuple[str, float]]:
    """``"lion:0.4, cat: -0.5"`` → ``[("lion", 0.4), ("cat", -0.5)]``; ``ValueError`` naming ``name`` and the entry
    otherwise."""
    out = []
    for entry in (e.strip() for e in text.replace("\n", ",").split(",")):
        if not entry:
            continue
        word, sep, value = entry.rpartition(":")
        try:
            number = float(value)
        except ValueError:
            number = None
        if not sep or not word.strip() or number is None or number != number or abs(number) == float("inf"):
            raise ValueError(f"{name}: {entry!r} is not word:value; write e.g. 'lion:0.4, cat:2'")
        out.append((word.strip(), number))
    return out


def parse_words(text: str) -> list[str]:
    """``"cat, dog"`` → ``["cat", "dog"]`` (commas or new lines separate words)."""
    return [w.strip() for w in text.replace("\n", ",").split(",") if w.strip()]
