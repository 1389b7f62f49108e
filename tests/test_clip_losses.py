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


def test_reconstruction_l1_is_on_the_authors_scale():
    """The authors' images are in [-1, 1], ours in [0, 1]: a pixel 0.25 off in ours is 0.5 off in theirs, so
    10·L1 of a uniform 0.25 difference is 5, not 2.5. The CLIP term is held at 0 (a constant embedding)."""
    style = torch.full((1, 8, 8, 3), 0.5)
    constant = lambda images: torch.ones(images.shape[0], 4)
    assert reconstruction_loss(constant, style + 0.25, style).item() == 5.0
    assert reconstruction_loss(constant, style + 0.25, style, l1_weight=1.0).item() == 0.5
