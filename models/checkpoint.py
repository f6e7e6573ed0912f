"""Stepwise's checkpoint format: one safetensors file, its tensors plus JSON metadata.

The metadata lives under the safetensors header key ``stepwise`` as one JSON object:

- ``kind``: ``refiner`` | ``pose`` | ``estimator`` | ``world`` (a full checkpoint in the host's layout, read by the
  host's Load Checkpoint: :mod:`.world_model`)
- ``format_version``: :data:`FORMAT_VERSION`
- ``network``: the network's config (architecture and every size needed to rebuild it)
- ``parameterisation``: ``eps`` | ``v`` | ``flow`` (what the network predicts)
- ``latent_space``: ``{"kind": "pixel", "channels": 3}`` or ``{"kind": "vae", "latent_format": "SD15", "channels": 4}``
- ``timestep_range``: ``[lo, hi)`` of the 1000-level schedule the network was trained on (hi exclusive)
- ``conditioning``: ``none`` | ``text`` | ``keypoints`` (and later kinds)
- ``base``: the checkpoint it was fine-tuned from (name and sha256), or null when trained from scratch
- ``training``: a summary (steps, batch, lr, precision, seed, final loss, images seen, ...)

Only safetensors is read or written (no pickle). Writes are atomic (temporary file, then rename), so a crash
never leaves a half-written checkpoint under the final name. Reading checks the metadata before any tensor
is used and raises :class:`CheckpointError` naming the file and what is wrong.
"""

from __future__ import annotations

import hashlib
import json
import os

import torch

FORMAT_VERSION = 1
KINDS = ("refiner", "pose", "estimator", "world")
PARAMETERISATIONS = ("eps", "v", "flow")
REQUIRED = ("kind", "format_version", "network", "parameterisation", "latent_space", "timestep_range", "conditioning")
META_KEY = "stepwise"


class CheckpointError(ValueError):
    """A file that is not a readable Stepwise checkpoint of the expected kind."""


def validate_metadata(meta: dict, where: str = "metadata") -> dict:
    if not isinstance(meta, dict):
        shown = json.dumps(meta)[:60] if isinstance(meta, (str, int, float, list, bool, type(None))) else repr(meta)[:60]
        raise CheckpointError(f"{where}: Stepwise metadata is a JSON {type(meta).__name__} ({shown}), not an object "
                              "with kind, network, ...; write the file with train.py (checkpoint.save)")
    missing = [k for k in REQUIRED if k not in meta]
    if missing:
        raise CheckpointError(f"{where}: Stepwise metadata lacks {', '.join(missing)}")
    if meta["kind"] not in KINDS:
        raise CheckpointError(f"{where}: unknown kind {meta['kind']!r}; expected one of {', '.join(KINDS)}")
    if not isinstance(meta["format_version"], int) or meta["format_version"] > FORMAT_VERSION:
        raise CheckpointError(f"{where}: format_version {meta['format_version']!r} is newer than this Stepwise "
                              f"reads ({FORMAT_VERSION}); update the pack")
    if meta["parameterisation"] not in PARAMETERISATIONS:
        raise CheckpointError(f"{where}: unknown parameterisation {meta['parameterisation']!r}")
    lo_hi = meta["timestep_range"]
    if (not isinstance(lo_hi, (list, tuple)) or len(lo_hi) != 2 or not all(isinstance(v, int) for v in lo_hi)
            or not 0 <= lo_hi[0] < lo_hi[1] <= 1000):
        raise CheckpointError(f"{where}: timestep_range {lo_hi!r} is not [lo, hi) with 0 <= lo < hi <= 1000")
    space = meta["latent_space"]
    if not isinstance(space, dict) or space.get("kind") not in ("pixel", "vae") or not isinstance(space.get("channels"), int):
        raise CheckpointError(f"{where}: latent_space {space!r} is not {{kind: pixel|vae, channels: int, ...}}")
    if not isinstance(meta["network"], dict):
        raise CheckpointError(f"{where}: network must be a JSON object")
    return meta


def save(path: str, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    """Write ``tensors`` and ``meta`` to ``path`` atomically."""
    from safetensors.torch import save_file

    meta = validate_metadata({"format_version": FORMAT_VERSION, **meta}, path)
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{os.getpid()}.tmp")
    try:
        save_file(tensors, tmp, metadata={META_KEY: json.dumps(meta, sort_keys=True)})
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def read_metadata(path: str) -> dict:
    """The validated Stepwise metadata of ``path`` (reads the header only)."""
    from safetensors import safe_open

    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: no such file")
    try:
        with safe_open(path, framework="pt") as f:
            raw = (f.metadata() or {}).get(META_KEY)
    except Exception as e:  # safetensors raises several types for truncated or foreign files
        raise CheckpointError(f"{path}: not a readable safetensors file ({e})") from None
    if raw is None:
        raise CheckpointError(f"{path}: a safetensors file without Stepwise metadata; load it with the host's own "
                              "loaders (Load Checkpoint, Load Diffusion Model, Load LoRA) instead")
    try:
        meta = json.loads(raw)
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path}: Stepwise metadata is not valid JSON ({e})") from None
    return validate_metadata(meta, path)


def a(word: str) -> str:
    """``word`` with its indefinite article: "a refiner", "an estimator"."""
    return ("an " if word[:1].lower() in "aeiou" else "a ") + word


def check_kind(meta: dict, kind: str | None, where: str) -> None:
    if kind is not None and meta["kind"] != kind:
        raise CheckpointError(f"{where}: holds {a(meta['kind'])} checkpoint, not {a(kind)}")


def tensor_shapes(path: str) -> dict[str, tuple[int, ...]]:
    """The name and shape of every tensor in ``path``, read from the safetensors header (no tensor is loaded)."""
    from safetensors import safe_open

    try:
        with safe_open(path, framework="pt") as f:
            return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except Exception as e:  # safetensors raises several types for truncated or foreign files
        raise CheckpointError(f"{path}: not a readable safetensors file ({e})") from None


def check_tensors(expected: dict[str, tuple[int, ...]], found: dict[str, tuple[int, ...]], where: str,
                  what: str = "the network in its metadata") -> None:
    """Refuse tensors whose names or shapes differ from ``expected`` (the network the metadata describes, built on
    the meta device, so a config that claims a huge network costs nothing before it is refused)."""
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    shapes = [f"{k} {list(found[k])} (the metadata says {list(expected[k])})"
              for k in sorted(set(expected) & set(found)) if tuple(found[k]) != tuple(expected[k])]
    if missing or unexpected or shapes:
        raise CheckpointError(f"{where}: tensors do not match {what} (missing {missing[:3]}, unexpected "
                              f"{unexpected[:3]}, other shape {shapes[:3]}); the metadata and tensors must come from "
                              "the same train.py run")


def load(path: str, kind: str | None = None) -> tuple[dict[str, torch.Tensor], dict]:
    """``(tensors, metadata)`` of a Stepwise checkpoint; ``kind`` checks what it holds."""
    from safetensors.torch import load_file

    meta = read_metadata(path)
    check_kind(meta, kind, path)
    try:
        tensors = load_file(path)
    except Exception as e:
        raise CheckpointError(f"{path}: tensors could not be read ({e})") from None
    return tensors, meta


def sha256(path: str, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
