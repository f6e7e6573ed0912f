"""Multi-process training through ``torchrun`` and PyTorch's DistributedDataParallel.

``train.py`` runs as one process by default. Launched by ``torchrun`` (which sets ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK`` and the rendezvous variables), every rank joins one process group (gloo on the CPU, nccl on CUDA)
and the shared loop (:func:`stepwise.trainers.loop.train`) splits each step's global batch across the ranks:

- every rank holds the same seeded generator and makes the same draws for the whole global batch (image indices,
  timesteps, noise, augmentations, caption dropout), then computes the loss of its own slice of the batch
  (:meth:`Ranks.part`); so the run's randomness, and the training state a checkpoint saves, do not depend on how
  many processes there are, and ``--resume`` works when that number changes;
- the trained modules are wrapped in one ``DistributedDataParallel`` module whose forward is the loss, so the
  gradients of the slices are averaged across ranks in the backward pass: with equal slices that is the gradient
  of the global batch's mean loss, what one process with the same batch computes (up to the order of float sums);
- only rank 0 writes checkpoints, training states, sample grids and logs; decisions that end the run (the
  ``--max-minutes`` stop) are agreed by all ranks.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Ranks:
    """This process's place in the run: ``rank`` of ``world`` processes, ``local`` on its node."""

    rank: int = 0
    world: int = 1
    local: int = 0

    @property
    def main(self) -> bool:
        """Whether this process writes (rank 0)."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1

    def part(self, batch: int) -> slice:
        """This rank's rows of a global batch of ``batch`` (equal, contiguous slices)."""
        if batch % self.world:
            raise ValueError(f"--batch {batch} is not divisible by the {self.world} processes torchrun started; "
                             f"use a multiple of {self.world} (the global batch is split evenly across processes)")
        share = batch // self.world
        return slice(self.rank * share, (self.rank + 1) * share)


def from_env() -> Ranks:
    """The ranks torchrun describes in the environment (one process of one when it did not start this one)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Ranks()
    for name in ("RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        if name not in os.environ:
            raise ValueError(f"WORLD_SIZE={world} is set but {name} is not: start multi-process training with "
                             "torchrun (e.g. torchrun --nproc-per-node 2 train.py ...), which sets both")
    return Ranks(int(os.environ["RANK"]), world, int(os.environ["LOCAL_RANK"]))


def local_device(device: torch.device) -> torch.device:
    """Under torchrun a CUDA device without an index becomes this process's GPU (``cuda:LOCAL_RANK``)."""
    ranks = from_env()
    if device.type == "cuda" and device.index is None and ranks.distributed:
        device = torch.device("cuda", ranks.local)
    if device.type == "cuda" and device.index is not None:
        torch.cuda.set_device(device)
    return device


def start(device: torch.device) -> Ranks:
    """Join the process group torchrun describes (gloo for the CPU, nccl for CUDA); a no-op for one process."""
    import torch.distributed as dist

    ranks = from_env()
    if ranks.distributed and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if ranks.distributed and dist.get_world_size() != ranks.world:
        raise ValueError(f"the process group has {dist.get_world_size()} processes, WORLD_SIZE says {ranks.world}")
    return ranks


def stop() -> None:
    """Leave the process group (at the end of ``train.py``)."""
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


def mean(value: torch.Tensor, ranks: Ranks) -> float:
    """The mean of a scalar over the ranks (the global batch's loss from the slices' losses)."""
    if not ranks.distributed:
        return float(value)
    import torch.distributed as dist

    t = value.detach().float().reshape(1).clone()
    dist.all_reduce(t)
    return float(t) / ranks.world


def agree(flag: bool, ranks: Ranks) -> bool:
    """Whether any rank says ``flag`` (so every rank takes the same branch, e.g. stopping after --max-minutes)."""
    if not ranks.distributed:
        return flag
    import torch.distributed as dist

    t = torch.tensor([1.0 if flag else 0.0])
    if dist.get_backend() == "nccl":
        t = t.cuda()
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def barrier(ranks: Ranks) -> None:
    if ranks.distributed:
        import torch.distributed as dist

        dist.barrier()


class LossModule(torch.nn.Module):
    """The trained modules with the run's loss as forward: what DistributedDataParallel wraps, so each step's
    backward pass averages the gradients of every trained parameter across ranks."""

    def __init__(self, modules: list[torch.nn.Module], loss):
        super().__init__()
        self.trained = torch.nn.ModuleList(modules)
        self._loss = loss

    def forward(self, idx, t, generator, part):
        return self._loss(idx, t, generator, part)


def wrap(modules: list[torch.nn.Module], loss, device: torch.device, ranks: Ranks):
    """The step's loss function: the setup's own for one process, through DistributedDataParallel for several."""
    if not ranks.distributed:
        return loss
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(LossModule(modules, loss), device_ids=[device.index] if device.type == "cuda" else None)
