"""The world text-to-image model: SD1.5's architecture at the size of the captioned world (:mod:`.scenes`).

The model is the host's own classes in SD1.5's layout: the UNet (``comfy.ldm...openaimodel.UNetModel`` with
SD1.5's convolutional transformer projections, no ``adm`` input, text context only), a CLIP-L-shaped text encoder
(``comfy.sd1_clip.SDClipModel`` on the host's bundled SD1 tokenizer, narrower and shallower than CLIP-L) and the
host's pixel-space "VAE" (3-channel RGB latents, no compression), predicting the rectified-flow velocity on the
host's ``ModelSamplingDiscreteFlow`` (shift 1). A checkpoint is written in SD1.5's full-checkpoint layout
(``model.diffusion_model.``, ``cond_stage_model.transformer.text_model.``, ``first_stage_model.``), so once
:func:`config_class` is known to the host's model detection, the host's Load Checkpoint reads it and every host
and Stepwise node works on it unchanged.

Why these choices (measured in ``eval/results/world_t2i.json``): pixel space at 32 px keeps every shape's edge
exact for the analyser and costs no VAE training; flow reaches pure noise at the top of the schedule (eps on the
SD schedule leaves the mean colour visible at 32 px, the pose experiment's finding); the text encoder is trained
with the UNet (a frozen random one leaves colour words barely readable: the issue's probe).

Nothing here registers anything with the host; the demo and the tests do (``dev/stepwise_zoo``), as for the
tiny zoo. :func:`config_class` needs the host importable; the constants do not.
"""

from __future__ import annotations

import functools

WORLD_RESOLUTION = 32

WORLD_CLIP = {
    "attention_dropout": 0.0, "bos_token_id": 0, "dropout": 0.0, "eos_token_id": 49407, "hidden_act": "quick_gelu",
    "initializer_factor": 1.0, "initializer_range": 0.02, "layer_norm_eps": 1e-05, "max_position_embeddings": 77,
    "model_type": "clip_text_model", "pad_token_id": 1, "vocab_size": 49408,  # the host's bundled SD1 tokenizer
    "hidden_size": 128, "intermediate_size": 512, "num_attention_heads": 4, "num_hidden_layers": 4,
    "projection_dim": 128,
}

# What the host's detection reads back from a world checkpoint's tensors (the keys SD1.5's config matches on),
# distinct from every host config and from the tiny zoo (context 64) by its context width.
WORLD_DETECTED = {"context_dim": WORLD_CLIP["hidden_size"], "model_channels": 32, "in_channels": 3,
                  "use_linear_in_transformer": False, "adm_in_channels": None, "use_temporal_attention": False}
WORLD_HEADS = {"num_heads": 4, "num_head_channels": -1}

# The complete UNet config: 3 levels (32, 16, 8 px; widths 32, 64, 128), cross-attention at 16 and 8 px and in the
# middle (SD1.5 attends at its three finest levels; at 32 px the finest level's self-attention costs more than
# it helps on a CPU).
WORLD_UNET = {
    "use_checkpoint": False, "image_size": WORLD_RESOLUTION, "use_spatial_transformer": True, "legacy": False,
    "out_channels": 3, "use_temporal_resblock": False, "channel_mult": [1, 2, 4], "num_res_blocks": [1, 1, 1],
    "transformer_depth": [0, 1, 1], "transformer_depth_output": [0, 0, 1, 1, 1, 1], "transformer_depth_middle": 1,
    **WORLD_DETECTED, **WORLD_HEADS,
}

FLOW_SHIFT = 1.0


@functools.cache
def config_class():
    """The host model config class of the world model (a subclass of the host's ``SD15``); cached, so the class is
    one object however often it is asked for (registration checks identity)."""
    import comfy.latent_formats
    import comfy.model_base
    import comfy.sd1_clip
    import comfy.supported_models
    import comfy.supported_models_base

    class WorldClipL(comfy.sd1_clip.SDClipModel):
        def __init__(self, device="cpu", dtype=None, model_options={}, **kwargs):  # noqa: B006 (the host's signature)
            super().__init__(device=device, dtype=dtype, textmodel_json_config=dict(WORLD_CLIP),
                             return_projected_pooled=False, model_options=model_options, **kwargs)

    class WorldClipModel(comfy.sd1_clip.SD1ClipModel):
        def __init__(self, device="cpu", dtype=None, model_options={}, **kwargs):  # noqa: B006
            super().__init__(device=device, dtype=dtype, model_options=model_options, clip_model=WorldClipL, **kwargs)

    class StepwiseWorldSD15(comfy.supported_models.SD15):
        unet_config = dict(WORLD_DETECTED)
        unet_extra_config = dict(WORLD_HEADS)
        latent_format = comfy.latent_formats.ChromaRadiance  # the host's RGB "latent" (3 channels, no scaling)
        sampling_settings = {"shift": FLOW_SHIFT, "multiplier": 1000}
        memory_usage_factor = 0.05

        def model_type(self, state_dict, prefix=""):
            return comfy.model_base.ModelType.FLOW

        def clip_target(self, state_dict={}):  # noqa: B006
            return comfy.supported_models_base.ClipTarget(comfy.sd1_clip.SD1Tokenizer, WorldClipModel)

    return StepwiseWorldSD15


def from_scratch(meta: dict) -> bool:
    """Whether Stepwise metadata ``meta`` is a world model trained from scratch (:func:`config_class`'s network, which
    the host's model detection does not know; read it with :func:`load_parts`). A world checkpoint fine-tuned from a
    host checkpoint is of the host's own kind, and the host loads it itself."""
    return meta["kind"] == "world" and meta["network"].get("config") == config_class().__name__


def new_parts(dtype=None, device=None):
    """A freshly built (uninitialised) world model: ``(model, clip, vae)`` as the host's loader returns them
    (``BaseModel``, ``comfy.sd.CLIP``, ``comfy.sd.VAE``), in fp32 on the CPU unless told otherwise; initialise
    with :func:`models.init.seeded_init_`."""
    import comfy.pixel_space_convert
    import comfy.sd
    import torch

    dtype = dtype or torch.float32
    cls = config_class()
    config = cls(dict(WORLD_UNET))
    config.set_inference_dtype(dtype, None)
    model = config.get_model({}, "", device=device or torch.device("cpu"))
    clip = comfy.sd.CLIP(config.clip_target(), parameters=0,
                         model_options={"dtype": dtype, "initial_device": device or torch.device("cpu")})
    vae = comfy.sd.VAE(sd=comfy.pixel_space_convert.PixelspaceConversionVAE().state_dict())
    return model, clip, vae


def load_parts(state_dict: dict, dtype=None):
    """A world checkpoint's tensors (SD1.5's full-checkpoint layout) as the host's own loader would return them,
    ``(ModelPatcher, comfy.sd.CLIP, comfy.sd.VAE)``, without touching the host's model detection: the config is
    :func:`config_class` itself, and every step after detection is the host's (``comfy.sd.
    load_state_dict_guess_config``: inference dtype for the load device, UNet weights, the VAE and text encoder
    from their prefixes). ``dtype`` forces the UNet's dtype (the host's choice for the device otherwise)."""
    import comfy.model_management as mm
    import comfy.model_patcher
    import comfy.sd
    import comfy.utils

    prefix = "model.diffusion_model."
    config = config_class()(dict(WORLD_UNET))
    parameters = comfy.utils.calculate_parameters(state_dict, prefix)
    load_device = mm.get_torch_device()
    unet_dtype = dtype or mm.unet_dtype(model_params=parameters, supported_dtypes=list(config.supported_inference_dtypes),
                                        weight_dtype=comfy.utils.weight_dtype(state_dict, prefix))
    config.set_inference_dtype(unet_dtype, mm.unet_manual_cast(unet_dtype, load_device, config.supported_inference_dtypes))
    model = config.get_model(state_dict, prefix, device=mm.unet_inital_load_device(parameters, unet_dtype))
    model.load_model_weights(state_dict, prefix)
    vae_sd = comfy.utils.state_dict_prefix_replace(state_dict, {k: "" for k in config.vae_key_prefix}, filter_keys=True)
    vae = comfy.sd.VAE(sd=config.process_vae_state_dict(vae_sd))
    clip_sd = config.process_clip_state_dict(state_dict)
    clip = comfy.sd.CLIP(config.clip_target(state_dict=state_dict), tokenizer_data=clip_sd,
                         parameters=comfy.utils.calculate_parameters(clip_sd))
    missing, _ = clip.load_sd(clip_sd, full_model=True)
    missing = [k for k in missing if ".logit_scale" not in k and ".text_projection.weight" not in k]
    if missing:
        raise ValueError(f"the world checkpoint's text encoder lacks {len(missing)} tensors ({missing[0]}, ...); "
                         "write it with train.py world")
    patcher = comfy.model_patcher.ModelPatcher(model, load_device=load_device, offload_device=mm.unet_offload_device())
    return patcher, clip, vae
