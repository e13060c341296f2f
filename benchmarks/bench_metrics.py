"""Time of all fusion metrics on one 640x480 image pair (CPU, single process).

    python benchmarks/bench_metrics.py               # median of 5 runs, per metric too
    python benchmarks/bench_metrics.py --runs 9 --colour gray

Inputs: a colour visible image, a greyscale infrared image and a colour fused image of
640x480 (smooth random textures plus noise, 8-bit values), the VIFB layout. Prints the median
wall time of `compute_metrics` with every metric (target: under 2 s), then of
`compute_metrics_many` for three fused images of the same sources, then each metric alone.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np

from fusecli.metrics import DEFAULT_METRICS, compute_metrics, compute_metrics_many


def make_inputs(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(3, 480, 640) visible, (480, 640) infrared, (3, 480, 640) fused; 8-bit integers."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:480, 0:640]
    scene = 128 + 60 * np.sin(x / 23.0) * np.cos(y / 17.0) + 30 * np.sin((x + y) / 7.0)
    visible = np.stack([scene * g + rng.normal(0, 6, scene.shape) for g in (0.9, 1.0, 1.1)])
    infrared = 255 - scene + rng.normal(0, 10, scene.shape)
    fused = 0.6 * visible + 0.4 * infrared[None]
    return tuple(np.clip(v, 0, 255).round() for v in (visible, infrared, fused))  # type: ignore[return-value]


def median_seconds(run: Callable[[], object], runs: int) -> float:
    run()  # warm-up (first call allocates, imports lazily)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="timed runs (median), default 5")
    parser.add_argument("--colour", choices=("channels", "gray"), default="channels")
    args = parser.parse_args()
    visible, infrared, fused = make_inputs()

    total = median_seconds(
        lambda: compute_metrics(visible, infrared, fused, colour=args.colour), args.runs
    )
    verdict = "OK" if total < 2.0 else "over the 2 s target"
    print(f"all {len(DEFAULT_METRICS)} metrics, 640x480, colour={args.colour}: "
          f"{total:.3f} s median of {args.runs} ({verdict})")  # fmt: skip
    others = [fused, np.clip(fused + 12, 0, 255), np.clip(fused * 0.9, 0, 255).round()]
    many = median_seconds(
        lambda: compute_metrics_many(visible, infrared, others, colour=args.colour), args.runs
    )
    print(f"three fused images of the same sources (compute_metrics_many): {many:.3f} s "
          f"({many / 3:.3f} s per image)")  # fmt: skip
    for name in DEFAULT_METRICS:
        seconds = median_seconds(
            lambda name=name: compute_metrics(
                visible, infrared, fused, names=[name], colour=args.colour
            ),
            args.runs,
        )
        print(f"  {name:9s} {seconds * 1000:8.1f} ms")


if __name__ == "__main__":
    main()
