"""PSLPT engine speed: seconds per fused pair, GFLOP/s, share of the CPU's matmul peak, baseline.

Prints figures, asserts nothing. Run from the repository root, for example::

    .venv/bin/python benchmarks/bench_engine.py --sizes 256 512 1024 --baseline-rev 6ad3adf

First it names the CPU and its vector features (``lscpu``: avx2, avx512f, avx512_bf16, amx) and
measures the fp32 matrix-product peak for the thread count (2048x2048 products, best of a few;
bf16 as well where the CPU has it natively), so that the engine's GFLOP/s read as a share of
what this machine can do. Issue 20's target: 65% of the fp32 peak at 512 and 1024.

``--baseline-rev`` checks the given git revision out into a temporary ``git worktree``, imports
that revision's engine under another module name and times it on the same inputs in the same run,
so the ratio is measured under the same machine load; the worktree is removed afterwards.

Like every ``fuse`` command, it first makes malloc keep freed memory
(:func:`fusecli.engine.allocator.retain_freed_memory`): on these VMs a fresh page costs more than
the arithmetic done on it. ``--system-malloc`` leaves malloc alone, for comparison.
"""

from __future__ import annotations

import argparse
import importlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from types import ModuleType

import torch
from torch.utils.flop_counter import FlopCounterMode

REPO_ROOT = Path(__file__).resolve().parents[1]


def baseline_engine(revision: str, workdir: Path) -> ModuleType:
    """The engine of ``revision``, checked out into a worktree under ``workdir``.

    The baseline's modules import ``fusecli.*`` by absolute name, so they are loaded with the
    worktree first on ``sys.path`` and the current ``fusecli`` modules set aside; afterwards the
    current modules are restored and the baseline's stay reachable as ``fusecli_baseline.*``.
    """
    tree = workdir / "baseline"
    subprocess.run(
        ["git", "-C", str(REPO_ROOT), "worktree", "add", "--detach", str(tree), revision],
        check=True,
        capture_output=True,
    )
    saved = {k: v for k, v in sys.modules.items() if k == "fusecli" or k.startswith("fusecli.")}
    for key in saved:
        del sys.modules[key]
    sys.path.insert(0, str(tree))
    try:
        engine = importlib.import_module("fusecli.engine")
        loaded = {
            k: v for k, v in sys.modules.items() if k == "fusecli" or k.startswith("fusecli.")
        }
    finally:
        sys.path.remove(str(tree))
        for key in [k for k in sys.modules if k == "fusecli" or k.startswith("fusecli.")]:
            del sys.modules[key]
        sys.modules.update(saved)
    for key, module in loaded.items():
        sys.modules["fusecli_baseline" + key.removeprefix("fusecli")] = module
    return engine


def remove_worktree(workdir: Path) -> None:
    subprocess.run(
        ["git", "-C", str(REPO_ROOT), "worktree", "remove", "--force", str(workdir / "baseline")],
        check=False,
        capture_output=True,
    )


def seconds(runs: list[partial[torch.Tensor]], repeats: int) -> list[float]:
    """Median wall time of each run over ``repeats`` rounds, after one warm-up round.

    The runs alternate within each round, so a load change on a shared machine hits all of
    them alike and their ratio stays meaningful.
    """
    for run in runs:
        run()
    times: list[list[float]] = [[] for _ in runs]
    for _ in range(repeats):
        for run, spent in zip(runs, times):
            start = time.perf_counter()
            run()
            spent.append(time.perf_counter() - start)
    return [statistics.median(spent) for spent in times]


VECTOR_FEATURES = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")
PEAK_SIZE = 2048


def cpu_description() -> tuple[str, list[str]]:
    """The CPU's model name and which of :data:`VECTOR_FEATURES` it has (from ``lscpu``)."""
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown CPU (lscpu failed)", []
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    name = fields.get("Model name", "unknown CPU").strip()
    flags = set(fields.get("Flags", "").split())
    return name, [f for f in VECTOR_FEATURES if f in flags]


def matmul_peak(dtype: torch.dtype, repeats: int = 5) -> float:
    """Best GFLOP/s of a square matrix product of side :data:`PEAK_SIZE` in ``dtype``."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(PEAK_SIZE, PEAK_SIZE, generator=g).to(dtype)
    y = torch.randn(PEAK_SIZE, PEAK_SIZE, generator=g).to(dtype)
    x @ y
    best = min(_timed(lambda: x @ y) for _ in range(repeats))
    return 2 * PEAK_SIZE**3 / best / 1e9


def _timed(run) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def count_flops(net: torch.nn.Module, a: torch.Tensor, b: torch.Tensor, faf_set: int) -> int:
    counter = FlopCounterMode(display=False)
    with counter:
        net.fuse(a, b, faf_set)
    return counter.get_total_flops()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--faf-set", type=int, default=1)
    parser.add_argument("--baseline-rev", help="git revision to compare against, e.g. 6ad3adf")
    parser.add_argument(
        "--system-malloc",
        action="store_true",
        help="leave malloc as configured (the fuse command makes it keep freed memory)",
    )
    args = parser.parse_args()

    retained = False
    if not args.system_malloc:
        from fusecli.engine.allocator import retain_freed_memory

        retained = retain_freed_memory()

    torch.set_num_threads(args.threads)
    from fusecli.engine import PSLPT

    torch.manual_seed(0)
    net = PSLPT().eval()
    baseline = None
    workdir = Path(tempfile.mkdtemp(prefix="bench_engine_"))
    try:
        if args.baseline_rev:
            engine = baseline_engine(args.baseline_rev, workdir)
            baseline = engine.PSLPT().eval()
            baseline.load_state_dict(net.state_dict())
        cpu, features = cpu_description()
        peak = matmul_peak(torch.float32)
        print(f"CPU: {cpu}; vector features: {', '.join(features) or 'none listed'}")
        print(f"torch {torch.__version__}, threads={args.threads} repeats={args.repeats}", end="")
        print(f" faf_set={args.faf_set} malloc={'retains freed memory' if retained else 'system'}")
        print(f"fp32 matmul peak ({PEAK_SIZE}x{PEAK_SIZE}): {peak:.1f} GFLOP/s")
        if "avx512_bf16" in features or "amx_bf16" in features:
            bf16 = matmul_peak(torch.bfloat16)
            print(f"bf16 matmul peak ({PEAK_SIZE}x{PEAK_SIZE}): {bf16:.1f} GFLOP/s")
        for size in args.sizes:
            a, b = torch.rand(2, 1, 1, size, size, generator=torch.Generator().manual_seed(size))
            # The network's FLOPs as the straightforward baseline computes them (ours adds a
            # few for head sums done as matrix products).
            flops = count_flops(baseline or net, a, b, args.faf_set)
            runs = [partial(net.fuse, a, b, args.faf_set)]
            if baseline is not None:
                runs.append(partial(baseline.fuse, a, b, args.faf_set))
            timings = seconds(runs, args.repeats)
            ours = timings[0]
            line = (
                f"{size}x{size}: {ours:.3f} s/pair, {flops / 1e9:.1f} GFLOP, "
                f"{flops / ours / 1e9:.1f} GFLOP/s = {flops / ours / 1e9 / peak:.0%} of fp32 peak"
            )
            if baseline is not None:
                base = timings[1]
                fused = net.fuse(a, b, args.faf_set, clamp=False)
                expected = baseline.fuse(a, b, args.faf_set, clamp=False)
                diff = (fused - expected).abs().max().item()
                line += (
                    f" | baseline {args.baseline_rev}: {base:.3f} s/pair, "
                    f"speed-up {base / ours:.2f}x, max abs diff {diff:.2e}"
                )
            print(line, flush=True)
    finally:
        if args.baseline_rev:
            remove_worktree(workdir)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
