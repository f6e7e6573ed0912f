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
import json
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

    blob: bytes = b""  # sidecars kept in memory (file -2: a byte range of this), e.g. a COCO file's per-image entries
    objects = False  # whether the .json sidecars are COCO entries (dicts) rather than keypoint files (text)

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
        if f == -2:
            return self.blob[offset:offset + size]
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

    def __init__(self, folder: str, require: str | None = None):
        if not os.path.isdir(folder):
            raise ValueError(f"--data {folder!r} is not a folder of images or tar shards")
        images = sorted(os.path.join(root, f) for root, _, names in os.walk(folder) for f in names
                        if f.lower().endswith(IMAGE_EXTENSIONS) and not is_label_image(f)
                        and (require is None or os.path.isfile(os.path.splitext(os.path.join(root, f))[0] + require)))
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


class CocoSource(Source):
    """A COCO person-keypoints file with its images beside it (or in ``images/``): indexed once (annotations grouped
    by image, :func:`~stepwise.models.pose_data._pairs`), each image's entry kept as compact JSON bytes and the parsed
    file dropped; images are read as the batches need them."""

    objects = True

    def __init__(self, path: str):
        from ..models.pose_data import _pairs

        keep = ("id", "image_id", "keypoints", "num_keypoints", "iscrowd", "bbox")
        keys, files, rows, blob = [], [], [], bytearray()
        for image_path, value in _pairs(path):
            entry = {"images": value["images"], "annotations": [{k: a[k] for k in keep if k in a}
                                                                for a in value["annotations"]]}
            raw = json.dumps(entry, separators=(",", ":")).encode()
            stem = os.path.splitext(image_path)[0]
            caption = (len(files) + 1, -1, -1) if os.path.isfile(stem + ".txt") else (-1, -1, -1)
            keys.append(os.path.relpath(image_path, os.path.dirname(os.path.abspath(path))))
            files.append(image_path)
            if caption[0] >= 0:
                files.append(stem + ".txt")
            rows.append([(len(files) - 1 - (caption[0] >= 0), -1, -1), caption, (-2, len(blob), len(raw))])
            blob += raw
        super().__init__(keys, files, np.asarray(rows, dtype=np.int64).reshape(len(rows), len(PARTS), 3), path)
        self.blob = bytes(blob)


def open_source(path: str, require: str | None = None) -> Source:
    """Tar shards when ``path`` is a ``.tar`` file or a folder holding ``.tar`` files, else an image folder."""
    if os.path.isfile(path) and path.endswith(".json"):
        return CocoSource(path)
    return TarSource(path) if shards_of(path) else FolderSource(path, require)


def is_stream_data(path: str) -> bool:
    """Data that is only ever streamed (tar shards); folders are read into memory unless ``--stream`` is given."""
    return bool(shards_of(path))


class EpochOrder:
    """The global batch of every step: consecutive slices of per-epoch permutations of ``n`` samples, each drawn
    from ``(seed, epoch)``. Epochs follow each other without gaps, so a batch may span two epochs."""

    def __init__(self, n: int, seed: int, batch: int, subset: torch.Tensor | None = None):
        self.n, self.seed, self.batch = n, seed, batch
        self.subset = subset  # the data's indices of the n samples trained on (e.g. all but held-out ones)
        self._cache: dict[int, torch.Tensor] = {}
        if subset is not None and len(subset) != n:
            raise ValueError(f"EpochOrder: a subset of {len(subset)} indices for {n} samples")

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
        return out if self.subset is None else self.subset[out]

    def epoch(self, step: int) -> float:
        return step * self.batch / self.n


class Decoded(torch.utils.data.Dataset):
    """A source's samples decoded: ``(index, image 3×R×R in [-1, 1], caption)``. An unreadable image is replaced by
    the next readable one (logged), so a long run does not stop at one bad file."""

    def __init__(self, source: Source, resolution: int, max_people: int = 0):
        self.source, self.resolution, self.max_people = source, resolution, max_people

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, i: int):
        from PIL import Image

        for k in range(len(self.source)):
            j = (i + k) % len(self.source)
            try:
                with Image.open(io.BytesIO(self.source.image(j))) as im:
                    image, box = square(im, self.resolution)
                break
            except Exception as e:  # unreadable or truncated image
                log.warning("skipping unreadable image %s of %s (%s)", self.source.key(j), self.source.where, e)
        else:
            raise ValueError(f"--data {self.source.where!r}: no image could be read")
        caption = self.source.text(j, ".txt") or ""
        if not self.max_people:
            return i, image, caption
        from ..models.pose_data import people_in

        value = self.source.text(j, ".json")
        if value is None:
            raise ValueError(f"--data {self.source.where!r}: {self.source.key(j)} has no keypoints (<key>.json)")
        where = f"{self.source.key(j)}.json of {self.source.where}"
        return i, image, caption, people_in(json.loads(value) if self.source.objects else value, where, box,
                                            self.max_people)


def _collate(rows):
    out = (torch.tensor([r[0] for r in rows]), torch.stack([r[1] for r in rows]), [r[2] for r in rows])
    return out + ((torch.stack([r[3] for r in rows]),) if len(rows[0]) > 3 else ())


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

    def __init__(self, source: Source, resolution: int, order: EpochOrder, workers: int = 2, max_people: int = 0):
        self.source, self.order, self.workers = source, order, workers
        self.dataset = Decoded(source, resolution, max_people)
        self._batches = None

    def __len__(self) -> int:
        return len(self.source)

    def begin(self, step: int, stop: int, part: slice) -> None:
        loader = torch.utils.data.DataLoader(self.dataset, batch_sampler=_Steps(self.order, step, stop, part),
                                             num_workers=self.workers, collate_fn=_collate,
                                             persistent_workers=False, prefetch_factor=2 if self.workers else None)
        self._batches = iter(loader)

    def take(self, idx: torch.Tensor) -> tuple:
        """The images (N×3×R×R) and captions of the indices ``idx`` (the next batch of the stream), and their poses
        (N×people×17×3) for pose streams."""
        if self._batches is None:
            raise RuntimeError("Stream.take before Stream.begin (the training loop starts the stream)")
        got, *batch = next(self._batches)
        if not torch.equal(got, idx.cpu()):
            raise RuntimeError(f"the stream is out of step with the loop: got samples {got.tolist()}, "
                               f"expected {idx.tolist()}")
        return tuple(batch)

    def first(self, n: int) -> tuple:
        """The first ``n`` samples (sample grids, shapes), read in this process."""
        return self.read(range(min(n, len(self.dataset))))

    def read(self, indices) -> tuple:
        """The samples of ``indices``, read in this process (e.g. held-out images for an evaluation)."""
        return _collate([self.dataset[int(i)] for i in indices])[1:]


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
    poses: torch.Tensor | None = None  # pose data in memory: N×people×17×3

    def batch(self, idx: torch.Tensor) -> tuple:
        """The images and captions of the indices ``idx`` (this process's rows of a step's batch), and their poses
        for pose data."""
        if self.stream is not None:
            return self.stream.take(idx)
        out = (self.images[idx], [self.captions[i] for i in idx.tolist()])
        return out + ((self.poses[idx],) if self.poses is not None else ())

    def first(self, n: int) -> tuple:
        if self.stream is not None:
            return self.stream.first(n)
        return (self.images[:n], self.captions[:n]) + ((self.poses[:n],) if self.poses is not None else ())


def _order_of(opts) -> tuple[bool, bool]:
    """(streaming, epochs) for ``opts``, refusing a stream drawn with replacement."""
    streaming = opts.stream or is_stream_data(opts.data)
    if streaming and opts.order == "random":
        raise ValueError("--order random draws images with replacement from the whole data set in memory; streamed "
                         "data (--stream, tar shards) is read in epochs: use --order epochs (or auto)")
    return streaming, streaming or opts.order == "epochs"


def read_pose_data(opts) -> TrainingData:
    """Pose data as ``opts`` asks (:func:`read_data`'s rules): images with keypoints from a folder (``<stem>.json``),
    tar shards (``<key>.json`` members) or a COCO file, in memory or streamed."""
    from ..models.pose_data import load_pose_samples

    streaming, epochs = _order_of(opts)
    if streaming:
        source = open_source(opts.data, require=".json")
        order = EpochOrder(len(source), opts.seed, opts.batch)
        log.info("streaming %d samples from %s with %d DataLoader workers", len(source), opts.data, opts.workers)
        return TrainingData(len(source), 0, stream=Stream(source, opts.resolution, order, opts.workers,
                                                          opts.max_people), order=order)
    images, poses, captions, skipped = load_pose_samples(opts.data, opts.resolution, opts.max_people)
    return TrainingData(len(images), skipped, images, captions, poses=poses,
                        order=EpochOrder(len(images), opts.seed, opts.batch) if epochs else None)


def read_data(opts) -> TrainingData:
    """``--data`` as ``opts`` asks: tar shards always stream; a folder streams with ``--stream``, else it is read
    into memory (:func:`~stepwise.models.images.load_images`). ``--order auto`` is epochs for streams and the run
    generator's draws for data in memory."""
    from ..models.images import load_images

    streaming, epochs = _order_of(opts)
    if streaming:
        source = open_source(opts.data)
        order = EpochOrder(len(source), opts.seed, opts.batch)
        log.info("streaming %d samples from %s with %d DataLoader workers", len(source), opts.data, opts.workers)
        return TrainingData(len(source), 0, stream=Stream(source, opts.resolution, order, opts.workers), order=order)
    images, captions, skipped = load_images(opts.data, opts.resolution)
    return TrainingData(len(images), skipped, images, captions,
                        order=EpochOrder(len(images), opts.seed, opts.batch) if epochs else None)

