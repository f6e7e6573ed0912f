"""How the attention maps of a Prompt-to-Prompt run reach the Prompt-to-Prompt Attention Maps node.

The hand-over is explicit up to one point, and a lookup after it:

1. The PromptToPromptAttn node puts a :class:`HandOver` (one per node execution) into its LATENT under
   :data:`MAPS_KEY`, and its model's hooks hold the same object. The host's sampler nodes copy the input LATENT
   into their output (KSampler: ``out = latent.copy(); out["samples"] = samples``; SamplerCustom and
   SamplerCustomAdvanced the same, for both outputs), so the maps node finds the hand-over in the sampler's output.
2. A finished run adds a :class:`Record` to the hand-over; the maps node picks the record of *its* samples by a
   digest of the sample values (:func:`digest`).

Why not a fully explicit hand-over (the run writing into the output it belongs to): the host gives a run no way to
name its output. The sampler nodes build the output dict after sampling, from the input LATENT and the returned
tensor only; the model's wrappers never see either dict. The input LATENT, and so the hand-over, is one object
shared by every sampler the node's output feeds (the host passes a node's cached output as is to each consumer,
and runs those samplers in an order of its choosing, possibly with the maps nodes in between or after both), so
"the last run" is not the maps node's run. The one thing in the output that belongs to one run is the samples
tensor, and its identity does not survive the host: ``comfy.sample`` moves it with
``samples.to(intermediate_device())`` (a new tensor when sampling on a GPU), and a node in between may copy it.
The executing node's id (``comfy_execution.utils.get_executing_context``) exists only inside a server prompt and
the maps node cannot tell from its input which sampler node made it. So the record is keyed by the sample
values: two samplers fed by one node (or one sampler run twice with other settings) give different samples and
each maps node finds its own run; identical samples come from identical runs, whose maps are the same.

SamplerCustom's ``denoised_output`` (the last step's x0 prediction, ``process_latent_out(x0.cpu())``) holds other
values than ``output``: the run keeps the last x0 its sampler reports through the callback the host passes in,
and files the record under that output's digest too, so the maps node accepts either output.

The hand-over is bounded: it keeps the records of the last :attr:`HandOver.KEEP` runs, and it lives as long as the
node's cached outputs (a new execution of the node makes a new one). An interrupted run records nothing.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import torch

from ..kernels.p2p_plan import Prompt

MAPS_KEY = "stepwise_p2p_maps"


@dataclass(frozen=True, eq=False)
class Record:
    """Per-word maps of one finished run, for the attention-map node."""

    maps: torch.Tensor  # 2 × h × w × tokens, mean over calls
    source: Prompt
    target: Prompt


def digest(samples: torch.Tensor) -> str:
    return hashlib.sha1(samples.detach().float().cpu().contiguous().numpy().tobytes()).hexdigest()


class HandOver:
    """Records of the last :attr:`KEEP` finished runs of one node's model, each under the digests of its outputs."""

    KEEP = 8

    def __init__(self):
        self.runs: list[tuple[frozenset[str], Record]] = []  # oldest first

    @property
    def records(self) -> list[Record]:
        return [record for _, record in self.runs]

    def add(self, keys, record: Record) -> None:
        keys = frozenset(keys)
        self.runs = [(k, r) for k, r in self.runs if not k & keys] + [(keys, record)]
        del self.runs[:-self.KEEP]

    def find(self, samples: torch.Tensor) -> Record | None:
        key = digest(samples)
        return next((record for keys, record in reversed(self.runs) if key in keys), None)


def find_record(latent: dict) -> Record:
    """The record of the run whose sampler output is ``latent``; ValueError saying what to connect otherwise."""
    handover = latent.get(MAPS_KEY) if isinstance(latent, dict) else None
    if handover is None:
        raise ValueError("samples do not come from a sampler fed by a Prompt-to-Prompt node's LATENT; connect the "
                         "KSampler output whose latent_image is that node's LATENT")
    record = handover.find(latent["samples"])
    if record is None:
        if not handover.runs:
            raise ValueError("no attention maps were recorded: turn record_maps on in the Prompt-to-Prompt node and "
                             "sample again")
        raise ValueError("these samples are not the output of a run of that Prompt-to-Prompt node's model (was the "
                         "latent changed after sampling?); connect the sampler's output directly")
    return record
