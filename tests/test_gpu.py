"""The node tests on a CUDA UNet in fp16 and bf16 (skipped without CUDA).

Users patch CUDA models in half precision; every technique issue adds its node tests here.
"""

import os

import pytest
import torch

from harness import paths
from harness.inprocess import encode, noise_for, sample_sigmas, scheduler_sigmas
from stepwise.nodes.schedule import SplitSigmasAtTimestep

pytestmark = pytest.mark.gpu

DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


@pytest.fixture(scope="module", params=[(m, d) for m in (paths.TINY_SD15, paths.TINY_SDXL) for d in DTYPES])
def cuda_model(request, zoo):
    import comfy.model_management
    import comfy.sd
    from stepwise_zoo.tiny import register

    register()
    name, dtype = request.param
    if dtype == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bf16")
    model, clip, vae, _ = comfy.sd.load_checkpoint_guess_config(os.path.join(zoo, name),
                                                                model_options={"dtype": DTYPES[dtype]})
    assert model.load_device.type == "cuda" and model.model.get_dtype() == DTYPES[dtype]
    yield model, clip, vae, DTYPES[dtype]
    comfy.model_management.unload_all_models()


def test_text_to_image_on_cuda(cuda_model):
    model, clip, vae, _ = cuda_model
    latent = torch.zeros(1, 4, 16, 16)
    out = sample_sigmas(model, encode(clip, "a red circle"), encode(clip, ""), latent, noise_for(latent.shape, 0),
                        scheduler_sigmas(model, "karras", 6))
    image = vae.decode(out)
    assert torch.isfinite(out).all() and torch.isfinite(image).all() and image.std() > 0.01


def test_split_sigmas_two_stages_equal_one_run_on_cuda(cuda_model):
    model, clip, _, dtype = cuda_model
    pos, neg = encode(clip, "a blue square"), encode(clip, "")
    latent = torch.zeros(1, 4, 16, 16)
    noise = noise_for(latent.shape, 1)
    high, low, _ = SplitSigmasAtTimestep.execute(model=model, sigmas=scheduler_sigmas(model, "karras", 8),
                                                 timestep=300).result
    one = sample_sigmas(model, pos, neg, latent, noise, torch.cat([high, low[1:]]))
    two = sample_sigmas(model, pos, neg, sample_sigmas(model, pos, neg, latent, noise, high), torch.zeros_like(noise), low)
    tol = 2e-2 if dtype == torch.float16 else 5e-2
    torch.testing.assert_close(two, one, rtol=tol, atol=tol)
