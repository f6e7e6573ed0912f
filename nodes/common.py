"""Helpers shared by the Stepwise nodes (host glue, no math)."""

import math

CATEGORY = "stepwise"


def check_finite(**values) -> None:
    """Refuse NaN and infinite FLOAT inputs, naming the input: the host's min/max checks let NaN through."""
    for name, value in values.items():
        try:
            finite = math.isfinite(float(value))
        except (TypeError, ValueError):
            finite = False
        if not finite:
            raise ValueError(f"{name} is {value}; it must be a finite number within the input's range")


def check_choice(name: str, value, options) -> None:
    """Refuse a combo value outside its options, naming the input: the host does not check V3 combo values."""
    options = list(options)
    if not isinstance(value, str) or value not in options:
        shown = ", ".join(options) if len(options) <= 20 else ", ".join(options[:10]) + f", ... ({len(options)} in all)"
        raise ValueError(f"{name} {value!r} is not one of {shown}")


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
