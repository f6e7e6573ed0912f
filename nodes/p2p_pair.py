"""The pair PromptToPromptAttn hands to the sampler: its prompts read with the host's tokenizer, one positive
CONDITIONING of two rows [source, target] tagged with the node's plan, and a two-row LATENT with identical noise
(``batch_index`` repeated) that carries the maps hand-over (:mod:`.p2p_handover`)."""

from __future__ import annotations

import torch

from ..kernels.p2p_plan import Plan, Prompt, read_prompt
from .p2p_handover import MAPS_KEY, HandOver
from .p2p_runtime import TAG


def _sd_tokenizer(clip):
    for name in ("clip_l", "clip_g"):
        tok = getattr(clip.tokenizer, name, None)
        if tok is not None and hasattr(tok, "tokenizer"):
            return tok
    raise ValueError(f"PromptToPromptAttn needs a CLIP text encoder (SD1.x, SD2.x, SDXL); got "
                     f"{type(clip.tokenizer).__name__}")


def tokenize(clip, text: str, name: str) -> tuple[Prompt, dict]:
    """The prompt word by word (:func:`kernels.p2p_plan.read_prompt`), checked against the host's own tokens (which
    are what gets encoded), and those tokens."""
    tokens = clip.tokenize(text)
    chunks = next(iter(tokens.values()))
    sd_tok = _sd_tokenizer(clip)
    end = -1 if getattr(sd_tok, "tokenizer_adds_end_token", True) else None
    per_word = [sd_tok.tokenizer(w)["input_ids"][sd_tok.tokens_start:end] for w in text.split()]
    return read_prompt(text, name, chunks, per_word), tokens


def pair_conditioning(clip, source_tokens, target_tokens, plan: Plan) -> list:
    encoded = []
    for name, tokens in (("source", source_tokens), ("target", target_tokens)):
        cond = clip.encode_from_tokens_scheduled(tokens)
        if len(cond) != 1:
            raise ValueError(f"the {name} prompt encoded to {len(cond)} scheduled conditionings (CLIP hooks); "
                             "PromptToPromptAttn needs a CLIP without scheduled hooks")
        encoded.append(cond[0])
    (c_src, o_src), (c_tgt, o_tgt) = encoded
    options = dict(o_src)
    if o_src.get("pooled_output") is not None and o_tgt.get("pooled_output") is not None:
        options["pooled_output"] = torch.cat([o_src["pooled_output"], o_tgt["pooled_output"]])
    options[TAG] = plan
    return [[torch.cat([c_src, c_tgt]), options]]


def pair_latent(latent: dict, handover: HandOver) -> dict:
    samples = latent["samples"]
    if samples.shape[0] != 1:
        raise ValueError(f"latent has {samples.shape[0]} images; PromptToPromptAttn makes its source/target pair "
                         "from one latent (batch_size 1)")
    out = {k: v for k, v in latent.items() if k not in ("samples", "batch_index", "noise_mask")}
    out["samples"] = samples.repeat(2, *[1] * (samples.ndim - 1))
    index = (latent.get("batch_index") or [0])[0]
    out["batch_index"] = [index, index]
    if latent.get("noise_mask") is not None:
        mask = latent["noise_mask"]
        out["noise_mask"] = mask.repeat(2, *[1] * (mask.ndim - 1)) if mask.shape[0] == 1 else mask
    out[MAPS_KEY] = handover
    return out
