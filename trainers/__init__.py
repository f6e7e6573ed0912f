"""Stepwise's trainers (``train.py``): refiners, pose models and the artifact estimator, on one shared loop.

- :mod:`.setup`: the options (:class:`TrainOptions` and one subclass per kind) and the typed :class:`Setup` a
  trainer hands the loop.
- :mod:`.loop`: the shared loop (EMA, precision, bit-exact resume, atomic writes, sample-grid hook) and the
  diffusion loss.
- :mod:`.distributed`: several processes, devices or nodes under ``torchrun`` (DistributedDataParallel; each rank
  computes its slice of the global batch, rank 0 writes).
- :mod:`.base`: the one loader of base checkpoints and VAEs (and :class:`DiffusionBase`, the x0 estimates the
  estimator and ``eval/`` read).
- :mod:`.refiner`, :mod:`.pose`, :mod:`.estimator`, :mod:`.world`: the four trainers (the last: the world
  text-to-image model).

Trainers import ``models`` and ``kernels``; nothing in the pack imports trainers (the nodes never need them).
"""

from .estimator import train_estimator
from .pose import train_pose
from .refiner import train_refiner
from .setup import EstimatorOptions, PoseOptions, RefinerOptions, Setup, TrainOptions, WorldOptions
from .world import train_world

__all__ = ["EstimatorOptions", "PoseOptions", "RefinerOptions", "Setup", "TrainOptions", "train_estimator",
           "train_pose", "train_refiner", "train_world", "WorldOptions"]
