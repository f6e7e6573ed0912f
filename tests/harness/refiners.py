"""Refiner checkpoints for tests, written in the pack's format without training."""

from __future__ import annotations

from stepwise.models import checkpoint, diffusion
from stepwise.models.init import seeded_init_


def copy_of_base(model, path: str, timestep_range=(0, 500), parameterisation: str = "eps") -> dict:
    """A 'refiner' holding the base model's own UNet weights, restricted to ``timestep_range``."""
    m = model.model
    latent = type(m.latent_format).__name__
    meta = {
        "kind": "refiner",
        "network": {"class": "comfy_unet", "unet_config": diffusion.json_safe(m.model_config.unet_config),
                    "model_class": "SDXL" if type(m).__name__ == "SDXL" else "BaseModel"},
        "parameterisation": parameterisation,
        "latent_space": {"kind": "vae", "latent_format": latent, "channels": m.latent_format.latent_channels},
        "timestep_range": list(timestep_range),
        "conditioning": "text",
        "base": {"name": "test base"},
        "training": {"steps": 0, "note": "weights copied from the base for tests"},
    }
    checkpoint.save(path, m.diffusion_model.state_dict(), meta)
    return meta


def from_scratch(path: str, arch: str = "tiny", channels: int = 3, latent: str = "pixel", timestep_range=(0, 300),
                 seed: int = 0) -> dict:
    """An untrained from-scratch refiner (seeded weights) in pixel space or a VAE's latent space."""
    unet = diffusion.unet_config(arch, channels)
    model = diffusion.new_model(unet, "eps", latent)
    seeded_init_(model.diffusion_model, seed)
    meta = {
        "kind": "refiner", "network": {"class": "comfy_unet", "unet_config": unet, "arch": arch},
        "parameterisation": "eps",
        "latent_space": {"kind": "pixel", "channels": channels} if latent == "pixel"
        else {"kind": "vae", "latent_format": latent, "channels": channels},
        "timestep_range": list(timestep_range), "conditioning": "none", "base": None,
        "training": {"steps": 0, "note": "untrained, for tests"},
    }
    checkpoint.save(path, model.diffusion_model.state_dict(), meta)
    return meta
