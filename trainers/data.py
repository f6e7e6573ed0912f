"""Streamed training data: image folders and webdataset tar shards, decoded on the fly by DataLoader workers in a
deterministic order of epochs.

- Sources index their samples once (file names, or tar member offsets) and read one sample at a time, so memory
  does not grow with the data set: :class:`FolderSource` (images with ``<stem>.txt`` captions and ``<stem>.json``
  keypoint sidecars, as :func:`stepwise.models.images.load_images` reads them) and :class:`TarSource` (webdataset
  shards: the members ``<key>.png|jpg|...``, ``<key>.txt``, ``<key>.json`` of one sample share a key).
- :class:`EpochOrder`: the global batch of each step is the next slice of a permutation of the data set drawn for
  each epoch from ``(seed, epoch)`` alone, so the order is a function of the step: runs repeat it, and ``--resume``
  continues mid-epoch where the run stopped, with any number of processes.
- :class:`Stream`: a DataLoader over a source whose batch sampler yields this process's rows of each step's batch
  from the resume step on; its workers decode and crop while the model trains.

With ``--order epochs`` the in-memory reader takes the same order, so a folder read into memory, the same folder
streamed and its tar shards give the same batches (tested).
"""

from __future__ import annotations

import io
import logging
import os
import tarfile
from dataclasses import dataclass

import numpy as np
import torch

from ..models.images import IMAGE_EXTENSIONS, is_label_image, square

log = logging.getLogger("stepwise.train")

SIDECARS = (".txt", ".json")


PARTS = ("image",) + SIDECARS  # the files of a sample, in the index's column order


class Source:
    """Indexed samples read one at a time: ``len(source)``, ``source.image(i)`` (bytes), ``source.text(i, ext)`` and
    ``source.key(i)``. The index is compact (one row of integers per sample, the file names once), so a source of
    50,000 images costs a few MB: where each file of a sample lies is ``(file, offset, size)``, the file an entry of
    ``files`` (a tar shard, or the file itself with offset -1), -1 where the sample has no such file."""

    def __init__(self, keys: list[str], files: list[str], table: np.ndarray, where: str):
        if not keys:
            raise ValueError(f"--data {where!r} has no images; use a folder of PNG/JPEG/WebP images or webdataset "
                             "tar shards (members <key>.png with <key>.txt captions)")
        self.keys, self.files, self.table, self.where = keys, files, table, where
        self._handles: dict = {}

    def __len__(self) -> int:
        return len(self.keys)

    def __getstate__(self):  # workers get the index, not the parent's open files
        return {**self.__dict__, "_handles": {}}

    def key(self, i: int) -> str:
        return self.keys[i]

    def _read(self, i: int, part: int) -> bytes | None:
        f, offset, size = (int(v) for v in self.table[i, part])
        if f < 0:
            return None
        path = self.files[f]
        if offset < 0:
            with open(path, "rb") as fh:
                return fh.read()
        handle = self._handles.get(path)
        if handle is None:  # one handle per shard
            handle = self._handles[path] = open(path, "rb")
        # a positional read: forked DataLoader workers may share the handle's file offset, a seek would race
        return os.pread(handle.fileno(), size, offset)

    def image(self, i: int) -> bytes:
        return self._read(i, 0)

    def text(self, i: int, ext: str) -> str | None:
        raw = self._read(i, PARTS.index(ext))
        return raw.decode("utf-8").strip() if raw is not None else None


class FolderSource(Source):
    """The image files under a folder in :func:`~stepwise.models.images.load_images`' order (sorted paths, label
    images apart), with the ``.txt`` / ``.json`` files beside them."""

    def __init__(self, folder: str):
        if not os.path.isdir(folder):
            raise ValueError(f"--data {folder!r} is not a folder of images or tar shards")
        images = sorted(os.path.join(root, f) for root, _, names in os.walk(folder) for f in names
                        if f.lower().endswith(IMAGE_EXTENSIONS) and not is_label_image(f))
        keys, files = [], []
        table = np.full((len(images), len(PARTS), 3), -1, dtype=np.int64)
        for i, path in enumerate(images):
            stem = os.path.splitext(path)[0]
            keys.append(os.path.relpath(stem, folder))
            for part, candidate in enumerate([path] + [stem + ext for ext in SIDECARS]):
                if part == 0 or os.path.isfile(candidate):
                    table[i, part, 0] = len(files)
                    files.append(candidate)
        super().__init__(keys, files, table, folder)


def shards_of(path: str) -> list[str]:
    """The tar shards ``path`` names: one ``.tar`` file, or every ``.tar`` in a folder (sorted)."""
    if os.path.isfile(path) and path.endswith(".tar"):
        return [path]
    if os.path.isdir(path):
        return sorted(os.path.join(path, f) for f in os.listdir(path) if f.endswith(".tar"))
    return []


class TarSource(Source):
    """webdataset shards: the members of a sample share a key (the member name up to the first dot of its base name,
    webdataset's convention); each shard's headers are read once to index the members' byte ranges. Shards must be
    uncompressed (``.tar``), as webdataset writes them, so members can be read by offset."""

    def __init__(self, path: str):
        shards = shards_of(path)
        keys, rows = [], []
        for f, shard in enumerate(shards):
            groups: dict[str, dict[str, tuple[int, int, int]]] = {}
            with tarfile.open(shard, "r:") as tar:
                while (info := tar.next()) is not None:
                    tar.members.clear()  # tarfile keeps every header it reads; the index needs none of them
                    if not info.isfile():
                        continue
                    folder, base = os.path.split(info.name)
                    if "." not in base:
                        continue
                    stem, ext = base.split(".", 1)
                    groups.setdefault(os.path.join(folder, stem), {})["." + ext.lower()] = (f, info.offset_data,
                                                                                           info.size)
            for key in sorted(groups):
                members = groups[key]
                image = next((members[e] for e in IMAGE_EXTENSIONS if e in members), None)
                if image is None or is_label_image(key + ".png"):
                    continue
                keys.append(key)
                rows.append([image] + [members.get(e, (-1, -1, -1)) for e in SIDECARS])
        table = np.asarray(rows, dtype=np.int64).reshape(len(rows), len(PARTS), 3)
        super().__init__(keys, shards, table, path)


def open_source(path: str) -> Source:
    """Tar shards when ``path`` is a ``.tar`` file or a folder holding ``.tar`` files, else an image folder."""
    return TarSource(path) if shards_of(path) else FolderSource(path)


def is_stream_data(path: str) -> bool:
    """Data that is only ever streamed (tar shards); folders are read into memory unless ``--stream`` is given."""
    return bool(shards_of(path))


class EpochOrder:
    """The global batch of every step: consecutive slices of per-epoch permutations of ``n`` samples, each drawn
    from ``(seed, epoch)``. Epochs follow each other without gaps, so a batch may span two epochs."""

    def __init__(self, n: int, seed: int, batch: int):
        self.n, self.seed, self.batch = n, seed, batch
        self._cache: dict[int, torch.Tensor] = {}

    def permutation(self, epoch: int) -> torch.Tensor:
        if epoch not in self._cache:  # keep the last two epochs (a batch may span both)
            self._cache = {e: p for e, p in self._cache.items() if e == epoch - 1}
            self._cache[epoch] = (torch.randperm(self.n, generator=torch.Generator().manual_seed(
                self.seed * 1_000_003 + epoch)))
        return self._cache[epoch]

    def indices(self, step: int) -> torch.Tensor:
        positions = torch.arange(step * self.batch, (step + 1) * self.batch)
        epochs = positions // self.n
        out = torch.empty(self.batch, dtype=torch.long)
        for e in epochs.unique().tolist():
            here = epochs == e
            out[here] = self.permutation(e)[positions[here] % self.n]
        return out

    def epoch(self, step: int) -> float:
        return step * self.batch / self.n


class Decoded(torch.utils.data.Dataset):
    """A source's samples decoded: ``(index, image 3×R×R in [-1, 1], caption)``. An unreadable image is replaced by
    the next readable one (logged), so a long run does not stop at one bad file."""

    def __init__(self, source: Source, resolution: int):
        self.source, self.resolution = source, resolution

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, i: int):
        from PIL import Image

        for k in range(len(self.source)):
            j = (i + k) % len(self.source)
            try:
                with Image.open(io.BytesIO(self.source.image(j))) as im:
                    image, _ = square(im, self.resolution)
                break
            except Exception as e:  # unreadable or truncated image
                log.warning("skipping unreadable image %s of %s (%s)", self.source.key(j), self.source.where, e)
        else:
            raise ValueError(f"--data {self.source.where!r}: no image could be read")
        return i, image, self.source.text(j, ".txt") or ""


def _collate(rows):
    return torch.tensor([r[0] for r in rows]), torch.stack([r[1] for r in rows]), [r[2] for r in rows]


class _Steps:
    """The batch sampler of a stream: this process's indices of each step from ``start`` to ``stop``."""

    def __init__(self, order: EpochOrder, start: int, stop: int, part: slice):
        self.order, self.start, self.stop, self.part = order, start, stop, part

    def __iter__(self):
        for step in range(self.start, self.stop):
            yield self.order.indices(step)[self.part].tolist()

    def __len__(self) -> int:
        return self.stop - self.start


class Stream:
    """Decoded batches of a source in :class:`EpochOrder`, read ahead by ``workers`` DataLoader processes (0: in
    this process). :meth:`begin` starts it at a step (the loop calls it, at the resume step); :meth:`take` returns
    the next batch, which must be the one the loop asks for."""

    def __init__(self, source: Source, resolution: int, order: EpochOrder, workers: int = 2):
        self.source, self.order, self.workers = source, order, workers
        self.dataset = Decoded(source, resolution)
        self._batches = None

    def __len__(self) -> int:
        return len(self.source)

    def begin(self, step: int, stop: int, part: slice) -> None:
        loader = torch.utils.data.DataLoader(self.dataset, batch_sampler=_Steps(self.order, step, stop, part),
                                             num_workers=self.workers, collate_fn=_collate,
                                             persistent_workers=False, prefetch_factor=2 if self.workers else None)
        self._batches = iter(loader)

    def take(self, idx: torch.Tensor) -> tuple[torch.Tensor, list[str]]:
        """The images (N×3×R×R) and captions of the indices ``idx`` (the next batch of the stream)."""
        if self._batches is None:
            raise RuntimeError("Stream.take before Stream.begin (the training loop starts the stream)")
        got, images, captions = next(self._batches)
        if not torch.equal(got, idx.cpu()):
            raise RuntimeError(f"the stream is out of step with the loop: got samples {got.tolist()}, "
                               f"expected {idx.tolist()}")
        return images, captions

    def first(self, n: int) -> tuple[torch.Tensor, list[str]]:
        """The first ``n`` samples (sample grids, shapes), read in this process."""
        rows = [self.dataset[i] for i in range(min(n, len(self.dataset)))]
        return torch.stack([r[1] for r in rows]), [r[2] for r in rows]


@dataclass
class TrainingData:
    """What a trainer reads: every image in memory (``images``, ``captions``) or a :class:`Stream`; ``order`` is the
    epoch order of the batches, or None for the run generator's draws with replacement (in memory only)."""

    count: int
    skipped: int
    images: torch.Tensor | None = None
    captions: list[str] | None = None
    stream: Stream | None = None
    order: EpochOrder | None = None

    def batch(self, idx: torch.Tensor) -> tuple[torch.Tensor, list[str]]:
        """The images and captions of the indices ``idx`` (this process's rows of a step's batch)."""
        if self.stream is not None:
            return self.stream.take(idx)
        return self.images[idx], [self.captions[i] for i in idx.tolist()]

    def first(self, n: int) -> tuple[torch.Tensor, list[str]]:
        if self.stream is not None:
            return self.stream.first(n)
        return self.images[:n], self.captions[:n]


def read_data(opts) -> TrainingData:
    """``--data`` as ``opts`` asks: tar shards always stream; a folder streams with ``--stream``, else it is read
    into memory (:func:`~stepwise.models.images.load_images`). ``--order auto`` is epochs for streams and the run
    generator's draws for data in memory."""
    from ..models.images import load_images

    streaming = opts.stream or is_stream_data(opts.data)
    if streaming and opts.order == "random":
        raise ValueError("--order random draws images with replacement from the whole data set in memory; streamed "
                         "data (--stream, tar shards) is read in epochs: use --order epochs (or auto)")
    epochs = streaming or opts.order == "epochs"
    if streaming:
        source = open_source(opts.data)
        order = EpochOrder(len(source), opts.seed, opts.batch)
        log.info("streaming %d samples from %s with %d DataLoader workers", len(source), opts.data, opts.workers)
        return TrainingData(len(source), 0, stream=Stream(source, opts.resolution, order, opts.workers), order=order)
    images, captions, skipped = load_images(opts.data, opts.resolution)
    return TrainingData(len(images), skipped, images, captions,
                        order=EpochOrder(len(images), opts.seed, opts.batch) if epochs else None)


def in_memory_only(opts, command: str) -> None:
    """Refuse streaming options for a trainer that reads its data into memory (named, with what works)."""
    if opts.stream or is_stream_data(opts.data) or opts.order == "epochs":
        raise ValueError(f"train.py {command} reads --data into memory and draws images with replacement: --stream, "
                         "--order epochs and tar shards are for train.py refiner and world; give a folder of images")
