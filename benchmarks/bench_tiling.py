"""Tiled inference: seam error against whole-image inference, and peak memory on a large pair.

    python benchmarks/bench_tiling.py --seam            # 1024x1024 pair, overlaps 64..256
    python benchmarks/bench_tiling.py --memory          # 6000x4000 pair, auto tile, peak RSS

Weights: the shipped general model when present, else the reference fixture's weights
(--weights PATH to choose). Inputs: a natural image from ../shared/data when present (a
mirrored copy as the second source), else smooth random textures.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


def load_network(weights: str | None):
    from fusecli.engine import from_authors_state_dict, load_weights, shipped_weights_path
    from fusecli.errors import WeightsError

    if weights:
        return load_weights(weights), weights
    try:
        path = shipped_weights_path()
        return load_weights(path), str(path)
    except WeightsError:
        from safetensors.torch import load_file

        fixture = SHARED / "reference" / "pslpt_reference_fixture.safetensors"
        tensors = load_file(str(fixture))
        state = {
            k.removeprefix("weights."): v for k, v in tensors.items() if k.startswith("weights.")
        }
        return from_authors_state_dict(state).eval(), f"{fixture} (untrained reference)"


def test_pair(height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Two (1, 1, H, W) luminance images with real structure."""
    folder = SHARED / "data" / "natural" / "CSun_Hays80"
    if folder.is_dir():
        import imageio.v3 as iio

        image = iio.imread(sorted(folder.glob("*.jpg"))[0]).astype(np.float32) / 255
        y = image[..., :3] @ np.array([0.299, 0.587, 0.114], np.float32)
        reps = (-(-height // y.shape[0]), -(-width // y.shape[1]))
        y = np.tile(y, reps)[:height, :width]
        a = torch.from_numpy(np.ascontiguousarray(y))[None, None]
    else:
        generator = torch.Generator().manual_seed(0)
        noise = torch.rand(1, 1, height // 16 + 1, width // 16 + 1, generator=generator)
        a = torch.nn.functional.interpolate(noise, size=(height, width), mode="bicubic").clamp(0, 1)
    return a, a.flip(-1).contiguous()


def seam(args: argparse.Namespace) -> None:
    from fusecli.engine import fuse_tiled

    net, source = load_network(args.weights)
    a, b = test_pair(1024, 1024)
    print(f"weights: {source}")
    start = time.perf_counter()
    whole = net.fuse(a, b, faf_set=args.faf_set, clamp=False)
    print(f"whole image 1024x1024: {time.perf_counter() - start:.1f} s")
    span = (whole.max() - whole.min()).item()
    print(f"output range {span:.3f}; errors below are in 8-bit grey levels of that range")
    for overlap in args.overlaps:
        start = time.perf_counter()
        tiled = fuse_tiled(
            net, [a, b], args.faf_set, tile_size=args.tile, overlap=overlap, clamp=False
        )
        error = (tiled - whole).abs() / span * 255
        print(
            f"tile {args.tile} overlap {overlap:3d}: max {error.max().item():.3f}  "
            f"mean {error.mean().item():.4f} grey levels  ({time.perf_counter() - start:.1f} s)"
        )


def memory_child(args: argparse.Namespace) -> None:
    from fusecli.engine import auto_tile_size, fuse_tiled

    torch.set_num_threads(args.threads)
    net, _ = load_network(args.weights)
    height, width = args.size
    a, b = test_pair(height, width)
    tile = args.tile or auto_tile_size(torch.device("cpu"))
    start = time.perf_counter()
    fused = fuse_tiled(net, [a, b], 1, tile_size=tile)
    elapsed = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"{width}x{height} pair, tile {tile}: {elapsed:.0f} s, peak RSS {peak_mb:.0f} MB, "
        f"output {tuple(fused.shape)} finite={bool(torch.isfinite(fused).all())}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seam", action="store_true")
    parser.add_argument("--memory", action="store_true")
    parser.add_argument("--weights")
    parser.add_argument("--tile", type=int, default=None)
    parser.add_argument("--overlaps", type=int, nargs="+", default=[64, 128, 192, 256])
    parser.add_argument("--faf-set", type=int, default=1)
    parser.add_argument("--size", type=int, nargs=2, default=[4000, 6000], metavar=("H", "W"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.child:
        memory_child(args)
        return
    if args.seam:
        args.tile = args.tile or 512
        seam(args)
    if args.memory:
        # A fresh process, so the peak RSS is this job's alone.
        command = [sys.executable, __file__, "--child", "--size", *map(str, args.size)]
        command += ["--threads", str(args.threads)]
        if args.weights:
            command += ["--weights", args.weights]
        if args.tile:
            command += ["--tile", str(args.tile)]
        subprocess.run(command, check=True)
    if not (args.seam or args.memory):
        parser.print_help()


if __name__ == "__main__":
    main()
