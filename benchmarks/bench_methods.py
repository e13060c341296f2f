"""Seconds per classical fusion method on a camera-size pair (default 6000x4000, 24 megapixels).

    nice -n 10 python benchmarks/bench_methods.py                 # one run per method
    python benchmarks/bench_methods.py --size 1500x1000 --runs 3  # quicker, median of 3

Fuses two colour sources of the chosen size with the mff task through
`fusecli.pipeline.fuse_with_method` (luminance, the method, colour back: what
`fuse mff --method NAME` does after reading the files), on the CPU (--threads, default torch's).
Prints the median wall time per method; reading and writing files is left out. The network
(pslpt) is not timed here: see bench_engine.py and bench_tiling.py.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

from fusecli.filters import gaussian_blur
from fusecli.pipeline import fuse_with_method
from fusecli.plugins import load_catalog

CLASSICAL = ("average", "laplacian", "guided", "mertens")


def make_pair(width: int, height: int, seed: int = 0) -> list[torch.Tensor]:
    """A near/far focus pair of a textured colour scene, (1, 3, H, W) float32 each."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, 3, height // 8 + 1, width // 8 + 1, generator=generator)
    scene = torch.nn.functional.interpolate(coarse, size=(height, width), mode="bilinear")
    scene = (0.7 * scene + 0.3 * torch.rand(1, 3, height, width, generator=generator)).clamp(0, 1)
    blurred = gaussian_blur(scene, 2.0, radius=6)
    left = torch.zeros(1, 1, height, width)
    left[..., : width // 2] = 1
    return [scene * left + blurred * (1 - left), blurred * left + scene * (1 - left)]


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="6000x4000", help="WIDTHxHEIGHT (default 6000x4000)")
    parser.add_argument("--runs", type=int, default=1, help="runs per method; the median shows")
    parser.add_argument("--methods", default=",".join(CLASSICAL), help="comma-separated names")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    width, height = (int(v) for v in args.size.lower().split("x"))
    catalog = load_catalog(autoload=False)
    task = catalog.get("mff").spec
    sources = make_pair(width, height)
    print(f"{width}x{height} ({width * height / 1e6:.0f} MP) colour pair, mff task")
    print(f"CPU: {cpu_name()}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    for name in args.methods.split(","):
        method = catalog.get_method(name.strip()).spec
        times = []
        for _ in range(args.runs):
            start = time.perf_counter()
            fuse_with_method(method, task, sources)
            times.append(time.perf_counter() - start)
        print(f"{name:<10} {statistics.median(times):8.2f} s")


if __name__ == "__main__":
    main()
