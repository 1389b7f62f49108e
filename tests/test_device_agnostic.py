"""Core math builds no tensor on a fixed device: every function here runs on `meta` tensors.

A tensor made without `device=` lands on the CPU; meeting a GPU tensor it crashes ("Expected all tensors to be on
the same device"), as the OSASIS trainer did on its first CUDA iteration. On the meta device the same mistake
fails on the CPU: "Tensor on device cpu is not on the expected device meta!".
"""
import torch

from core.osasis.losses import cross_domain_loss, in_domain_loss, reconstruction_loss
from core.sampling.ddim import ddim_decode, ddim_invert, eps_from_x0, sub_schedule
from core.data.image_preprocess import Preprocess, preprocess
from core.osasis.decode import osasis_decode
from core.osasis.spn import StructurePreservingNetwork

META = torch.device("meta")


def test_preprocess_runs_on_the_images_device():
    spec = Preprocess(size=8, mean=(0.48, 0.46, 0.41), std=(0.27, 0.26, 0.28))
    out = preprocess(torch.empty(2, 16, 12, 3, device=META), spec)
    assert out.device == META and out.shape == (2, 3, 8, 8)


def test_clip_losses_run_on_the_images_device():
    encode = torch.nn.Linear(3 * 4 * 4, 5).to(META)

    def embed(images):
        return encode(images.flatten(1))
    images = [torch.empty(2, 4, 4, 3, device=META) for _ in range(4)]
    for loss in (cross_domain_loss(embed, *images), in_domain_loss(embed, *images),
                 reconstruction_loss(embed, images[0], images[1])):
        assert loss.device == META


def test_ddim_and_the_osasis_decode_run_on_the_latents_device():
    sigmas = sub_schedule(torch.linspace(10.0, 0.0, 9), 0.5)
    spn = StructurePreservingNetwork(latent_channels=4, width=8, time_dim=16, groups=4).to(META)
    x = torch.empty(1, 4, 8, 8, device=META)

    def eps(latent, sigma):
        return eps_from_x0(latent, latent * 0.5, sigma.to(latent).expand(latent.shape[0]))
    assert ddim_invert(x, sigmas, eps, iterations=0).device == META   # refining reads values: not on meta
    assert ddim_decode(x, sigmas, eps).device == META
    timesteps = torch.arange(len(sigmas), dtype=torch.float32, device=META)
    assert osasis_decode(x, sigmas, eps, spn, x, timesteps, 0.1).device == META
