"""LoadStepwiseCheckpoint: read a Stepwise checkpoint (refiner, pose) from ``models/stepwise`` as a MODEL;
LoadStepwiseWorldCheckpoint: read a world text-to-image checkpoint from there as MODEL, CLIP and VAE.

The folder is registered with the host as ``stepwise`` (users can add more paths under that key in
``extra_model_paths.yaml``). Files without Stepwise metadata, corrupt files and files of another kind are
refused with a clear error and nothing is loaded.
"""

import json
import os

import folder_paths
from comfy_api.latest import io

from ..models import checkpoint, diffusion, world_model
from .common import CATEGORY

FOLDER = "stepwise"
folder_paths.add_model_folder_path(FOLDER, os.path.join(folder_paths.models_dir, FOLDER), is_default=True)


def checkpoint_files() -> list[str]:
    return [f for f in folder_paths.get_filename_list(FOLDER) if f.lower().endswith(".safetensors")]


def _path(ckpt_name) -> str:
    path = folder_paths.get_full_path(FOLDER, ckpt_name) if isinstance(ckpt_name, str) and ckpt_name else None
    if path is None:
        raise ValueError(f"ckpt_name {ckpt_name!r} is not in models/{FOLDER} "
                         f"({', '.join(folder_paths.get_folder_paths(FOLDER))}); put train.py's output there")
    return path


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
        tensors, meta = checkpoint.load(_path(ckpt_name))
        if meta["kind"] == "world":
            raise checkpoint.CheckpointError(f"{ckpt_name}: holds a world text-to-image checkpoint (model, text "
                                             "encoder and VAE); load it with Load Stepwise World Checkpoint")
        if meta["kind"] not in ("refiner", "pose"):
            raise checkpoint.CheckpointError(f"{ckpt_name}: holds {checkpoint.a(meta['kind'])} checkpoint; load it with "
                                             "Load Artifact Estimator, not as a MODEL")
        return io.NodeOutput(diffusion.model_patcher(tensors, meta, ckpt_name), summary(meta))


class LoadStepwiseWorldCheckpoint(io.ComfyNode):
    """The world text-to-image model (``train.py world`` from scratch: SD1.5's architecture at 32 px, pixel space,
    flow) as MODEL, CLIP and VAE. Its config is not one the host's Load Checkpoint detects (a CLIP-L-shaped text
    encoder 128 wide), and the pack never adds configs to the host's detection, so it has its own loader; every host
    and Stepwise node then works on it unchanged. World checkpoints fine-tuned from a host checkpoint are of the
    host's own kind: the host's Load Checkpoint reads them."""

    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="StepwiseLoadWorldCheckpoint",
            display_name="Load Stepwise World Checkpoint",
            category=CATEGORY,
            description=(
                "Loads a text-to-image model trained from scratch on Stepwise's captioned world (train.py world; "
                "make world-models ships them) from models/stepwise: 32x32 pixel images of coloured shapes, "
                "prompts like 'a large red circle on the left on a gray background'. Use an Empty Chroma Radiance "
                "Latent Image of 32x32 with it."
            ),
            inputs=[
                io.Combo.Input("ckpt_name", options=checkpoint_files(),
                               tooltip="A world .safetensors file written by train.py world, in models/stepwise."),
            ],
            outputs=[
                io.Model.Output("model", display_name="model", tooltip="The world model's UNet (flow)."),
                io.Clip.Output("clip", display_name="clip", tooltip="Its trained text encoder."),
                io.Vae.Output("vae", display_name="vae", tooltip="Its pixel-space VAE (RGB latents)."),
                io.String.Output("info", display_name="info", tooltip="The checkpoint's metadata: recipe, training "
                                                                           "summary, measured metrics."),
            ],
        )

    @classmethod
    def execute(cls, ckpt_name) -> io.NodeOutput:
        path = _path(ckpt_name)
        meta = checkpoint.read_metadata(path)
        if meta["kind"] != "world":
            raise checkpoint.CheckpointError(f"{ckpt_name}: holds {checkpoint.a(meta['kind'])} checkpoint, not a world "
                                             "text-to-image model; load it with Load Stepwise Checkpoint")
        if not world_model.from_scratch(meta):
            config = meta["network"].get("config")
            raise checkpoint.CheckpointError(f"{ckpt_name}: a world checkpoint fine-tuned from a {config} checkpoint "
                                             "is of the host's own kind; put it in models/checkpoints and load it "
                                             "with the host's Load Checkpoint")
        tensors, meta = checkpoint.load(path, "world")
        model, clip, vae = world_model.load_parts(tensors)
        return io.NodeOutput(model, clip, vae, summary(meta))
