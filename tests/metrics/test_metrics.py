"""Fusion metrics: VIFB oracle agreement, closed forms against literal loops, API behaviour."""

from __future__ import annotations

import json
import math
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch

from fusecli.errors import FuseError
from fusecli.metrics import (
    DEFAULT_METRICS,
    METRICS,
    REFERENCE_METRICS,
    average_gradient,
    chen_blum_quality,
    chen_varshney_quality,
    compute_metrics,
    compute_metrics_many,
    cross_entropy,
    edge_intensity,
    edge_transfer_quality,
    entropy,
    feature_mutual_information,
    fusion_artifacts,
    fusion_peak_signal_noise_ratio,
    fusion_root_mean_square_error,
    fusion_structural_similarity,
    mef_structural_similarity,
    multiscale_structural_similarity,
    mutual_information,
    normalized_mutual_information,
    peak_signal_noise_ratio,
    sobel_edges,
    spatial_frequency,
    standard_deviation,
    structural_similarity,
)
from fusecli.metrics._cache import forget, memoised, shared_intermediates
from fusecli.metrics._matlab import (
    RGB2GRAY_WEIGHTS,
    block_sums,
    downsample_by_two,
    matlab_round,
    rgb_to_gray,
)
from fusecli.metrics.structural import _mef_reference, _mef_ssim_single_scale

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
ORACLE = DATA / "metrics-oracle" / "vifb"

# VIFB metric file names -> our printed names.
VIFB_NAMES = {
    "Avg_gradient": "AG",
    "Cross_entropy": "CE",
    "Edge_intensity": "EI",
    "Entropy": "EN",
    "Mutinf": "MI",
    "Psnr": "PSNR",
    "Qabf": "Qabf",
    "Qcb": "Qcb",
    "Qcv": "Qcv",
    "Rmse": "RMSE",
    "Spatial_frequency": "SF",
    "Ssim": "SSIM",
    "Variance": "SD",
}
# The published JPEGs of these two methods (added to VIFB later) are not the files VIFB
# evaluated: even metrics of the fused image alone (EN, SD, AG, EI) disagree beyond the
# stored 5 digits, see test_vifb_divergent_methods_differ_in_fused_image_only_metrics.
DIVERGENT_METHODS = ("SwinFusion", "YDTR")
# ... and for these cases the difference exceeds 1%: cross entropy, a KL divergence between
# 256-bin histograms, amplifies small changes of the fused image's histogram.
DIVERGENT_CASES = [
    ("carWhite", "SwinFusion", "Cross_entropy"),
    ("carWhite", "YDTR", "Cross_entropy"),
]


def _read_matlab(path: Path) -> np.ndarray:
    """Like MATLAB imread of an 8-bit JPEG: (C, H, W) uint8, three channels kept."""
    import imageio.v3 as iio

    return np.moveaxis(np.asarray(iio.imread(path)), -1, 0)


@pytest.fixture(scope="module")
def oracle() -> list[tuple[str, str, str, float, float]]:
    """(image, method, VIFB metric, VIFB value, our value) for every published value."""
    if not ORACLE.is_dir():
        pytest.skip(f"metric oracle not found at {ORACLE}")
    published = json.loads((ORACLE / "values.json").read_text())

    def evaluate(image: str) -> list[dict[str, float]]:
        methods = published[image]
        visible = _read_matlab(ORACLE / "vi" / f"{image}.jpg")
        infrared = _read_matlab(ORACLE / "ir" / f"{image}.jpg")
        fused = [_read_matlab(ORACLE / "fused" / f"{image}_{method}.jpg") for method in methods]
        # VIFB calls metric(visible, infrared, fused).
        return compute_metrics_many(visible, infrared, fused, names=list(VIFB_NAMES.values()))

    images = [image for image in published if not image.startswith("_")]
    # Two threads: numpy releases the GIL in its loops, so this halves the wall time.
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = dict(zip(images, pool.map(evaluate, images), strict=True))
    rows = []
    for image in images:
        for (method, values), ours in zip(published[image].items(), results[image], strict=True):
            for vifb_name, value in values.items():
                rows.append((image, method, vifb_name, value, ours[VIFB_NAMES[vifb_name]]))
    return rows


def _relative(ours: float, theirs: float) -> float:
    return abs(ours - theirs) / abs(theirs)


@pytest.mark.data
@pytest.mark.parametrize("vifb_name", list(VIFB_NAMES))
def test_vifb_oracle_within_one_percent(oracle, vifb_name: str) -> None:
    rows = [row for row in oracle if row[2] == vifb_name and row[:3] not in DIVERGENT_CASES]
    failures = [
        f"{image}/{method}: VIFB {value}, ours {ours:.6g}"
        for image, method, _, value, ours in rows
        if _relative(ours, value) > 0.01
    ]
    assert len(rows) == 125 - sum(1 for case in DIVERGENT_CASES if case[2] == vifb_name)
    assert not failures, "\n".join(failures)


@pytest.mark.data
@pytest.mark.parametrize(
    "case",
    [
        pytest.param(
            case,
            marks=pytest.mark.xfail(
                strict=True,
                reason="published fused JPEG differs from the file VIFB evaluated (see "
                "DIVERGENT_METHODS); CE amplifies the histogram change beyond 1%",
            ),
        )
        for case in DIVERGENT_CASES
    ],
    ids=["-".join(case) for case in DIVERGENT_CASES],
)
def test_vifb_oracle_divergent_cases(oracle, case: tuple[str, str, str]) -> None:
    (ours, value) = next((row[4], row[3]) for row in oracle if row[:3] == case)
    assert _relative(ours, value) <= 0.01


@pytest.mark.data
def test_vifb_oracle_exact_for_the_evaluated_files(oracle) -> None:
    # Where the published file is the evaluated one, agreement is at the 5 stored digits.
    worst = max(
        (_relative(ours, value), image, method, name)
        for image, method, name, value, ours in oracle
        if method not in DIVERGENT_METHODS
    )
    assert worst[0] < 1e-4, worst


@pytest.mark.data
def test_vifb_divergent_methods_differ_in_fused_image_only_metrics(oracle) -> None:
    # EN and SD depend on the fused image alone: if they disagree, the pixels differ.
    fused_only = ("Entropy", "Variance")
    for method in DIVERGENT_METHODS:
        errors = [
            _relative(ours, value)
            for image, m, name, value, ours in oracle
            if m == method and name in fused_only
        ]
        assert max(errors) > 3e-4, method


# --- MATLAB primitives ---------------------------------------------------------------------


def test_matlab_round_is_half_away_from_zero() -> None:
    x = np.array([0.5, 1.5, 2.5, -0.5, -2.5, 0.49999999999999994, 254.5, 3.4999999999999996])
    np.testing.assert_array_equal(matlab_round(x), [1, 2, 3, -1, -3, 0, 255, 3])


def test_rgb_to_gray_uses_matlab_coefficients_and_rounds() -> None:
    np.testing.assert_allclose(
        RGB2GRAY_WEIGHTS, [0.298936021293775, 0.587043074451121, 0.114020904255103], atol=1e-15
    )
    rgb = np.array([[[10.0]], [[200.0]], [[255.0]]])
    expected = round(10 * 0.298936021293775 + 200 * 0.587043074451121 + 255 * 0.114020904255103)
    assert rgb_to_gray(rgb)[0, 0] == expected


def test_shared_intermediates_are_reused_and_forgotten() -> None:
    calls = []
    plane = np.zeros((2, 2))

    def compute(x: np.ndarray) -> int:
        calls.append(1)
        return len(calls)

    assert memoised("k", compute, plane) == 1 and memoised("k", compute, plane) == 2
    with shared_intermediates():
        assert memoised("k", compute, plane) == 3 and memoised("k", compute, plane) == 3
        forget([plane])
        assert memoised("k", compute, plane) == 4


def test_downsample_and_block_sums_match_loops(rng: np.random.Generator) -> None:
    x = rng.integers(0, 256, (7, 9)).astype(float)
    padded = np.pad(x, ((0, 1), (0, 1)), mode="symmetric")  # MATLAB 'symmetric' at the far edge
    expected = np.array(
        [[padded[i : i + 2, j : j + 2].mean() for j in range(0, 9, 2)] for i in range(0, 7, 2)]
    )
    np.testing.assert_array_equal(downsample_by_two(x), expected)
    sums = block_sums(x, 4)
    assert sums.shape == (2, 3)
    assert sums[1, 2] == x[4:, 8:].sum() and sums.sum() == x.sum()


# --- metric definitions on small images ----------------------------------------------------


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(6)


@pytest.fixture
def scene(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two 64x64 smooth-plus-noise 8-bit sources and their average as the fused image."""
    y, x = np.mgrid[0:64, 0:64]
    a = np.clip(120 + 80 * np.sin(x / 6.0) + rng.normal(0, 8, (64, 64)), 0, 255).round()
    b = np.clip(100 + 90 * np.cos(y / 9.0) + rng.normal(0, 8, (64, 64)), 0, 255).round()
    return a, b, ((a + b) / 2).round()


def test_entropy_of_known_histograms() -> None:
    assert entropy(np.arange(256.0).reshape(16, 16)) == pytest.approx(8.0)
    assert entropy(np.full((8, 8), 7.0)) == 0.0


def test_identical_images_give_the_ideal_values(scene) -> None:
    a, _, _ = scene
    assert structural_similarity(a, a, data_range=255.0) == pytest.approx(1.0)
    assert fusion_structural_similarity(a, a, a) == pytest.approx(2.0)
    assert cross_entropy(a, a, a) == 0.0
    assert normalized_mutual_information(a, a, a) == pytest.approx(2.0)
    assert feature_mutual_information(a, a, a) == 1.0
    assert chen_blum_quality(a, a, a) == pytest.approx(1.0)
    assert chen_varshney_quality(a, a, a) == 0.0
    assert fusion_artifacts(a, a, a) == 0.0
    assert fusion_root_mean_square_error(a, a, a) == 0.0
    assert math.isinf(peak_signal_noise_ratio(a, a, data_range=255.0))


def test_qabf_of_identical_images_follows_vifb_equal_strength_rule(scene) -> None:
    # VIFB sets the strength ratio to gF (>= 255 here, not 1) where gA == gF, so the
    # strength sigmoid saturates at Tg and only the orientation term remains.
    a, _, _ = scene
    expected = 0.9994 * 0.9879 / (1 + math.exp(-22 * 0.2))
    assert edge_transfer_quality(a, a, a) == pytest.approx(expected, rel=1e-9)


def test_mutual_information_is_in_nats(scene) -> None:
    a, b, _ = scene
    levels = np.arange(256.0).reshape(16, 16)  # already spans 0..255: binning is identity
    assert mutual_information(levels, levels, levels) == pytest.approx(2 * math.log(256))
    assert mutual_information(a, b, a) > mutual_information(a, b, b * 0 + a.mean().round())


def test_error_metrics_follow_vifb_formulas() -> None:
    a = np.zeros((4, 5))
    b = np.full((4, 5), 2.0)
    f = np.ones((4, 5))
    error = math.sqrt(20.0) / 20.0  # VIFB: sqrt(sum of squares) / pixel count
    assert fusion_root_mean_square_error(a, b, f) == pytest.approx(error)
    assert fusion_peak_signal_noise_ratio(a, b, f) == pytest.approx(
        20 * math.log10(255 / math.sqrt(error))
    )
    assert peak_signal_noise_ratio(a, f, data_range=255.0) == pytest.approx(10 * math.log10(255**2))


def test_gradient_statistics_on_hand_computed_images() -> None:
    ramp = np.tile(np.arange(5.0) * 3, (4, 1))  # +3 per column
    assert spatial_frequency(ramp) == pytest.approx(math.sqrt(4 * 4 * 9 / 20))
    # gradient() is 3 everywhere along x, 0 along y: sqrt(9 / 2) per pixel over (H-1)(W-1).
    assert average_gradient(ramp) == pytest.approx(20 * math.sqrt(4.5) / 12)
    assert standard_deviation(ramp) == pytest.approx(np.arange(5.0).std() * 3)
    assert edge_intensity(np.full((6, 6), 9.0)) == 0.0


def test_nabf_counts_edges_stronger_than_both_sources(scene) -> None:
    a, b, f = scene
    assert fusion_artifacts(a, b, f) < fusion_artifacts(a, b, np.clip(2 * f - 128, 0, 255))


def test_ms_ssim_decreases_with_noise_and_needs_161_pixels(rng: np.random.Generator) -> None:
    y, x = np.mgrid[0:180, 0:180]
    clean = 128 + 60 * np.sin(x / 7.0) * np.cos(y / 11.0)
    noisy = clean + rng.normal(0, 20, clean.shape)
    assert multiscale_structural_similarity(clean, clean, data_range=255.0) == pytest.approx(1.0)
    value = multiscale_structural_similarity(clean, noisy, data_range=255.0)
    assert 0.5 < value < 1.0
    # Five scales: 161 -> 81 -> 41 -> 21 -> 11 still holds one 11x11 window; 160 does not.
    multiscale_structural_similarity(clean[:161], noisy[:161], data_range=255.0)
    with pytest.raises(FuseError, match="MS_SSIM needs images of at least 161x161"):
        multiscale_structural_similarity(clean[:160], noisy[:160], data_range=255.0)


def _sobel_edges_loop(image: np.ndarray) -> np.ndarray:
    """MATLAB edge(I) transcribed pixel by pixel (Sobel/8, replicate, 4 mean threshold, thin)."""
    p = np.pad(image, 1, mode="edge")
    h, w = image.shape
    bx = np.zeros((h, w))
    by = np.zeros((h, w))
    mask = np.array([[1, 2, 1], [0, 0, 0], [-1, -2, -1]]) / 8
    for r in range(h):
        for c in range(w):
            window = p[r : r + 3, c : c + 3]
            bx[r, c] = (window * mask.T).sum()
            by[r, c] = (window * mask).sum()
    b = bx**2 + by**2
    cutoff = 4 * b.mean()
    e = np.zeros((h, w), dtype=bool)
    tol = 100 * np.finfo(float).eps
    for r in range(h):
        for c in range(w):
            b1 = c == 0 or b[r, c - 1] <= b[r, c]
            b2 = c == w - 1 or b[r, c] > b[r, c + 1]
            b3 = r == 0 or b[r - 1, c] <= b[r, c]
            b4 = r == h - 1 or b[r, c] > b[r + 1, c]
            ax, ay = abs(bx[r, c]), abs(by[r, c])
            e[r, c] = b[r, c] > cutoff and (
                (ax >= ay - tol and b1 and b2) or (ay >= ax - tol and b3 and b4)
            )
    return e


def test_sobel_edges_match_matlab_edge_transcription(scene) -> None:
    a, _, f = scene
    for image in (a[:24, :30], f[10:40, 5:25]):
        np.testing.assert_array_equal(sobel_edges(image), _sobel_edges_loop(image))


def _fmi_window(s: np.ndarray, f: np.ndarray) -> float:
    """One window of MEFB's fast FMI transcribed loop by loop (inputs: 3x3 feature windows)."""
    if (s == f).all():
        return 1.0

    def pdf(x: np.ndarray) -> np.ndarray:
        x = np.ones(9) if x.max() == x.min() else (x - x.min()) / (x.max() - x.min())
        x = x.flatten(order="F")
        return x / x.sum()

    ps, pf = pdf(s), pdf(f)
    cs, cf = np.cumsum(ps), np.cumsum(pf)
    ds, df = ps - ps.mean(), pf - pf.mean()
    c = 0.0 if (ds * df).sum() == 0 else (ds * df).sum() / math.sqrt((ds**2).sum() * (df**2).sum())
    i = np.arange(1, 10)
    sd_s = math.sqrt(max((i**2 * ps).sum() - (i * ps).sum() ** 2, 0))
    sd_f = math.sqrt(max((i**2 * pf).sum() - (i * pf).sum() ** 2, 0))

    def bound(u: float, v: float) -> float:
        # Frechet upper bound for positive correlation, lower bound for negative.
        return min(u, v) if c >= 0 else max(u + v - 1, 0.0)

    cov = sum(bound(cf[m], cs[n]) - cf[m] * cs[n] for m in range(9) for n in range(9))
    mix = 0.0 if (sd_s == 0 or sd_f == 0 or c == 0) else c / (cov / (sd_f * sd_s))
    joint = 0.0
    for m in range(9):
        for n in range(9):
            cell = bound(cf[m], cs[n])
            cell -= bound(cf[m - 1], cs[n]) if m else 0.0
            cell -= bound(cf[m], cs[n - 1]) if n else 0.0
            cell += bound(cf[m - 1], cs[n - 1]) if m and n else 0.0
            p = mix * cell + (1 - mix) * pf[m] * ps[n]
            if p != 0:
                joint += -p * math.log2(abs(p))
    h_s = -sum(p * math.log2(p) for p in ps if p > 0)
    h_f = -sum(p * math.log2(p) for p in pf if p > 0)
    mi = h_s + h_f - joint
    return 0.0 if mi == 0 else 2 * mi / (h_s + h_f)


def test_fmi_matches_window_by_window_transcription(scene) -> None:
    a, b, f = (x[20:44, 20:44] for x in scene)
    ea, eb, ef = (sobel_edges(x).astype(float) for x in (a, b, f))
    h, w = a.shape
    values = [
        (_fmi_window(ea[r : r + 3, c : c + 3], ef[r : r + 3, c : c + 3])
         + _fmi_window(eb[r : r + 3, c : c + 3], ef[r : r + 3, c : c + 3])) / 2
        for r in range(h - 2)
        for c in range(w - 2)
    ]  # fmt: skip
    assert feature_mutual_information(a, b, f) == pytest.approx(np.mean(values), rel=1e-12)


def _mef_ssim_loop(sources: np.ndarray, f: np.ndarray) -> float:
    """One scale of Ma et al.'s mef_ssim.m transcribed window by window (11x11 windows)."""
    from fusecli.metrics._matlab import gaussian_taps

    g = np.outer(gaussian_taps(11, 1.5), gaussian_taps(11, 1.5)).ravel()
    k, h, w = sources.shape
    eps = np.finfo(float).eps
    scores = []
    for i in range(h - 10):
        for j in range(w - 10):
            patches = sources[:, i : i + 11, j : j + 11].reshape(k, -1)
            means = patches.mean(axis=1)
            ed = np.sqrt(np.maximum(121 * patches.var(axis=1), 0)) + 0.001
            denominator = sum(np.linalg.norm(patches[n] - means[n]) for n in range(k))
            total = patches.sum(axis=0)
            numerator = np.linalg.norm(total - total.mean())
            r = (numerator + eps) / (denominator + eps)
            r = 1 - eps if r > 1 else (eps if r < 0 else r)
            p = min(math.tan(math.pi / 2 * r), 10.0)
            weights = (ed / 11) ** p + eps
            weights /= weights.sum()
            block = sum(weights[n] * (patches[n] - means[n]) / ed[n] for n in range(k))
            if np.linalg.norm(block) > 0:
                block = block / np.linalg.norm(block) * ed.max()
            fv = f[i : i + 11, j : j + 11].ravel()
            mu1, mu2 = (g * block).sum(), (g * fv).sum()
            s1 = (g * (block - mu1) ** 2).sum()
            s2 = (g * (fv - mu2) ** 2).sum()
            s12 = (g * (block - mu1) * (fv - mu2)).sum()
            c = (0.03 * 255) ** 2
            scores.append((2 * s12 + c) / (s1 + s2 + c))
    return float(np.mean(scores))


def test_mef_ssim_closed_form_matches_window_transcription(scene) -> None:
    a, b, f = (x[:30, :34] for x in scene)
    a = a.copy()
    a[:14, :14] = 77.0  # a flat patch exercises the zero-strength branch
    sources = np.stack([a, np.clip(b * 1.3 - 40, 0, 255).round()])
    closed = _mef_ssim_single_scale(_mef_reference(sources), f)
    assert closed == pytest.approx(_mef_ssim_loop(sources, f), rel=1e-9)


def test_mef_ssim_prefers_the_better_exposure(rng: np.random.Generator) -> None:
    y, x = np.mgrid[0:64, 0:64]
    scene = 128 + 70 * np.sin(x / 5.0) * np.cos(y / 7.0)
    under = np.clip(scene * 0.4, 0, 255).round()
    over = np.clip(scene * 1.8, 0, 255).round()
    sources = np.stack([under, over])
    assert mef_structural_similarity(sources, scene.round()) > mef_structural_similarity(
        sources, np.full_like(scene, 128.0)
    )


# --- compute_metrics ----------------------------------------------------------------------


def test_registry_lists_the_issue_metrics_with_direction_and_citation() -> None:
    assert list(DEFAULT_METRICS) == [
        "EN", "MI", "SSIM", "MS_SSIM", "PSNR", "Qabf", "Nabf", "FMI", "Qcb", "Qcv", "NMI",
        "SF", "AG", "SD", "CE", "EI", "RMSE", "MEF_SSIM",
    ]  # fmt: skip
    assert list(REFERENCE_METRICS) == ["PSNR_ref", "SSIM_ref", "MS_SSIM_ref"]
    lower_is_better = {name for name, metric in METRICS.items() if not metric.higher_is_better}
    assert lower_is_better == {"Nabf", "Qcv", "CE", "RMSE"}
    assert all(metric.citation and metric.definition for metric in METRICS.values())


@pytest.fixture
def colour_scene(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(3, 48, 56) colour source, (48, 56) grey source, (3, 48, 56) colour fused, 0..255."""
    y, x = np.mgrid[0:48, 0:56]
    base = 120 + 70 * np.sin(x / 5.0 + y / 9.0)
    a = np.stack([base + 20 * c + rng.normal(0, 6, base.shape) for c in range(3)])
    b = 200 - 0.8 * base + rng.normal(0, 6, base.shape)
    f = 0.6 * a + 0.4 * b[None]
    return tuple(np.clip(v, 0, 255).round() for v in (a, b, f))  # type: ignore[return-value]


SMALL = ["EN", "MI", "SSIM", "PSNR", "Qabf", "Nabf", "FMI", "Qcb", "Qcv", "NMI", "SF", "AG",
         "SD", "CE", "EI", "RMSE", "MEF_SSIM"]  # fmt: skip


def test_colour_is_evaluated_per_channel_and_averaged(colour_scene) -> None:
    a, b, f = colour_scene
    ours = compute_metrics(a, b, f, names=SMALL)
    for name in ("Qabf", "MI", "EN", "SSIM"):
        per_channel = [compute_metrics(a[k], b, f[k], names=[name])[name] for k in range(3)]
        assert ours[name] == pytest.approx(np.mean(per_channel), rel=1e-12), name
    # VIFB's SF sees the H x W x 3 array as H x 3W: channels side by side.
    assert ours["SF"] == pytest.approx(spatial_frequency(np.concatenate(list(f), axis=1)))
    gray_sources = np.stack([rgb_to_gray(a), b])
    assert ours["MEF_SSIM"] == pytest.approx(
        mef_structural_similarity(gray_sources, rgb_to_gray(f))
    )


def test_gray_mode_and_grey_fused_use_matlab_rgb2gray(colour_scene) -> None:
    a, b, f = colour_scene
    expected = compute_metrics(rgb_to_gray(a), b, rgb_to_gray(f), names=SMALL)
    assert compute_metrics(a, b, f, names=SMALL, colour="gray") == expected
    assert compute_metrics(a, b, rgb_to_gray(f), names=SMALL) == expected


def test_inputs_accept_torch_and_batch_of_one(colour_scene) -> None:
    a, b, f = colour_scene
    expected = compute_metrics(a, b, f, names=["EN", "Qabf"])
    got = compute_metrics(
        torch.from_numpy(a)[None], torch.from_numpy(b), torch.from_numpy(f).to(torch.uint8)[None],
        names=["EN", "Qabf"],
    )  # fmt: skip
    assert got == expected


def test_compute_metrics_many_equals_separate_calls(colour_scene) -> None:
    a, b, f = colour_scene
    others = [f, np.clip(f + 15, 0, 255), rgb_to_gray(f)]
    together = compute_metrics_many(a, b, others, names=SMALL)
    assert together == [compute_metrics(a, b, x, names=SMALL) for x in others]


def test_default_metrics_leave_out_those_undefined_for_the_image_size(colour_scene) -> None:
    a, b, f = colour_scene  # 48 x 56: too small for MS_SSIM only
    assert list(compute_metrics(a, b, f)) == [n for n in DEFAULT_METRICS if n != "MS_SSIM"]
    with pytest.raises(FuseError, match="MS_SSIM needs images"):
        compute_metrics(a, b, f, names=["MS_SSIM"])


def test_reference_metrics_need_a_reference(colour_scene) -> None:
    a, b, f = colour_scene
    big = np.clip(np.kron(f, np.ones((4, 4))), 0, 255)[:, :180, :200]
    values = compute_metrics(big, big, big, reference=big)
    assert list(values) == list(DEFAULT_METRICS) + list(REFERENCE_METRICS)
    assert values["SSIM_ref"] == pytest.approx(1.0) and values["MS_SSIM_ref"] == pytest.approx(1.0)
    assert math.isinf(values["PSNR_ref"])
    with pytest.raises(FuseError, match="compare with a reference image"):
        compute_metrics(a, b, f, names=["PSNR_ref"])


def test_bad_inputs_raise_one_line_fuse_errors(colour_scene) -> None:
    a, b, f = colour_scene
    with pytest.raises(FuseError, match="unknown metric VIF"):
        compute_metrics(a, b, f, names=["VIF"])
    with pytest.raises(FuseError, match="images must have the same size"):
        compute_metrics(a, b[:40], f)
    with pytest.raises(FuseError, match="expected"):
        compute_metrics(a, b, f[:2])
    with pytest.raises(FuseError, match=r"multiply \[0, 1\] images by 255"):
        compute_metrics(a, b, torch.from_numpy(f / 255.0))
    with pytest.raises(FuseError, match=r"metrics need 0\.\.255"):
        compute_metrics(a, b, f * 2)
    with pytest.raises(FuseError, match="colour mode"):
        compute_metrics(a, b, f, colour="rgb")  # type: ignore[arg-type]
