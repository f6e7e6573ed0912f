"""PromptToPromptAttn: Prompt-to-Prompt image editing (Hertz et al. 2022, "Prompt-to-Prompt Image Editing with
Cross Attention Control") through the UNet's attention, in any host sampler.

The node reads the source and the target prompt with the host's tokenizer, makes the plan of the edit
(:mod:`kernels.p2p_plan`: token correspondence, step windows, reweighting, local blend), and returns:

- a clone of the incoming model with the edit's hooks attached (:mod:`.p2p_runtime`: attention patches and
  wrappers; each sampling run keeps its state in its own model options);
- one positive CONDITIONING of two rows [source, target] and a two-row LATENT with identical noise
  (:mod:`.p2p_pair`); the LATENT carries the hand-over of the attention maps to the maps node
  (:mod:`.p2p_handover`).

The user's negative and KSampler do the rest.
"""

from __future__ import annotations

from comfy_api.latest import io

from ..kernels.p2p_plan import MAP_SCALES, MODES, make_plan
from .common import CATEGORY
from .p2p_handover import HandOver
from .p2p_pair import pair_conditioning, pair_latent, tokenize
from .p2p_runtime import attach


class PromptToPromptAttn(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="StepwisePromptToPromptAttn",
            display_name="Prompt-to-Prompt",
            category=CATEGORY,
            description=(
                "Prompt-to-Prompt editing (Hertz et al. 2022): the source and the target prompt are sampled together "
                "from the same noise and the target's cross-attention follows the source's, so the edit keeps the "
                "source image's layout. Connect MODEL, positive and LATENT to a KSampler (with your negative); "
                "row 1 of the result is the source image, row 2 the edited one."),
            inputs=[
                io.Model.Input("model", tooltip="An SD1.x/SD2.x/SDXL model (a UNet with cross-attention)."),
                io.Clip.Input("clip", tooltip="The model's text encoder."),
                # One-line text widgets: the host's web UI draws their names beside the words (a multiline box has no
                # label once it holds text), and a prompt of up to 75 tokens fits one line.
                io.String.Input("source", multiline=False, default="a photo of a cat riding a bicycle",
                                tooltip="The source prompt (plain words, up to 75 tokens)."),
                io.String.Input("target", multiline=False, default="a photo of a dog riding a bicycle",
                                tooltip="The edited prompt. replace: the same number of words with some swapped. "
                                        "refine: words added or changed. reweight: empty or equal to source."),
                io.Combo.Input("mode", options=list(MODES), default="replace",
                               tooltip="replace: word swap (same word count). refine: words added/changed, aligned "
                                       "token by token. reweight: only the reweight words' attention changes."),
                io.Float.Input("cross_replace", default=0.8, min=0.0, max=1.0, step=0.05,
                               tooltip="Fraction of the steps, from the start, in which the target's cross-attention "
                                       "follows the source's. 0 turns the edit off."),
                io.String.Input("word_cross_replace", default="",
                                tooltip="Per-word windows for target words, e.g. 'dog:0.4' (a smaller value lets that "
                                        "word change the shape more)."),
                io.Float.Input("self_replace", default=0.4, min=0.0, max=1.0, step=0.05,
                               tooltip="Fraction of the steps in which the target's self-attention at the "
                                       "low-resolution layers is the source's (keeps the layout). 0 turns it off."),
                io.String.Input("reweight", default="",
                                tooltip="Scale target words' attention, e.g. 'fluffy:5, cat:-0.5' (not "
                                        "renormalised; 1 does nothing). Works with every mode."),
                io.String.Input("blend_words", default="",
                                tooltip="Local blend: words (of either prompt, comma-separated) whose attention marks "
                                        "the region that may change; elsewhere the target keeps the source. Empty: off."),
                io.Float.Input("blend_threshold", default=0.3, min=0.0, max=1.0, step=0.05,
                               tooltip="Local blend: fraction of the maps' peak above which a pixel is in the mask."),
                io.Float.Input("blend_start", default=0.2, min=0.0, max=1.0, step=0.05,
                               tooltip="Local blend: fraction of the steps after which blending starts."),
                io.Boolean.Input("record_maps", default=True,
                                 tooltip="Keep per-word cross-attention maps (one resolution) for the "
                                         "Prompt-to-Prompt Attention Maps node."),
                io.Combo.Input("map_scale", options=list(MAP_SCALES), default="1/4", optional=True,
                               tooltip="Side of the attention layers whose maps feed local blend and the maps node, "
                                       "as a share of the latent's side. 1/4: the paper's (16x16 at 512 px on SD1.5). "
                                       "1/2: finer maps for small latents (16x16 instead of 8x8 on a 32 px model)."),
                io.Latent.Input("latent", tooltip="One empty or encoded latent (batch_size 1); it becomes the pair."),
            ],
            outputs=[
                io.Model.Output("patched_model", display_name="model",
                                tooltip="The model with the edit attached; sample it with positive and latent."),
                io.Conditioning.Output("pair_positive", display_name="positive",
                                       tooltip="[source, target]: connect to the sampler's positive."),
                io.Latent.Output("pair_latent", display_name="latent",
                                 tooltip="Two rows with identical noise: source, target."),
            ],
        )

    @classmethod
    def execute(cls, model, clip, source, target, mode, cross_replace, word_cross_replace, self_replace, reweight,
                blend_words, blend_threshold, blend_start, record_maps, latent, map_scale="1/4") -> io.NodeOutput:
        if clip is None:
            raise ValueError("clip is missing; connect the text encoder of the model's checkpoint")
        if mode == "reweight" and not target.strip():
            target = source
        src, src_tokens = tokenize(clip, source, "source")
        tgt, tgt_tokens = tokenize(clip, target, "target")
        plan = make_plan(src, tgt, mode, cross_replace, word_cross_replace, self_replace, reweight, blend_words,
                         blend_threshold, blend_start, record_maps, map_scale)
        handover = HandOver()
        patched = model.clone()
        attach(patched, plan, handover)
        return io.NodeOutput(patched, pair_conditioning(clip, src_tokens, tgt_tokens, plan),
                             pair_latent(latent, handover))
