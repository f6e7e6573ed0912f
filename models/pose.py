"""The pose-conditioned model: a keypoint encoder that turns COCO-17 poses into cross-attention tokens, and the
host model class that builds the UNet's context from the poses in the conditioning.

Tokens (``KeypointEncoder``):

- ``fourier`` (default for new checkpoints): one token per joint, ``MLP(fourier(x, y)) + joint[j] + person[p]``
  (GLIGEN's grounding tokens, Li et al. 2023); a missing joint is a learned ``null[j] + person[p]``. A null pose
  (every joint missing) is the unconditional input for classifier-free guidance.
- ``grid``: the seed's tokenisation (:func:`kernels.pose.grid_tokens`): one token of 17 grid cells per person,
  scaled to [0, 1) by the number of cells (a missing joint is −1 before scaling), projected to the context width.

The model (``StepwisePoseModel``, a host ``BaseModel``): its ``extra_conds`` reads the pose attached to each
conditioning entry by KeypointCondition (``stepwise_pose``: people × 17 × 3, normalised) and sets the context
to the text tokens followed by the pose tokens (a model fine-tuned from a text model) or to the pose tokens
alone (a model trained from scratch). An entry without a pose (e.g. the negative) gets the null pose.
``stepwise_pose_strength`` interpolates between the null pose's tokens (0) and the pose's (1).
"""

from __future__ import annotations

import torch
from torch import nn

from ..kernels.pose import fourier_features, grid_tokens

POSE_KEY = "stepwise_pose"
STRENGTH_KEY = "stepwise_pose_strength"
TOKENS = ("fourier", "grid")


class KeypointEncoder(nn.Module):
    def __init__(self, context_dim: int, tokens: str = "fourier", bands: int = 8, max_people: int = 4,
                 grid: int = 32, canvas: int = 512):
        super().__init__()
        if tokens not in TOKENS:
            raise ValueError(f"unknown pose tokens {tokens!r}; choose one of {', '.join(TOKENS)}")
        self.tokens, self.bands, self.max_people, self.grid, self.canvas = tokens, bands, max_people, grid, canvas
        if tokens == "fourier":
            self.proj = nn.Sequential(nn.Linear(4 * bands, context_dim), nn.SiLU(), nn.Linear(context_dim, context_dim))
            self.joint = nn.Parameter(torch.randn(17, context_dim) * 0.02)
            self.person = nn.Parameter(torch.randn(max_people, context_dim) * 0.02)
            self.null = nn.Parameter(torch.randn(17, context_dim) * 0.02)
        else:
            self.proj = nn.Linear(17, context_dim)

    def forward(self, poses: torch.Tensor) -> torch.Tensor:
        """``poses``: B × people × 17 × 3 (x, y normalised; visible 0/1) → B × tokens × context_dim."""
        if poses.ndim != 4 or poses.shape[-2:] != (17, 3):
            raise ValueError(f"poses must be B×people×17×3, got {tuple(poses.shape)}")
        b, people = poses.shape[:2]
        if people > self.max_people:
            raise ValueError(f"{people} people; this pose model takes at most {self.max_people}")
        dtype = self.proj[0].weight.dtype if self.tokens == "fourier" else self.proj.weight.dtype
        if self.tokens == "grid":
            cells = torch.stack([grid_tokens(p, self.grid, self.canvas) for p in poses.reshape(-1, 17, 3).cpu()])
            scaled = (cells / (self.grid * self.grid)).to(poses.device, dtype)
            return self.proj(scaled).reshape(b, people, -1)
        feats = self.proj(fourier_features(poses[..., :2].to(dtype), self.bands))  # B×P×17×D
        visible = poses[..., 2:3].to(dtype) > 0
        tokens = torch.where(visible, feats + self.joint, self.null.expand_as(feats))
        tokens = tokens + self.person[:people].view(1, people, 1, -1)
        return tokens.reshape(b, people * 17, -1)


def null_pose(people: int = 1) -> torch.Tensor:
    return torch.zeros(people, 17, 3)


_CLASSES: dict = {}


def pose_model_class(parent: str = "BaseModel"):
    """The host model class of pose checkpoints, derived from the host's ``parent`` class (``BaseModel`` for
    SD1.x/2.x-style UNets and from-scratch models, ``SDXL`` for SDXL fine-tunes, which keeps its pooled-text
    and size embedding). Built lazily: the host is imported only when needed."""
    if parent in _CLASSES:
        return _CLASSES[parent]
    import comfy.conds
    import comfy.model_base

    if parent not in ("BaseModel", "SDXL"):
        raise ValueError(f"pose models derive from BaseModel or SDXL, not {parent!r}")

    class StepwisePoseModel(getattr(comfy.model_base, parent)):
        def __init__(self, model_config, encoder: dict, text: bool, model_type=None, device=None):
            super().__init__(model_config, model_type=model_type, device=device)
            self.pose_encoder = KeypointEncoder(**encoder).to(device=device)
            self.text_conditioned = text

        def pose_context(self, poses: torch.Tensor, strength: float = 1.0) -> torch.Tensor:
            """Pose tokens (B × tokens × D) of ``poses`` (B × people × 17 × 3), scaled from the null pose."""
            weight = next(self.pose_encoder.parameters())
            poses = poses.to(weight.device)
            tokens = self.pose_encoder(poses)
            if strength != 1.0:
                null = self.pose_encoder(torch.zeros_like(poses))
                tokens = null + strength * (tokens - null)
            return tokens

        def extra_conds(self, **kwargs):
            out = super().extra_conds(**kwargs)
            pose = kwargs.get(POSE_KEY)
            pose = null_pose() if pose is None else pose
            with torch.no_grad():
                tokens = self.pose_context(pose.unsqueeze(0).float(), float(kwargs.get(STRENGTH_KEY, 1.0)))
            if self.text_conditioned:
                text = kwargs.get("cross_attn")
                if text is None:
                    raise ValueError("this pose model was trained with text: connect a text encoder's CONDITIONING "
                                     "to KeypointCondition")
                context = torch.cat([text, tokens.to(text.device, text.dtype)], dim=1)
            else:
                context = tokens
            out["c_crossattn"] = comfy.conds.CONDCrossAttn(context)
            return out

    StepwisePoseModel.__qualname__ = StepwisePoseModel.__name__ = f"StepwisePoseModel{'' if parent == 'BaseModel' else parent}"
    _CLASSES[parent] = StepwisePoseModel
    return StepwisePoseModel
