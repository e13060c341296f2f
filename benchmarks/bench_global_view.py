"""Multi-exposure fusion with and without a global view, on MEFB brackets, in luminance.

    OMP_NUM_THREADS=1 python benchmarks/bench_global_view.py --weights W --first 0 --count 8

For each pair (MEFB's under/over exposures, Y of YCbCr): the network's fusion at full size
(``full``), the same with its coarse structure taken from the pair fused whole at a long side of
each ``--sides`` value (``view N``, what ``TaskSpec.global_view`` does; ``fuse mef`` uses 160),
and the 4-band Laplacian pyramid (``laplacian``), scored by MEF-SSIM and Qabf on the grey
result, as ``fuse eval --colour gray`` would. The model card scores colour results per
channel; this isolates the luminance, which is all the global view changes.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from bench_methods import cpu_name  # this folder is first on sys.path when run as a script

from fusecli import classical
from fusecli.color import luminance
from fusecli.engine import fuse_tiled, load_weights, shipped_weights_path
from fusecli.engine.tiling import fuse_global_view, with_coarse_structure
from fusecli.io import image_files, read_image
from fusecli.metrics.gradient import edge_transfer_quality
from fusecli.metrics.structural import mef_structural_similarity

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "mef" / "mefb"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", type=Path, default=None, help="default: the shipped ones")
    parser.add_argument("--first", type=int, default=0, help="index of the first pair (sorted)")
    parser.add_argument("--count", type=int, default=8, help="number of pairs")
    parser.add_argument("--sides", type=int, nargs="+", default=[160, 256])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    weights = args.weights or shipped_weights_path()
    net = load_weights(weights).eval()
    names = [path.name for path in image_files(DATA / "under")][args.first :][: args.count]
    print(f"weights {weights.name}, {cpu_name()}, {args.threads} thread(s), MEF-SSIM / Qabf")
    columns = ["full", *(f"view {side}" for side in args.sides), "laplacian"]
    print(f"{'pair':<22} {'size':>10} " + " ".join(f"{c:>15}" for c in columns) + "  seconds")
    scores: dict[str, list[tuple[float, float]]] = {column: [] for column in columns}
    for name in names:
        under = luminance(read_image(DATA / "under" / name).pixels)
        over = luminance(read_image(DATA / "over" / name).pixels)
        start = time.perf_counter()
        with torch.inference_mode():
            full = fuse_tiled(net, [under, over], 1, clamp=False)
            results = {"full": full.clamp(0, 1)}
            for side in args.sides:
                view = fuse_global_view(net, [under, over], 1, side)
                results[f"view {side}"] = with_coarse_structure(full, view).clamp(0, 1)
        seconds = time.perf_counter() - start
        results["laplacian"] = classical.laplacian_fusion_many([under, over])
        sources = np.stack([under[0, 0].double().numpy(), over[0, 0].double().numpy()]) * 255
        row = []
        for column in columns:
            fused = results[column][0, 0].double().numpy() * 255
            pair = (
                mef_structural_similarity(sources, fused),
                edge_transfer_quality(sources[0], sources[1], fused),
            )
            scores[column].append(pair)
            row.append(f"{pair[0]:.4f}/{pair[1]:.4f}")
        size = "x".join(str(v) for v in under.shape[-2:][::-1])
        print(f"{name:<22} {size:>10} " + " ".join(f"{r:>15}" for r in row) + f"  {seconds:7.1f}")
    means = [np.mean(np.array(scores[c]), axis=0) for c in columns]
    print(f"{'mean':<22} {'':>10} " + " ".join(f"{m[0]:.4f}/{m[1]:.4f}".rjust(15) for m in means))


if __name__ == "__main__":
    main()
