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
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import yaml
from torch.nn.parallel import DistributedDataParallel

from fusecli.engine.device import select_device
from fusecli.engine.model import PSLPT
from fusecli.engine.weights import load_weights, save_weights
from fusecli.errors import FuseError, RecipeError
from fusecli.train.averaging import WeightAverage
from fusecli.train.checkpoint import (
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from fusecli.train.data import (
    TrainData,
    ValidationData,
    load_train_data,
    load_validation_data,
    step_batches,
)
from fusecli.train.losses import (
    LossWeights,
    ssim,
    stage1_loss,
    stage2_loss,
    supervised_task_loss,
    unsupervised_loss,
)
from fusecli.train.recipe import Recipe, StageConfig, recipe_to_dict

__all__ = [
    "MAX_PIXELS_PER_FORWARD",
    "PreparedStage",
    "ProgressCallback",
    "TrainProgress",
    "TrainResult",
    "lr_at",
    "make_optimizer",
    "parameter_checksum",
    "prepare_stage",
    "resolved_recipe",
    "same_recipe",
    "set_trainable",
    "stage_steps",
    "train",
    "train_step",
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


@dataclass(frozen=True)
class TrainProgress:
    """Where training is: reported when a stage starts (or resumes) and after every step."""

    stage: int
    step: int  # optimisation steps done in this stage
    total: int  # steps of the stage
    loss: float | None = None  # the loss of the step just done; None when the stage starts


# Called on rank 0 only, as tiling's progress(done, total) is; the CLI draws it.
ProgressCallback = Callable[[TrainProgress], None]


# ----------------------------------------------------------------------------- helpers


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


def set_trainable(net: PSLPT, names: tuple[str, ...]) -> list[torch.nn.Parameter]:
    """Train only the named children of ``net`` (``encoder1``, ``faf2``, ...); return them."""
    for child_name, child in net.named_children():
        child.requires_grad_(child_name in names)
    return [p for p in net.parameters() if p.requires_grad]


def make_optimizer(recipe: Recipe, net: PSLPT, lr: float) -> torch.optim.Optimizer:
    """Adam(W) over the trainable parameters; with weight decay, the model's exemptions apply.

    :meth:`PSLPT.no_weight_decay` names the parameters decay would harm (timm's convention).
    """
    o = recipe.optimizer
    cls = torch.optim.AdamW if o.name == "adamw" else torch.optim.Adam
    named = [(n, p) for n, p in net.named_parameters() if p.requires_grad]
    if o.weight_decay > 0:
        exempt = net.no_weight_decay()
        groups: list = [
            {"params": [p for n, p in named if n not in exempt], "weight_decay": o.weight_decay},
            {"params": [p for n, p in named if n in exempt], "weight_decay": 0.0},
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


def same_recipe(stored: Mapping[str, Any], recipe: Recipe) -> bool:
    """Whether the recipe stored in a checkpoint is ``recipe``.

    The stored form is parsed before comparing, so a checkpoint written before a section became
    typed still matches: trainers before issue 22 stored the model section as overrides only
    (``model: {}``), today's store every field of the ModelConfig.
    """
    try:
        parsed = Recipe.from_dict(stored)
    except RecipeError:
        return False
    return resolved_recipe(parsed) == resolved_recipe(recipe)


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


def train_step(
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


# ----------------------------------------------------------------------------- stage set-up


@dataclass
class PreparedStage:
    """A stage ready to train: what :func:`prepare_stage` set up and where the loop starts."""

    index: int
    config: StageConfig
    model: torch.nn.Module  # the network, wrapped in DDP when distributed
    exported: PSLPT  # what validation and the weights files read: the network or its average
    params: list[torch.nn.Parameter]
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    average: WeightAverage | None
    weights: LossWeights
    folder_weights: tuple[LossWeights, ...]
    total: int  # steps of the stage
    per_epoch: int
    step: int = 0  # steps already done (> 0 when resuming)
    best: float = math.inf  # best validation loss so far


def prepare_stage(
    recipe: Recipe,
    net: PSLPT,
    index: int,
    *,
    data: TrainData,
    run_dir: Path,
    checkpoint: Mapping[str, Any] | None = None,
    init_weights: Path | None = None,
    device: torch.device,
    rank: int = 0,
    world_size: int = 1,
) -> PreparedStage:
    """Set up stage ``index``: its weights, trainable parts, losses, optimiser, average and DDP.

    The weights come, in this order of precedence, from the checkpoint of this stage (resume),
    from ``init_weights``, from the previous stage's output (``init_from``, as nanoGPT's
    ``init_from``) or stay as they are (scratch).

    Args:
        recipe: the validated recipe.
        net: the (unwrapped) network; loaded in place.
        index: 1 or 2.
        data: this rank's training shard, which sets the steps per epoch.
        run_dir: where the previous stage's weights files are.
        checkpoint: a checkpoint of this stage to resume from.
        init_weights: weights file to start from instead of ``init_from``.
        device: the training device.
        rank, world_size: this process's place in a DDP run.

    Raises:
        FuseError: the stage has no data for its batches, or its starting weights are missing.
    """
    stage = recipe.stage(index)
    if index == 1 and stage.batch_mff + stage.batch_mef and not (data.mff or data.mef):
        raise FuseError("stage 1 has no labeled images; set data.natural.dirs or data.labeled")
    if stage.batch_unlabeled and not data.unlabeled:
        raise FuseError(f"stage {index} needs unlabeled pairs; set data.unlabeled")
    total, per_epoch = stage_steps(stage, data, world_size)

    if checkpoint is not None:
        net.load_state_dict(checkpoint["model"])
    elif stage.init_from != "scratch" or init_weights is not None:
        if init_weights is not None:
            source = init_weights
        else:
            which = "best" if stage.init_from == "previous_best" else "last"
            source = run_dir / f"stage{index - 1}_{which}.safetensors"
        if not source.is_file():
            raise FuseError(
                f"stage {index} starts from {source}, which does not exist",
                remedy="run the previous stage first or give weights to start from",
                hint="init",
            )
        net.load_state_dict(load_weights(source).state_dict())
    if stage.init_faf2_from_faf1 and checkpoint is None:
        net.faf2.load_state_dict(net.faf1.state_dict())

    params = set_trainable(net, stage.train)
    weights, folder_weights = recipe.loss_weights(index)
    optimizer = make_optimizer(recipe, net, stage.lr)
    scaler = torch.amp.GradScaler(
        device.type, enabled=device.type == "cuda" and recipe.precision == "fp16"
    )
    model: torch.nn.Module = net
    if world_size > 1:
        # DDP broadcasts rank 0's parameters at construction, so all ranks start equal.
        model = DistributedDataParallel(
            net, device_ids=[device.index] if device.type == "cuda" else None
        )
    # Validation and exports read the average when the stage keeps one; every rank updates its
    # own copy from identical weights, so the copies stay equal.
    average = WeightAverage(net, stage.ema_decay) if stage.ema_decay else None
    prepared = PreparedStage(
        index=index, config=stage, model=model, exported=net if average is None else average.net,
        params=params, optimizer=optimizer, scaler=scaler, average=average, weights=weights,
        folder_weights=folder_weights, total=total, per_epoch=per_epoch,
    )  # fmt: skip
    if checkpoint is not None:
        optimizer.load_state_dict(checkpoint["optimizer"])
        scaler.load_state_dict(checkpoint["scaler"])
        states = checkpoint["rng"]
        set_rng_state(states[rank] if rank < len(states) else states[0])
        prepared.step, prepared.best = checkpoint["step"], checkpoint["best_val"]
        if average is not None:
            # The recipe check of train() guarantees the checkpoint was written with an average.
            average.load_state_dict(checkpoint["ema"])
    return prepared


def _open_run(
    recipe: Recipe, run_dir: Path, *, stages: tuple[int, ...], resume: bool, master: bool
) -> dict[str, Any] | None:
    """Check the run directory, write the resolved recipe; return the checkpoint to resume."""
    ckpt_path = run_dir / "checkpoint.pt"
    ckpt = load_checkpoint(ckpt_path) if resume else None
    if ckpt is not None and not same_recipe(ckpt["recipe"], recipe):
        raise FuseError(
            f"the recipe differs from the one {ckpt_path} was trained with; "
            f"resume with {run_dir / 'recipe.yaml'}"
        )
    if not resume and 1 in stages and ckpt_path.exists():
        raise FuseError(
            f"{run_dir} already holds a run",
            remedy="resume it or choose another output folder",
            hint="resume",
        )
    if master:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "recipe.yaml").write_text(
            yaml.safe_dump(resolved_recipe(recipe), sort_keys=False), encoding="utf-8"
        )
        if ckpt is not None:
            _truncate_log(run_dir / "log.jsonl", ckpt["stage"], ckpt["step"])
    return ckpt


@contextlib.contextmanager
def _deterministic(enabled: bool) -> Iterator[None]:
    """Torch's deterministic algorithms for the run only (the setting is process-wide)."""
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(previous or enabled)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous)


# ----------------------------------------------------------------------------- the loop


def train(
    recipe: Recipe,
    *,
    run_dir: Path | None = None,
    stages: tuple[int, ...] = (1, 2),
    resume: bool = False,
    init_weights: Path | None = None,
    device: str | None = None,
    stop_after: int | None = None,
    progress: ProgressCallback | None = None,
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
        progress: called on rank 0 with a :class:`TrainProgress` when a stage starts and after
            every step.

    Returns:
        The trained (unwrapped) network and where the run stopped.
    """
    with _deterministic(recipe.deterministic):
        # ---- set-up: device, ranks, run directory, data, seeds, network
        device_ = select_device(device or recipe.device)
        rank, world_size, device_ = _setup_distributed(device_)
        master = rank == 0
        run_dir = Path(run_dir or recipe.output_dir)
        ckpt_path, log_path = run_dir / "checkpoint.pt", run_dir / "log.jsonl"
        ckpt = _open_run(recipe, run_dir, stages=stages, resume=resume, master=master)
        root = recipe.data_root
        data = load_train_data(root, recipe.data, rank=rank, world_size=world_size)
        val = load_validation_data(root, recipe.data, seed=recipe.seed) if master else None
        torch.manual_seed(recipe.seed)
        np.random.seed(recipe.seed)
        net = PSLPT(recipe.model).to(device_)
        result = TrainResult(net=net, run_dir=run_dir)
        steps_left = stop_after

        enabled = [i for i in stages if recipe.stage(i).enabled]
        for index in enabled:
            if ckpt is not None and ckpt["stage"] > index:
                continue  # finished before the interruption
            s = prepare_stage(
                recipe, net, index, data=data, run_dir=run_dir,
                checkpoint=ckpt if ckpt is not None and ckpt["stage"] == index else None,
                init_weights=init_weights if index == enabled[0] else None,
                device=device_, rank=rank, world_size=world_size,
            )  # fmt: skip
            stage = s.config
            train_seconds, timed_steps = 0.0, 0
            if progress is not None and master:
                progress(TrainProgress(index, s.step, s.total))
            while s.step < s.total:
                if steps_left is not None and steps_left <= 0:
                    result.stopped_early = True
                    result.stage, result.step = index, s.step
                    return result
                t_step = time.perf_counter()
                lr = lr_at(stage, s.step, s.per_epoch)
                for group in s.optimizer.param_groups:
                    group["lr"] = lr
                batches = step_batches(recipe, data, index, s.step, rank=rank)
                batches = {k: tuple(t.to(device_) for t in v) for k, v in batches.items()}

                with _autocast(device_, recipe.precision):
                    loss, logs = train_step(s.model, batches, stage, s.weights, s.folder_weights)
                if not math.isfinite(logs["loss"]):
                    raise FuseError(
                        f"stage {index} step {s.step}: the loss is not finite; lower the "
                        "learning rate or enable grad_clip, then resume from the last checkpoint"
                    )
                s.scaler.scale(loss).backward()
                if stage.grad_clip > 0:
                    s.scaler.unscale_(s.optimizer)
                    logs["grad_norm"] = float(
                        torch.nn.utils.clip_grad_norm_(
                            s.params, stage.grad_clip, norm_type=stage.grad_clip_norm
                        )
                    )
                s.scaler.step(s.optimizer)
                s.scaler.update()
                s.optimizer.zero_grad(set_to_none=True)
                if s.average is not None:
                    s.average.update(net)
                s.step += 1
                # Time of the step itself (batch synthesis, forward, backward, update), without
                # validation or checkpoint writing.
                step_seconds = time.perf_counter() - t_step
                train_seconds += step_seconds
                timed_steps += 1
                if steps_left is not None:
                    steps_left -= 1

                # ---- logging, validation, checkpoints (rank 0 writes)
                step, last = s.step, s.step == s.total
                if master and (step % stage.log_every == 0 or last):
                    row = {"kind": "train", "stage": index, "step": step, "lr": lr, **logs}
                    row["seconds"] = round(step_seconds, 4)
                    row["time"] = round(time.time(), 1)
                    _append_log(log_path, row)
                if val is not None and (step % stage.val_every == 0 or last):
                    metrics = _validate(s.exported, val, stage, s.weights, device_)
                    _append_log(log_path, {"kind": "val", "stage": index, "step": step, **metrics})
                    if metrics["val_loss"] < s.best:
                        s.best = metrics["val_loss"]
                        save_weights(
                            s.exported,
                            run_dir / f"stage{index}_best.safetensors",
                            metadata=_metadata(recipe, index, step, {"val_loss": s.best}),
                        )
                if step % stage.checkpoint_every == 0 or last:
                    if master and last:
                        save_weights(
                            s.exported,
                            run_dir / f"stage{index}_last.safetensors",
                            metadata=_metadata(recipe, index, step, {}),
                        )
                    _write_checkpoint(
                        ckpt_path, stage=index, step=step, total=s.total, net=net,
                        optimizer=s.optimizer, scaler=s.scaler, best=s.best, recipe=recipe,
                        world_size=world_size, average=s.average,
                    )  # fmt: skip
                if progress is not None and master:
                    progress(TrainProgress(index, step, s.total, logs["loss"]))

            if s.average is not None:
                net.load_state_dict(s.average.net.state_dict())  # the stage's result: its export
            if world_size > 1:
                _check_ranks_agree(net)
            result.seconds_per_step[index] = train_seconds / max(timed_steps, 1)
            result.stage, result.step = index, s.step
            ckpt = None  # later stages start fresh
        if world_size > 1:
            dist.barrier()
        return result
