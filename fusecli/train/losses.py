"""Training losses of the two-stage multi-task semi-supervised framework (Eq. 2-10 of the paper).

Wang, Deng, Vivone, "A general image fusion framework using multi-task semi-supervised learning",
Information Fusion 2024, Section 3.2. Every image is a float (N, 1, H, W) tensor in [0, 1].

Conventions, chosen to match the public SwinFusion / PSLPT training code the paper refers to:

- ``||x||_1`` in the paper is the *mean* absolute error (``F.l1_loss``), so loss values do not
  depend on the crop size.
- SSIM (Wang et al., "Image quality assessment: from error visibility to structural similarity",
  IEEE TIP 2004) uses an 11x11 Gaussian window with sigma 1.5, K1 = 0.01, K2 = 0.03,
  data range 1, evaluated only where the window fits inside the image ("valid" convolution,
  no padding), then averaged over pixels and batch.
- The gradient operator of Eq. 9 is the 3x3 Sobel pair with replicated borders, and its magnitude is
  ``|gx| + |gy|`` (so a constant image has zero gradient everywhere, borders included).
- The unsupervised structural term of Eq. 7 is ``1 - (SSIM(f, a) + SSIM(f, b)) / 2`` as in
  SwinFusion (their ``0.5 (1 - SSIM(a, f)) + 0.5 (1 - SSIM(b, f))`` is the same number).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = [
    "LOSS_KEYS",
    "UNSUPERVISED_LOSS_KEYS",
    "LossWeights",
    "check_overrides",
    "exposure_loss",
    "gaussian_window",
    "intensity_loss",
    "mef_ssim",
    "reconstruction_loss",
    "sobel_magnitude",
    "ssim",
    "stage1_loss",
    "stage2_loss",
    "structural_loss",
    "supervised_task_loss",
    "texture_loss",
    "unsupervised_loss",
]


@dataclass(frozen=True)
class LossWeights:
    """The trade-off weights of Eq. 2-7, defaults from Section 4.1 of the paper.

    This is the ``loss:`` section of a training recipe: the field names are the recipe's keys. A
    stage (``stageN.loss``) and a pair folder (``data.unlabeled[i].loss``) may override some of
    them, see :meth:`with_overrides`.

    Attributes:
        mef_weight: lambda, weight of the MEF loss in Eq. 2.
        recon_weight: lambda_1, weight of the source reconstruction in Eq. 3-4.
        unsupervised_weight: beta, weight of the unsupervised loss in Eq. 5.
        unsupervised_recon_weight: beta_1, weight of the reconstruction in Eq. 6.
        intensity_weight: weight of the intensity loss in Eq. 7 (1 in the paper).
        texture_weight: beta_2, weight of the texture loss in Eq. 7.
        ssim_weight: beta_3, weight of the structural loss in Eq. 7.
        supervised_texture_weight: weight of the texture loss (Eq. 9, against the sources) added
            to the supervised MFF/MEF loss of Eq. 3-4. Not in the paper (0 there): the ground
            truth alone rewards edges as strong as the sharp original, while fusion is judged by
            how much of each source's edges survive (Qabf), which the texture loss measures.
        mff_l1_weight, mef_l1_weight: weight of ``|f - I|_1`` (fused against the ground truth)
            added to the supervised MFF / MEF loss. Not in the paper (0 there): SSIM barely
            notices an error of a grey level or two, while the information metrics (MI, NMI) of
            the fused image do. Per task because an MEF ground truth fixes a brightness that real
            brackets do not share: on MEFB the term cost Qabf, on MFF it raised Qabf, MI and NMI.
        mef_ssim_weight: weight of ``1 - MEF-SSIM(f; a, b)`` (:func:`mef_ssim`) added to the
            supervised MEF loss. Not in the paper (0 there): the simulated ground truth fixes one
            rendering of the scene, while a fusion of real brackets is judged by how well it
            keeps, window by window, the structure of the better exposed source (MEF-SSIM).
        mef_exposure_weight: weight of :func:`exposure_loss`, the L1 distance between the fused
            image and the ground truth averaged over blocks of :data:`EXPOSURE_BLOCK` pixels,
            added to the supervised MEF loss. Not in the paper (0 there): the ground truth
            decides how bright each region should come out, which the SSIM terms barely weigh
            (a region 40% too bright keeps 94% of SSIM's luminance factor), while detail is left
            to the texture and MEF-SSIM terms, unlike ``mef_l1_weight``, which pins it too.
    """

    mef_weight: float = 0.1
    recon_weight: float = 0.5
    unsupervised_weight: float = 0.1
    unsupervised_recon_weight: float = 1.25
    intensity_weight: float = 1.0
    texture_weight: float = 1.0
    ssim_weight: float = 0.5
    supervised_texture_weight: float = 0.0
    mff_l1_weight: float = 0.0
    mef_l1_weight: float = 0.0
    mef_ssim_weight: float = 0.0
    mef_exposure_weight: float = 0.0

    def __post_init__(self) -> None:
        # A negative weight would reward the error its term measures.
        negative = [f"{name}={value}" for name, value in vars(self).items() if value < 0]
        if negative:
            raise ValueError(f"loss weights must be >= 0, got {', '.join(negative)}")

    def with_overrides(self, overrides: Mapping[str, float]) -> LossWeights:
        """These weights with some replaced by name (a stage's or a pair folder's overrides).

        Raises:
            ValueError: an unknown name or a value that is not a number.
        """
        problems = check_overrides(overrides, LOSS_KEYS)
        if problems:
            raise ValueError("; ".join(problems))
        return dataclasses.replace(self, **{k: float(v) for k, v in overrides.items()})

    def supervised_options(self, task: str) -> dict[str, float]:
        """The weight keywords of :func:`supervised_task_loss` for ``task`` ("mff" or "mef")."""
        return {
            "recon_weight": self.recon_weight,
            "texture_weight": self.supervised_texture_weight,
            "l1_weight": self.mff_l1_weight if task == "mff" else self.mef_l1_weight,
            "mef_ssim_weight": self.mef_ssim_weight if task == "mef" else 0.0,
            "exposure_weight": self.mef_exposure_weight if task == "mef" else 0.0,
        }


LOSS_KEYS = frozenset(f.name for f in dataclasses.fields(LossWeights))

# The weights of the unsupervised IVF/MMF loss (Eq. 6-7), which a pair folder may set for itself.
UNSUPERVISED_LOSS_KEYS = frozenset(
    {"unsupervised_recon_weight", "intensity_weight", "texture_weight", "ssim_weight"}
)


def check_overrides(overrides: Mapping[str, object], known: frozenset[str]) -> list[str]:
    """Every problem of a mapping of loss-weight overrides: unknown names, values that are not
    numbers or are negative."""
    problems = []
    if set(overrides) - known:
        problems.append(
            f"loss has unknown keys {sorted(set(overrides) - known)} (known: {sorted(known)})"
        )
    for key, value in overrides.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            problems.append(f"loss.{key} must be a number, got {value!r}")
        elif value < 0:
            problems.append(f"loss.{key} must be >= 0, got {value!r}")
    return problems


def _check_image(name: str, x: torch.Tensor) -> None:
    if x.ndim != 4 or x.shape[1] != 1:
        raise ValueError(f"{name} must have shape (N, 1, H, W), got {tuple(x.shape)}")


def gaussian_window(
    size: int = 11, sigma: float = 1.5, *, dtype=torch.float32, device=None
) -> torch.Tensor:
    """Normalised 2-D Gaussian window.

    Args:
        size: side length (odd).
        sigma: standard deviation in pixels.

    Returns:
        (1, 1, size, size) tensor summing to 1.
    """
    coords = torch.arange(size, dtype=dtype, device=device) - (size - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).reshape(1, 1, size, size)


def ssim(
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    window_size: int = 11,
    sigma: float = 1.5,
    data_range: float = 1.0,
) -> torch.Tensor:
    """Mean structural similarity of two image batches (Wang et al. 2004), differentiable.

    Args:
        x: (N, 1, H, W) images, H and W >= window_size.
        y: (N, 1, H, W) images.
        window_size: side of the Gaussian window.
        sigma: its standard deviation.
        data_range: dynamic range of the pixel values.

    Returns:
        Scalar tensor: SSIM averaged over all valid window positions and the batch (1 if x == y).
    """
    _check_image("x", x)
    _check_image("y", y)
    if x.shape != y.shape:
        raise ValueError(
            f"x and y must have the same shape, got {tuple(x.shape)} and {tuple(y.shape)}"
        )
    if min(x.shape[-2:]) < window_size:
        raise ValueError(
            f"images must be at least {window_size} pixels high and wide, got {tuple(x.shape)}"
        )
    # SSIM's variances (E[x^2] - mu^2) cancel badly in half precision: use at least float32.
    if x.dtype in (torch.float16, torch.bfloat16):
        x, y = x.float(), y.float()
    w = gaussian_window(window_size, sigma, dtype=x.dtype, device=x.device)
    c1 = (0.01 * data_range) ** 2
    c2 = (0.03 * data_range) ** 2
    mu_x = F.conv2d(x, w)
    mu_y = F.conv2d(y, w)
    var_x = F.conv2d(x * x, w) - mu_x**2
    var_y = F.conv2d(y * y, w) - mu_y**2
    cov = F.conv2d(x * y, w) - mu_x * mu_y
    num = (2 * mu_x * mu_y + c1) * (2 * cov + c2)
    den = (mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2)
    return (num / den).mean()


def mef_ssim(
    fused: torch.Tensor,
    a: torch.Tensor,
    b: torch.Tensor,
    *,
    window_size: int = 11,
    sigma: float = 1.5,
    data_range: float = 1.0,
    contrast_power: float = 4.0,
) -> torch.Tensor:
    """Single-scale MEF-SSIM of a fusion of two exposures, differentiable.

    Ma, Zeng, Wang, "Perceptual quality assessment for multi-exposure image fusion", IEEE TIP
    2015. In every window the desired patch has the largest contrast of the sources and their
    structures averaged with weights ``contrast ** contrast_power`` (the better exposed source
    dominates); the score is SSIM's contrast-structure term between that patch and the fusion.
    Windows are Gaussian (as :func:`ssim`), so the value is close to, not equal to, the MATLAB
    metric's; training needs the gradient, the metrics package the exact number.

    Args:
        fused, a, b: (N, 1, H, W), H and W >= window_size.

    Returns:
        Scalar tensor: the score averaged over valid windows and the batch (1: ideal).
    """
    for name, x in (("fused", fused), ("a", a), ("b", b)):
        _check_image(name, x)
    if fused.dtype in (torch.float16, torch.bfloat16):
        fused, a, b = fused.float(), a.float(), b.float()
    w = gaussian_window(window_size, sigma, dtype=fused.dtype, device=fused.device)
    c2 = (0.03 * data_range) ** 2

    def mean(x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, w)

    mu_a, mu_b, mu_f = mean(a), mean(b), mean(fused)
    var_a = (mean(a * a) - mu_a**2).clamp_min(0)
    var_b = (mean(b * b) - mu_b**2).clamp_min(0)
    var_f = (mean(fused * fused) - mu_f**2).clamp_min(0)
    cov_ab = mean(a * b) - mu_a * mu_b
    cov_af = mean(a * fused) - mu_a * mu_f
    cov_bf = mean(b * fused) - mu_b * mu_f
    std_a, std_b = (var_a + 1e-12).sqrt(), (var_b + 1e-12).sqrt()
    # Structure weights: contrast ** p over the contrast that normalises each structure vector.
    u_a, u_b = std_a ** (contrast_power - 1), std_b ** (contrast_power - 1)
    # <s, f - mu_f> and |s| of the weighted structure s = u_a (a - mu_a) + u_b (b - mu_b).
    along = u_a * cov_af + u_b * cov_bf
    norm = (u_a**2 * var_a + 2 * u_a * u_b * cov_ab + u_b**2 * var_b).clamp_min(1e-12).sqrt()
    std_desired = torch.maximum(std_a, std_b)
    cov_desired = std_desired * along / norm
    score = (2 * cov_desired + c2) / (std_desired**2 + var_f + c2)
    return score.mean()


def sobel_magnitude(x: torch.Tensor) -> torch.Tensor:
    """Gradient magnitude ``|gx| + |gy|`` with 3x3 Sobel kernels and replicated borders.

    Args:
        x: (N, 1, H, W) images.

    Returns:
        (N, 1, H, W) non-negative gradient magnitudes.
    """
    _check_image("x", x)
    kx = torch.tensor(
        [[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], dtype=x.dtype, device=x.device
    )
    kernels = torch.stack([kx, kx.t()]).unsqueeze(1)  # (2, 1, 3, 3): d/dx, d/dy
    g = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), kernels)
    return g.abs().sum(dim=1, keepdim=True)


def reconstruction_loss(
    recon_a: torch.Tensor, recon_b: torch.Tensor, a: torch.Tensor, b: torch.Tensor
) -> torch.Tensor:
    """L1 reconstruction of both sources, ``|a^ - a|_1 + |b^ - b|_1`` (Eq. 3, 4 and 10).

    Args:
        recon_a, recon_b: (N, 1, H, W) reconstructed sources.
        a, b: (N, 1, H, W) sources.

    Returns:
        Scalar tensor.
    """
    return F.l1_loss(recon_a, a) + F.l1_loss(recon_b, b)


def intensity_loss(fused: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Eq. 8: L1 distance between the fused image and the element-wise maximum of the sources.

    Args:
        fused, a, b: (N, 1, H, W).

    Returns:
        Scalar tensor.
    """
    return F.l1_loss(fused, torch.maximum(a, b))


def texture_loss(fused: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Eq. 9: L1 distance between the fused gradient magnitude and the larger source magnitude.

    Args:
        fused, a, b: (N, 1, H, W).

    Returns:
        Scalar tensor.
    """
    target = torch.maximum(sobel_magnitude(a), sobel_magnitude(b))
    return F.l1_loss(sobel_magnitude(fused), target)


def structural_loss(fused: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Unsupervised structural term of Eq. 7: ``1 - (SSIM(f, a) + SSIM(f, b)) / 2``.

    Args:
        fused, a, b: (N, 1, H, W).

    Returns:
        Scalar tensor in [0, 2].
    """
    return 1 - (ssim(fused, a) + ssim(fused, b)) / 2


def supervised_task_loss(
    fused: torch.Tensor,
    recon_a: torch.Tensor,
    recon_b: torch.Tensor,
    target: torch.Tensor,
    a: torch.Tensor,
    b: torch.Tensor,
    *,
    recon_weight: float,
    texture_weight: float = 0.0,
    l1_weight: float = 0.0,
    mef_ssim_weight: float = 0.0,
    exposure_weight: float = 0.0,
) -> dict[str, torch.Tensor]:
    """Eq. 3 / Eq. 4: ``1 - SSIM(I, I^) + lambda_1 (|a^ - a|_1 + |b^ - b|_1)`` for MFF or MEF.

    With ``texture_weight`` > 0, ``texture_weight * L_text(f, a, b)`` (Eq. 9) is added; with
    ``l1_weight`` > 0, ``l1_weight * |f - I|_1``; with ``mef_ssim_weight`` > 0,
    ``mef_ssim_weight * (1 - MEF-SSIM(f; a, b))``; with ``exposure_weight`` > 0,
    ``exposure_weight * exposure_loss(f, I)``.

    Args:
        fused: (N, 1, H, W) network output.
        recon_a, recon_b: (N, 1, H, W) reconstructed sources.
        target: (N, 1, H, W) ground truth.
        a, b: (N, 1, H, W) sources.
        recon_weight: lambda_1.
        texture_weight: weight of the texture term (0: the paper's loss).
        l1_weight: weight of the L1 distance to the ground truth (0: the paper's loss).
        mef_ssim_weight: weight of the MEF-SSIM term (0: the paper's loss).
        exposure_weight: weight of :func:`exposure_loss` (0: the paper's loss).

    Returns:
        Dict with scalar tensors ``total``, ``ssim`` (the 1 - SSIM term) and ``recon``, plus
        ``texture``, ``l1``, ``mef_ssim`` and ``exposure`` when their weights are > 0.
    """
    fusion = 1 - ssim(target, fused)
    recon = reconstruction_loss(recon_a, recon_b, a, b)
    parts = {"total": fusion + recon_weight * recon, "ssim": fusion, "recon": recon}
    if texture_weight > 0:
        parts["texture"] = texture_loss(fused, a, b)
        parts["total"] = parts["total"] + texture_weight * parts["texture"]
    if l1_weight > 0:
        parts["l1"] = F.l1_loss(fused, target)
        parts["total"] = parts["total"] + l1_weight * parts["l1"]
    if mef_ssim_weight > 0:
        parts["mef_ssim"] = 1 - mef_ssim(fused, a, b)
        parts["total"] = parts["total"] + mef_ssim_weight * parts["mef_ssim"]
    if exposure_weight > 0:
        parts["exposure"] = exposure_loss(fused, target)
        parts["total"] = parts["total"] + exposure_weight * parts["exposure"]
    return parts


EXPOSURE_BLOCK = 8
"""Side of the blocks :func:`exposure_loss` compares: the training crops (128 pixels) become a
16x16 grid of local brightness, coarse enough to leave the detail inside a block free."""


def exposure_loss(fused: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference of block means: how far the fused image's brightness layout is
    from the ground truth's, ignoring detail finer than :data:`EXPOSURE_BLOCK` pixels.

    Args:
        fused, target: (N, 1, H, W); a side shorter than a block is averaged whole.

    Returns:
        Scalar tensor, 0 when every block has the ground truth's mean.
    """
    block = (min(EXPOSURE_BLOCK, fused.shape[-2]), min(EXPOSURE_BLOCK, fused.shape[-1]))
    return F.l1_loss(F.avg_pool2d(fused, block), F.avg_pool2d(target, block))


def unsupervised_loss(
    fused: torch.Tensor,
    recon_a: torch.Tensor,
    recon_b: torch.Tensor,
    a: torch.Tensor,
    b: torch.Tensor,
    *,
    weights: LossWeights,
) -> dict[str, torch.Tensor]:
    """Eq. 6-10: ``L_int + beta_2 L_text + beta_3 L_ssim + beta_1 L_recon`` for IVF / MMF.

    ``L_int`` is scaled by ``weights.intensity_weight`` (1 in the paper).

    Args:
        fused: (N, 1, H, W) network output.
        recon_a, recon_b: (N, 1, H, W) reconstructed sources.
        a, b: (N, 1, H, W) sources.
        weights: beta_1, beta_2, beta_3 and the intensity weight are read from it.

    Returns:
        Dict with scalar tensors ``total``, ``intensity``, ``texture``, ``ssim`` and ``recon``.
    """
    intensity = intensity_loss(fused, a, b)
    texture = texture_loss(fused, a, b)
    structure = structural_loss(fused, a, b)
    recon = reconstruction_loss(recon_a, recon_b, a, b)
    fuse = (
        weights.intensity_weight * intensity
        + weights.texture_weight * texture
        + weights.ssim_weight * structure
    )
    return {
        "total": fuse + weights.unsupervised_recon_weight * recon,
        "intensity": intensity,
        "texture": texture,
        "ssim": structure,
        "recon": recon,
    }


def stage1_loss(
    mff: dict[str, torch.Tensor], mef: dict[str, torch.Tensor], *, weights: LossWeights
) -> torch.Tensor:
    """Eq. 2: ``L_s1 = L_MFF + lambda L_MEF``.

    Args:
        mff, mef: outputs of :func:`supervised_task_loss` for each task.
        weights: lambda is ``weights.mef_weight``.

    Returns:
        Scalar tensor.
    """
    return mff["total"] + weights.mef_weight * mef["total"]


def stage2_loss(
    supervised: torch.Tensor, unsupervised: dict[str, torch.Tensor], *, weights: LossWeights
) -> torch.Tensor:
    """Eq. 5: ``L_s2 = L_super + beta L_unsuper``, where ``L_super`` is Eq. 2.

    Args:
        supervised: scalar from :func:`stage1_loss`.
        unsupervised: output of :func:`unsupervised_loss`.
        weights: beta is ``weights.unsupervised_weight``.

    Returns:
        Scalar tensor.
    """
    return supervised + weights.unsupervised_weight * unsupervised["total"]
