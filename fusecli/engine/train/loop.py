"""The two-stage training loop (Section 3.2), to be read top to bottom like nanoGPT's train.py.

Stage 1 trains encoders, decoder and FAF set 1 on supervised MFF + MEF batches (Eq. 2-4).
Stage 2 freezes all of that and trains FAF set 2 on the same supervised loss plus the
unsupervised IVF/MMF loss, all through set 2 (Eq. 5-10). Both stages share one run directory:

    recipe.yaml               the resolved recipe
    checkpoint.pt             model, optimiser, scaler, RNG states, stage and step (atomic)
    log.jsonl                 one JSON object per logged step and per validation
    stage{1,2}_{last,best}.safetensors   exported weights with the recipe in the metadata

Distributed: started by ``torchrun``, each rank reads its own shard, DDP averages gradients, only
rank 0 validates, logs and writes files.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import yaml
from torch.nn.parallel import DistributedDataParallel

from fusecli.engine.device import select_device
from fusecli.engine.losses import (
    LossWeights,
    ssim,
    stage1_loss,
    stage2_loss,
    supervised_task_loss,
    unsupervised_loss,
)
from fusecli.engine.model import PSLPT
from fusecli.engine.train.averaging import WeightAverage
from fusecli.engine.train.checkpoint import (
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from fusecli.engine.train.data import (
    TrainData,
    ValidationData,
    labeled_batch,
    load_train_data,
    load_validation_data,
    unlabeled_batch,
)
from fusecli.engine.train.recipe import LossConfig, Recipe, StageConfig, recipe_to_dict
from fusecli.engine.weights import load_weights, save_weights
from fusecli.errors import FuseError

__all__ = [
    "TrainResult",
    "lr_at",
    "parameter_checksum",
    "resolved_recipe",
    "stage_steps",
    "train",
]


@dataclass
class TrainResult:
    """What a call to :func:`train` did (on this rank)."""

    net: PSLPT
    run_dir: Path
    stage: int = 0
    step: int = 0
    stopped_early: bool = False
    seconds_per_step: dict[int, float] = field(default_factory=dict)


# ----------------------------------------------------------------------------- helpers


def _loss_weights(c: LossConfig) -> LossWeights:
    return LossWeights(
        mef=c.mef_weight,
        recon=c.recon_weight,
        unsupervised=c.unsupervised_weight,
        unsupervised_recon=c.unsupervised_recon_weight,
        intensity=c.intensity_weight,
        texture=c.texture_weight,
        ssim=c.ssim_weight,
        supervised_texture=c.supervised_texture_weight,
        mff_l1=c.mff_l1_weight,
        mef_l1=c.mef_l1_weight,
        mef_ssim=c.mef_ssim_weight,
    )


def _folder_loss_weights(recipe: Recipe, base: LossConfig) -> tuple[LossWeights, ...]:
    """The loss weights of each ``data.unlabeled`` folder: ``base`` with the folder's overrides."""
    return tuple(_loss_weights(pairs.loss_config(base)) for pairs in recipe.data.unlabeled)


def _unsupervised_parts(
    fused: torch.Tensor,
    recon_a: torch.Tensor,
    recon_b: torch.Tensor,
    a: torch.Tensor,
    b: torch.Tensor,
    folders: torch.Tensor,
    folder_weights: Sequence[LossWeights],
    weights: LossWeights,
) -> dict[str, torch.Tensor]:
    """Eq. 6 over crops from several pair folders, each folder's crops with its own weights.

    Every term is a mean over pixels of equal-sized crops, so the share-weighted sum of the
    folders' losses is the batch loss (exactly it when all folders share ``weights``).
    """
    if all(w == weights for w in folder_weights):
        return unsupervised_loss(fused, recon_a, recon_b, a, b, weights=weights)
    parts: dict[str, torch.Tensor] = {}
    for folder in torch.unique(folders).tolist():
        rows = folders == folder
        share = int(rows.sum()) / folders.numel()
        group = unsupervised_loss(
            fused[rows], recon_a[rows], recon_b[rows], a[rows], b[rows],
            weights=folder_weights[folder],
        )  # fmt: skip
        for key, value in group.items():
            parts[key] = parts.get(key, 0.0) + share * value
    return parts


def stage_steps(stage: StageConfig, data: TrainData, world_size: int = 1) -> tuple[int, int]:
    """Optimisation steps of a stage and steps per epoch.

    An epoch is one pass of this rank over its shard of the stage's main stream: the unlabeled
    pairs when the stage uses them, else the larger of the MFF and MEF streams.
    """
    if stage.batch_unlabeled > 0:
        per_epoch = math.ceil(len(data.unlabeled) / stage.batch_unlabeled)
    else:
        counts = [(len(data.mff), stage.batch_mff), (len(data.mef), stage.batch_mef)]
        per_epoch = max(math.ceil(n / b) for n, b in counts if b > 0)
    if world_size > 1:
        # Shards can differ by one item; every rank must run the same number of steps.
        t = torch.tensor([per_epoch], dtype=torch.int64)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        per_epoch = int(t.item())
    per_epoch = max(per_epoch, 1)
    total = stage.length * (per_epoch if stage.unit == "epoch" else 1)
    return total, per_epoch


def lr_at(stage: StageConfig, step: int, steps_per_epoch: int) -> float:
    """Step-decay schedule: ``lr * factor ** (number of decay points reached)``."""
    unit = steps_per_epoch if stage.unit == "epoch" else 1
    reached = sum(step >= point * unit for point in stage.lr_decay_at)
    return stage.lr * stage.lr_decay_factor**reached


def _setup_distributed(device: torch.device) -> tuple[int, int, torch.device]:
    """Initialise the process group when started by torchrun (WORLD_SIZE > 1)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return 0, 1, device
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    return dist.get_rank(), dist.get_world_size(), device


def _autocast(device: torch.device, name: str) -> contextlib.AbstractContextManager:
    """Mixed precision on CUDA only: CPU bf16 training is slower and less accurate here."""
    if device.type != "cuda" or name == "fp32":
        return contextlib.nullcontext()
    return torch.autocast("cuda", dtype=torch.bfloat16 if name == "bf16" else torch.float16)


def _set_trainable(net: PSLPT, names: tuple[str, ...]) -> list[torch.nn.Parameter]:
    for child_name, child in net.named_children():
        child.requires_grad_(child_name in names)
    return [p for p in net.parameters() if p.requires_grad]


NO_WEIGHT_DECAY = ("cpb_mlp", "logit_scale")


def _make_optimizer(recipe: Recipe, net: PSLPT, lr: float) -> torch.optim.Optimizer:
    """Adam(W) over the trainable parameters.

    With weight decay, the SwinV2 position-bias MLP and attention logit scales are exempt (as timm's
    ``no_weight_decay``): decaying them pulls the attention temperature and relative position
    bias towards zero, which is not regularisation.
    """
    o = recipe.optimizer
    cls = torch.optim.AdamW if o.name == "adamw" else torch.optim.Adam
    named = [(n, p) for n, p in net.named_parameters() if p.requires_grad]
    if o.weight_decay > 0:
        exempt = [p for n, p in named if any(key in n for key in NO_WEIGHT_DECAY)]
        decay = [p for n, p in named if not any(key in n for key in NO_WEIGHT_DECAY)]
        groups: list = [
            {"params": decay, "weight_decay": o.weight_decay},
            {"params": exempt, "weight_decay": 0.0},
        ]
    else:
        groups = [{"params": [p for _, p in named]}]
    return cls(groups, lr=lr, betas=tuple(o.betas), eps=o.eps, weight_decay=o.weight_decay)


def resolved_recipe(recipe: Recipe) -> dict[str, Any]:
    """The recipe as saved in the run: data root made absolute, no source path.

    So ``run_dir/recipe.yaml`` reproduces the run from any directory, and resuming with it or
    with the original file counts as the same recipe.
    """
    out = recipe_to_dict(recipe)
    out.pop("source")
    out["data"]["root"] = str(recipe.data_root.resolve())
    return out


def _metadata(recipe: Recipe, stage: int, step: int, extra: dict[str, Any]) -> dict[str, str]:
    return {
        "recipe": json.dumps(resolved_recipe(recipe), sort_keys=True),
        "stage": str(stage),
        "step": str(step),
        **{k: json.dumps(v) for k, v in extra.items()},
    }


def _append_log(path: Path, row: dict[str, Any]) -> None:
    with path.open("a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")


def _truncate_log(path: Path, stage: int, step: int) -> None:
    """Drop rows an interrupted run logged after the checkpoint being resumed."""
    if not path.exists():
        return
    keep = []
    for line in path.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        if (row["stage"], row["step"]) <= (stage, step):
            keep.append(line)
    path.write_text("".join(k + "\n" for k in keep), encoding="utf-8")


def _psnr(x: torch.Tensor, y: torch.Tensor) -> float:
    """Mean PSNR (dB, data range 1) of two (N, 1, H, W) batches."""
    mse = ((x - y) ** 2).flatten(1).mean(dim=1).clamp_min(1e-10)
    return float((10 * torch.log10(1.0 / mse)).mean())


def _chunks(tensors: tuple[torch.Tensor, ...], size: int = 4) -> Iterator[tuple[torch.Tensor, ...]]:
    for start in range(0, tensors[0].shape[0], size):
        yield tuple(t[start : start + size] for t in tensors)


@torch.no_grad()
def _validate(
    net: PSLPT,
    val: ValidationData,
    stage: StageConfig,
    weights: LossWeights,
    device: torch.device,
) -> dict[str, float]:
    """Validation metrics; ``val_loss`` is the stage's objective on the validation set."""
    was_training = net.training
    net.eval()
    out: dict[str, float] = {}
    supervised = {}
    for task, batch in (("mff", val.mff), ("mef", val.mef)):
        if batch is None:
            continue
        totals, psnrs, ssims, n = 0.0, 0.0, 0.0, 0
        for a, b, gt in _chunks(batch):
            a, b, gt = a.to(device), b.to(device), gt.to(device)
            fused, ra, rb = net(a, b, faf_set=stage.faf_set_labeled)
            k = a.shape[0]
            parts = supervised_task_loss(
                fused, ra, rb, gt, a, b, **weights.supervised_options(task)
            )
            totals += k * float(parts["total"])
            clamped = fused.clamp(0, 1)
            psnrs += k * _psnr(clamped, gt)
            ssims += k * float(ssim(clamped, gt))
            n += k
        supervised[task] = {"total": torch.tensor(totals / n)}
        out.update(
            {f"{task}_loss": totals / n, f"{task}_psnr": psnrs / n, f"{task}_ssim": ssims / n}
        )
    zero = {"total": torch.tensor(0.0)}
    val_loss = float(
        stage1_loss(supervised.get("mff", zero), supervised.get("mef", zero), weights=weights)
    )
    if val.unlabeled is not None and stage.batch_unlabeled > 0:
        sums: dict[str, float] = {}
        n = 0
        for a, b in _chunks(val.unlabeled):
            a, b = a.to(device), b.to(device)
            fused, ra, rb = net(a, b, faf_set=stage.faf_set)
            parts = unsupervised_loss(fused, ra, rb, a, b, weights=weights)
            for key, value in parts.items():
                sums[key] = sums.get(key, 0.0) + a.shape[0] * float(value)
            n += a.shape[0]
        out.update({f"unsup_{k}": v / n for k, v in sums.items()})
        val_loss = float(
            stage2_loss(
                torch.tensor(val_loss), {"total": torch.tensor(sums["total"] / n)}, weights=weights
            )
        )
    out["val_loss"] = val_loss
    net.train(was_training)
    return out


# Measured with one thread on a 2-core AVX-512 Xeon (benchmarks/bench_train.py --pixels): a
# training forward and backward of up to 2 x 128 x 128 pixels runs at one throughput per pixel;
# 4 x 128 x 128 in one piece is about 25% slower per pixel, its activations no longer fitting the
# caches.
MAX_PIXELS_PER_FORWARD = 2 * 128 * 128


def _train_step(
    model: torch.nn.Module,
    batches: dict[str, tuple[torch.Tensor, ...]],
    stage: StageConfig,
    weights: LossWeights,
    folder_weights: Sequence[LossWeights] = (),
) -> tuple[torch.Tensor, dict[str, float]]:
    """Forward the step's batches and return the stage loss and its logged parts.

    ``folder_weights`` holds the loss weights of each ``data.unlabeled`` folder (default: all
    ``weights``); the unlabeled batch carries the folder of each crop.

    MFF and MEF crops have one size and go through the same FAF set, so they share one forward
    (PSLPT has no batch-coupled layers, so this equals two forwards) and are split after it.
    Above :data:`MAX_PIXELS_PER_FORWARD` the shared batch is forwarded in pieces of at most that
    many pixels: the same result, but every activation stays small enough for the caches.
    """
    logs: dict[str, float] = {}
    task_losses: dict[str, dict[str, torch.Tensor]] = {}
    labeled = [(t, batches[t]) for t in ("mff", "mef") if t in batches]
    if labeled:
        a = torch.cat([x[0] for _, x in labeled])
        b = torch.cat([x[1] for _, x in labeled])
        rows = max(1, MAX_PIXELS_PER_FORWARD // (a.shape[-2] * a.shape[-1]))
        pieces = [
            model(a[i : i + rows], b[i : i + rows], faf_set=stage.faf_set_labeled)
            for i in range(0, a.shape[0], rows)
        ]
        fused, ra, rb = (torch.cat(outputs) for outputs in zip(*pieces))
        start = 0
        for task, (ta, tb, gt) in labeled:
            sl = slice(start, start + ta.shape[0])
            start += ta.shape[0]
            parts = supervised_task_loss(
                fused[sl], ra[sl], rb[sl], gt, ta, tb, **weights.supervised_options(task)
            )
            task_losses[task] = parts
            logs.update({f"{task}_{k}": float(v.detach()) for k, v in parts.items()})
    zero = {"total": torch.zeros((), device=next(iter(batches.values()))[0].device)}
    loss = stage1_loss(task_losses.get("mff", zero), task_losses.get("mef", zero), weights=weights)
    if "unlabeled" in batches:
        ua, ub, folders = batches["unlabeled"]
        fused, ra, rb = model(ua, ub, faf_set=stage.faf_set)
        parts = _unsupervised_parts(fused, ra, rb, ua, ub, folders, folder_weights, weights)
        logs.update({f"unsup_{k}": float(v.detach()) for k, v in parts.items()})
        loss = stage2_loss(loss, parts, weights=weights)
    logs["loss"] = float(loss.detach())
    return loss, logs


def _progress(enabled: bool):
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[losses]}"),
        disable=not enabled,
    )


def parameter_checksum(net: torch.nn.Module) -> float:
    """Sum of all parameters in float64: equal on ranks holding identical weights."""
    return float(sum(p.detach().double().sum() for p in net.parameters()))


def _check_ranks_agree(net: PSLPT) -> None:
    """DDP must keep replicas identical; a mismatch is a bug, so fail loudly."""
    mine = torch.tensor([parameter_checksum(net)], dtype=torch.float64)
    gathered = [torch.zeros_like(mine) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, mine)
    if any(not torch.equal(g, mine) for g in gathered):
        raise RuntimeError(
            f"DDP replicas diverged: parameter checksums {[float(g) for g in gathered]}"
        )


def _write_checkpoint(
    path: Path,
    *,
    stage: int,
    step: int,
    total: int,
    net: PSLPT,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    best: float,
    recipe: Recipe,
    world_size: int,
    average: WeightAverage | None,
) -> None:
    """Rank 0 writes model, weight average, optimiser, scaler and every rank's RNG state."""
    states: list[Any] = [rng_state()]
    if world_size > 1:
        states = [None] * world_size
        dist.all_gather_object(states, rng_state())
    if world_size == 1 or dist.get_rank() == 0:
        payload = {
            "stage": stage,
            "step": step,
            "total_steps": total,
            "model": net.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scaler": scaler.state_dict(),
            "ema": None if average is None else average.state_dict(),
            "rng": states,
            "best_val": best,
            "recipe": resolved_recipe(recipe),
        }
        save_checkpoint(path, payload)


# ----------------------------------------------------------------------------- the loop


def train(recipe: Recipe, **options: Any) -> TrainResult:
    """Run the recipe's stages; see :func:`_train` for the options.

    ``recipe.deterministic`` turns on torch's deterministic algorithms for the run only (the
    setting is process-wide, so it is restored afterwards).
    """
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(previous or recipe.deterministic)
    try:
        return _train(recipe, **options)
    finally:
        torch.use_deterministic_algorithms(previous)


def _train(
    recipe: Recipe,
    *,
    run_dir: Path | None = None,
    stages: tuple[int, ...] = (1, 2),
    resume: bool = False,
    init_weights: Path | None = None,
    device: str | None = None,
    stop_after: int | None = None,
    progress: bool = True,
) -> TrainResult:
    """Run the recipe's stages.

    Args:
        recipe: validated recipe.
        run_dir: output directory (default ``recipe.output_dir``).
        stages: which stages to run, in order.
        resume: continue from ``run_dir/checkpoint.pt``.
        init_weights: weights file the first stage of ``stages`` starts from (stage 2: instead of
            the run's stage-1 output; stage 1: instead of scratch, i.e. fine-tuning).
        device: overrides ``recipe.device``.
        stop_after: return after this many optimisation steps in this call (as if interrupted;
            no checkpoint is written at the stop). For tests and time-boxed runs.
        progress: show a rich progress bar (rank 0).

    Returns:
        The trained (unwrapped) network and where the run stopped.
    """
    # ---- setup: device, ranks, seeds, run directory
    device_ = select_device(device or recipe.device)
    rank, world_size, device_ = _setup_distributed(device_)
    master = rank == 0
    run_dir = Path(run_dir or recipe.output_dir)
    ckpt_path, log_path = run_dir / "checkpoint.pt", run_dir / "log.jsonl"
    ckpt = load_checkpoint(ckpt_path) if resume else None
    if ckpt is not None and ckpt["recipe"] != resolved_recipe(recipe):
        raise FuseError(
            f"the recipe differs from the one {ckpt_path} was trained with; "
            f"resume with {run_dir / 'recipe.yaml'}"
        )
    if not resume and 1 in stages and ckpt_path.exists():
        raise FuseError(
            f"{run_dir} already holds a run; pass --resume or choose another output dir"
        )
    if master:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "recipe.yaml").write_text(
            yaml.safe_dump(resolved_recipe(recipe), sort_keys=False), encoding="utf-8"
        )
        if ckpt is not None:
            _truncate_log(log_path, ckpt["stage"], ckpt["step"])

    # ---- data: this rank's shard, validation on rank 0
    root = recipe.data_root
    data = load_train_data(root, recipe.data, rank=rank, world_size=world_size)
    val = load_validation_data(root, recipe.data, seed=recipe.seed) if master else None

    torch.manual_seed(recipe.seed)
    np.random.seed(recipe.seed)
    net = PSLPT(recipe.model_config).to(device_)
    result = TrainResult(net=net, run_dir=run_dir)
    steps_left = stop_after

    enabled = [i for i in stages if (recipe.stage1 if i == 1 else recipe.stage2).enabled]
    for stage_index in enabled:
        stage = recipe.stage1 if stage_index == 1 else recipe.stage2
        first_stage = stage_index == enabled[0]
        if stage_index == 1 and stage.batch_mff + stage.batch_mef and not (data.mff or data.mef):
            raise FuseError("stage 1 has no labeled images; set data.natural.dirs or data.labeled")
        if stage.batch_unlabeled and not data.unlabeled:
            raise FuseError(f"stage {stage_index} needs unlabeled pairs; set data.unlabeled")
        total, per_epoch = stage_steps(stage, data, world_size)
        resuming = ckpt is not None and ckpt["stage"] == stage_index
        if ckpt is not None and ckpt["stage"] > stage_index:
            continue  # finished before the interruption

        # ---- initialise the stage (nanoGPT init_from): scratch, previous stage, or a file
        if resuming:
            net.load_state_dict(ckpt["model"])
        elif stage.init_from != "scratch" or (init_weights is not None and first_stage):
            if init_weights is not None and first_stage:
                source = init_weights
            else:
                which = "best" if stage.init_from == "previous_best" else "last"
                source = run_dir / f"stage{stage_index - 1}_{which}.safetensors"
            if not source.is_file():
                raise FuseError(
                    f"stage {stage_index} starts from {source}, which does not exist; run the "
                    "previous stage first or pass --init WEIGHTS"
                )
            net.load_state_dict(load_weights(source).state_dict())
        if stage.init_faf2_from_faf1 and not resuming:
            net.faf2.load_state_dict(net.faf1.state_dict())
        params = _set_trainable(net, stage.train)
        stage_loss = stage.loss_config(recipe.loss)
        weights = _loss_weights(stage_loss)
        folder_weights = _folder_loss_weights(recipe, stage_loss)
        optimizer = _make_optimizer(recipe, net, stage.lr)
        scaler = torch.amp.GradScaler(
            device_.type, enabled=device_.type == "cuda" and recipe.precision == "fp16"
        )
        model: torch.nn.Module = net
        if world_size > 1:
            # DDP broadcasts rank 0's parameters at construction, so all ranks start equal.
            model = DistributedDataParallel(
                net, device_ids=[device_.index] if device_.type == "cuda" else None
            )
        # Validation and exports read the average when the stage keeps one; every rank updates
        # its own copy from identical weights, so the copies stay equal.
        average = WeightAverage(net, stage.ema_decay) if stage.ema_decay else None
        exported = net if average is None else average.net
        step, best = 0, math.inf
        if resuming:
            optimizer.load_state_dict(ckpt["optimizer"])
            scaler.load_state_dict(ckpt["scaler"])
            set_rng_state(ckpt["rng"][rank] if rank < len(ckpt["rng"]) else ckpt["rng"][0])
            step, best = ckpt["step"], ckpt["best_val"]
            if average is not None:
                # The recipe check above guarantees the checkpoint was written with this average.
                average.load_state_dict(ckpt["ema"])

        # ---- the loop
        seed = recipe.seed * 1000 + stage_index
        train_seconds, timed_steps = 0.0, 0
        bar = _progress(progress and master)
        with bar:
            task = bar.add_task(f"stage {stage_index}", total=total, completed=step, losses="")
            while step < total:
                if steps_left is not None and steps_left <= 0:
                    result.stopped_early = True
                    result.stage, result.step = stage_index, step
                    return result
                t_step = time.perf_counter()
                lr = lr_at(stage, step, per_epoch)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                batches: dict[str, tuple[torch.Tensor, ...]] = {}
                for name, size in (("mff", stage.batch_mff), ("mef", stage.batch_mef)):
                    items = data.mff if name == "mff" else data.mef
                    if size and items:
                        batches[name] = labeled_batch(
                            items, name, batch=size, crop=stage.crop_labeled, step=step,
                            seed=seed, rank=rank, mff=recipe.data.mff, mef=recipe.data.mef,
                            scale=recipe.data.natural.scale,
                        )  # fmt: skip
                if stage.batch_unlabeled:
                    batches["unlabeled"] = unlabeled_batch(
                        data.unlabeled, batch=stage.batch_unlabeled, crop=stage.crop_unlabeled,
                        step=step, seed=seed, rank=rank,
                    )  # fmt: skip
                batches = {k: tuple(t.to(device_) for t in v) for k, v in batches.items()}

                with _autocast(device_, recipe.precision):
                    loss, logs = _train_step(model, batches, stage, weights, folder_weights)
                if not math.isfinite(logs["loss"]):
                    raise FuseError(
                        f"stage {stage_index} step {step}: the loss is not finite; lower the "
                        "learning rate or enable grad_clip, then resume from the last checkpoint"
                    )
                scaler.scale(loss).backward()
                if stage.grad_clip > 0:
                    scaler.unscale_(optimizer)
                    logs["grad_norm"] = float(
                        torch.nn.utils.clip_grad_norm_(
                            params, stage.grad_clip, norm_type=stage.grad_clip_norm
                        )
                    )
                scaler.step(optimizer)
                scaler.update()
                optimizer.zero_grad(set_to_none=True)
                if average is not None:
                    average.update(net)
                step += 1
                # Time of the step itself (batch synthesis, forward, backward, update), without
                # validation or checkpoint writing.
                step_seconds = time.perf_counter() - t_step
                train_seconds += step_seconds
                timed_steps += 1
                if steps_left is not None:
                    steps_left -= 1

                # ---- logging, validation, checkpoints (rank 0 writes)
                if master and (step % stage.log_every == 0 or step == total):
                    row = {"kind": "train", "stage": stage_index, "step": step, "lr": lr, **logs}
                    row["seconds"] = round(step_seconds, 4)
                    row["time"] = round(time.time(), 1)
                    _append_log(log_path, row)
                    bar.update(task, losses=f"loss {logs['loss']:.4f}")
                bar.update(task, completed=step)
                if master and val is not None and (step % stage.val_every == 0 or step == total):
                    metrics = _validate(exported, val, stage, weights, device_)
                    _append_log(
                        log_path, {"kind": "val", "stage": stage_index, "step": step, **metrics}
                    )
                    if metrics["val_loss"] < best:
                        best = metrics["val_loss"]
                        save_weights(
                            exported,
                            run_dir / f"stage{stage_index}_best.safetensors",
                            metadata=_metadata(recipe, stage_index, step, {"val_loss": best}),
                        )
                if step % stage.checkpoint_every == 0 or step == total:
                    if master and step == total:
                        save_weights(
                            exported,
                            run_dir / f"stage{stage_index}_last.safetensors",
                            metadata=_metadata(recipe, stage_index, step, {}),
                        )
                    _write_checkpoint(
                        ckpt_path, stage=stage_index, step=step, total=total, net=net,
                        optimizer=optimizer, scaler=scaler, best=best, recipe=recipe,
                        world_size=world_size, average=average,
                    )  # fmt: skip
        if average is not None:
            net.load_state_dict(average.net.state_dict())  # the stage's result is what it exported
        if world_size > 1:
            _check_ranks_agree(net)
        result.seconds_per_step[stage_index] = train_seconds / max(timed_steps, 1)
        result.stage, result.step = stage_index, step
        ckpt = None  # later stages start fresh
    if world_size > 1:
        dist.barrier()
    return result
