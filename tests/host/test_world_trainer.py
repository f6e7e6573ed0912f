"""train.py world: the world text-to-image model is a full checkpoint the host's Load Checkpoint reads (flow, trained
text encoder, pixel VAE); resume is bit-exact; a frozen text encoder stays as seeded; fine-tuning a host checkpoint
over the whole schedule writes a full checkpoint of its own kind; sample grids come with the analyser's reading."""

import json
import os
import subprocess
import sys

import pytest
import torch

from stepwise.models import checkpoint, world_model
from stepwise.models.init import seeded_init_
from stepwise.models.scenes import write_dataset
from stepwise.trainers import WorldOptions, train_world
from stepwise_dev import paths

TRAIN_PY = os.path.join(paths.REPO, "train.py")
PROMPT = "a large red circle on the left on a gray background"


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("scenes"))
    write_dataset(out, 16, 32, seed=4, objects=(1, 2))
    return out


@pytest.fixture(scope="module")
def registered():
    from stepwise_zoo.tiny import register

    register()


def _opts(data, out, **kw):
    base = dict(data=data, out=out, steps=3, batch=4, lr=1e-3, ema=0.9, seed=2, sample_prompts=(PROMPT,),
                sample_steps=2)
    base.update(kw)
    return WorldOptions(**base)


def _load(path):
    import comfy.sd

    model, clip, vae, _ = comfy.sd.load_checkpoint_guess_config(path, model_options={"dtype": torch.float32})
    return model, clip, vae


def test_world_checkpoint_is_read_by_the_hosts_checkpoint_loader(scenes, tmp_path, registered):
    import comfy.model_sampling

    out = str(tmp_path / "world.safetensors")
    meta = train_world(_opts(scenes, out))
    assert meta["kind"] == "world" and meta["parameterisation"] == "flow" and meta["conditioning"] == "text"
    assert meta["training"]["text"] == "train" and meta["timestep_range"] == [0, 1000]
    saved = checkpoint.load(out, kind="world")[0]
    model, clip, vae = _load(out)
    assert type(model.model.model_config) is world_model.config_class() or \
        type(model.model.model_config).__name__ == "StepwiseWorldSD15"
    assert isinstance(model.model.model_sampling, comfy.model_sampling.CONST)  # flow
    unet = model.model.diffusion_model.state_dict()
    assert all(torch.equal(unet[k], saved["model.diffusion_model." + k]) for k in unet)
    text = clip.cond_stage_model.clip_l.transformer.text_model.state_dict()  # in the host's text-encoder dtype
    prefix = "cond_stage_model.transformer.text_model."
    assert all(torch.equal(text[k], saved[prefix + k].to(text[k].dtype)) for k in text)
    assert {k for k in saved if k.startswith("cond_stage_model.")} == {prefix + k for k in text}
    # the text encoder was trained: its weights left the seeded initialisation
    _, fresh_clip, _ = world_model.new_parts()
    seeded_init_(fresh_clip.cond_stage_model, 2 + 1)
    fresh = fresh_clip.cond_stage_model.clip_l.transformer.text_model.state_dict()
    assert any(not torch.equal(fresh[k], saved[prefix + k]) for k in fresh)
    cond, _ = clip.encode_from_tokens(clip.tokenize(PROMPT), return_pooled=True)
    assert cond.shape == (1, 77, world_model.WORLD_CLIP["hidden_size"])
    pixels = torch.rand(1, 32, 32, 3)
    assert torch.allclose(vae.decode(vae.encode(pixels)), pixels, atol=1e-5)  # the pixel-space VAE


def test_the_packs_world_loader_reads_it_as_the_host_would(scenes, tmp_path, registered):
    """Load Stepwise World Checkpoint builds the model from the world config itself (users' hosts do not detect
    it): the same weights and the same samples as the host's Load Checkpoint where the config is registered."""
    import folder_paths

    from stepwise.nodes.loader import LoadStepwiseCheckpoint, LoadStepwiseWorldCheckpoint
    from stepwise.trainers.world import generate

    out = str(tmp_path / "world.safetensors")
    train_world(_opts(scenes, out))
    folders = folder_paths.folder_names_and_paths["stepwise"][0]
    folders.append(str(tmp_path))
    try:
        model, clip, vae, info = LoadStepwiseWorldCheckpoint.execute(ckpt_name="world.safetensors").result
        with pytest.raises(checkpoint.CheckpointError, match="Load Stepwise World Checkpoint"):
            LoadStepwiseCheckpoint.execute(ckpt_name="world.safetensors")
    finally:
        folders.remove(str(tmp_path))
    assert json.loads(info)["kind"] == "world"
    host_model, host_clip, host_vae = _load(out)
    ours = model.model.diffusion_model.state_dict()
    assert all(torch.equal(v, host_model.model.diffusion_model.state_dict()[k]) for k, v in ours.items())
    images = generate(model, clip, [PROMPT], [0, 1], 32, steps=3)
    assert torch.equal(images, generate(host_model, host_clip, [PROMPT], [0, 1], 32, steps=3))
    assert torch.equal(vae.decode(images), host_vae.decode(images))


def test_training_text_forward_is_the_hosts_forward():
    from stepwise.trainers.world import _token_ids, text_context

    _, clip, _ = world_model.new_parts()
    seeded_init_(clip.cond_stage_model, 7)
    prompts = [PROMPT, "", "a small blue ring at the top on a black background"]
    with torch.no_grad():
        ours = text_context(clip.cond_stage_model.clip_l.transformer.text_model,
                            torch.tensor([_token_ids(clip, p) for p in prompts]))
        host = torch.cat([clip.encode_from_tokens(clip.tokenize(p)) for p in prompts])
    assert ours.shape == host.shape == (3, 77, world_model.WORLD_CLIP["hidden_size"])
    assert torch.allclose(ours, host.float(), atol=1e-5)


def test_resume_continues_bit_exactly(scenes, tmp_path):
    straight = str(tmp_path / "straight.safetensors")
    train_world(_opts(scenes, straight, steps=4, save_every=2))
    resumed = str(tmp_path / "resumed.safetensors")
    train_world(_opts(scenes, resumed, steps=2))
    meta = train_world(_opts(scenes, resumed, steps=4, resume=True))
    a, _ = checkpoint.load(straight)
    b, _ = checkpoint.load(resumed)
    assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)
    assert meta["training"]["steps"] == 4 and len(meta["losses"]) == 4


def test_a_run_in_timed_parts_ends_where_a_straight_run_ends(scenes, tmp_path):
    straight = str(tmp_path / "straight.safetensors")
    train_world(_opts(scenes, straight, steps=3))
    parts = str(tmp_path / "parts.safetensors")
    first = train_world(_opts(scenes, parts, steps=3, max_minutes=1e-9))  # stops after its first step
    assert first["training"]["steps"] == 1 and os.path.isfile(parts + ".train-state")
    train_world(_opts(scenes, parts, steps=3, max_minutes=1e-9, resume=True))
    meta = train_world(_opts(scenes, parts, steps=3, resume=True))
    a, _ = checkpoint.load(straight)
    b, _ = checkpoint.load(parts)
    assert meta["training"]["steps"] == 3 and all(torch.equal(a[k], b[k]) for k in a)


def test_frozen_text_encoder_stays_as_seeded(scenes, tmp_path):
    out = str(tmp_path / "frozen.safetensors")
    train_world(_opts(scenes, out, text="frozen"))
    saved, meta = checkpoint.load(out, kind="world")
    assert meta["training"]["text"] == "frozen"
    _, clip, _ = world_model.new_parts()
    seeded_init_(clip.cond_stage_model, 2 + 1)
    fresh = clip.cond_stage_model.clip_l.transformer.text_model.state_dict()
    assert all(torch.equal(fresh[k], saved["cond_stage_model.transformer.text_model." + k]) for k in fresh)


def test_sample_grid_comes_with_the_analysers_reading(scenes, tmp_path):
    out = str(tmp_path / "s.safetensors")
    train_world(_opts(scenes, out, steps=2, sample_every=2))
    grid = tmp_path / "s.safetensors.samples" / "step_000002.png"
    from PIL import Image

    assert Image.open(grid).size == (4 * 32, 32)  # one prompt, four seeds
    reading = json.loads((tmp_path / "s.safetensors.samples" / "step_000002.json").read_text())
    assert reading["prompts"] == [PROMPT] and set(reading["reading"]) >= {"shape", "colour", "position"}


def test_read_grid_says_what_was_drawn_for_each_prompt():
    """Exact renders of two captions, two images each, the second prompt's images blank: every attribute read right on
    the drawn half, and ``drawn`` gives the share of images read as each shape (a blank image: ``none``)."""
    from stepwise.models import scenes
    from stepwise.trainers.world import read_grid

    prompts = ["a large red triangle on the left on a black background",
               "a small blue circle at the top on a white background"]
    images = []
    for i, prompt in enumerate(prompts):
        image, _ = scenes.render(scenes.scene_from_description(scenes.parse_caption(prompt), 32))
        if i == 1:
            image[:] = scenes.BACKGROUNDS["white"]  # nothing drawn where the circle was asked
        images += [torch.from_numpy(image).float() / 255] * 2
    grid = torch.stack(images).permute(0, 3, 1, 2) * 2 - 1
    reading = read_grid(grid, prompts, 2, drawn=True)
    assert reading["drawn"] == {"none": 0.5, "triangle": 0.5}
    assert reading["shape"] == 0.5 and reading["background"] == 1.0
    assert "drawn" not in read_grid(grid, prompts, 2)


@pytest.mark.parametrize("text", ["frozen", "train"])
def test_fine_tune_a_host_checkpoint_over_the_whole_schedule(scenes, tmp_path, zoo, tiny_models, text):
    base = os.path.join(zoo, paths.TINY_SD15)
    out = str(tmp_path / f"ft-{text}.safetensors")
    meta = train_world(_opts(scenes, out, base=base, text=text))
    assert meta["base"]["name"] == paths.TINY_SD15 and meta["parameterisation"] == "eps"
    assert meta["latent_space"]["kind"] == "vae"
    model, clip, vae = _load(out)
    base_model, base_clip, _ = tiny_models[paths.TINY_SD15]
    before = base_model.model.diffusion_model.state_dict()
    after = model.model.diffusion_model.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    t0 = base_clip.cond_stage_model.clip_l.transformer.text_model.state_dict()
    t1 = checkpoint.load(out, kind="world")[0]
    same = all(torch.equal(t0[k].float(), t1["cond_stage_model.transformer.text_model." + k].float()) for k in t0)
    assert same == (text == "frozen")


@pytest.mark.parametrize("kw,match", [
    (dict(resolution=64), "trained at 32 px"), (dict(parameterisation="eps"), "predicts flow"),
    (dict(t_range=(0, 500)), "whole schedule"), (dict(text="thawed"), "--text 'thawed'"),
])
def test_bad_options_are_named(scenes, tmp_path, kw, match):
    with pytest.raises(ValueError, match=match):
        train_world(_opts(scenes, str(tmp_path / "x.safetensors"), **kw))


def test_command_line(scenes, tmp_path):
    out = str(tmp_path / "cli.safetensors")
    run = subprocess.run([sys.executable, TRAIN_PY, "world", "--data", scenes, "--out", out, "--steps", "1",
                          "--batch", "2", "--recipe", "test"], capture_output=True, text=True, cwd=paths.REPO)
    assert run.returncode == 0, run.stderr[-2000:]
    meta = checkpoint.read_metadata(out)
    assert meta["training"]["recipe"] == "test" and meta["resolution"] == 32
    bad = subprocess.run([sys.executable, TRAIN_PY, "world", "--data", scenes, "--out", out, "--resolution", "64"],
                         capture_output=True, text=True, cwd=paths.REPO)
    assert bad.returncode == 2 and "trained at 32 px" in bad.stderr


def test_shipped_world_models_are_their_recipes_run(tmp_path):
    """Each shipped world model (dev/world_models) is a finished seed of ``make world-models``: its metadata holds
    the recipe, the data seed and the measured metrics, and the recipe's first steps, rerun here from the recipe's
    own commands, give the losses the shipped run logged (to float rounding: thread counts differ)."""
    sys.path.insert(0, os.path.join(paths.REPO, "scripts"))
    try:
        import world_models as recipe
    finally:
        sys.path.pop(0)
    shipped = paths.world_models()
    data = str(tmp_path / "data")
    subprocess.run(recipe.data_command(data), check=True, capture_output=True)
    for name, path in shipped.items():
        meta = checkpoint.read_metadata(path)
        training = meta["training"]
        assert meta["kind"] == "world" and training["recipe"] == recipe.RECIPE, name
        assert training["data_seed"] == recipe.DATA_SEED and training["steps"] == recipe.STEPS, name
        assert training["seed"] in recipe.SEEDS and name == f"stepwise-world-s{training['seed']}.safetensors"
        assert set(training["metrics"]) == {"held_out", "train_like"}, name
        out = str(tmp_path / name)
        run = subprocess.run(recipe.train_command(data, out, training["seed"], 0, "cpu", steps=3), capture_output=True,
                             text=True, cwd=paths.REPO)
        assert run.returncode == 0, run.stderr[-2000:]
        from safetensors.torch import load_file

        losses = load_file(out + ".train-state")["losses"]
        logged = torch.tensor(training["first_losses"][:3], dtype=losses.dtype)
        assert torch.allclose(losses, logged, rtol=1e-4, atol=0), (name, losses.tolist(), logged.tolist())
    assert sum(os.path.getsize(p) for p in shipped.values()) <= 60 * 2**20  # the budget for all of them
