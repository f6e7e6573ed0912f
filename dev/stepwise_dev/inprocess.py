"""Small helpers that drive the real host in-process (its own nodes and samplers), for node tests."""

from __future__ import annotations

import comfy.patcher_extension
import comfy.sample
import comfy.samplers
import nodes
import torch
from comfy_extras.nodes_model_advanced import ModelSamplingDiscrete, ModelSamplingSD3


def encode(clip, text: str):
    return nodes.CLIPTextEncode().encode(clip, text)[0]


def noise_for(shape, seed: int) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def with_parameterisation(model, kind: str):
    """The model as eps (unchanged), v-prediction (host node ModelSamplingDiscrete) or flow (ModelSamplingSD3)."""
    if kind == "eps":
        return model
    if kind == "v":
        return ModelSamplingDiscrete().patch(model, "v_prediction", False)[0]
    if kind == "flow":
        return ModelSamplingSD3().patch(model, 3.0)[0]
    raise ValueError(kind)


def sample_sigmas(model, positive, negative, latent: torch.Tensor, noise: torch.Tensor, sigmas: torch.Tensor,
                  sampler: str = "euler", cfg: float = 4.0, seed: int = 0) -> torch.Tensor:
    """Run one of the host's samplers over an explicit σ schedule (as SamplerCustomAdvanced does)."""
    return comfy.sample.sample_custom(model, noise, cfg, comfy.samplers.sampler_object(sampler), sigmas,
                                      positive, negative, latent, disable_pbar=True, seed=seed)


def scheduler_sigmas(model, scheduler: str, steps: int) -> torch.Tensor:
    return comfy.samplers.calculate_sigmas(model.get_model_object("model_sampling"), scheduler, steps).cpu()


def counting(model, key: str = "stepwise.test.count"):
    """A clone of ``model`` that records the rows of every diffusion-model call (as another node's wrapper would)."""
    calls: list[int] = []

    def wrapper(executor, *args, **kwargs):
        calls.append(args[0].shape[0])
        return executor(*args, **kwargs)

    m = model.clone()
    m.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.DIFFUSION_MODEL, key, wrapper)
    return m, calls


def recording_sigmas(model, key: str = "stepwise.test.sigmas"):
    """A clone of ``model`` that records the σ of every model evaluation."""
    sigmas: list[float] = []

    def wrapper(executor, x, t, *args, **kwargs):
        sigmas.append(float(t.reshape(-1)[0]))
        return executor(x, t, *args, **kwargs)

    m = model.clone()
    m.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.APPLY_MODEL, key, wrapper)
    return m, sigmas
