"""How much of the learning rate Adam's steps keep when the gradient is clipped (issue 17).

    python benchmarks/grad_report.py                                   # run 5's weights, cpu_long
    python benchmarks/grad_report.py --weights W --recipe R --clip 1e-4 1e-2 1 --batches 3
    python benchmarks/grad_report.py --set data.natural.max_images=8    # less to read

Takes stage-1 batches of the recipe (its real data, crops and simulations, as the trainer draws
them at steps 0, 1, ...), forwards them through the weights and back, then for every clipping
threshold reports the total gradient 2-norm and, per trainable tensor, the RMS gradient after
clipping and the size of Adam's update relative to the learning rate. At Adam's first step the
update of an element is lr * g / (|g| + eps), so mean |g| / (|g| + eps) over a tensor's elements
is the share of the learning rate it moves by: about 1 when gradients are far above eps, about
0.5 at eps and near 0 below it. Later steps divide by the running RMS instead of |g|, which
behaves the same way. Prints figures, asserts nothing.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import torch

from fusecli.engine.weights import load_weights, shipped_weights_path
from fusecli.train.data import load_train_data, step_batches
from fusecli.train.loop import set_trainable, train_step
from fusecli.train.recipe import Recipe

REPO = Path(__file__).resolve().parents[1]


def stage1_batches(recipe: Recipe, count: int) -> list[dict[str, tuple[torch.Tensor, ...]]]:
    """The first ``count`` stage-1 batches the trainer would draw (rank 0 of one)."""
    data = load_train_data(recipe.data_root, recipe.data, rank=0, world_size=1)
    return [step_batches(recipe, data, 1, step) for step in range(count)]


def gradients(
    weights: Path, recipe: Recipe, batch: dict[str, tuple[torch.Tensor, ...]]
) -> dict[str, torch.Tensor]:
    """Every stage-1 trainable tensor's gradient of the stage-1 loss on ``batch``."""
    net = load_weights(weights)
    net.train()
    stage = recipe.stage1
    trainable = {id(p) for p in set_trainable(net, stage.train)}
    params = {name: p for name, p in net.named_parameters() if id(p) in trainable}
    loss, _ = train_step(net, batch, stage, *recipe.loss_weights(1))
    loss.backward()
    return {name: p.grad.detach().clone() for name, p in params.items() if p.grad is not None}


def report(grads: dict[str, torch.Tensor], clip: float, eps: float) -> dict[str, float]:
    total = torch.linalg.vector_norm(torch.stack([g.norm() for g in grads.values()])).item()
    factor = min(1.0, clip / (total + 1e-6)) if clip > 0 else 1.0
    rms, share = [], []
    for g in grads.values():
        g = g * factor
        rms.append(g.square().mean().sqrt().item())
        share.append((g.abs() / (g.abs() + eps)).mean().item())
    share_sorted = sorted(share)
    return {
        "total_norm": total,
        "below_eps": sum(r < eps for r in rms) / len(rms),
        "median_step": statistics.median(share),
        "lowest_tenth_step": share_sorted[len(share_sorted) // 10],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, default=None, help="default: the shipped weights")
    parser.add_argument("--recipe", type=Path, default=REPO / "recipes" / "cpu_long.yaml")
    parser.add_argument("--clip", type=float, nargs="+", default=[1e-4, 1e-2, 1.0])
    parser.add_argument("--batches", type=int, default=3)
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        help="recipe override KEY=VALUE, as `fuse train --set` (e.g. data.natural.max_images=8)",
    )
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    weights = args.weights or shipped_weights_path()
    recipe = Recipe.from_file(args.recipe, tuple(args.overrides))
    eps = recipe.optimizer.eps
    print(f"weights {weights.name}, recipe {args.recipe.name} (stage 1), Adam eps {eps:g}")
    print("| batch | clip | total grad norm | tensors with RMS grad < eps | Adam step / lr: median "
          "| lowest tenth |\n|---|---|---|---|---|---|")  # fmt: skip
    for index, batch in enumerate(stage1_batches(recipe, args.batches)):
        grads = gradients(weights, recipe, batch)
        for clip in args.clip:
            r = report(grads, clip, eps)
            print(
                f"| {index} | {clip:g} | {r['total_norm']:.3g} | {r['below_eps']:.0%} | "
                f"{r['median_step']:.2f} | {r['lowest_tenth_step']:.2f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
