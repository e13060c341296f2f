"""Tests of the training losses (Eq. 2-10) on inputs whose values are known by hand."""

from __future__ import annotations

import pytest
import torch

from fusecli.train import losses as L
from fusecli.train.losses import LossWeights, mef_ssim, supervised_task_loss


def _const(value: float, n: int = 1, size: int = 16) -> torch.Tensor:
    return torch.full((n, 1, size, size), value)


def _ramp(step: float, size: int = 16) -> torch.Tensor:
    cols = torch.arange(size, dtype=torch.float32) * step
    return cols.expand(size, size).reshape(1, 1, size, size).clone()


def test_gaussian_window_sums_to_one_and_is_symmetric():
    w = L.gaussian_window(11, 1.5)
    assert w.shape == (1, 1, 11, 11)
    assert torch.isclose(w.sum(), torch.tensor(1.0))
    assert torch.allclose(w, w.flip(-1)) and torch.allclose(w, w.transpose(-1, -2))
    assert w[0, 0, 5, 5] == w.max()


def test_ssim_of_identical_images_is_one_and_loss_zero():
    x = torch.rand(2, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    assert torch.isclose(L.ssim(x, x), torch.tensor(1.0), atol=1e-6)
    parts = L.supervised_task_loss(x, x, x, x, x, x, recon_weight=0.5)
    assert parts["total"].item() == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize(
    ("option", "part", "expected"),
    [
        ("texture_weight", "texture", lambda f, gt, a, b: L.texture_loss(f, a, b)),
        ("l1_weight", "l1", lambda f, gt, a, b: (f - gt).abs().mean()),
        ("exposure_weight", "exposure", lambda f, gt, a, b: L.exposure_loss(f, gt)),
    ],
)
def test_optional_supervised_terms_are_off_by_default_and_add_weight_times_term(
    option, part, expected
):
    g = torch.Generator().manual_seed(1)
    f, ra, rb, gt, a, b = (torch.rand(2, 1, 24, 24, generator=g) for _ in range(6))
    plain = L.supervised_task_loss(f, ra, rb, gt, a, b, recon_weight=0.5)
    assert part not in plain
    extra = L.supervised_task_loss(f, ra, rb, gt, a, b, recon_weight=0.5, **{option: 0.3})
    term = expected(f, gt, a, b).item()
    assert extra[part].item() == pytest.approx(term, rel=1e-6)
    assert extra["total"].item() == pytest.approx(plain["total"].item() + 0.3 * term, rel=1e-6)


def test_l1_weights_apply_to_their_own_task_only():
    g = torch.Generator().manual_seed(3)
    f, ra, rb, gt, a, b = (torch.rand(1, 1, 24, 24, generator=g) for _ in range(6))
    weights = L.LossWeights(mff_l1_weight=4.0, mef_l1_weight=0.0)
    mff = L.supervised_task_loss(f, ra, rb, gt, a, b, **weights.supervised_options("mff"))
    mef = L.supervised_task_loss(f, ra, rb, gt, a, b, **weights.supervised_options("mef"))
    assert "l1" in mff and "l1" not in mef
    assert (mff["total"] - mef["total"]).item() == pytest.approx(4.0 * mff["l1"].item(), rel=1e-5)


def test_exposure_loss_sees_block_brightness_not_the_detail_inside_a_block():
    g = torch.Generator().manual_seed(4)
    target = torch.rand(2, 1, 32, 32, generator=g)
    # A checkerboard of +-0.1 has a zero mean over every 8x8 block.
    rows, cols = torch.meshgrid(torch.arange(32), torch.arange(32), indexing="ij")
    checker = ((rows + cols) % 2 * 2 - 1).float() * 0.1
    assert L.exposure_loss(target + checker, target).item() == pytest.approx(0.0, abs=1e-6)
    assert (target + checker - target).abs().mean().item() == pytest.approx(0.1, rel=1e-5)
    # A region made brighter by 0.3 over a quarter of the image: 0.3 / 4 on average.
    brighter = target.clone()
    brighter[..., :16, :16] += 0.3
    assert L.exposure_loss(brighter, target).item() == pytest.approx(0.075, rel=1e-5)


def test_exposure_weight_applies_to_mef_only():
    g = torch.Generator().manual_seed(5)
    f, ra, rb, gt, a, b = (torch.rand(1, 1, 24, 24, generator=g) for _ in range(6))
    weights = L.LossWeights(mef_exposure_weight=2.0)
    mff = L.supervised_task_loss(f, ra, rb, gt, a, b, **weights.supervised_options("mff"))
    mef = L.supervised_task_loss(f, ra, rb, gt, a, b, **weights.supervised_options("mef"))
    assert "exposure" in mef and "exposure" not in mff
    assert (mef["total"] - mff["total"]).item() == pytest.approx(
        2.0 * mef["exposure"].item(), rel=1e-5
    )


def test_ssim_of_constant_images_matches_closed_form():
    # Constant images have zero variance and covariance, so SSIM = (2ab + C1) / (a^2 + b^2 + C1).
    a, b = 0.2, 0.7
    c1 = 0.01**2
    expected = (2 * a * b + c1) / (a * a + b * b + c1)
    # float64: in float32, E[x^2] - mu^2 cancels to ~1e-7, a 1e-4 relative error against C2.
    got = L.ssim(_const(a).double(), _const(b).double()).item()
    assert got == pytest.approx(expected, rel=1e-6)


def test_ssim_rejects_small_or_mismatched_images():
    with pytest.raises(ValueError, match="at least 11"):
        L.ssim(_const(0.1, size=8), _const(0.1, size=8))
    with pytest.raises(ValueError, match="same shape"):
        L.ssim(_const(0.1, size=16), _const(0.1, size=12))
    with pytest.raises(ValueError, match=r"\(N, 1, H, W\)"):
        L.ssim(torch.zeros(1, 3, 16, 16), torch.zeros(1, 3, 16, 16))


def test_sobel_magnitude_of_ramp_is_known():
    # Horizontal ramp x[i, j] = j * s: interior gx = (1 + 2 + 1) * 2s = 8s, gy = 0; with
    # replicated borders the first and last columns see a one-sided difference, 4s.
    s = 0.01
    g = L.sobel_magnitude(_ramp(s))
    assert torch.allclose(g[..., 1:-1], torch.full_like(g[..., 1:-1], 8 * s))
    assert torch.allclose(g[..., 0], torch.full_like(g[..., 0], 4 * s))
    assert torch.allclose(g[..., -1], torch.full_like(g[..., -1], 4 * s))
    assert torch.count_nonzero(L.sobel_magnitude(_const(0.3))) == 0


def test_intensity_loss_against_elementwise_max():
    a = torch.tensor([[0.0, 1.0], [0.5, 0.2]]).reshape(1, 1, 2, 2)
    b = torch.tensor([[1.0, 0.0], [0.25, 0.4]]).reshape(1, 1, 2, 2)
    f = torch.full((1, 1, 2, 2), 0.5)
    # max = [[1, 1], [0.5, 0.4]] -> |f - max| = [0.5, 0.5, 0, 0.1], mean 0.275
    assert L.intensity_loss(f, a, b).item() == pytest.approx(0.275)
    assert L.intensity_loss(torch.maximum(a, b), a, b).item() == 0.0


def test_texture_loss_of_flat_fusion_is_mean_source_gradient():
    ramp = _ramp(0.01)
    flat = _const(0.5)
    expected = L.sobel_magnitude(ramp).mean().item()  # (14 * 8s + 2 * 4s) / 16 = 7.5s
    assert expected == pytest.approx(0.075)
    assert L.texture_loss(flat, ramp, flat).item() == pytest.approx(expected)
    assert L.texture_loss(ramp, ramp, flat).item() == pytest.approx(0.0)


def test_structural_loss_averages_both_sources():
    x = torch.rand(1, 1, 24, 24, generator=torch.Generator().manual_seed(1))
    other = _const(0.4, size=24)
    expected = 1 - (1 + L.ssim(x, other).item()) / 2
    assert L.structural_loss(x, x, other).item() == pytest.approx(expected, rel=1e-5)
    assert L.structural_loss(x, x, x).item() == pytest.approx(0.0, abs=1e-6)


def test_reconstruction_loss_is_sum_of_mean_absolute_errors():
    a, b = _const(0.0), _const(1.0)
    assert L.reconstruction_loss(_const(0.25), _const(0.5), a, b).item() == pytest.approx(0.75)


def test_unsupervised_loss_combines_terms_with_weights():
    w = L.LossWeights(
        intensity_weight=0.5, texture_weight=2.0, ssim_weight=3.0, unsupervised_recon_weight=4.0
    )
    a, b = _ramp(0.01), _const(0.2)
    f = _const(0.5)
    parts = L.unsupervised_loss(f, a + 0.1, b, a, b, weights=w)
    expected = (
        0.5 * parts["intensity"]
        + 2.0 * parts["texture"]
        + 3.0 * parts["ssim"]
        + 4.0 * parts["recon"]
    )
    assert torch.isclose(parts["total"], expected)
    assert parts["recon"].item() == pytest.approx(0.1, rel=1e-5)


def test_stage_losses_follow_eq2_and_eq5():
    w = L.LossWeights()
    mff = {"total": torch.tensor(1.0)}
    mef = {"total": torch.tensor(2.0)}
    s1 = L.stage1_loss(mff, mef, weights=w)
    assert s1.item() == pytest.approx(1.0 + 0.1 * 2.0)
    s2 = L.stage2_loss(s1, {"total": torch.tensor(3.0)}, weights=w)
    assert s2.item() == pytest.approx(1.2 + 0.1 * 3.0)


def test_paper_weights_are_the_defaults():
    w = L.LossWeights()
    weights = (w.mef_weight, w.recon_weight, w.unsupervised_weight, w.unsupervised_recon_weight)
    assert (*weights, w.texture_weight, w.ssim_weight) == (
        0.1,
        0.5,
        0.1,
        1.25,
        1.0,
        0.5,
    )


def test_losses_give_gradients():
    f = torch.rand(1, 1, 16, 16, requires_grad=True)
    a, b = torch.rand(1, 1, 16, 16), torch.rand(1, 1, 16, 16)
    L.unsupervised_loss(f, a, b, a, b, weights=L.LossWeights())["total"].backward()
    assert f.grad is not None and torch.isfinite(f.grad).all() and f.grad.abs().sum() > 0


def test_mef_ssim_is_one_for_the_ideal_fusion_and_prefers_the_better_exposure():
    torch.manual_seed(0)
    scene = torch.rand(2, 1, 32, 32)
    flat = torch.full_like(scene, 0.9)  # a clipped over-exposure: no structure at all
    assert float(mef_ssim(scene, scene, scene)) == pytest.approx(1.0, abs=1e-5)
    # Against a structureless source the desired patch is the other source's: SSIM's
    # contrast-structure term with it.
    assert float(mef_ssim(scene, scene, flat)) == pytest.approx(1.0, abs=1e-5)
    assert float(mef_ssim(scene * 0.5 + 0.45, scene, flat)) < 1.0
    # Averaging in the flat source halves the contrast; a fusion keeping it scores higher.
    halved = 0.5 * (scene + flat)
    assert float(mef_ssim(halved, scene, flat)) < float(mef_ssim(scene, scene, flat))
    blank = torch.zeros(1, 1, 16, 16, requires_grad=True)
    score = mef_ssim(blank, torch.zeros(1, 1, 16, 16), torch.zeros(1, 1, 16, 16))
    score.backward()
    assert torch.isfinite(blank.grad).all()


def test_supervised_mef_ssim_term_is_added_for_mef_only():
    torch.manual_seed(1)
    fused, ra, rb, gt, a, b = (torch.rand(1, 1, 24, 24) for _ in range(6))
    plain = supervised_task_loss(fused, ra, rb, gt, a, b, recon_weight=0.5)
    weights = LossWeights(mef_ssim_weight=2.0)
    mef = supervised_task_loss(fused, ra, rb, gt, a, b, **weights.supervised_options("mef"))
    mff = supervised_task_loss(fused, ra, rb, gt, a, b, **weights.supervised_options("mff"))
    assert "mef_ssim" not in mff and torch.isclose(mff["total"], plain["total"])
    expected = plain["total"] + 2.0 * (1 - mef_ssim(fused, a, b))
    assert torch.isclose(mef["total"], expected)


def test_overrides_replace_weights_by_their_recipe_names():
    w = L.LossWeights().with_overrides({"ssim_weight": 40, "intensity_weight": 0.5})
    assert (w.ssim_weight, w.intensity_weight, w.texture_weight) == (40.0, 0.5, 1.0)
    assert isinstance(w.ssim_weight, float)
    with pytest.raises(ValueError, match=r"unknown keys.*ssim.*; loss.mef_weight must be a number"):
        L.LossWeights().with_overrides({"ssim": 1.0, "mef_weight": "high"})
