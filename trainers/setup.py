"""What a trainer hands the shared loop: its options (one base, one subclass per kind) and a typed :class:`Setup`.

A trainer (refiner, pose, estimator) checks its options, builds its networks and data, and describes the run as a
:class:`Setup`: the modules to train (with their checkpoint prefixes), the loss of one batch, how many images
there are, what the checkpoint's metadata says about the network, and optional hooks for sample grids and a final
evaluation. :func:`stepwise.trainers.loop.train` runs it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

# loss(idx, t, generator, part): the scalar loss of the rows ``part`` (a slice) of the global batch of image indices
# ``idx`` at timesteps ``t``; further draws (noise, augmentation, dropout) come from ``generator``, the run's one
# seeded generator, and are made for the whole global batch before the slice is taken, so every process of a
# multi-process run (:mod:`.distributed`) makes the same draws and the run does not depend on how many there are.
# One process computes ``part = slice(0, len(idx))``.
LossFn = Callable[[torch.Tensor, torch.Tensor, torch.Generator, slice], torch.Tensor]


@dataclass
class TrainOptions:
    """Options every trainer takes (``train.py``'s shared options). Defaults are the refiner's; each kind's
    subclass changes some and adds its own."""

    data: str
    out: str
    arch: str = "tiny"
    space: str = "pixel"  # pixel | latent
    vae: str | None = None  # with space=latent: a checkpoint or VAE file the host loads
    latent_format: str = "SD15"
    parameterisation: str = "eps"
    t_range: tuple[int, int] = (0, 500)
    steps: int = 1000
    batch: int = 16
    lr: float = 2e-4
    ema: float = 0.999
    precision: str = "fp32"
    resolution: int = 64
    seed: int = 0
    resume: bool = False
    sample_every: int = 0
    save_every: int = 0
    device: str = "auto"
    base: str | None = None  # fine-tune (refiner, pose) or read (estimator) this checkpoint
    lora_rank: int = 0  # with base: train LoRA layers of this rank (refiner: a host LoRA; pose: merged; others refuse)
    lora_alpha: float | None = None
    cond_dropout: float = 0.1  # share of empty captions / null poses (the unconditional input for CFG)
    max_minutes: float = 0.0  # stop (checkpoint written) after this long; --resume continues (0: no limit)
    grad_checkpointing: bool = False  # recompute the UNet's blocks in the backward pass instead of keeping activations
    ema_device: str = "same"  # same | cpu: where the EMA copy of the trained weights lives
    stream: bool = False  # decode the images of each batch on the fly (tar shards always stream)
    order: str = "auto"  # auto | random | epochs: image draws with replacement, or epochs (auto: epochs when streaming)
    workers: int = 2  # DataLoader worker processes of a stream (0: decode in the training process)
    cache: str | None = None  # a folder for the VAE latents of a stream, reused across epochs and runs (refiner, world)

    def check(self) -> None:
        """Refuse options no trainer can use, naming the bad value and what would work."""
        lo, hi = self.t_range
        if not 0 <= lo < hi <= 1000:
            raise ValueError(f"--t-range {lo} {hi} must satisfy 0 <= lo < hi <= 1000 (hi exclusive)")
        if self.precision not in ("fp32", "bf16", "fp16"):
            raise ValueError(f"--precision {self.precision!r} is not one of fp32, bf16, fp16")
        if self.space not in ("pixel", "latent"):
            raise ValueError(f"--space {self.space!r} is not one of pixel, latent")
        if not self.base and self.space == "latent" and not self.vae:
            raise ValueError("--space latent needs --vae (a checkpoint or VAE file whose VAE defines the latents)")
        if self.steps < 1 or self.batch < 1:
            raise ValueError(f"--steps and --batch must be >= 1, got {self.steps} and {self.batch}")
        if self.ema_device not in ("same", "cpu"):
            raise ValueError(f"--ema-device {self.ema_device!r} is not one of same, cpu")
        if self.max_minutes < 0:
            raise ValueError(f"--max-minutes {self.max_minutes} must be >= 0 (0: no limit)")
        if self.order not in ("auto", "random", "epochs"):
            raise ValueError(f"--order {self.order!r} is not one of auto, random, epochs")
        if self.workers < 0:
            raise ValueError(f"--workers {self.workers} must be >= 0 (0: decode in the training process)")
        if not 0 <= self.cond_dropout <= 1:
            raise ValueError(f"--cond-dropout {self.cond_dropout} must be in [0, 1]")


@dataclass
class RefinerOptions(TrainOptions):
    """``train.py refiner``: the shared options with the refiner's defaults (tiny network, timesteps [0, 500))."""


@dataclass
class PoseOptions(TrainOptions):
    """``train.py pose``: a UNet and a keypoint encoder."""

    arch: str = "compact"
    parameterisation: str = "flow"  # from scratch: reaches pure noise at the top (eps leaves the mean colour visible)
    t_range: tuple[int, int] = (0, 1000)
    tokens: str = "fourier"
    bands: int = 8
    grid: int = 32
    canvas: int = 512
    max_people: int = 1
    context_dim: int = 64  # from scratch: width of the pose tokens (with --base: the base's context width)
    flip: float = 0.5
    min_scale: float = 0.8
    sample_cfg: float = 3.0
    sample_steps: int = 20


@dataclass
class EstimatorOptions(TrainOptions):
    """``train.py estimator``: the artifact estimator on ``base``'s x0 estimates."""

    arch: str = "small"
    t_range: tuple[int, int] = (0, 1000)
    clean_share: float = 0.1  # share of finished images (σ = 0) in each batch
    region: tuple[float, float] = (0.2, 0.45)  # artifact size range (share of the side)
    rank_weight: float = 1.0
    probes: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0)
    eval_steps: int = 20


@dataclass
class WorldOptions(TrainOptions):
    """``train.py world``: the world text-to-image model (:mod:`stepwise.models.world_model`) or a fine-tune."""

    arch: str = "world"
    parameterisation: str = "flow"
    t_range: tuple[int, int] = (0, 1000)
    resolution: int = 32
    batch: int = 32
    lr: float = 3e-4
    text: str = "train"  # train | frozen: the text encoder trained with the UNet or kept as it is
    sample_cfg: float = 3.0
    sample_steps: int = 20
    sample_prompts: tuple[str, ...] = ()
    recipe: str = ""  # how the run was made (e.g. the make target), recorded in the metadata

    def check(self) -> None:
        super().check()
        if self.text not in ("train", "frozen"):
            raise ValueError(f"--text {self.text!r} is not one of train, frozen")
        if self.space != "pixel" or self.vae:
            raise ValueError("train.py world works in the pixel space of the world model (from scratch) or in the "
                             "--base checkpoint's own VAE latents; drop --space latent / --vae")
        if not self.base:
            if self.arch != "world":
                raise ValueError(f"--arch {self.arch!r}: from scratch the world model has one architecture, world")
            if self.parameterisation != "flow":
                raise ValueError(f"--parameterisation {self.parameterisation!r}: the world model predicts flow")
            if self.resolution != 32:
                raise ValueError(f"--resolution {self.resolution}: the world model is trained at 32 px")
        if self.t_range != (0, 1000):
            raise ValueError(f"--t-range {self.t_range[0]} {self.t_range[1]}: a text-to-image model trains on the "
                             "whole schedule, 0 1000")


@dataclass
class CheckpointInfo:
    """What the written checkpoint's metadata says about the network (the format of :mod:`stepwise.models.checkpoint`);
    the loop adds the timestep range, the resolution and the training record."""

    kind: str  # refiner | pose | estimator | world
    network: dict
    parameterisation: str  # eps | v | flow
    latent_space: dict  # {"kind": "pixel", ...} or {"kind": "vae", "latent_format": ..., ...}
    conditioning: str  # none | text | keypoints | text+keypoints
    base: dict | None  # {"name", "sha256"} of the checkpoint fine-tuned or read; None from scratch
    training: dict = field(default_factory=dict)  # the kind's own entries of metadata["training"]


@dataclass
class Setup:
    """One training run as the loop sees it."""

    modules: list[tuple[str, torch.nn.Module]]  # the trained modules and each one's prefix in the checkpoint
    loss: LossFn
    images: int  # training images: batches draw indices in [0, images)
    skipped: int  # unreadable images skipped (recorded in the metadata)
    info: CheckpointInfo
    samples: Callable[[int], None] | None = None  # write a sample grid at this step (modules in eval mode)
    finish: Callable[[], None] | None = None  # after the last checkpoint (modules in eval mode), e.g. an evaluation
    lora: dict | None = None  # LoRA layers injected into modules[0]: the checkpoint is a host LoRA file of them ...
    lora_merged: bool = False  # ... or, when set, the full checkpoint with the layers merged into their base layers
    constants: dict[str, torch.Tensor] | None = None  # untrained tensors written beside the modules (full checkpoints)
    data: object | None = None  # a trainers.data.TrainingData: its epoch order and stream (None: draws with replacement)
