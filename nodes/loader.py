"""LoadStepwiseCheckpoint: read a Stepwise checkpoint (refiner, pose) from ``models/stepwise`` as a MODEL.

The folder is registered with the host as ``stepwise`` (users can add more paths under that key in
``extra_model_paths.yaml``). Files without Stepwise metadata, corrupt files and files of another kind are
refused with a clear error and nothing is loaded.
"""

import json
import os

import folder_paths
from comfy_api.latest import io

from ..models import checkpoint, diffusion
from .common import CATEGORY

FOLDER = "stepwise"
folder_paths.add_model_folder_path(FOLDER, os.path.join(folder_paths.models_dir, FOLDER), is_default=True)


def checkpoint_files() -> list[str]:
    return [f for f in folder_paths.get_filename_list(FOLDER) if f.lower().endswith(".safetensors")]


def summary(meta: dict) -> str:
    keys = ("kind", "parameterisation", "latent_space", "timestep_range", "conditioning", "base", "training")
    return json.dumps({k: meta.get(k) for k in keys}, indent=1, sort_keys=True)


class LoadStepwiseCheckpoint(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="StepwiseLoadCheckpoint",
            display_name="Load Stepwise Checkpoint",
            category=CATEGORY,
            description=(
                "Loads a refiner or pose checkpoint made by Stepwise's trainer (train.py) from models/stepwise as a "
                "MODEL any sampler can use. The checkpoint's trained timestep range travels with the model, so "
                "LateStepRefine never asks it for noise levels it was not trained on."
            ),
            inputs=[
                io.Combo.Input("ckpt_name", options=checkpoint_files(),
                               tooltip="A .safetensors file written by train.py, in models/stepwise."),
            ],
            outputs=[
                io.Model.Output("model", display_name="model", tooltip="The checkpoint's diffusion model."),
                io.String.Output("info", display_name="info", tooltip="The checkpoint's metadata: kind, parameterisation, latent space, "
                                                 "trained timestep range, training summary."),
            ],
        )

    @classmethod
    def execute(cls, ckpt_name) -> io.NodeOutput:
        path = folder_paths.get_full_path(FOLDER, ckpt_name) if isinstance(ckpt_name, str) and ckpt_name else None
        if path is None:
            raise ValueError(f"ckpt_name {ckpt_name!r} is not in models/{FOLDER} "
                             f"({', '.join(folder_paths.get_folder_paths(FOLDER))}); put train.py's output there")
        tensors, meta = checkpoint.load(path)
        if meta["kind"] == "world":
            raise checkpoint.CheckpointError(f"{ckpt_name}: holds a world text-to-image checkpoint (model, text "
                                             "encoder and VAE); put it in models/checkpoints and load it with the "
                                             "host's Load Checkpoint")
        if meta["kind"] not in ("refiner", "pose"):
            raise checkpoint.CheckpointError(f"{ckpt_name}: holds {checkpoint.a(meta['kind'])} checkpoint; load it with "
                                             "Load Artifact Estimator, not as a MODEL")
        return io.NodeOutput(diffusion.model_patcher(tensors, meta, ckpt_name), summary(meta))
