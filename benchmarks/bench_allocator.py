"""Engine time with glibc's malloc as configured by the system and with freed memory retained.

    python benchmarks/bench_allocator.py --sizes 512 1024 --rounds 3 --threads 1

``fusecli.engine.allocator.retain_freed_memory`` (which the command line calls) changes the whole
process, so each configuration runs in its own child process: rounds alternate between the two,
so that a change of load on a shared machine hits both alike, and the ratio is of the medians.
Each child loads the network, fuses once to warm up, then times ``--repeats`` fusions and reports
their seconds, the minor page faults and the peak resident size.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONFIGURATIONS = ("system", "retained")


def child(size: int, repeats: int, threads: int, retained: bool, tile: int | None) -> None:
    import resource
    import time

    import torch

    torch.set_num_threads(threads)
    if retained:
        from fusecli.engine.allocator import retain_freed_memory

        if not retain_freed_memory():
            raise SystemExit("retain_freed_memory() did nothing here (not glibc?)")
    from fusecli.engine import PSLPT, fuse_tiled

    torch.manual_seed(0)
    net = PSLPT().eval()
    a, b = torch.rand(2, 1, 1, size, size, generator=torch.Generator().manual_seed(size))

    def run() -> torch.Tensor:
        with torch.inference_mode():
            return fuse_tiled(net, [a, b], tile_size=tile or size)

    run()
    before = resource.getrusage(resource.RUSAGE_SELF)
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        fused = run()
        seconds.append(time.perf_counter() - start)
    after = resource.getrusage(resource.RUSAGE_SELF)
    print(
        json.dumps(
            {
                "seconds": seconds,
                "faults": (after.ru_minflt - before.ru_minflt) / repeats,
                "system_seconds": (after.ru_stime - before.ru_stime) / repeats,
                "peak_mb": after.ru_maxrss / 1024,
                "checksum": float(fused.double().sum()),
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024])
    parser.add_argument("--tile", type=int, default=None, help="tile side (default: whole)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--child", choices=CONFIGURATIONS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.sizes[0], args.repeats, args.threads, args.child == "retained", args.tile)
        return

    from bench_engine import cpu_description  # benchmarks/ is on sys.path when run as a script

    cpu, features = cpu_description()
    print(f"CPU: {cpu}; vector features: {', '.join(features) or 'none listed'}")
    print(f"threads={args.threads} rounds={args.rounds} repeats={args.repeats} tile={args.tile}")
    environment = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    for size in args.sizes:
        results: dict[str, list[dict]] = {name: [] for name in CONFIGURATIONS}
        for _ in range(args.rounds):
            for name in CONFIGURATIONS:
                command = [sys.executable, __file__, "--child", name, "--sizes", str(size)]
                command += ["--repeats", str(args.repeats), "--threads", str(args.threads)]
                if args.tile:
                    command += ["--tile", str(args.tile)]
                output = subprocess.run(
                    command, capture_output=True, text=True, check=True, cwd=REPO, env=environment
                ).stdout
                results[name].append(json.loads(output.strip().splitlines()[-1]))
        summary = {}
        for name, runs in results.items():
            summary[name] = {
                "seconds": statistics.median(s for run in runs for s in run["seconds"]),
                "faults": statistics.median(run["faults"] for run in runs),
                "system": statistics.median(run["system_seconds"] for run in runs),
                "peak": max(run["peak_mb"] for run in runs),
            }
        same = len({run["checksum"] for runs in results.values() for run in runs}) == 1
        system, retained = summary["system"], summary["retained"]
        ratio = system["seconds"] / retained["seconds"]
        print(
            f"{size}x{size}: system malloc {system['seconds']:.2f} s "
            f"({system['faults']:,.0f} faults, {system['system']:.2f} s in the kernel, "
            f"peak {system['peak']:.0f} MB) | retained {retained['seconds']:.2f} s "
            f"({retained['faults']:,.0f} faults, {retained['system']:.2f} s, "
            f"peak {retained['peak']:.0f} MB) | speed-up {ratio:.2f}x"
            f" | outputs identical: {same}",
            flush=True,
        )


if __name__ == "__main__":
    main()
