"""HybridNoise: hybrid images from frequency bands of per-step predictions (Factorized Diffusion, Geng et al. 2024).

At every step prompt A's prediction is low-passed and prompt B's high-passed (the prediction minus its low-pass)
and the two are summed, so the image reads as A from afar and B up close. Three bands (A low, B middle, C high)
and, for pixel-space models, a grayscale/colour split (A's gray, B's colour) work the same way. A, B (C) and the
shared negative run in one batched model call per step.
"""

from comfy_api.latest import io

from ..kernels.views import View
from . import multiview
from .common import CATEGORY, check_choice, check_finite

SPLITS = ["low_high", "low_mid_high", "gray_color"]


class HybridNoise(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="StepwiseHybridNoise",
            display_name="Hybrid Noise",
            category=CATEGORY,
            description=(
                "Hybrid images: the low frequencies of prompt A's prediction plus the high frequencies of prompt "
                "B's at every step (or three bands A/B/C, or A's grayscale with B's colour on pixel-space models). "
                "Returns a patched MODEL and the combined positive CONDITIONING for any sampler."
            ),
            inputs=[
                io.Model.Input("model", tooltip="The model to sample with; any SD1.x/SD2.x/SDXL or flow model."),
                io.Conditioning.Input("positive_a", tooltip="Prompt A: the low frequencies (seen from afar), or the "
                                                            "grayscale part with gray_color."),
                io.Conditioning.Input("positive_b", tooltip="Prompt B: the high frequencies (seen up close), the middle "
                                                            "band with low_mid_high, or the colour with gray_color."),
                io.Conditioning.Input("positive_c", optional=True,
                                      tooltip="Prompt C: the high frequencies; only with low_mid_high."),
                io.Combo.Input("split", options=SPLITS, default="low_high",
                               tooltip="low_high: A low + B high. low_mid_high: A low + B middle + C high. "
                                       "gray_color: A's grayscale + B's colour (pixel-space models only)."),
                io.Boolean.Input("auto_sigma", default=True,
                                 tooltip="Blur σ from the latent size: side/32 for low_high (the reference's σ 2 at "
                                         "64 px), side/16 and side/64 for low_mid_high."),
                io.Float.Input("blur_sigma", default=2.0, min=0.0, max=256.0, step=0.05,
                               tooltip="Gaussian σ in latent pixels of the low/high boundary (low/middle for three "
                                       "bands) when auto_sigma is off; must be > 0."),
                io.Float.Input("blur_sigma_fine", default=0.5, min=0.0, max=256.0, step=0.05,
                               tooltip="low_mid_high only, auto_sigma off: σ of the middle/high boundary; must be "
                                       "smaller than blur_sigma."),
                io.Int.Input("kernel_size", default=0, min=0, max=511,
                             tooltip="Gaussian kernel size (odd); 0 = auto, 2·ceil(4σ)+1."),
            ],
            outputs=[
                io.Model.Output("patched_model", display_name="model", tooltip="The model with the hybrid's per-step combination attached."),
                io.Conditioning.Output("positive", display_name="positive",
                                       tooltip="The prompts with their bands; use as the sampler's positive."),
            ],
        )

    @classmethod
    def execute(cls, model, positive_a, positive_b, positive_c=None, split="low_high", auto_sigma=True,
                blur_sigma=2.0, blur_sigma_fine=0.5, kernel_size=0) -> io.NodeOutput:
        check_choice("split", split, SPLITS)
        check_finite(blur_sigma=blur_sigma, blur_sigma_fine=blur_sigma_fine)
        conds = [positive_a, positive_b]
        if split == "low_mid_high":
            if positive_c is None:
                raise ValueError("split low_mid_high needs three prompts; connect positive_c (the high frequencies)")
            conds.append(positive_c)
        elif positive_c is not None:
            raise ValueError(f"positive_c is only used by split low_mid_high, but split is {split}; disconnect it "
                             "or choose low_mid_high")
        for name, cond in zip(("positive_a", "positive_b", "positive_c"), conds):
            multiview.check_conditioning(cond, name)
        if split == "gray_color" and not multiview.is_pixel_space(model):
            raise ValueError("split gray_color needs a pixel-space model (3-channel latents); this model works in a "
                             "VAE latent space, where channels are not colours; use low_high or low_mid_high")
        if kernel_size and kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd (or 0 for auto), got {kernel_size}")
        sigmas = None
        if not auto_sigma and split != "gray_color":
            if not blur_sigma > 0:
                raise ValueError(f"blur_sigma must be > 0, got {blur_sigma}; use a value such as 2.0 or turn auto_sigma on")
            sigmas = (float(blur_sigma),)
            if split == "low_mid_high":
                if not 0 < blur_sigma_fine < blur_sigma:
                    raise ValueError(f"blur_sigma_fine must be > 0 and smaller than blur_sigma ({blur_sigma}), "
                                     f"got {blur_sigma_fine}")
                sigmas = (float(blur_sigma), float(blur_sigma_fine))
        spec = multiview.Spec(kind="hybrid", views=tuple(View("identity") for _ in conds), split=split,
                              sigmas=sigmas, kernel=int(kernel_size))
        return io.NodeOutput(multiview.patch(model), multiview.tag(conds, spec))
