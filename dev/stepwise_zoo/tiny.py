"""Tiny SD1.5- and SDXL-shaped model definitions, made of ComfyUI's own classes.

These exist only for Stepwise's tests and demo. :func:`register` adds them to the host's model detection
so their checkpoints load through the host's standard ``CheckpointLoaderSimple``; the shipped pack never
registers anything. Each class's ``unet_config`` is what the host's detection reads back from the
checkpoint's tensors (so it matches these checkpoints and no real model), and ``FULL_UNET_CONFIG`` is the
complete configuration used to build them.
"""

import comfy.latent_formats
import comfy.model_base
import comfy.sd1_clip
import comfy.sdxl_clip
import comfy.supported_models
import comfy.supported_models_base

_CLIP_COMMON = {
    "attention_dropout": 0.0,
    "bos_token_id": 0,
    "dropout": 0.0,
    "eos_token_id": 49407,
    "hidden_act": "quick_gelu",
    "initializer_factor": 1.0,
    "initializer_range": 0.02,
    "layer_norm_eps": 1e-05,
    "max_position_embeddings": 77,
    "model_type": "clip_text_model",
    "pad_token_id": 1,
    "vocab_size": 49408,  # the host's bundled SD1 tokenizer
}

TINY_CLIP_L = {**_CLIP_COMMON, "hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 2,
               "num_hidden_layers": 3, "projection_dim": 64}
TINY_CLIP_G = {**_CLIP_COMMON, "hidden_act": "gelu", "hidden_size": 96, "intermediate_size": 192,
               "num_attention_heads": 2, "num_hidden_layers": 3, "projection_dim": 96}

_UNET_COMMON = {
    "use_checkpoint": False,
    "image_size": 32,
    "use_spatial_transformer": True,
    "legacy": False,
    "in_channels": 4,
    "out_channels": 4,
    "use_temporal_resblock": False,
    "use_temporal_attention": False,
}


# --- SD1.5-shaped: 3 levels, attention at every level and in the middle, CLIP-L-shaped text encoder ---

class TinyClipL(comfy.sd1_clip.SDClipModel):
    def __init__(self, device="cpu", dtype=None, model_options={}, **kwargs):
        super().__init__(device=device, dtype=dtype, textmodel_json_config=dict(TINY_CLIP_L),
                         return_projected_pooled=False, model_options=model_options, **kwargs)


class TinySD15ClipModel(comfy.sd1_clip.SD1ClipModel):
    def __init__(self, device="cpu", dtype=None, model_options={}, **kwargs):
        super().__init__(device=device, dtype=dtype, model_options=model_options, clip_model=TinyClipL, **kwargs)


class TinySD15(comfy.supported_models.SD15):
    unet_config = {
        "context_dim": TINY_CLIP_L["hidden_size"],
        "model_channels": 32,
        "in_channels": 4,
        "channel_mult": [1, 2, 4],
        "use_linear_in_transformer": False,
        "adm_in_channels": None,
        "use_temporal_attention": False,
    }
    unet_extra_config = {"num_heads": 2, "num_head_channels": -1}
    FULL_UNET_CONFIG = {
        **_UNET_COMMON,
        **unet_config,
        "num_res_blocks": [1, 1, 1],
        "transformer_depth": [1, 1, 1],
        "transformer_depth_output": [1, 1, 1, 1, 1, 1],
        "transformer_depth_middle": 1,
    }

    def clip_target(self, state_dict={}):
        return comfy.supported_models_base.ClipTarget(comfy.sd1_clip.SD1Tokenizer, TinySD15ClipModel)


# --- Pixel-space SD1.5-shaped: the same UNet on 3-channel RGB latents, decoded by the host's pixel_space VAE ---

class TinySD15Pixel(TinySD15):
    unet_config = {**TinySD15.unet_config, "in_channels": 3}
    latent_format = comfy.latent_formats.ChromaRadiance  # the host's RGB "latent" (3 channels, no scaling)
    FULL_UNET_CONFIG = {**TinySD15.FULL_UNET_CONFIG, "in_channels": 3, "out_channels": 3}


# --- SDXL-shaped: linear transformers, depth 2 at the lowest level and in the middle (transformer_index 1
# exists), pooled + size conditioning (adm), CLIP-L + CLIP-G-shaped text encoders ---

class TinyClipLXL(comfy.sd1_clip.SDClipModel):
    def __init__(self, device="cpu", dtype=None, model_options={}):
        super().__init__(device=device, dtype=dtype, layer="hidden", layer_idx=-2, layer_norm_hidden_state=False,
                         textmodel_json_config=dict(TINY_CLIP_L), model_options={**model_options, "model_name": "clip_l"})


class TinyClipG(comfy.sd1_clip.SDClipModel):
    def __init__(self, device="cpu", dtype=None, model_options={}):
        super().__init__(device=device, dtype=dtype, layer="hidden", layer_idx=-2, layer_norm_hidden_state=False,
                         textmodel_json_config=dict(TINY_CLIP_G), special_tokens={"start": 49406, "end": 49407, "pad": 0},
                         return_projected_pooled=True, model_options={**model_options, "model_name": "clip_g"})


class TinySDXLClipModel(comfy.sdxl_clip.SDXLClipModel):
    def __init__(self, device="cpu", dtype=None, model_options={}):
        # Build the two encoders directly: the host's SDXLClipModel.__init__ hardcodes full-size configs.
        super(comfy.sdxl_clip.SDXLClipModel, self).__init__()
        self.clip_l = TinyClipLXL(device=device, dtype=dtype, model_options=model_options)
        self.clip_g = TinyClipG(device=device, dtype=dtype, model_options=model_options)
        self.dtypes = set([dtype])


class TinySDXL(comfy.supported_models.SDXL):
    unet_config = {
        "model_channels": 32,
        "use_linear_in_transformer": True,
        "transformer_depth": [0, 0, 1, 1, 2, 2],
        "context_dim": TINY_CLIP_L["hidden_size"] + TINY_CLIP_G["hidden_size"],
        "adm_in_channels": TINY_CLIP_G["hidden_size"] + 6 * 256,  # pooled (square projection) + 6 size embeddings
        "use_temporal_attention": False,
    }
    unet_extra_config = {"num_heads": -1, "num_head_channels": 16}
    FULL_UNET_CONFIG = {
        **_UNET_COMMON,
        **unet_config,
        "num_classes": "sequential",
        "channel_mult": [1, 2, 4],
        "num_res_blocks": [2, 2, 2],
        "transformer_depth_output": [0, 0, 0, 1, 1, 1, 2, 2, 2],
        "transformer_depth_middle": 2,
    }

    def clip_target(self, state_dict={}):
        return comfy.supported_models_base.ClipTarget(comfy.sdxl_clip.SDXLTokenizer, TinySDXLClipModel)


TINY_MODELS = {"tiny-sd15": TinySD15, "tiny-sdxl": TinySDXL, "tiny-sd15-pixel": TinySD15Pixel}


def register():
    """Add the tiny configs and the world model's config to the host's model detection (idempotent). Test
    fixtures and the demo only."""
    from .world import config_class

    for config in [*TINY_MODELS.values(), config_class()]:
        if config not in comfy.supported_models.models:
            comfy.supported_models.models.append(config)
