"""Prompt-to-Prompt Attention Maps: the per-word cross-attention maps of a PromptToPromptAttn run as images
(Hertz et al. 2022, Fig. 5), one image per word, labelled.

The node takes the sampler's output LATENT, so it runs after sampling; it finds the run's record through the
hand-over the Prompt-to-Prompt node put into its LATENT (:mod:`.p2p_handover`, which says why the record is picked
by a digest of the samples): two samplers sharing one PromptToPromptAttn node each get their own maps, and
SamplerCustom's ``denoised_output`` finds the maps of its run as ``output`` does. The maps are the model's own
cross-attention at the Prompt-to-Prompt node's ``map_scale`` of the latent's side (1/4 by default), averaged over
heads, layers of that size and model calls.
"""

from __future__ import annotations

import torch
from comfy_api.latest import io
from PIL import Image, ImageDraw, ImageFont

from ..kernels.heatmap import colorize, normalise
from ..kernels.token_align import find_word, parse_words
from .common import CATEGORY
from .p2p_handover import Record, find_record

ROWS = ("target", "source", "both")
LABEL_HEIGHT = 20


def word_maps(record: Record, row: int, words: list[str]) -> tuple[list[str], torch.Tensor]:
    """Labels and maps (K×h×w) of ``words`` (default: every word) in prompt ``row`` (0 source, 1 target)."""
    prompt = record.source if row == 0 else record.target
    if not words:
        words = list(dict.fromkeys(prompt.words))
    maps = []
    for word in words:
        positions = find_word(list(prompt.words), list(prompt.word_ids), word)
        if not positions:
            raise ValueError(f"words: {word!r} is not in the {'source' if row == 0 else 'target'} prompt "
                             f"{prompt.text!r}")
        maps.append(record.maps[row][..., positions].sum(-1))
    return words, torch.stack(maps) if maps else record.maps.new_zeros(0, *record.maps.shape[1:3])


def render(maps: torch.Tensor, labels: list[str], height: int, width: int,
           under: torch.Tensor | None = None) -> torch.Tensor:
    """K labelled heat-map images (K×(height+label)×width×3), over ``under`` (height×width×3) when given."""
    heat = torch.nn.functional.interpolate(maps.unsqueeze(1).float(), size=(height, width), mode="bilinear",
                                           align_corners=False).squeeze(1)
    rgb = colorize(normalise(heat))
    if under is not None:
        rgb = 0.5 * rgb + 0.5 * under.float().cpu().unsqueeze(0)
    font = ImageFont.load_default()
    out = []
    for image, label in zip(rgb, labels):
        strip = Image.new("RGB", (width, LABEL_HEIGHT), (0, 0, 0))
        ImageDraw.Draw(strip).text((4, 4), label, fill=(255, 255, 255), font=font)
        text = torch.frombuffer(bytearray(strip.tobytes()), dtype=torch.uint8).view(LABEL_HEIGHT, width, 3)
        out.append(torch.cat([image, text.float() / 255.0]))
    return torch.stack(out)


class PromptToPromptMaps(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="StepwisePromptToPromptMaps",
            display_name="Prompt-to-Prompt Attention Maps",
            category=CATEGORY,
            description=("Per-word cross-attention maps of a Prompt-to-Prompt run (which words attend where), one "
                         "labelled image per word. Connect the KSampler output of that run."),
            inputs=[
                io.Latent.Input("samples", tooltip="The sampler's output for the Prompt-to-Prompt node's latent."),
                io.Combo.Input("row", options=list(ROWS), default="target",
                               tooltip="Whose maps: the target (edited) prompt, the source prompt, or both "
                                       "(source words first)."),
                io.String.Input("words", default="",
                                tooltip="Comma-separated words to show; empty shows every word of the prompt."),
                io.Int.Input("height", default=256, min=16, max=2048, step=8,
                             tooltip="Height of each map image (width follows the latent's shape); ignored when "
                                     "an image is connected."),
                io.Image.Input("image", optional=True,
                               tooltip="Optional: the decoded images of the run (2 rows); maps are drawn over them."),
            ],
            outputs=[io.Image.Output("maps", display_name="maps",
                                     tooltip="One image per word: its attention map with the word written under it.")],
        )

    @classmethod
    def execute(cls, samples, row, words, height, image=None) -> io.NodeOutput:
        if row not in ROWS:
            raise ValueError(f"row {row!r} is not one of {', '.join(ROWS)}")
        record = find_record(samples)
        wanted = parse_words(words)
        rows = {"target": [1], "source": [0], "both": [0, 1]}[row]
        h, w = record.maps.shape[1:3]
        if image is not None:
            if image.shape[0] not in (1, 2):
                raise ValueError(f"image has {image.shape[0]} images; connect the run's decoded pair (2 images)")
            out_h, out_w = image.shape[1], image.shape[2]
        else:
            out_h, out_w = height, max(8, round(height * w / h))
        prompts = (record.source, record.target)
        for word in wanted:
            if not any(find_word(list(prompts[r].words), list(prompts[r].word_ids), word) for r in rows):
                raise ValueError(f"words: {word!r} is not in the {row} prompt"
                                 f"{'s' if row == 'both' else ''} ({' / '.join(repr(prompts[r].text) for r in rows)})")
        images = []
        for r in rows:
            present = [x for x in wanted if find_word(list(prompts[r].words), list(prompts[r].word_ids), x)]
            if wanted and not present:
                continue
            labels, maps = word_maps(record, r, present)
            under = None if image is None else image[min(r, image.shape[0] - 1)]
            if maps.shape[0]:
                images.append(render(maps, labels, out_h, out_w, under))
        if not images:
            raise ValueError("the prompt has no words to show")
        return io.NodeOutput(torch.cat(images))
