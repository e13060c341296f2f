"""Seconds per training step on this machine: stage 1 (2 MFF + 2 MEF at 128x128) and stage 2.

Usage: python benchmarks/bench_train.py [--steps N] [--crop 128] [--unlabeled-crop 64] [--threads T]

Times the real loop body (batch synthesis from a random "natural" image, forward, Eq. 2-10 losses,
backward, gradient clipping, Adam) without reading the data set from disk. The first step is a
warm-up and is not counted.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from fusecli.engine import PSLPT
from fusecli.train.data import LabeledItem, PairItem, TrainData, step_batches
from fusecli.train.loop import set_trainable, train_step
from fusecli.train.recipe import Recipe


def _time_stage(
    recipe: Recipe, index: int, net: PSLPT, steps: int, data: TrainData
) -> tuple[float, float]:
    stage = recipe.stage(index)
    params = set_trainable(net, stage.train)
    optimizer = torch.optim.Adam(params, lr=stage.lr)
    weights, folder_weights = recipe.loss_weights(index)
    data_times, step_times = [], []
    for step in range(steps + 1):
        t0 = time.perf_counter()
        batches = step_batches(recipe, data, index, step)
        t1 = time.perf_counter()
        loss, _ = train_step(net, batches, stage, weights, folder_weights)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, stage.grad_clip, norm_type=stage.grad_clip_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        t2 = time.perf_counter()
        if step:
            data_times.append(t1 - t0)
            step_times.append(t2 - t0)
    return statistics.median(step_times), statistics.median(data_times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--crop", type=int, default=128)
    parser.add_argument("--unlabeled-crop", type=int, default=64)
    parser.add_argument("--unlabeled-batch", type=int, default=4)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    image = (rng.random((400, 400)) * 255).astype(np.uint8)
    labeled = (LabeledItem(image),)
    data = TrainData(mff=labeled, mef=labeled, unlabeled=(PairItem(image, image[::-1].copy()),))
    net = PSLPT()
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
    threads = torch.get_num_threads()
    print(f"torch {torch.__version__}, {threads} threads, median of {args.steps} steps")
    s1, d1 = _time_stage(recipe, 1, net, args.steps, data)
    print(f"stage 1 (2 MFF + 2 MEF at {args.crop}x{args.crop}): {s1:.2f} s/step (data {d1:.3f} s)")
    s2, d2 = _time_stage(recipe, 2, net, args.steps, data)
    print(
        f"stage 2 (2 MFF + 2 MEF at {args.crop}, {args.unlabeled_batch} unlabeled at "
        f"{args.unlabeled_crop}): {s2:.2f} s/step (data {d2:.3f} s)"
    )


if __name__ == "__main__":
    main()
