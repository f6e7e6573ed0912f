"""LoRA (Hu et al. 2021) for fine-tuning a host UNet, saved in a format the host's LoRA loaders read.

Each targeted linear layer ``W`` gets a trainable low-rank update: ``y = W x + (alpha / rank) · up(down(x))``
with ``down`` rank×in (seeded Gaussian / rank) and ``up`` out×rank (zeros, so training starts from the base).
:func:`host_state_dict` writes ``diffusion_model.<layer>.lora_down.weight``, ``.lora_up.weight`` and ``.alpha``,
the generic key format of ComfyUI's LoRA loader, which applies ``W += (alpha / rank) · up @ down`` (× strength).
"""

from __future__ import annotations

import torch

# Attention projections and feed-forward layers of the UNet's transformer blocks.
DEFAULT_TARGETS = ("to_q", "to_k", "to_v", "to_out.0", "ff.net.0.proj", "ff.net.2", "proj_in", "proj_out")


class LoRALinear(torch.nn.Module):
    def __init__(self, base: torch.nn.Linear, rank: int, alpha: float, generator: torch.Generator):
        super().__init__()
        self.base = base
        self.rank, self.alpha = rank, float(alpha)
        self.down = torch.nn.Parameter(torch.randn(rank, base.in_features, generator=generator) / rank)
        self.up = torch.nn.Parameter(torch.zeros(base.out_features, rank))
        base.weight.requires_grad_(False)
        if base.bias is not None:
            base.bias.requires_grad_(False)

    def forward(self, x):
        delta = torch.nn.functional.linear(torch.nn.functional.linear(x, self.down.to(x.dtype)), self.up.to(x.dtype))
        return self.base(x) + delta * (self.alpha / self.rank)


def inject(unet: torch.nn.Module, rank: int, alpha: float | None = None, seed: int = 0,
           targets=DEFAULT_TARGETS) -> dict[str, LoRALinear]:
    """Replace the targeted ``nn.Linear`` layers of ``unet`` with LoRA-wrapped ones; freeze everything else."""
    if rank < 1:
        raise ValueError(f"--lora-rank must be >= 1, got {rank}")
    alpha = float(rank if alpha is None else alpha)
    generator = torch.Generator().manual_seed(seed)
    for p in unet.parameters():
        p.requires_grad_(False)
    wrapped = {}
    for name, module in list(unet.named_modules()):
        if not isinstance(module, torch.nn.Linear) or not any(name.endswith(t) for t in targets):
            continue
        parent_name, _, child = name.rpartition(".")
        parent = unet.get_submodule(parent_name) if parent_name else unet
        lora = LoRALinear(module, rank, alpha, generator).to(module.weight.device)
        setattr(parent, child, lora)
        wrapped[name] = lora
    if not wrapped:
        raise ValueError(f"no layers matched the LoRA targets {targets}; is this a UNet with transformer blocks?")
    return wrapped


def host_state_dict(wrapped: dict[str, LoRALinear]) -> dict[str, torch.Tensor]:
    out = {}
    for name, lora in wrapped.items():
        key = f"diffusion_model.{name}"
        out[f"{key}.lora_down.weight"] = lora.down.detach().float().cpu().contiguous()
        out[f"{key}.lora_up.weight"] = lora.up.detach().float().cpu().contiguous()
        out[f"{key}.alpha"] = torch.tensor(lora.alpha)
    return out


def merged_state_dict(module: torch.nn.Module, wrapped: dict[str, LoRALinear]) -> dict[str, torch.Tensor]:
    """``module``'s state dict with each LoRA layer folded into its base layer (``W + (alpha / rank) · up @ down``
    under the base layer's own keys), i.e. the state dict of the module without LoRA: a full checkpoint of what
    was trained (the pose model's LoRA mode writes its checkpoints this way)."""
    state = dict(module.state_dict())
    for name, lora in wrapped.items():
        for key in ("down", "up", "base.weight", "base.bias"):
            state.pop(f"{name}.{key}", None)
        with torch.no_grad():
            delta = (lora.up.float() @ lora.down.float()) * (lora.alpha / lora.rank)
            state[f"{name}.weight"] = (lora.base.weight.float() + delta.to(lora.base.weight.device)).to(
                lora.base.weight.dtype)
        if lora.base.bias is not None:
            state[f"{name}.bias"] = lora.base.bias.detach()
    return state
