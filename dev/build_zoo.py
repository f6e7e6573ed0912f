"""Build Stepwise's model zoo as real ``.safetensors`` checkpoints, deterministically.

Run with the host's Python and ComfyUI importable (``make zoo`` does this)::

    python dev/build_zoo.py --out ~/.cache/stepwise/zoo [--full]

- ``stepwise-tiny-sd15.safetensors``: SD1.5-shaped tiny UNet (3 levels, attention everywhere), tiny CLIP-L
  text encoder on the host's bundled SD1 tokenizer, TAESD-architecture VAE (8x, 4 latent channels).
- ``stepwise-tiny-sdxl.safetensors``: SDXL-shaped tiny UNet (linear transformers, depth 2 at the lowest
  level, pooled + size conditioning), tiny CLIP-L + CLIP-G, TAESD-architecture VAE.
- ``stepwise-tiny-sd15_pixel.safetensors``: the SD1.5-shaped tiny UNet on 3-channel RGB latents with the host's
  ``pixel_space`` VAE (for the views and splits that only make sense on pixels).
- ``--full``: ``stepwise-sd15-fullsize-random.safetensors``, the real SD1.5 architecture (860M UNet,
  CLIP-L, KL VAE) with random weights in fp16, detected by the host's unmodified model detection.

Weights come from :func:`models.init.seeded_init_`; a file is rebuilt only when missing or when its
recorded builder version differs, so reruns are quick.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
ZOO_VERSION = "2"

TINY_FILES = {"tiny-sd15": "stepwise-tiny-sd15.safetensors", "tiny-sdxl": "stepwise-tiny-sdxl.safetensors",
              "tiny-sd15-pixel": "stepwise-tiny-sd15_pixel.safetensors"}
FULL_FILE = "stepwise-sd15-fullsize-random.safetensors"
# Earlier names of zoo files, renamed in place (same weights) so an existing zoo need not be rebuilt. The pixel
# model was "stepwise-tiny-sd15-pixel", which the host's name-sorted checkpoint list put first, so an artist's
# first pick turned a 256x256 latent into a 32x32 image; "_pixel" sorts after the latent model it is made from.
RENAMED = {"stepwise-tiny-sd15-pixel.safetensors": TINY_FILES["tiny-sd15-pixel"]}

FULL_SD15_UNET = {
    "use_checkpoint": False, "image_size": 32, "use_spatial_transformer": True, "legacy": False,
    "in_channels": 4, "out_channels": 4, "model_channels": 320, "num_res_blocks": [2, 2, 2, 2],
    "channel_mult": [1, 2, 4, 4], "transformer_depth": [1, 1, 1, 1, 1, 1, 0, 0],
    "transformer_depth_output": [1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0], "transformer_depth_middle": 1,
    "context_dim": 768, "use_linear_in_transformer": False, "adm_in_channels": None,
    "use_temporal_resblock": False, "use_temporal_attention": False,
}
FULL_SD_VAE = {"double_z": True, "z_channels": 4, "resolution": 256, "in_channels": 3, "out_ch": 3, "ch": 128,
               "ch_mult": [1, 2, 4, 4], "num_res_blocks": 2, "attn_resolutions": [], "dropout": 0.0}


def _import_host():
    """The host and the pack, set up as train.py sets them up (host-parsed --cpu without CUDA)."""
    from stepwise_dev import host

    try:
        host.setup()
    except RuntimeError as e:
        sys.exit(str(e))


def _current(path: str) -> bool:
    if not os.path.isfile(path):
        return False
    from safetensors import safe_open

    try:
        with safe_open(path, framework="pt") as f:
            return (f.metadata() or {}).get("stepwise.zoo_version") == ZOO_VERSION
    except Exception:  # unreadable or truncated: rebuild
        return False


def _save(model, clip, vae, path: str, metadata: dict, dtype=None):
    import comfy.utils

    sd = model.state_dict_for_saving(clip.get_sd(), vae.get_sd(), None)
    for k, v in sd.items():
        if dtype is not None and v.is_floating_point():
            v = v.to(dtype)
        sd[k] = v.contiguous()
    tmp = path + ".tmp"
    comfy.utils.save_torch_file(sd, tmp, metadata={k: str(v) for k, v in metadata.items()})
    os.replace(tmp, path)


def _taesd_vae(seed: int):
    import comfy.sd
    import comfy.taesd.taesd

    from stepwise.models.init import seeded_init_
    taesd = seeded_init_(comfy.taesd.taesd.TAESD(), seed)
    # A random decoder clips most pixels to 0 or 1; a quieter last layer centred on mid-grey keeps images
    # informative (pixel comparisons in tests lose nothing to clipping).
    with torch.no_grad():
        last = taesd.taesd_decoder[-1]
        last.weight.mul_(0.25)
        last.bias.fill_(0.5)
    return comfy.sd.VAE(sd=taesd.state_dict())


def _pixel_vae():
    import comfy.pixel_space_convert
    import comfy.sd

    return comfy.sd.VAE(sd=comfy.pixel_space_convert.PixelspaceConversionVAE().state_dict())


def build_tiny(kind: str, path: str, seed: int) -> None:
    import comfy.sd

    from stepwise.models.init import seeded_init_
    from stepwise_zoo.tiny import TINY_MODELS
    config_cls = TINY_MODELS[kind]
    config = config_cls(dict(config_cls.FULL_UNET_CONFIG))
    config.set_inference_dtype(torch.float32, None)
    model = config.get_model({}, "", device=torch.device("cpu"))
    seeded_init_(model.diffusion_model, seed)
    clip = comfy.sd.CLIP(config.clip_target(), parameters=0)
    seeded_init_(clip.cond_stage_model, seed + 1)
    vae = _pixel_vae() if kind == "tiny-sd15-pixel" else _taesd_vae(seed + 2)
    _save(model, clip, vae, path, {"stepwise.zoo": kind, "stepwise.zoo_version": ZOO_VERSION, "stepwise.seed": seed,
                                   "stepwise.unet_config": json.dumps(config_cls.FULL_UNET_CONFIG)})


def build_full_sd15(path: str, seed: int) -> None:
    import comfy.ldm.models.autoencoder
    import comfy.sd
    import comfy.supported_models

    from stepwise.models.init import seeded_init_
    config = comfy.supported_models.SD15(dict(FULL_SD15_UNET))
    config.set_inference_dtype(torch.float32, None)
    model = config.get_model({}, "", device=torch.device("cpu"))
    seeded_init_(model.diffusion_model, seed)
    clip = comfy.sd.CLIP(config.clip_target(), parameters=0)
    seeded_init_(clip.cond_stage_model, seed + 1)
    kl = seeded_init_(comfy.ldm.models.autoencoder.AutoencoderKL(ddconfig=dict(FULL_SD_VAE), embed_dim=4), seed + 2)
    vae = comfy.sd.VAE(sd=kl.state_dict())
    _save(model, clip, vae, path, {"stepwise.zoo": "sd15-fullsize-random", "stepwise.zoo_version": ZOO_VERSION,
                                   "stepwise.seed": seed}, dtype=torch.float16)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=os.environ.get("STEPWISE_ZOO") or os.path.expanduser("~/.cache/stepwise/zoo"))
    parser.add_argument("--full", action="store_true", help="also build the full-size SD1.5-architecture checkpoint")
    parser.add_argument("--seed", type=int, default=20251011)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="zoo: %(message)s")
    _import_host()
    os.makedirs(args.out, exist_ok=True)
    for old, new in RENAMED.items():
        old_path, new_path = os.path.join(args.out, old), os.path.join(args.out, new)
        if os.path.isfile(old_path):
            if os.path.exists(new_path):
                os.remove(old_path)
            else:
                os.replace(old_path, new_path)
            logging.info("renamed %s to %s", old, new)
    jobs = [(kind, os.path.join(args.out, name)) for kind, name in TINY_FILES.items()]
    if args.full:
        jobs.append(("sd15-fullsize-random", os.path.join(args.out, FULL_FILE)))
    for kind, path in jobs:
        if _current(path):
            logging.info("%s is current", path)
            continue
        start = time.perf_counter()
        if kind == "sd15-fullsize-random":
            build_full_sd15(path, args.seed)
        else:
            build_tiny(kind, path, args.seed)
        logging.info("built %s in %.1fs (%.1f MB)", path, time.perf_counter() - start, os.path.getsize(path) / 2**20)
    return 0


if __name__ == "__main__":
    sys.exit(main())
