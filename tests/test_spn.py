"""The OSASIS structure-preserving network: per-pixel, time-conditioned, silent until trained."""
import torch

from core.osasis.spn import StructurePreservingNetwork


def test_untrained_spn_adds_nothing_and_trained_spn_never_moves_pixels():
    torch.manual_seed(0)
    spn = StructurePreservingNetwork()
    x, t = torch.randn(2, 4, 8, 8), torch.tensor([10.0, 500.0])
    assert torch.equal(spn(x, t), torch.zeros_like(x))
    torch.nn.init.normal_(spn.conv_out.weight, std=0.1)
    out = spn(x, t)
    assert out.shape == x.shape and out.abs().max() > 0
    permutation = torch.randperm(64)
    shuffled = x.flatten(2)[..., permutation].view_as(x)
    assert torch.allclose(spn(shuffled, t), out.flatten(2)[..., permutation].view_as(out), atol=1e-6)
    assert not torch.allclose(spn(x, torch.tensor([10.0, 10.0]))[1], out[1]), "the timestep must matter"
