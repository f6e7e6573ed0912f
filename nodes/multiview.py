"""Host glue shared by VisualAnagram and HybridNoise: several "parts" (a prompt under a view, or a prompt for a
frequency band) predicted in one batched model call per step, then combined.

How it attaches (no host globals are touched; the incoming model is cloned):

- The node tags each entry of its combined positive CONDITIONING with a :class:`Spec` and the entry's part.
- ``OUTER_SAMPLE`` wrapper: before sampling starts, checks the tagged conditioning against the latent (square
  sides for rotations, patch grids, blur sizes, spatial conditioning) and raises ``ValueError`` naming the value.
- ``CALC_COND_BATCH`` wrapper: for anagrams, adds one copy of each negative entry per view (per-view CFG, as in
  the paper); hands all parts and the negatives to the host's own ``calc_cond_batch`` in a single call, so the
  host batches them into one model call whenever its memory estimate allows; then combines the parts'
  predictions (views: mean; bands: each prompt's band) instead of the host's plain average.
- ``APPLY_MODEL`` wrapper: finds each batch chunk's view by its ``uuid`` (never by position), applies the view
  to the noisy input and to ``c_concat``, and maps the denoised prediction back through the exact inverse.

Everything happens in the model's denoised (x0) output, which is linear in the prediction for eps, v and
flow models alike, so all three parameterisations work. Chunks keep the host's ``cond_or_uncond`` meaning
(0 positive, 1 negative). Wrappers already installed by other nodes stay and run; a model patched twice by
Stepwise keeps one copy of these wrappers. Nothing is kept between runs: the uuids of the per-view negative
copies derive from the originals, and each call builds its own state.

Limits: ControlNet hints and other spatial inputs besides ``c_concat`` are not transformed by views; another
node's ``model_function_wrapper`` that edits outputs after ``apply_model`` is not seen by the combination.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

import comfy.patcher_extension
import torch

from ..kernels import frequency
from ..kernels.views import View

TAG = "stepwise_multiview"
WRAPPER_KEY = "stepwise.multiview"
SPATIAL_KEYS = ("area", "mask", "set_area_to_bounds")


@dataclass(frozen=True)
class Spec:
    """What a tagged conditioning asks for. ``views`` has one entry per part (identity for hybrids)."""

    kind: str  # "anagram" | "hybrid"
    views: tuple[View, ...]
    mode: str = "average"  # anagram: "average" | "alternate" (one view per step)
    split: str = "low_high"  # hybrid: "low_high" | "low_mid_high" | "gray_color"
    sigmas: tuple[float, ...] | None = None  # hybrid band boundaries, coarse to fine; None = auto
    kernel: int = 0  # hybrid blur kernel; 0 = auto (2·ceil(4σ)+1)
    labels: tuple[str, ...] = ()  # anagram: the input name of each part's view ("view_2"), for messages
    node: str = ""  # the node that made the spec as artists see it, e.g. "Visual Anagram (node 5)"

    @property
    def parts(self) -> int:
        return len(self.views)

    def blur(self, height: int, width: int) -> tuple[list, list]:
        """Band boundaries (σy, σx) coarse to fine and their kernels for an H×W latent."""
        if self.split == "gray_color":
            return [], []
        if self.sigmas is None:
            divisors = (32.0,) if self.split == "low_high" else (16.0, 64.0)
            sigmas = [frequency.auto_sigma(height, width, d) for d in divisors]
        else:
            sigmas = [(s, s) for s in self.sigmas]
        kernels = [(self.kernel, self.kernel) if self.kernel else (frequency.auto_kernel(s[0]), frequency.auto_kernel(s[1]))
                   for s in sigmas]
        return sigmas, kernels

    def combine(self, preds: list[torch.Tensor], height: int, width: int) -> torch.Tensor:
        if self.kind == "anagram":
            return preds[0] if len(preds) == 1 else torch.stack(preds).mean(dim=0)
        if self.split == "gray_color":
            return frequency.combine_gray_color(preds[0], preds[1])
        sigmas, kernels = self.blur(height, width)
        return frequency.combine_bands(preds, sigmas, kernels)

    def check_latent(self, shape, pixels: int | None = None) -> None:
        """Raise ``ValueError`` when this spec cannot run on a latent of ``shape`` (B, C, H, W); ``pixels`` is the
        model's image pixels per latent pixel (:func:`pixels_per_latent`), for sizes in the artist's units."""
        channels, height, width = shape[1], shape[-2], shape[-1]
        for i, view in enumerate(self.views):
            if self.kind == "anagram":
                self._check_view(view, self.labels[i] if i < len(self.labels) else f"view {i + 1}", height, width,
                                 pixels)
            else:
                view.check_shape(height, width)
            if view.pixel_space_only and channels != 3:
                raise ValueError(f"view {view.name} needs a 3-channel pixel-space latent, got {channels} channels")
        if self.kind == "hybrid":
            if self.split == "gray_color" and channels != 3:
                raise ValueError(f"split gray_color needs a 3-channel pixel-space latent, got {channels} channels")
            sigmas, kernels = self.blur(height, width)
            for s, k in zip(sigmas, kernels):
                frequency.check_blur(s, k, height, width)


    def _check_view(self, view: View, label: str, height: int, width: int, pixels: int | None) -> None:
        """An anagram's view against the latent, with sizes in image pixels as typed into Empty Latent Image."""
        try:
            view.check_shape(height, width)
            return
        except ValueError as e:
            reason = e
        node = self.node or "Visual Anagram"
        f = pixels or 1
        if pixels is None:
            size = f"a {height}x{width} latent (height x width; this model's image pixels per latent pixel are unknown)"
        elif pixels == 1:
            size = f"{height}x{width} px (height x width)"
        else:
            size = f"{height * f}x{width * f} px (height x width; a {height}x{width} latent, {f} px per latent pixel " \
                   "for this model)"
        where = (f"; the error shows at the sampler because {node} sees only the model and the prompts, and the "
                 "image size is first known when sampling starts")
        if view.needs_square:
            side = max(height, width) * f
            raise ValueError(f"{node}: {label} is {view.name}, which needs a square image, but the sampler got {size}; "
                             f"make the image square (e.g. {side}x{side} in Empty Latent Image) or choose a view that "
                             f"keeps the shape (flip_ud, flip_lr, rot180, patch_permute, skew){where}") from reason
        if view.name == "patch_permute":
            raise ValueError(f"{node}: {label} is patch_permute with patch_grid {view.grid}, which needs image sides "
                             f"that split into {view.grid} equal latent patches, but the sampler got {size}; choose a "
                             f"patch_grid that divides both {height} and {width}, or sides that are multiples of "
                             f"{view.grid * f} px{where}") from reason
        raise ValueError(f"{node}: {label}: {reason}{where}") from reason


@dataclass
class _Call:
    """State of one calc_cond_batch call, shared with the APPLY_MODEL wrapper by reference."""

    views: dict = field(default_factory=dict)  # uuid -> View
    keep: set = field(default_factory=set)  # uuids of positive entries whose predictions are combined
    stash: dict = field(default_factory=dict)  # uuid -> denoised prediction (inverse-viewed)


# --- conditioning ---

def check_conditioning(cond, name: str) -> None:
    if not isinstance(cond, list) or len(cond) == 0:
        raise ValueError(f"{name} is empty; connect the output of a text encoder such as CLIPTextEncode")
    for i, (_, opts) in enumerate(cond):
        spatial = [k for k in SPATIAL_KEYS if k in opts]
        if spatial:
            raise ValueError(
                f"{name} entry {i} is restricted to part of the image ({', '.join(spatial)}); views and frequency "
                "bands act on the whole image, so use conditioning without area or mask"
            )
        if TAG in opts:
            raise ValueError(f"{name} already comes from a Stepwise VisualAnagram/HybridNoise node; connect a plain prompt")


def tag(conds: list, spec: Spec) -> list:
    """The combined positive: every entry of part j's conditioning tagged with (spec, j)."""
    out = []
    for part, cond in enumerate(conds):
        for tensor, opts in cond:
            out.append([tensor, {**opts, TAG: (spec, part)}])
    return out


def spec_of(entries) -> Spec | None:
    """The spec of a list of (converted) conditioning entries, or None when none is tagged."""
    if not entries:
        return None
    tags = [e.get(TAG) for e in entries]
    if all(t is None for t in tags):
        return None
    if any(t is None for t in tags):
        raise ValueError("the positive conditioning mixes a VisualAnagram/HybridNoise output with other prompts; "
                         "combine prompts before the Stepwise node, not after it")
    specs = {t[0] for t in tags}
    if len(specs) > 1:
        raise ValueError("the positive conditioning combines the outputs of several VisualAnagram/HybridNoise nodes; use one")
    return specs.pop()


# --- wrappers ---

def _outer_sample(executor, noise, latent_image, sampler, sigmas, denoise_mask=None, callback=None,
                  disable_pbar=False, seed=None):
    conds = executor.class_obj.conds
    spec = spec_of(conds.get("positive"))
    if spec is not None:
        spec.check_latent(noise.shape, pixels_per_latent(executor.class_obj.model_patcher))
        for i, entry in enumerate(conds.get("negative") or []):
            spatial = [k for k in SPATIAL_KEYS if k in entry]
            if spatial:
                raise ValueError(f"negative entry {i} is restricted to part of the image ({', '.join(spatial)}); "
                                 "views and frequency bands need whole-image conditioning")
    return executor(noise, latent_image, sampler, sigmas, denoise_mask, callback, disable_pbar, seed)


def _active_parts(spec: Spec, timestep: torch.Tensor, model_options: dict) -> list[int]:
    if spec.kind != "anagram" or spec.mode != "alternate":
        return list(range(spec.parts))
    sample_sigmas = model_options.get("transformer_options", {}).get("sample_sigmas")
    if sample_sigmas is None:
        return list(range(spec.parts))
    sigma = float(timestep.reshape(-1)[0])
    step = max(0, int((sample_sigmas.float().cpu() >= sigma * (1 - 1e-5)).sum()) - 1)
    return [step % spec.parts]


def _calc_cond_batch(executor, model, conds, x_in, timestep, model_options):
    spec = spec_of(conds[0]) if conds else None
    if spec is None:
        return executor(model, conds, x_in, timestep, model_options)
    active = _active_parts(spec, timestep, model_options)
    call = _Call()
    positive = [e for e in conds[0] if e[TAG][1] in active]
    for e in positive:
        call.views[e["uuid"]] = spec.views[e[TAG][1]]
        call.keep.add(e["uuid"])
    rest = list(conds[1:])
    if spec.kind == "anagram" and rest and rest[0] is not None:
        negative = []
        for part in active:
            for e in rest[0]:
                copy_id = uuid.uuid5(e["uuid"], f"stepwise-view-{part}")
                negative.append({**e, "uuid": copy_id})
                call.views[copy_id] = spec.views[part]
        rest[0] = negative
    transformer_options = {**model_options.get("transformer_options", {}), TAG: call}
    out = executor(model, [positive] + rest, x_in, timestep, {**model_options, "transformer_options": transformer_options})

    preds = []
    for part in active:
        entries = [e for e in positive if e[TAG][1] == part and e["uuid"] in call.stash]
        if not entries:
            raise ValueError(f"prompt {part + 1} of the {spec.kind} has no conditioning active at sigma "
                             f"{float(timestep.reshape(-1)[0]):.4g} (a timestep range on it?)")
        weights = [float(e.get("strength", 1.0)) for e in entries]
        total = sum(call.stash[e["uuid"]] * w for e, w in zip(entries, weights))
        preds.append(total / sum(weights))
    out = list(out)
    out[0] = spec.combine(preds, x_in.shape[-2], x_in.shape[-1])
    return out


def _per_chunk(x: torch.Tensor, views: list, forward: bool) -> torch.Tensor:
    chunks = x.chunk(len(views))
    return torch.cat([c if v is None else (v.apply(c) if forward else v.inverse(c)) for c, v in zip(chunks, views)])


def _apply_model(executor, x, t, c_concat=None, c_crossattn=None, control=None, transformer_options={}, **kwargs):
    call = transformer_options.get(TAG)
    if call is None:
        return executor(x, t, c_concat, c_crossattn, control, transformer_options, **kwargs)
    uuids = transformer_options.get("uuids") or []
    views = [call.views.get(u) for u in uuids]
    transformed = bool(uuids) and any(v is not None and v.name != "identity" for v in views)
    if transformed:
        x = _per_chunk(x, views, True)
        if c_concat is not None:
            c_concat = _per_chunk(c_concat, views, True)
    out = executor(x, t, c_concat, c_crossattn, control, transformer_options, **kwargs)
    if transformed:
        out = _per_chunk(out, views, False)
    if uuids:
        for u, chunk in zip(uuids, out.chunk(len(uuids))):
            if u in call.keep:
                call.stash[u] = chunk
    return out


def patch(model):
    """A clone of ``model`` with the multi-view wrappers installed once (the input model is left as it is)."""
    m = model.clone()
    WrappersMP = comfy.patcher_extension.WrappersMP
    for kind, fn in ((WrappersMP.OUTER_SAMPLE, _outer_sample), (WrappersMP.CALC_COND_BATCH, _calc_cond_batch),
                     (WrappersMP.APPLY_MODEL, _apply_model)):
        if not m.get_wrappers(kind, WRAPPER_KEY):
            m.add_wrapper_with_key(kind, WRAPPER_KEY, fn)
    return m


def pixels_per_latent(model) -> int | None:
    """Image pixels per latent pixel along a side: 1 for pixel-space models (3-channel latents), 8 for the VAEs of
    4- and 16-channel latents (SD1.x/SD2.x/SDXL, SD3, Flux); None when the model's latent is another kind."""
    channels = getattr(model.get_model_object("latent_format"), "latent_channels", None)
    return {3: 1, 4: 8, 16: 8}.get(channels)


def is_pixel_space(model) -> bool:
    """True for models whose latent is the RGB image itself (3 channels, e.g. the host's pixel_space VAE)."""
    return getattr(model.get_model_object("latent_format"), "latent_channels", None) == 3
