"""KeypointCondition and the pose model in the real host: parsing into the conditioning, the skeleton preview,
and sampling a pose checkpoint (randomly initialised, written in the pack's format) through the host's samplers."""

import json

import comfy.sample
import pytest
import torch

from stepwise.kernels.pose import coco_to_openpose
from stepwise.models import checkpoint, diffusion
from stepwise.models.init import seeded_init_
from stepwise.models.pose import POSE_KEY, STRENGTH_KEY
from stepwise.nodes.keypoint import KeypointCondition


def pose_json(x=0.5, y=0.3, people=1):
    g = torch.Generator().manual_seed(int(x * 100 + y * 10))
    poses = []
    for _ in range(people):
        coco = torch.cat([torch.rand(17, 2, generator=g) * 0.5 + torch.tensor([x, y]) - 0.25, torch.ones(17, 1)], 1)
        poses.append({"pose_keypoints_2d": coco_to_openpose(coco).flatten().tolist()})
    return json.dumps({"people": poses, "canvas_width": 512, "canvas_height": 512})


def node(**kw):
    args = dict(image_index=0, person=0, max_people=4, strength=1.0, preview_size=128)
    args.update(kw)
    return KeypointCondition.execute(**args).result


@pytest.fixture(scope="module", params=["fourier", "grid"])
def pose_model(request, tmp_path_factory):
    """A from-scratch pixel-space pose model (pose tokens only) saved and loaded back in the pack's format."""
    unet = diffusion.unet_config("small", 3, context_dim=32)
    pose = {"encoder": {"context_dim": 32, "tokens": request.param, "bands": 4, "max_people": 2, "grid": 16,
                        "canvas": 512}, "text": False}
    model = diffusion.new_model(unet, "eps", "pixel", pose=pose)
    seeded_init_(model.diffusion_model, 3)
    meta = {"kind": "pose", "network": {"class": "comfy_unet", "unet_config": unet, "model_class": "BaseModel",
                                        "pose": pose},
            "parameterisation": "eps", "latent_space": {"kind": "pixel", "channels": 3}, "timestep_range": [0, 1000],
            "conditioning": "keypoints", "base": None, "training": {}}
    tensors = {**model.diffusion_model.state_dict(),
               **{f"pose_encoder.{k}": v for k, v in model.pose_encoder.state_dict().items()}}
    path = str(tmp_path_factory.mktemp("pose") / "pose.safetensors")
    checkpoint.save(path, tensors, meta)
    loaded, meta = checkpoint.load(path, "pose")
    return diffusion.model_patcher(loaded, meta, "pose.safetensors")


def sample(model, positive, negative, seed=0, cfg=4.0):
    latent = torch.zeros(1, 3, 16, 16)
    noise = comfy.sample.prepare_noise(latent, seed)
    return comfy.sample.sample(model, noise, 4, cfg, "euler", "normal", positive, negative, latent,
                               disable_pbar=True, seed=seed)


def test_the_pose_steers_the_sample_and_the_null_pose_is_the_negative(pose_model):
    a, _ = node(pose_json=pose_json(0.3, 0.3))
    b, _ = node(pose_json=pose_json(0.7, 0.6))
    null, _ = node(pose_json=pose_json(0.3, 0.3), strength=0.0)
    negative = [[torch.zeros(1, 1, 1), {}]]  # a conditioning without a pose: the null pose
    out_a, out_b = sample(pose_model, a, negative), sample(pose_model, b, negative)
    assert torch.isfinite(out_a).all() and (out_a - out_b).abs().max() > 1e-4
    # strength 0 is the null pose: with cfg the guidance vanishes and the sample equals the unguided one
    torch.testing.assert_close(sample(pose_model, null, negative), sample(pose_model, negative, negative))
    assert (out_a - sample(pose_model, negative, negative)).abs().max() > 1e-4


def test_all_people_up_to_the_limit(pose_model):
    both, preview = node(pose_json=pose_json(people=3), person=-1, max_people=2)
    assert both[0][1][POSE_KEY].shape == (2, 17, 3) and preview.shape == (1, 128, 128, 3)
    assert torch.isfinite(sample(pose_model, both, [[torch.zeros(1, 1, 1), {}]])).all()


def test_text_conditioning_keeps_its_options_and_gets_the_pose():
    text = [[torch.randn(1, 77, 8), {"pooled_output": torch.randn(1, 8)}]]
    out, preview = node(conditioning=text, pose_json=pose_json(), strength=0.5)
    assert torch.equal(out[0][0], text[0][0]) and "pooled_output" in out[0][1]
    assert out[0][1][STRENGTH_KEY] == 0.5 and out[0][1][POSE_KEY].shape == (1, 17, 3)
    assert float(preview.max()) > 0.5  # joints are drawn in saturated colours


def test_pose_keypoint_input_and_the_null_pose_preview():
    value = [{"people": [{"pose_keypoints_2d": [0.0] * 54}], "canvas_width": 640, "canvas_height": 320}]
    out, preview = node(pose_keypoint=value)
    assert not out[0][1][POSE_KEY].any()  # all joints missing: valid, the null pose
    assert preview.shape == (1, 64, 128, 3) and float(preview.max()) > 0.5  # the "null pose" caption


BAD = [
    (dict(), "no pose"),
    (dict(pose_json=pose_json(), pose_keypoint=[]), "both pose_keypoint and pose_json"),
    (dict(pose_json="{\"people\": [1,"), "malformed JSON at line 1"),
    (dict(pose_json=pose_json(), person=1), "person index 1 is out of range; the frame has 1 people"),
    (dict(pose_json=pose_json(), image_index=2), "image_index 2 is out of range; pose_json holds 1 image"),
    (dict(pose_json=json.dumps({"people": [], "canvas_width": 5, "canvas_height": 5}), person=-1), "no people"),
]


@pytest.mark.parametrize("kw,message", BAD, ids=[b[1][:24] for b in BAD])
def test_bad_input_is_a_clear_error(kw, message):
    with pytest.raises(ValueError, match=message):
        node(**kw)
