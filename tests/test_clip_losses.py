"""OSASIS CLIP losses: zero where the directions agree, positive where they do not, differentiable."""
import torch

from core.osasis.losses import cross_domain_loss, in_domain_loss, reconstruction_loss


def identity(images):
    return images.flatten(1)


def test_directional_losses_measure_agreement_of_edit_directions():
    torch.manual_seed(0)
    content, style_photo = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8)
    shift = torch.rand(2, 3, 8, 8)
    style = style_photo + shift
    aligned = content + shift           # the content moved exactly as the style image moved
    opposed = content - shift
    assert cross_domain_loss(identity, aligned, content, style, style_photo) < 1e-5
    assert abs(cross_domain_loss(identity, opposed, content, style, style_photo).item() - 2.0) < 1e-5
    assert in_domain_loss(identity, aligned, content, style, style_photo) < 1e-5
    assert in_domain_loss(identity, opposed, content, style, style_photo) > 0.1


def test_reconstruction_is_zero_at_the_target_and_every_term_is_differentiable():
    torch.manual_seed(0)
    style = torch.rand(1, 3, 8, 8)
    # zero up to float32 rounding of 1 - cos, which the loss weighs by 30
    assert reconstruction_loss(identity, style.clone(), style) < 1e-4
    assert reconstruction_loss(identity, style + 0.1, style) > 0.5
    lpips = lambda a, b: (a - b).abs().mean(dim=(1, 2, 3))
    assert reconstruction_loss(identity, style + 0.1, style, lpips) > reconstruction_loss(identity, style + 0.1, style)
    for term in (lambda out: cross_domain_loss(identity, out, torch.rand(1, 3, 8, 8), style, torch.rand(1, 3, 8, 8)),
                 lambda out: in_domain_loss(identity, out, torch.rand(1, 3, 8, 8), style, torch.rand(1, 3, 8, 8)),
                 lambda out: reconstruction_loss(identity, out, style, lpips)):
        output = torch.rand(1, 3, 8, 8, requires_grad=True)
        term(output).backward()
        assert output.grad is not None and output.grad.abs().sum() > 0
