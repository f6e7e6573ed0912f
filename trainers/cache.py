"""``--cache DIR``: VAE latents of a streamed data set, encoded once and reused across epochs and runs.

A fine-tune with ``--base`` spends much of a step in the VAE encoder. The refiner and the world trainer encode each
image the same way every time (centre crop, no augmentation), so a stream's latents can be kept: one memory-mapped
array per (data set, resolution, VAE) in ``DIR`` (``latents-<key>.npy``, float32, so a cached run trains the same
weights as an uncached one) with a ``.done.npy`` array marking the rows written. A batch reads its cached rows and
encodes the others, which it then writes. Memory stays flat (the arrays are mapped, not read). Processes of one
run write disjoint rows; the files live where every rank can reach them.

The key is a SHA-256 of the data's location and sample keys, the resolution and the VAE's identity (the base
checkpoint's SHA-256), so a changed data set or VAE gets a new array rather than stale latents. The pose trainer
(random crops before encoding) and the estimator (random artifacts) encode differently every time and take no
cache.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os

import numpy as np
import torch

log = logging.getLogger("stepwise.train")


def cache_key(source, resolution: int, codec: str) -> str:
    h = hashlib.sha256()
    h.update(json.dumps({"where": os.path.abspath(source.where), "n": len(source), "resolution": resolution,
                         "codec": codec}).encode())
    for key in source.keys:
        h.update(key.encode() + b"\0")
    return h.hexdigest()[:20]


class LatentCache:
    """Latents of a source's samples (N × C × h × w float32) in ``folder``, filled as batches encode them."""

    def __init__(self, folder: str, source, resolution: int, codec: str, shape: tuple[int, ...]):
        os.makedirs(folder, exist_ok=True)
        self.path = os.path.join(folder, f"latents-{cache_key(source, resolution, codec)}.npy")
        n = len(source)
        if not os.path.isfile(self.path):
            tmp = self.path + f".{os.getpid()}.tmp"
            np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(n, *shape)).flush()
            np.lib.format.open_memmap(tmp + ".done", mode="w+", dtype=np.bool_, shape=(n,)).flush()
            os.replace(tmp + ".done", self.path + ".done.npy")  # (the .npy suffix np.save would add)
            os.replace(tmp, self.path)
        self.latents = np.load(self.path, mmap_mode="r+")
        self.done = np.load(self.path + ".done.npy", mmap_mode="r+")
        if self.latents.shape != (n, *shape):
            raise ValueError(f"--cache {folder}: {self.path} holds latents of shape {self.latents.shape[1:]}, this run "
                             f"makes {tuple(shape)}; remove the file to rebuild it")
        log.info("latent cache %s: %d of %d images encoded", self.path, int(self.done.sum()), n)

    def get(self, idx: torch.Tensor, images: torch.Tensor, encode, device) -> torch.Tensor:
        """The latents of the samples ``idx`` whose decoded images are ``images``: cached rows read, the others
        encoded with ``encode`` and written."""
        rows = idx.cpu().numpy()
        have = self.done[rows]
        out = torch.empty((len(rows), *self.latents.shape[1:]), dtype=torch.float32)
        if have.any():
            out[torch.from_numpy(have)] = torch.from_numpy(np.ascontiguousarray(self.latents[rows[have]]))
        if not have.all():
            missing = torch.from_numpy(~have)
            with torch.no_grad():
                fresh = encode(images[missing].to(device)).float().cpu()
            out[missing] = fresh
            self.latents[rows[~have]] = fresh.numpy()
            self.latents.flush()
            self.done[rows[~have]] = True  # after the rows themselves are written
            self.done.flush()
        return out.to(device)


def open_cache(opts, data, encode, device, command: str) -> LatentCache | None:
    """The run's latent cache (``opts.cache``), or None without one; refused where it cannot work, by name."""
    if not opts.cache:
        return None
    if data.stream is None:
        raise ValueError(f"--cache {opts.cache}: data read into memory is encoded once per run already; the cache is "
                         "for streamed data (--stream or tar shards)")
    from ..models import checkpoint

    model_file = opts.base or opts.vae
    codec = checkpoint.sha256(model_file) if model_file else "pixel"
    with torch.no_grad():
        shape = tuple(encode(data.first(1)[0].to(device)).shape[1:])
    log.info("train.py %s: caching latents in %s", command, opts.cache)
    return LatentCache(opts.cache, data.stream.source, opts.resolution, codec, shape)


class Encoded:
    """The training images in a model's inner space, as the refiner and the world trainer read them: every image
    encoded once when the data is in memory (``chunk`` images at a time), else each batch's images encoded as the
    stream brings them, through the latent cache when the run has one (``--cache``)."""

    def __init__(self, opts, data, encode, device, command: str, chunk: int):
        self.data, self.encode, self.device = data, encode, device
        self.all = None
        if data.images is not None:
            with torch.no_grad():
                self.all = torch.cat([encode(data.images[i:i + chunk])
                                      for i in range(0, len(data.images), chunk)]).to(device)
        self.cache = open_cache(opts, data, encode, device, command)

    def first(self, n: int) -> torch.Tensor:
        if self.all is not None:
            return self.all[:n]
        with torch.no_grad():
            return self.encode(self.data.first(n)[0]).to(self.device)

    def rows(self, idx: torch.Tensor) -> tuple[torch.Tensor, list[str]]:
        """The encoded images and the captions of the samples ``idx`` (this process's rows of a step)."""
        if self.all is not None:
            return self.all[idx.to(self.all.device)], [self.data.captions[i] for i in idx.tolist()]
        images, captions = self.data.batch(idx)
        if self.cache is not None:
            return self.cache.get(idx, images, self.encode, self.device), captions
        with torch.no_grad():
            return self.encode(images).to(self.device), captions
