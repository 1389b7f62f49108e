"""Exact DDIM inversion (OSASIS structural code) on the real tiny SD1.5 model through ComfyUI."""
import pytest
import torch

from core.sampling.ddim import ddim_decode, ddim_invert, sub_schedule
from devkit.example_inputs import content_image


@pytest.fixture(scope="module")
def model_eps(tiny_checkpoint):
    import numpy as np
    import comfy.samplers
    from comfy_adapter.diffusion import ComfyDiffusion
    diffusion = ComfyDiffusion(tiny_checkpoint("sd15"), torch.device("cpu"))
    image = torch.from_numpy(np.asarray(content_image(64), dtype=np.float32) / 255.0)[None]
    # A real SD latent has unit scale after process_in; the random TAESD's is about 0.03, so it would
    # measure errors against a vanishing norm. Use a seeded unit-scale latent of the image's shape.
    latent = torch.randn(diffusion.encode_images(image).shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        cond, pooled = diffusion.encode_prompt("a tower under a blue sky")
        inputs = diffusion.model_inputs(cond, pooled, latent)

    def eps(x, sigma):
        with torch.no_grad():
            return (x - diffusion.unet.apply_model(x, sigma, **inputs)) / sigma.view(-1, 1, 1, 1)

    sigmas = comfy.samplers.calculate_sigmas(diffusion.unet.model_sampling, "normal", 50)
    return latent, eps, sigmas


def relative_error(a, b):
    return ((a - b).norm() / b.norm()).item()


def test_exact_inversion_reconstructs_what_plain_ddim_cannot(model_eps):
    latent, eps, sigmas = model_eps
    schedule = sub_schedule(sigmas, 0.5)
    assert len(schedule) == 26 and schedule[-1] == 0
    steps_seen = []
    exact = ddim_invert(latent, schedule, eps, iterations=3, callback=lambda i, n: steps_seen.append(i))
    plain = ddim_invert(latent, schedule, eps, iterations=0)
    exact_error = relative_error(ddim_decode(exact, schedule, eps), latent)
    plain_error = relative_error(ddim_decode(plain, schedule, eps), latent)
    assert steps_seen == list(range(25))
    assert exact_error <= 1e-3, exact_error
    assert plain_error > 10 * exact_error, (plain_error, exact_error)
    assert relative_error(exact, latent) > 0.5, "x_t0 must be a noisy code, not the input"


def test_schedule_and_iteration_bounds_name_the_problem():
    with pytest.raises(ValueError, match=r"t0 must be in \(0, 1\]"):
        sub_schedule(torch.linspace(1, 0, 11), 0.0)
    with pytest.raises(ValueError, match="iterations must be >= 0"):
        ddim_invert(torch.zeros(1), torch.tensor([1.0, 0.0]), lambda x, s: x, iterations=-1)
