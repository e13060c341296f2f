"""Long focus stacks: quality against the known sharp image, and the effect of frame order.

Each stack is simulated from a natural image (../shared/data/natural): a smooth random depth map,
and frame k focused at depth k / (n - 1), every pixel blurred in proportion to its distance from
that focal depth. The ground truth is the sharp image. For stacks of 5, 10 and 30 frames the
script fuses the frames with each fold of ``PSLPT.fuse_many`` (``sequential``: frame by frame,
``tree``: a balanced binary tree), in order and reversed, and prints PSNR and SSIM of the fused
luminance to the ground truth for both directions, the PSNR change reversing makes, the PSNR of
the best single frame, the seconds and the peak resident memory of the process so far
(ru_maxrss: it only grows).

    .venv/bin/python benchmarks/bench_stacks.py --size 128 --images 2 --frames 5 10 30
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

import numpy as np
import torch
from bench_methods import cpu_name  # this folder is first on sys.path when run as a script

from fusecli.color import luminance
from fusecli.engine.model import STACK_ORDERS
from fusecli.filters import gaussian_blur
from fusecli.io import image_files, read_image
from fusecli.metrics.structural import structural_similarity
from fusecli.pipeline import open_network
from fusecli.plugins import get_catalog

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "natural"
# Blur (Gaussian sigma, pixels) of a point one full depth range away from the focal plane.
MAX_SIGMA = 4.0
BLUR_LEVELS = 17


def depth_map(size: int, generator: torch.Generator) -> torch.Tensor:
    """(1, 1, size, size) smooth depths in [0, 1]: low-pass noise, stretched to the range."""
    noise = torch.rand(1, 1, size // 16 + 2, size // 16 + 2, generator=generator)
    depth = torch.nn.functional.interpolate(noise, size=(size, size), mode="bicubic")
    depth = gaussian_blur(depth, size / 24, radius=round(size / 8))
    return (depth - depth.min()) / (depth.max() - depth.min() + 1e-8)


def focus_stack(sharp: torch.Tensor, depth: torch.Tensor, frames: int) -> list[torch.Tensor]:
    """Frames focused at evenly spaced depths; blur grows with the distance from focus."""
    sigmas = torch.linspace(0.0, MAX_SIGMA, BLUR_LEVELS)
    # One blurred copy per sigma; each pixel interpolates between the two nearest sigmas.
    levels = torch.stack(
        [
            sharp if s == 0 else gaussian_blur(sharp, float(s), radius=round(3 * float(s)))
            for s in sigmas
        ]
    )
    stack = []
    for k in range(frames):
        focal = k / (frames - 1)
        wanted = (depth - focal).abs() * (BLUR_LEVELS - 1)  # index into sigmas
        low = wanted.floor().clamp(max=BLUR_LEVELS - 2).long()
        weight = wanted - low
        gathered_low = torch.gather(levels, 0, low.expand_as(sharp)[None]).squeeze(0)
        gathered_high = torch.gather(levels, 0, (low + 1).expand_as(sharp)[None]).squeeze(0)
        stack.append(gathered_low * (1 - weight) + gathered_high * weight)
    return stack


def psnr(x: np.ndarray, y: np.ndarray) -> float:
    mse = float(np.mean((x - y) ** 2))
    return 10 * np.log10(1.0 / mse) if mse > 0 else float("inf")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=192, help="square crop side (pixels)")
    parser.add_argument("--images", type=int, default=2, help="natural images to use (CSet5)")
    parser.add_argument("--frames", type=int, nargs="+", default=[5, 10, 30])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--orders",
        nargs="+",
        choices=STACK_ORDERS,
        default=["sequential", "tree"],
        help="folds to compare (default: sequential tree)",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    spec = get_catalog().get("mff").spec
    net, weights = open_network(spec)
    generator = torch.Generator().manual_seed(0)
    print(f"weights {weights.name}, size {args.size}, threads {args.threads}, {cpu_name()}")
    print(
        "image        frames  fold        PSNR fwd/rev dB  |change|  SSIM fwd/rev   "
        "best frame dB  seconds  peak RSS MB"
    )
    for path in image_files(DATA / "CSet5")[: args.images]:
        pixels = read_image(path).pixels
        side = min(pixels.shape[-2:])
        top, left = (pixels.shape[-2] - side) // 2, (pixels.shape[-1] - side) // 2
        square = pixels[..., top : top + side, left : left + side]
        sharp = torch.nn.functional.interpolate(square, size=(args.size,) * 2, mode="area")
        sharp = luminance(sharp) if sharp.shape[1] == 3 else sharp
        depth = depth_map(args.size, generator)
        truth = sharp[0, 0].numpy().astype(np.float64)
        for frames in args.frames:
            stack = focus_stack(sharp, depth, frames)
            # The sharpest single frame: what fusion has to beat.
            best = max(psnr(f[0, 0].numpy().astype(np.float64), truth) for f in stack)
            for order in args.orders:
                start = time.perf_counter()
                scores = []
                for sources in (stack, stack[::-1]):
                    with torch.inference_mode():
                        fused = net.fuse_many(sources, faf_set=spec.faf_set, order=order)
                    result = fused[0, 0].numpy().astype(np.float64)
                    scores.append(
                        (
                            psnr(result, truth),
                            structural_similarity(result, truth, data_range=1.0),
                        )
                    )
                seconds = (time.perf_counter() - start) / 2
                peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
                (forward, ssim_forward), (backward, ssim_backward) = scores
                print(
                    f"{path.stem:<12} {frames:>6}  {order:<10}  {forward:6.2f}/{backward:6.2f}  "
                    f"{abs(forward - backward):8.2f}  {ssim_forward:.4f}/{ssim_backward:.4f}  "
                    f"{best:13.2f}  {seconds:7.1f}  {peak:8.0f}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
