"""Seconds per training step on this machine: stage 1 (2 MFF + 2 MEF at 128x128) and stage 2.

Usage: python benchmarks/bench_train.py [--steps N] [--crop 128] [--unlabeled-crop 64] [--threads T]
       python benchmarks/bench_train.py --recipe recipes/cpu_long.yaml --stages 1 --threads 1

Times the real loop body (batch synthesis from a random "natural" image, forward, Eq. 2-10 losses,
backward, gradient clipping, Adam) without reading the data set from disk, phase by phase, and
the throughput in source-pair pixels per second (every crop of the step counted once). With
``--recipe`` the stages are that recipe's (its batches, crops, trained modules, loss weights);
without it, a paper-like two-stage recipe built from the options. The first step is a warm-up
and is not counted; figures are medians.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from fusecli.engine import PSLPT
from fusecli.train.data import LabeledItem, PairItem, TrainData, step_batches
from fusecli.train.loop import set_trainable, train_step
from fusecli.train.recipe import Recipe

PHASES = ("data", "forward+losses", "backward", "clip+optimiser")


def _time_stage(
    recipe: Recipe, index: int, net: PSLPT, steps: int, data: TrainData
) -> tuple[dict[str, float], int]:
    """Median seconds of each phase of a step (and ``total``), and the step's pair pixels."""
    stage = recipe.stage(index)
    params = set_trainable(net, stage.train)
    optimizer = torch.optim.Adam(params, lr=stage.lr)
    weights, folder_weights = recipe.loss_weights(index)
    times: dict[str, list[float]] = {name: [] for name in (*PHASES, "total")}
    pixels = 0
    for step in range(steps + 1):
        t0 = time.perf_counter()
        batches = step_batches(recipe, data, index, step)
        t1 = time.perf_counter()
        loss, _ = train_step(net, batches, stage, weights, folder_weights)
        t2 = time.perf_counter()
        loss.backward()
        t3 = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(params, stage.grad_clip, norm_type=stage.grad_clip_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        t4 = time.perf_counter()
        pixels = sum(batch[0].numel() for batch in batches.values())
        if step:
            for name, seconds in zip(
                (*PHASES, "total"), (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t4 - t0)
            ):
                times[name].append(seconds)
    return {name: statistics.median(values) for name, values in times.items()}, pixels


def _print_stage(label: str, figures: dict[str, float], pixels: int) -> None:
    total = figures["total"]
    split = ", ".join(f"{name} {figures[name]:.2f} s" for name in PHASES)
    print(f"{label}: {total:.2f} s/step, {pixels / total:,.0f} pair px/s ({split})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--crop", type=int, default=128)
    parser.add_argument("--unlabeled-crop", type=int, default=64)
    parser.add_argument("--unlabeled-batch", type=int, default=4)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    parser.add_argument("--recipe", type=Path, default=None, help="time this recipe's stages")
    parser.add_argument("--stages", type=int, nargs="+", default=[1, 2], choices=[1, 2])
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    image = (rng.random((400, 400)) * 255).astype(np.uint8)
    labeled = (LabeledItem(image),)
    pair = PairItem(image, image[::-1].copy())
    if args.recipe is not None:
        recipe = Recipe.from_file(args.recipe)
        # One random pair stands in for every unlabeled folder the recipe's batches draw from.
        unlabeled = tuple(
            PairItem(pair.a, pair.b, folder=i) for i in range(len(recipe.data.unlabeled))
        )
    else:
        common = dict(crop_labeled=args.crop, crop_unlabeled=args.unlabeled_crop, grad_clip=1e-4)
        recipe = Recipe.from_dict(
            {
                "stage1": {"train": ["encoder1", "encoder2", "decoder", "faf1"], **common},
                "stage2": {
                    "train": ["faf2"], "faf_set": 2, "batch_unlabeled": args.unlabeled_batch,
                    "lr": 3e-5, **common,
                },
            }
        )  # fmt: skip
        unlabeled = (pair,)
    data = TrainData(mff=labeled, mef=labeled, unlabeled=unlabeled)
    net = PSLPT(recipe.model)
    threads = torch.get_num_threads()
    print(f"torch {torch.__version__}, {threads} threads, median of {args.steps} steps")
    for index in args.stages:
        stage = recipe.stage(index)
        label = (
            f"stage {index} ({stage.batch_mff} MFF + {stage.batch_mef} MEF at "
            f"{stage.crop_labeled}, {stage.batch_unlabeled} unlabeled at {stage.crop_unlabeled})"
        )
        _print_stage(label, *_time_stage(recipe, index, net, args.steps, data))


if __name__ == "__main__":
    main()
