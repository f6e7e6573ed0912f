"""Diffusion networks of Stepwise checkpoints and the host model objects built from them.

Refiners (and later the pose model) are the host's own UNet (``comfy.ldm...openaimodel.UNetModel``) in a
config of their own: the small from-scratch architectures below, or the config of the base checkpoint they
were fine-tuned from. A checkpoint stores the UNet's tensors unprefixed and its ``unet_config`` in the
metadata, so :func:`model_patcher` rebuilds exactly the trained network and wraps it in a host
``BaseModel`` + ``ModelPatcher`` that every host sampler and node can use.

Noise schedules are the host's: ``eps``/``v`` use ``ModelSamplingDiscrete`` with the SD schedule (scaled-linear
betas 0.00085 to 0.012 over 1000 steps), ``flow`` uses ``ModelSamplingDiscreteFlow`` (shift from the metadata).
"""

from __future__ import annotations

import json

import torch

# From-scratch architectures, small enough to train on a CPU: ``tiny`` has no attention (refiners);
# ``compact`` adds transformer blocks (self- and cross-attention) at 1/2 and 1/4 of the input side, so a pose
# model's joint tokens can place things; ``small`` is wider with attention at 1/4 only.
ARCHS = {
    "compact": {"model_channels": 32, "channel_mult": [1, 2, 2], "num_res_blocks": [1, 1, 1],
                "transformer_depth": [0, 1, 1], "transformer_depth_output": [0, 0, 1, 1, 1, 1],
                "transformer_depth_middle": 1},
    "tiny": {"model_channels": 32, "channel_mult": [1, 2, 2], "num_res_blocks": [1, 1, 1],
             "transformer_depth": [0, 0, 0], "transformer_depth_output": [0, 0, 0, 0, 0, 0],
             "transformer_depth_middle": -1},
    "small": {"model_channels": 64, "channel_mult": [1, 2, 4], "num_res_blocks": [2, 2, 2],
              "transformer_depth": [0, 0, 0, 0, 1, 1], "transformer_depth_output": [0, 0, 0, 0, 0, 0, 1, 1, 1],
              "transformer_depth_middle": 1},
}

LATENT_FORMATS = ("pixel", "SD15", "SDXL")


def unet_config(arch: str, channels: int, context_dim: int | None = None) -> dict:
    """The host UNet config of a from-scratch architecture on ``channels``-channel inputs; unconditional, or with
    cross-attention to a ``context_dim``-wide context in its transformer blocks (pose models)."""
    if arch not in ARCHS:
        raise ValueError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHS)}")
    return {
        "use_checkpoint": False, "image_size": 32, "use_spatial_transformer": True, "legacy": False,
        "in_channels": channels, "out_channels": channels, "context_dim": context_dim, "adm_in_channels": None,
        "use_linear_in_transformer": True, "use_temporal_resblock": False, "use_temporal_attention": False,
        "num_heads": -1, "num_head_channels": 32, **ARCHS[arch],
    }


def json_safe(config: dict) -> dict:
    """The JSON-serialisable part of a host unet_config (dtypes and the like are decided at load time)."""
    out = {}
    for k, v in config.items():
        try:
            json.dumps(v)
        except TypeError:
            continue
        out[k] = v
    return out


def latent_format(name: str):
    import comfy.latent_formats

    if name == "pixel":
        return comfy.latent_formats.ChromaRadiance  # the host's 3-channel identity "latent" (pixels in [-1, 1])
    if name in ("SD15", "SDXL"):
        return getattr(comfy.latent_formats, name)
    raise ValueError(f"unknown latent format {name!r}; choose one of {', '.join(LATENT_FORMATS)}")


MODEL_CLASSES = ("BaseModel", "SDXL")


def model_config(unet: dict, parameterisation: str, latent: str, flow_shift: float = 1.0, model_class: str = "BaseModel",
                 pose: dict | None = None):
    """A host model config (``supported_models_base.BASE``) for a Stepwise UNet.

    ``model_class`` is the host model class around the UNet: ``BaseModel`` (SD1.x/2.x-style, text context only)
    or ``SDXL`` (adds the pooled-text and size embedding the SDXL UNet takes as ``y``). ``pose`` (a pose
    checkpoint's ``{"encoder": KeypointEncoder config, "text": bool}``) makes it a :mod:`models.pose` model.
    """
    if model_class not in MODEL_CLASSES:
        raise ValueError(f"unknown model class {model_class!r}; choose one of {', '.join(MODEL_CLASSES)}")
    import comfy.model_base
    import comfy.supported_models_base

    model_type = {"eps": comfy.model_base.ModelType.EPS, "v": comfy.model_base.ModelType.V_PREDICTION,
                  "flow": comfy.model_base.ModelType.FLOW}[parameterisation]
    sampling = {"shift": flow_shift, "multiplier": 1000} if parameterisation == "flow" else {}

    class StepwiseUNetConfig(comfy.supported_models_base.BASE):
        unet_config = {}
        unet_extra_config = {}  # the checkpoint's config is complete; nothing is overridden
        latent_format = globals()["latent_format"](latent)
        sampling_settings = sampling
        supported_inference_dtypes = [torch.float16, torch.bfloat16, torch.float32]

        def model_type(self, state_dict, prefix=""):
            return model_type

        def get_model(self, state_dict, prefix="", device=None):
            if pose is not None:
                from .pose import pose_model_class

                return pose_model_class(model_class)(self, pose["encoder"], bool(pose["text"]), model_type=model_type,
                                          device=device)
            return getattr(comfy.model_base, model_class)(self, model_type=model_type, device=device)

    return StepwiseUNetConfig(dict(unet))


def new_model(unet: dict, parameterisation: str, latent: str, flow_shift: float = 1.0, device=None,
              dtype=torch.float32, pose: dict | None = None, model_class: str = "BaseModel"):
    """A freshly built (uninitialised) host model for training; initialise with models.init.seeded_init_."""
    config = model_config(unet, parameterisation, latent, flow_shift, model_class, pose=pose)
    config.set_inference_dtype(dtype, None)
    return config.get_model({}, "", device=device)


def model_patcher(tensors: dict, meta: dict, name: str = "checkpoint"):
    """A host ModelPatcher for a Stepwise checkpoint's UNet, with its metadata attached as ``stepwise.checkpoint``."""
    import comfy.model_management as mm
    import comfy.model_patcher
    import comfy.utils

    from .checkpoint import CheckpointError

    network = meta["network"]
    if network.get("class") == "lora":
        base = (meta.get("base") or {}).get("name", "its base checkpoint")
        raise CheckpointError(f"{name}: a LoRA for {base}; put it in models/loras and apply it to that checkpoint "
                              "with the host's LoraLoaderModelOnly (the timestep-range guard needs a full refiner)")
    if network.get("class") != "comfy_unet" or not isinstance(network.get("unet_config"), dict):
        raise CheckpointError(f"{name}: network {network.get('class')!r} is not a UNet this loader builds")
    unet = dict(network["unet_config"])
    config = model_config(unet, meta["parameterisation"], meta["latent_space"].get("latent_format", "pixel"),
                          float(meta.get("flow_shift", 1.0)), network.get("model_class", "BaseModel"),
                          network.get("pose"))
    prefix = "pose_encoder."
    check_against_network(config, tensors, name, prefix)
    load_device = mm.get_torch_device()
    parameters = comfy.utils.calculate_parameters(tensors)
    weight_dtype = next(iter(tensors.values())).dtype if tensors else None
    unet_dtype = mm.unet_dtype(model_params=parameters, supported_dtypes=config.supported_inference_dtypes,
                               weight_dtype=weight_dtype)
    config.set_inference_dtype(unet_dtype, mm.unet_manual_cast(unet_dtype, load_device, config.supported_inference_dtypes))
    model = config.get_model({}, "", device=mm.unet_inital_load_device(parameters, unet_dtype))
    encoder = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
    tensors = {k: v for k, v in tensors.items() if not k.startswith(prefix)}
    model.diffusion_model.load_state_dict(tensors, strict=True)
    if hasattr(model, "pose_encoder"):
        model.pose_encoder.load_state_dict(encoder, strict=True)
        model.pose_encoder.to(unet_dtype)
    patcher = comfy.model_patcher.ModelPatcher(model, load_device=load_device, offload_device=mm.unet_offload_device())
    patcher.set_attachments("stepwise.checkpoint", dict(meta))
    return patcher


def check_against_network(config, tensors: dict, name: str, prefix: str = "pose_encoder.") -> None:
    """Refuse ``tensors`` whose names or shapes differ from the network ``config`` describes, before anything is
    allocated: the network is built on the meta device (no memory), so metadata claiming a huge network is refused
    by what the file holds instead of being built first."""
    from .checkpoint import CheckpointError, check_tensors

    try:
        with torch.device("meta"):
            probe = config.get_model({}, "", device=torch.device("meta"))
    except Exception as e:  # a config the host's UNet cannot build (wrong types, impossible sizes)
        raise CheckpointError(f"{name}: the network in its metadata cannot be built ({type(e).__name__}: {e}); "
                              "the metadata must be train.py's") from None
    expected = {k: tuple(v.shape) for k, v in probe.diffusion_model.state_dict().items()}
    if hasattr(probe, "pose_encoder"):
        expected |= {prefix + k: tuple(v.shape) for k, v in probe.pose_encoder.state_dict().items()}
    check_tensors(expected, {k: tuple(v.shape) for k, v in tensors.items()}, name)


def checkpoint_meta(model) -> dict | None:
    """The Stepwise metadata attached to a MODEL by the pack's loader, or None for other models."""
    get = getattr(model, "get_attachment", None)
    return get("stepwise.checkpoint") if get else None
