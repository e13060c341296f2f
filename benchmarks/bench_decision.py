"""What a multi-focus decision costs: the fold with its source map against the decision alone.

    OMP_NUM_THREADS=1 python benchmarks/bench_decision.py --size 512 --frames 2 5 10

``fuse mff`` composes its output from the sources' pixels, so it needs only the network's
decision of which source each pixel comes from. Before, it ran the whole fold with a source map
(``PSLPT.fuse_with_map``: every band encoded and fused, the result decoded and thrown away);
now it runs ``PSLPT.decide_many`` (the two finest encoder stages and the finest FAF module;
for three or more frames a knockout in which each merge is weighed in both slot orders). Both
run in this one process on the same random frames with the shipped weights; each figure is the
best of ``--repeats`` after a warm-up, and the ratio is of those.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from functools import partial

import torch
from bench_methods import cpu_name  # this folder is first on sys.path when run as a script

from fusecli.engine import load_weights, shipped_weights_path


def best_seconds(run: Callable[[], object], repeats: int) -> float:
    run()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=512, help="frame side in pixels")
    parser.add_argument("--frames", type=int, nargs="+", default=[2, 5, 10])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    net = load_weights(shipped_weights_path()).eval()
    print(f"{cpu_name()}, {args.threads} thread(s), {args.size}x{args.size} frames")
    print("frames  fuse_with_map s  decide_many s  ratio  same map")
    for count in args.frames:
        generator = torch.Generator().manual_seed(count)
        frames = list(torch.rand(count, 1, 1, args.size, args.size, generator=generator))
        with torch.inference_mode():
            folded = best_seconds(partial(net.fuse_with_map, frames), args.repeats)
            decided = best_seconds(partial(net.decide_many, frames), args.repeats)
            # A pair is decided exactly as the fold maps it; a stack by another rule.
            same = torch.equal(net.fuse_with_map(frames)[1], net.decide_many(frames))
        print(
            f"{count:6d}  {folded:15.2f}  {decided:13.2f}  {folded / decided:5.2f}  {same}",
            flush=True,
        )


if __name__ == "__main__":
    main()
