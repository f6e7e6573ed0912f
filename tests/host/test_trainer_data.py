"""Streamed training data (trainers/data.py): image folders and webdataset tar shards read one sample at a time by
DataLoader workers, in per-epoch permutations of the seed; the same batches as the in-memory reader, bit for bit,
and resumable mid-epoch."""

import os
import tarfile

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from stepwise.models import checkpoint
from stepwise.models.images import load_images
from stepwise.models.world import make_data
from stepwise.trainers import RefinerOptions, train_refiner
from stepwise.trainers.data import EpochOrder, FolderSource, Stream, TarSource, open_source, read_data


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("shapes"))
    make_data("shapes", 20, 32, out, seed=3)
    for i, name in enumerate(sorted(f for f in os.listdir(out) if f.endswith(".png"))[:5]):
        with open(os.path.join(out, os.path.splitext(name)[0] + ".txt"), "w") as f:
            f.write(f"caption {i}")
    return out


@pytest.fixture(scope="module")
def shards(folder, tmp_path_factory):
    """The folder as two webdataset shards (<key>.png, <key>.txt), the way `tar` writes them."""
    out = tmp_path_factory.mktemp("shards")
    names = sorted(os.listdir(folder))
    stems = sorted({n.split(".", 1)[0] for n in names})
    for k, part in enumerate((stems[:11], stems[11:])):
        with tarfile.open(out / f"shard-{k:05d}.tar", "w") as tar:
            for stem in part:
                for name in names:
                    if name.split(".", 1)[0] == stem:
                        tar.add(os.path.join(folder, name), arcname=name)
    return str(out)


def _opts(data, out, **kw):
    base = dict(data=data, out=out, arch="tiny", space="pixel", t_range=(0, 500), steps=7, batch=6, lr=1e-3,
                ema=0.9, resolution=32, seed=5, workers=2)
    base.update(kw)
    return RefinerOptions(**base)


def test_epoch_order_is_a_permutation_per_epoch_and_a_function_of_seed_and_step():
    order = EpochOrder(12, seed=3, batch=4)
    for epoch in range(3):
        seen = torch.cat([order.indices(3 * epoch + s) for s in range(3)])
        assert sorted(seen.tolist()) == list(range(12))
    assert torch.equal(EpochOrder(12, 3, 4).indices(5), order.indices(5))
    assert not torch.equal(EpochOrder(12, 4, 4).indices(0), order.indices(0))
    spanning = EpochOrder(10, 3, 4)  # step 2 takes positions 8..11: two of epoch 0, two of epoch 1
    assert spanning.indices(2)[:2].tolist() == spanning.permutation(0)[8:].tolist()
    assert spanning.indices(2)[2:].tolist() == spanning.permutation(1)[:2].tolist()


def test_folder_and_tar_sources_index_the_same_samples_in_the_in_memory_order(folder, shards):
    images, captions, _ = load_images(folder, 32)
    a, b = FolderSource(folder), TarSource(shards)
    assert len(a) == len(b) == len(images) == 20
    assert a.keys == b.keys
    assert all(a.image(i) == b.image(i) for i in range(len(a)))
    assert [a.text(i, ".txt") or "" for i in range(len(a))] == captions == [b.text(i, ".txt") or "" for i in range(20)]
    assert isinstance(open_source(shards), TarSource) and isinstance(open_source(folder), FolderSource)


def test_a_stream_gives_the_in_memory_images_and_checks_its_step(folder, shards):
    images, captions, _ = load_images(folder, 32)
    order = EpochOrder(20, seed=1, batch=4)
    stream = Stream(TarSource(shards), 32, order, workers=2)
    stream.begin(3, 6, slice(None))
    for step in range(3, 6):
        idx = order.indices(step)
        got, caps = stream.take(idx)
        assert torch.equal(got, images[idx]) and caps == [captions[i] for i in idx.tolist()]
    stream.begin(0, 2, slice(None))
    with pytest.raises(RuntimeError, match="out of step"):
        stream.take(order.indices(1))


@pytest.mark.parametrize("source", ["folder", "shards"])
def test_streamed_training_equals_training_in_memory_in_the_same_order(folder, shards, tmp_path, source):
    memory = str(tmp_path / "memory.safetensors")
    streamed = str(tmp_path / "streamed.safetensors")
    train_refiner(_opts(folder, memory, order="epochs"))
    meta = train_refiner(_opts(folder if source == "folder" else shards, streamed, stream=source == "folder"))
    assert meta["training"]["streamed"] and meta["training"]["order"] == "epochs"
    a, b = checkpoint.load(memory)[0], checkpoint.load(streamed)[0]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_stream_resumes_mid_epoch_bit_exactly(shards, tmp_path):
    straight, resumed = str(tmp_path / "straight.safetensors"), str(tmp_path / "resumed.safetensors")
    train_refiner(_opts(shards, straight, steps=9))
    train_refiner(_opts(shards, resumed, steps=4))  # 24 of 20 images: stopped inside the second epoch
    train_refiner(_opts(shards, resumed, steps=9, resume=True))
    a, b = checkpoint.load(straight)[0], checkpoint.load(resumed)[0]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert torch.equal(load_file(straight + ".train-state")["losses"], load_file(resumed + ".train-state")["losses"])


def test_streams_refuse_draws_with_replacement(shards, tmp_path):
    with pytest.raises(ValueError, match="--order random .* use --order epochs"):
        read_data(_opts(shards, str(tmp_path / "x.safetensors"), order="random"))


def test_the_estimator_streams_its_training_images_and_reads_the_held_out_ones(folder, shards, tmp_path, zoo):
    from stepwise.trainers import EstimatorOptions, train_estimator
    from stepwise_dev import refiners

    runs = {}
    for name, data, extra in (("memory", folder, {"order": "epochs"}), ("streamed", shards, {})):
        out = str(tmp_path / f"{name}.safetensors")
        meta = train_estimator(EstimatorOptions(data=data, out=out, base=refiners.demo_refiner(zoo), arch="tiny",
                                                t_range=(0, 250), steps=3, batch=4, lr=2e-3, ema=0.0, resolution=32,
                                                seed=4, clean_share=0.5, probes=(1.0,), eval_steps=2, workers=2,
                                                **extra))
        runs[name] = checkpoint.load(out)[0], meta
    (a, ma), (b, mb) = runs["memory"], runs["streamed"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert ma["training"]["images"] == mb["training"]["images"] == 18  # every tenth image held out
    assert ma["evaluation"] == mb["evaluation"]


def test_the_world_trainer_streams_its_captioned_scenes(tmp_path):
    from stepwise.models.scenes import write_dataset
    from stepwise.trainers import WorldOptions, train_world

    scenes = str(tmp_path / "scenes")
    write_dataset(scenes, 10, 32, seed=4, objects=(1, 2))
    runs = {}
    for name, extra in (("memory", {"order": "epochs"}), ("streamed", {"stream": True})):
        out = str(tmp_path / f"{name}.safetensors")
        train_world(WorldOptions(data=scenes, out=out, steps=3, batch=4, lr=1e-3, ema=0.9, seed=2, workers=1,
                                 sample_prompts=("a large red circle on the left on a gray background",),
                                 sample_steps=2, **extra))
        runs[name] = checkpoint.load(out)[0]
    assert all(torch.equal(runs["memory"][k], runs["streamed"][k]) for k in runs["memory"])


@pytest.fixture(scope="module")
def figures(tmp_path_factory):
    """Stick figures with <stem>.json keypoints, the same as tar shards, and a COCO file of them."""
    import json

    folder = tmp_path_factory.mktemp("figures")
    make_data("figures", 12, 32, str(folder), seed=3)
    shards = tmp_path_factory.mktemp("figure_shards")
    with tarfile.open(shards / "shard-00000.tar", "w") as tar:
        for name in sorted(os.listdir(folder)):
            tar.add(folder / name, arcname=name)
    stems = sorted(n[:-4] for n in os.listdir(folder) if n.endswith(".png"))
    coco = {"images": [], "annotations": []}
    for i, stem in enumerate(stems):
        kp = json.loads((folder / f"{stem}.json").read_text())
        coco["images"].append({"id": i, "file_name": f"{stem}.png", "width": 32, "height": 32})
        coco["annotations"].append({"id": 100 + i, "image_id": i, "keypoints": kp["keypoints"],
                                    "num_keypoints": 17, "iscrowd": 0})
    (folder / "coco.json").write_text(json.dumps(coco))
    return {"folder": str(folder), "shards": str(shards), "coco": str(folder / "coco.json")}


def _pose(data, out, **kw):
    from stepwise.trainers import PoseOptions

    base = dict(data=data, out=out, arch="compact", space="pixel", steps=4, batch=4, lr=1e-3, ema=0.9,
                resolution=32, seed=5, context_dim=32, bands=4, workers=2)
    base.update(kw)
    return PoseOptions(**base)


@pytest.mark.parametrize("source", ["folder", "shards", "coco"])
def test_pose_training_streams_keypoints_from_folders_shards_and_coco_files(figures, tmp_path, source):
    from stepwise.trainers import train_pose

    memory_data = figures["coco" if source == "coco" else "folder"]
    memory, streamed = str(tmp_path / "memory.safetensors"), str(tmp_path / "streamed.safetensors")
    train_pose(_pose(memory_data, memory, order="epochs"))
    meta = train_pose(_pose(figures[source], streamed, stream=True))
    assert meta["training"]["streamed"] and meta["training"]["images"] == 12
    a, b = checkpoint.load(memory, "pose")[0], checkpoint.load(streamed, "pose")[0]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_latent_cache_is_filled_once_and_reused_by_the_next_run(shards, tmp_path, zoo):
    from stepwise_dev import paths

    cache = str(tmp_path / "cache")
    latent = dict(space="latent", vae=os.path.join(zoo, paths.TINY_SD15), resolution=64, cache=cache)
    first, second, plain = (str(tmp_path / f"{n}.safetensors") for n in ("first", "second", "plain"))
    train_refiner(_opts(shards, first, **latent))  # 42 draws of 20 images: every latent encoded, then read
    (array,) = [f for f in os.listdir(cache) if f.endswith(".npy") and not f.endswith(".done.npy")]
    assert np.load(os.path.join(cache, array) + ".done.npy").all()
    train_refiner(_opts(shards, second, **latent))  # every latent read from the cache
    train_refiner(_opts(shards, plain, **{**latent, "cache": None}))  # every latent encoded each time
    a, b, c = (checkpoint.load(p)[0] for p in (first, second, plain))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert all(torch.allclose(a[k], c[k], rtol=0, atol=1e-5) for k in a)


def test_a_cache_needs_a_stream_and_a_deterministic_encoding(folder, tmp_path):
    with pytest.raises(ValueError, match="--cache .* for streamed data"):
        train_refiner(_opts(folder, str(tmp_path / "x.safetensors"), cache=str(tmp_path / "c")))
    from stepwise.trainers import PoseOptions, train_pose

    with pytest.raises(ValueError, match="random crops"):
        train_pose(PoseOptions(data=folder, out=str(tmp_path / "p.safetensors"), cache=str(tmp_path / "c")))
