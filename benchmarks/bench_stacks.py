"""Long focus stacks: quality against the known sharp image, and the effect of frame order.

Each stack is simulated from a natural image (../shared/data/natural): a smooth random depth map,
and frame k focused at depth k / (n - 1), every pixel blurred in proportion to its distance from
that focal depth. The ground truth is the sharp image. For stacks of 5, 10 and 30 frames the
script fuses the frames in order and reversed (``fuse_many`` folds the stack frame by frame),
and prints PSNR and SSIM of the fused luminance to the ground truth, the PSNR of the best single
frame, the seconds and the peak resident memory of the process so far (ru_maxrss: it only grows).

    .venv/bin/python benchmarks/bench_stacks.py --size 192 --images 2 --frames 5 10 30
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

import numpy as np
import torch

from fusecli.color import luminance
from fusecli.filters import gaussian_blur
from fusecli.io import image_files, read_image
from fusecli.metrics.structural import structural_similarity
from fusecli.pipeline import fuse_sources, open_network
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
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    spec = get_catalog().get("mff").spec
    net, weights = open_network(spec)
    generator = torch.Generator().manual_seed(0)
    print(f"weights {weights.name}, size {args.size}, threads {args.threads}")
    print("image        frames  order     PSNR dB  SSIM    best frame dB  seconds  peak RSS MB")
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
            for order, sources in (("forward", stack), ("reversed", stack[::-1])):
                start = time.perf_counter()
                fused = fuse_sources(net, spec, sources)
                seconds = time.perf_counter() - start
                result = fused[0, 0].numpy().astype(np.float64)
                peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
                print(
                    f"{path.stem:<12} {frames:>6}  {order:<8}  {psnr(result, truth):7.2f}  "
                    f"{structural_similarity(result, truth, data_range=1.0):.4f}  "
                    f"{best:13.2f}  {seconds:7.1f}  {peak:8.0f}"
                )


if __name__ == "__main__":
    main()
