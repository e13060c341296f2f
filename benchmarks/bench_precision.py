"""Does bf16 autocast keep the fused 8-bit image within one grey level of fp32?

    nice -n 10 python benchmarks/bench_precision.py --max-pairs 1 --crop 256

For the first pairs of every development set (model_card.py's held-out pairs of the recipe),
fuses the centre crop with the shipped weights (or --weights) through the task's pipeline
(luminance, network, colour) in fp32 and under bf16 autocast, rounds both to 8 bits and prints
the largest difference in grey levels and the share of pixels that moved by more than one.
``fusecli.engine.precision.BF16_WITHIN_ONE_LEVEL`` (what ``--precision auto`` relies on) may be
True only if every row stays within one level. Without native bf16 (avx512_bf16, AMX, a GPU)
PyTorch emulates it: the verdict holds, the seconds are not those of a native machine.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from bench_methods import cpu_name
from model_card import REPO, evaluation_sets

from fusecli.engine import precision
from fusecli.engine.weights import load_weights, shipped_weights_path
from fusecli.io import read_image
from fusecli.pipeline import fuse_sources
from fusecli.plugins import get_catalog
from fusecli.train.recipe import Recipe


def centre_crop(image: torch.Tensor, side: int) -> torch.Tensor:
    """The central (at most) side x side window of a (1, C, H, W) image."""
    height, width = image.shape[-2:]
    top, left = max(0, (height - side) // 2), max(0, (width - side) // 2)
    return image[..., top : top + side, left : left + side]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, default=None, help="default: shipped weights")
    parser.add_argument(
        "--recipe",
        type=Path,
        default=REPO / "recipes" / "cpu_stage2_balance.yaml",
        help="the recipe that defines the held-out (development) pairs",
    )
    parser.add_argument("--max-pairs", type=int, default=1, help="pairs per set (default 1)")
    parser.add_argument("--crop", type=int, default=256, help="centre crop side (0: whole)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    recipe = Recipe.from_file(args.recipe)
    net = load_weights(args.weights or shipped_weights_path(), map_location="cpu")
    catalog = get_catalog()
    native = precision.native_bf16("cpu")
    print(f"CPU: {cpu_name()}, native bf16: {'yes' if native else 'no (emulated)'}")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, crop {args.crop}")
    print("| set | pair | size | max diff (levels) | pixels > 1 level | fp32 s | bf16 s |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    worst = 0
    for eval_set in evaluation_sets(recipe, recipe.data_root.resolve(), args.max_pairs):
        spec = catalog.get(eval_set.task).spec
        for name in eval_set.names:
            sources = [read_image(eval_set.folder / d / name).pixels for d in eval_set.dirs]
            if args.crop:
                sources = [centre_crop(s, args.crop) for s in sources]
            levels, seconds = {}, {}
            for choice in ("fp32", "bf16"):
                start = time.perf_counter()
                # Autocast around the pipeline: resolve_precision would refuse emulated bf16.
                with precision.precision_context(choice, "cpu"):
                    fused = fuse_sources(net, spec, sources, precision="fp32")
                seconds[choice] = time.perf_counter() - start
                levels[choice] = torch.round(fused * 255).to(torch.int16)
            diff = (levels["bf16"] - levels["fp32"]).abs()
            worst = max(worst, int(diff.max()))
            height, width = sources[0].shape[-2:]
            print(
                f"| {eval_set.name} | {name} | {width}x{height} | {int(diff.max())} | "
                f"{(diff > 1).float().mean().item():.1%} | {seconds['fp32']:.1f} | "
                f"{seconds['bf16']:.1f} |"
            )
    verdict = "within" if worst <= 1 else "NOT within"
    print(f"largest difference {worst} grey levels: bf16 is {verdict} one level of fp32")


if __name__ == "__main__":
    main()
