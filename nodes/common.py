"""Helpers shared by the Stepwise nodes (host glue, no math)."""

CATEGORY = "stepwise"


def sigma_table(model):
    """The model's ascending σ table (one entry per training noise level) from its ``model_sampling``."""
    model_sampling = model.get_model_object("model_sampling")
    table = getattr(model_sampling, "sigmas", None)
    if table is None or table.ndim != 1 or table.numel() < 2:
        raise ValueError(
            f"{type(model_sampling).__name__} has no table of noise levels; Stepwise needs a model whose "
            "model_sampling has discrete σ levels (SD1.x/SD2.x/SDXL eps or v, or a discrete flow model)"
        )
    return table.detach().float().cpu()
