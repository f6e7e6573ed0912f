"""VisualAnagram: one image that shows a different prompt under each view (Geng, Park, Owens, CVPR 2024).

At every step each (prompt, view) pair is predicted on the viewed noisy latent, mapped back through the view's
exact inverse and averaged (or, with ``alternate``, one view per step); the host's sampler continues with the
combination. All pairs and their negatives run in one batched model call per step.
"""

import logging

from comfy_api.latest import io

from ..kernels.views import VIEW_NAMES, View, describe
from . import multiview
from .common import CATEGORY, check_choice, check_finite

UNUSED = "unused"  # the default of views 3 and 4: no view is shown for a prompt that is not connected
DEFAULT_VIEWS = ("identity", "flip_ud", UNUSED, UNUSED)
log = logging.getLogger(__name__)


def _view_options(i: int) -> list[str]:
    """Views 1 and 2 are always used; 3 and 4 also offer ``unused``, their default, so an unconnected prompt shows no
    view. They stay required inputs in the same place, so saved workflows' widget values keep their order (a saved
    rot90/flip_lr beside an unconnected prompt still loads and is ignored, as before)."""
    return list(VIEW_NAMES) if i <= 2 else [UNUSED, *VIEW_NAMES]


class VisualAnagram(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        inputs = [io.Model.Input("model", tooltip="The model to sample with; any SD1.x/SD2.x/SDXL or flow model.")]
        for i in range(1, 5):
            optional = i > 2
            inputs += [
                io.Conditioning.Input(f"positive_{i}", optional=optional,
                                      tooltip=f"Prompt {i}: what the image shows under view_{i}."
                                      + (" Optional." if optional else "")),
                io.Combo.Input(f"view_{i}", options=_view_options(i), default=DEFAULT_VIEWS[i - 1],
                               tooltip=f"How the image is transformed before prompt {i} is seen in it. rot90/rot270 "
                                       "and inner_rotate need a square image; negate needs a pixel-space model."
                                       + (f" unused until positive_{i} is connected; then choose its view."
                                          if optional else "")),
            ]
        inputs += [
            io.Combo.Input("mode", options=["average", "alternate"], default="average",
                           tooltip="average: combine all views at every step (the paper). alternate: one view per "
                                   "step, in turn (cheaper, usually weaker)."),
            io.Int.Input("patch_grid", default=4, min=2, max=16,
                         tooltip="patch_permute only: patches per side; must divide the latent's sides."),
            io.Int.Input("patch_seed", default=0, min=0, max=2**31 - 1,
                         tooltip="patch_permute only: seed of the patch permutation (same seed, same puzzle)."),
            io.Float.Input("skew", default=0.5, min=-8.0, max=8.0, step=0.05,
                           tooltip="skew only: column j is rolled down cyclically by round(skew·j) latent rows "
                                   "(negative rolls up)."),
        ]
        return io.Schema(
            node_id="StepwiseVisualAnagram",
            display_name="Visual Anagram",
            category=CATEGORY,
            description=(
                "Visual anagrams: an image that shows prompt 1 as it is and prompt 2 (3, 4) under a view such as "
                "upside down. Returns a patched MODEL and the combined positive CONDITIONING for any sampler; "
                "connect your negative prompt to the sampler as usual (it is shared by all views)."
            ),
            inputs=inputs,
            hidden=[io.Hidden.unique_id],  # names the node in the size errors raised when sampling starts
            outputs=[
                io.Model.Output("patched_model", display_name="model", tooltip="The model with the anagram's per-step combination attached."),
                io.Conditioning.Output("positive", display_name="positive",
                                       tooltip="All prompts with their views; use as the sampler's positive."),
            ],
        )

    @classmethod
    def execute(cls, model, positive_1, view_1, positive_2, view_2, positive_3=None, view_3=UNUSED,
                positive_4=None, view_4=UNUSED, mode="average", patch_grid=4, patch_seed=0, skew=0.5) -> io.NodeOutput:
        pairs = [(positive_1, view_1), (positive_2, view_2), (positive_3, view_3), (positive_4, view_4)]
        for i, (cond, view) in enumerate(pairs, start=1):  # every view, connected or not: a bad value is a mistake
            check_choice(f"view_{i}", view, _view_options(i))
            if cond is not None and view == UNUSED:
                raise ValueError(f"positive_{i} is connected but view_{i} is {UNUSED!r}; choose the view prompt {i} "
                                 f"is seen under (e.g. rot90 or flip_lr)")
        check_choice("mode", mode, ("average", "alternate"))
        check_finite(skew=skew)
        numbered = [(i, c, v) for i, (c, v) in enumerate(pairs, start=1) if c is not None]
        pairs = [(c, v) for _, c, v in numbered]
        if len(pairs) < 2:
            raise ValueError(f"a visual anagram needs at least two prompts, got {len(pairs)}; connect positive_1 and positive_2")
        views = tuple(View(v, grid=patch_grid, seed=patch_seed, skew=skew) for _, v in pairs)
        pixel = multiview.is_pixel_space(model)
        for (i, _, _), (cond, _), view in zip(numbered, pairs, views):
            multiview.check_conditioning(cond, f"positive_{i}")
            if view.pixel_space_only and not pixel:
                raise ValueError(f"view_{i} is {view.name}, which only works on pixel-space models (3-channel latents); "
                                 "this model works in a VAE latent space; use flip, rotation, patch or skew views")
        node_id = getattr(cls.hidden, "unique_id", None) if cls.hidden is not None else None
        spec = multiview.Spec(kind="anagram", views=views, mode=mode, labels=tuple(f"view_{i}" for i, _, _ in numbered),
                              node="Visual Anagram" + (f" (node {node_id})" if node_id is not None else ""))
        log.debug("VisualAnagram views: %s", ", ".join(describe(v) for v in views))
        return io.NodeOutput(multiview.patch(model), multiview.tag([c for c, _ in pairs], spec))
