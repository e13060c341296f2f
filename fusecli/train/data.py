"""Training data: decoded-once luma caches, development splits, shards and stateless batch sampling.

Every image is decoded once, reduced to its BT.601 full-range Y channel and kept in memory as
uint8 (the data sets are small). Batches are a pure function of (seed, stream, step, rank): the
epoch permutation comes from a generator seeded with the epoch number and every crop, flip and
simulation from one seeded with the step and sample index. Resuming at step t therefore draws
exactly the batches an uninterrupted run would, and the data position is just the step.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from fusecli.errors import FuseError, ImageReadError
from fusecli.io import image_files, natural_key, read_image
from fusecli.train.recipe import (
    DataConfig,
    LabeledFolders,
    MEFSimulation,
    MFFSimulation,
    PairFolders,
    Recipe,
)
from fusecli.train.simulate import simulate_mef, simulate_mff

__all__ = [
    "LabeledItem",
    "PairItem",
    "TrainData",
    "ValidationData",
    "crop_and_flip",
    "dev_split",
    "epoch_indices",
    "held_out_pairs",
    "labeled_batch",
    "list_images",
    "load_train_data",
    "load_validation_data",
    "read_luma",
    "scaled_crop",
    "stage_seed",
    "step_batches",
    "unlabeled_batch",
]

# Stream ids keep the random draws of the three batch kinds independent.
STREAM_MFF, STREAM_MEF, STREAM_UNLABELED, STREAM_VALIDATION = 1, 2, 3, 4


def read_luma(path: Path) -> np.ndarray:
    """Read an 8-bit image with :func:`fusecli.io.read_image` and return its BT.601 Y channel.

    Args:
        path: 8-bit greyscale or RGB(A) image.

    Returns:
        (H, W) uint8, as the image is displayed (EXIF orientation applied).
    """
    try:
        image = read_image(path)
    except ImageReadError as exc:
        raise ImageReadError(f"cannot read training image {exc}") from None
    if image.bit_depth != 8:
        raise FuseError(
            f"training image {path} is {image.bit_depth}-bit, expected 8-bit; convert it"
        )
    # io scales 8-bit values by 1/255; rint recovers them exactly.
    levels = np.rint(image.pixels[0].numpy() * 255.0).astype(np.uint8)
    if levels.shape[0] == 1:
        return levels[0]
    rgb = levels.astype(np.float32)
    y = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]
    return np.clip(np.round(y), 0, 255).astype(np.uint8)


def list_images(folder: Path) -> list[str]:
    """Image file names in ``folder``, in natural order (FuseError if the folder is missing)."""
    if not folder.is_dir():
        raise FuseError(
            f"data folder {folder} does not exist; fix the data root or paths in the recipe"
        )
    return [path.name for path in image_files(folder)]


def _leading_number(name: str) -> int | None:
    match = re.match(r"\d+", Path(name).stem)
    return int(match.group()) if match else None


def _groups(names: Sequence[str], group_offset: int) -> dict[str, list[str]]:
    """Group names; with ``group_offset`` k, name n + k joins name n when both exist."""
    by_number = {_leading_number(n): n for n in names if _leading_number(n) is not None}
    groups: dict[str, list[str]] = {}
    for name in sorted(names, key=natural_key):
        number = _leading_number(name)
        key = name
        if group_offset > 0 and number is not None and number - group_offset in by_number:
            key = by_number[number - group_offset]
        groups.setdefault(key, []).append(name)
    return groups


def dev_split(
    names: Sequence[str], dev_fraction: float, split: str = "contiguous", group_offset: int = 0
) -> tuple[list[str], list[str]]:
    """Deterministic train / development split that never separates a group.

    Args:
        names: file names, in any order.
        dev_fraction: share of groups kept for development (at least one group if > 0).
        split: ``contiguous`` takes the last groups in natural order (continuous video frames stay
            together); ``spread`` takes every k-th group (independent images, balanced coverage).
        group_offset: names whose leading numbers differ by this keep one side (0: no grouping).

    Returns:
        train names, development names (each in natural order).
    """
    groups = _groups(names, group_offset)
    keys = sorted(groups, key=lambda k: natural_key(groups[k][0]))
    n_dev = 0 if dev_fraction <= 0 else max(1, round(dev_fraction * len(keys)))
    n_dev = min(n_dev, len(keys) - 1) if len(keys) > 1 else 0
    if split == "contiguous":
        dev_keys = set(keys[len(keys) - n_dev :]) if n_dev else set()
    else:
        step = len(keys) / n_dev if n_dev else 0
        dev_keys = {keys[int(i * step + step / 2)] for i in range(n_dev)}
    train = [n for k in keys if k not in dev_keys for n in groups[k]]
    dev = [n for k in keys if k in dev_keys for n in groups[k]]
    return train, dev


@dataclass(frozen=True)
class LabeledItem:
    """A labeled MFF/MEF sample: a sharp image to simulate from, or a real (s1, s2, gt) triple."""

    target: np.ndarray  # (H, W) uint8 ground truth
    sources: tuple[np.ndarray, np.ndarray] | None = None  # real sources, None: simulate


@dataclass(frozen=True)
class PairItem:
    """An unlabeled source pair (H, W) uint8 each, from ``data.unlabeled[folder]``."""

    a: np.ndarray
    b: np.ndarray
    folder: int = 0


@dataclass(frozen=True)
class TrainData:
    """One rank's training shard of every stream."""

    mff: tuple[LabeledItem, ...]
    mef: tuple[LabeledItem, ...]
    unlabeled: tuple[PairItem, ...]


@dataclass(frozen=True)
class ValidationData:
    """Fixed validation batches: labeled (a, b, gt) per task and unlabeled (a, b), (N, 1, S, S)."""

    mff: tuple[torch.Tensor, ...] | None
    mef: tuple[torch.Tensor, ...] | None
    unlabeled: tuple[torch.Tensor, ...] | None


def _natural_split(root: Path, config: DataConfig) -> tuple[list[Path], list[Path]]:
    train: list[Path] = []
    dev: list[Path] = []
    for folder in config.natural.dirs:
        path = root / folder
        # Natural images are independent, so spread the development picks over each folder.
        t, d = dev_split(list_images(path), config.natural.dev_fraction, "spread")
        train += [path / n for n in t]
        dev += [path / n for n in d]
    if config.natural.max_images:
        train = train[: config.natural.max_images]
        dev = dev[: max(1, config.natural.max_images // 4)]
    return train, dev


def _labeled_split(root: Path, folders: LabeledFolders) -> tuple[list[str], list[str]]:
    base = root / folders.path
    names = list_images(base / folders.dirs[0])
    for d in folders.dirs[1:]:
        missing = sorted(set(names) - set(list_images(base / d)))
        if missing:
            raise FuseError(
                f"{base / d} lacks {missing[0]} (and {len(missing) - 1} more); pairs need one name"
            )
    train, dev = dev_split(names, folders.dev_fraction, "spread")
    if folders.max_pairs:
        train, dev = train[: folders.max_pairs], dev[: max(1, folders.max_pairs // 4)]
    return train, dev


def _pair_split(root: Path, pairs: PairFolders) -> tuple[list[str], list[str]]:
    base = root / pairs.path
    names = list_images(base / pairs.dirs[0])
    other = set(list_images(base / pairs.dirs[1]))
    if set(names) != other:
        raise FuseError(
            f"{base / pairs.dirs[0]} and {base / pairs.dirs[1]} must hold the same file names"
        )
    train, dev = dev_split(names, pairs.dev_fraction, pairs.split, pairs.group_offset)
    if pairs.max_pairs:
        train, dev = train[: pairs.max_pairs], dev[: max(1, pairs.max_pairs // 4)]
    return train, dev


def _triple(base: Path, dirs: Sequence[str], name: str) -> LabeledItem:
    s1, s2, gt = (read_luma(base / d / name) for d in dirs)
    if not s1.shape == s2.shape == gt.shape:
        raise FuseError(f"labeled triple {name} under {base} has images of different sizes")
    return LabeledItem(target=gt, sources=(s1, s2))


def _pair(base: Path, dirs: Sequence[str], name: str, folder: int = 0) -> PairItem:
    a, b = (read_luma(base / d / name) for d in dirs)
    if a.shape != b.shape:
        raise FuseError(f"pair {name} under {base} has images of different sizes")
    return PairItem(a, b, folder)


def load_train_data(
    root: Path, config: DataConfig, *, rank: int = 0, world_size: int = 1
) -> TrainData:
    """Decode this rank's shard (every ``world_size``-th training item) of every source.

    Args:
        root: data root (``recipe.data_root``).
        config: data section of the recipe.
        rank, world_size: distributed shard to read.

    Returns:
        The rank's training items, decoded to luma once.
    """
    natural, _ = _natural_split(root, config)
    shared = [LabeledItem(read_luma(p)) for p in natural[rank::world_size]]
    mff, mef = list(shared), list(shared)
    for folders in config.labeled:
        train, _ = _labeled_split(root, folders)
        items = [_triple(root / folders.path, folders.dirs, n) for n in train[rank::world_size]]
        (mff if folders.task == "mff" else mef).extend(items)
    unlabeled = []
    for folder, pairs in enumerate(config.unlabeled):
        train, _ = _pair_split(root, pairs)
        items = [_pair(root / pairs.path, pairs.dirs, n, folder) for n in train[rank::world_size]]
        unlabeled += items * pairs.repeat  # repeats share the decoded arrays
    return TrainData(tuple(mff), tuple(mef), tuple(unlabeled))


def held_out_pairs(root: Path, config: DataConfig) -> dict[str, list[str]]:
    """Names of the pairs each real pair folder keeps out of training (its development split).

    Evaluation code uses this to score a model only on pairs it never saw, with exactly the split
    the trainer made.

    Args:
        root: data root (``recipe.data_root``).
        config: data section of the recipe.

    Returns:
        {folder path as written in the recipe: development file names}, for every labeled and
        unlabeled folder of the recipe; folders the recipe does not list are not keys.
    """
    held_out = {folders.path: _labeled_split(root, folders)[1] for folders in config.labeled}
    held_out.update({pairs.path: _pair_split(root, pairs)[1] for pairs in config.unlabeled})
    return held_out


def _center_crop(image: np.ndarray, size: int) -> np.ndarray:
    image = _pad_to(image, size)
    top = (image.shape[0] - size) // 2
    left = (image.shape[1] - size) // 2
    return image[top : top + size, left : left + size]


def _pad_to(image: np.ndarray, size: int) -> np.ndarray:
    pad_h = max(0, size - image.shape[0])
    pad_w = max(0, size - image.shape[1])
    if pad_h or pad_w:
        image = np.pad(image, ((0, pad_h), (0, pad_w)), mode="symmetric")
    return image


def _stack(images: Sequence[np.ndarray]) -> torch.Tensor:
    """(H, W) float32 or uint8 arrays -> (N, 1, H, W) float32 tensor in [0, 1]."""
    arr = np.stack(
        [im.astype(np.float32) / (255.0 if im.dtype == np.uint8 else 1.0) for im in images]
    )
    return torch.from_numpy(np.ascontiguousarray(arr)).unsqueeze(1)


def load_validation_data(root: Path, config: DataConfig, *, seed: int) -> ValidationData:
    """Build the fixed validation batches from the development splits (centre crops).

    The labeled ones simulate MFF and MEF from the natural development images with generators
    seeded per image, plus the real labeled development triples; the same recipe always yields
    the same validation set.
    """
    size, cap = config.val_crop, config.val_max_pairs
    _, natural_dev = _natural_split(root, config)
    tasks: dict[str, list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = {"mff": [], "mef": []}
    for i, path in enumerate(natural_dev):
        gt = _center_crop(read_luma(path), size).astype(np.float32) / 255.0
        for task in ("mff", "mef"):
            rng = np.random.default_rng([seed, STREAM_VALIDATION, i, task == "mef"])
            if task == "mff":
                a, b = simulate_mff(gt, rng, config.mff)
            else:
                a, b = simulate_mef(gt, rng, config.mef)
                # Both orders in equal shares, fixed per image, so the score stays comparable.
                if config.mef.random_order and i % 2:
                    a, b = b, a
            tasks[task].append((a, b, gt))
    for folders in config.labeled:
        _, dev = _labeled_split(root, folders)
        for name in dev:
            item = _triple(root / folders.path, folders.dirs, name)
            a, b = item.sources or (item.target, item.target)
            tasks[folders.task].append(
                tuple(_center_crop(x, size).astype(np.float32) / 255.0 for x in (a, b, item.target))
            )
    pairs: list[tuple[np.ndarray, np.ndarray]] = []
    for folders in config.unlabeled:
        _, dev = _pair_split(root, folders)
        for name in dev:
            item = _pair(root / folders.path, folders.dirs, name)
            pairs.append((_center_crop(item.a, size), _center_crop(item.b, size)))

    def batch(samples: list, width: int) -> tuple[torch.Tensor, ...] | None:
        samples = samples[:cap]
        if not samples:
            return None
        return tuple(_stack([s[k] for s in samples]) for k in range(width))

    return ValidationData(batch(tasks["mff"], 3), batch(tasks["mef"], 3), batch(pairs, 2))


def epoch_indices(n_items: int, batch: int, step: int, *, seed: int, stream: int) -> list[int]:
    """Indices of the samples of ``step``: consecutive slices of per-epoch permutations.

    Args:
        n_items: size of the rank's shard.
        batch: samples per step.
        step: 0-based optimisation step.
        seed, stream: the permutation of epoch e is drawn from ``(seed, stream, e)``.

    Returns:
        ``batch`` indices into the shard; a batch may straddle two epochs.
    """
    out = []
    for position in range(step * batch, (step + 1) * batch):
        epoch, offset = divmod(position, n_items)
        perm = np.random.default_rng([seed, stream, epoch]).permutation(n_items)
        out.append(int(perm[offset]))
    return out


def crop_and_flip(
    images: Sequence[np.ndarray], size: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """One random ``size`` x ``size`` crop and random flips, shared by all images.

    Args:
        images: (H, W) arrays of one shape (smaller ones are reflect-padded up to ``size``).
        size: crop side.
        rng: seeded generator.

    Returns:
        The cropped (size, size) arrays, in the same order.
    """
    images = [_pad_to(im, size) for im in images]
    height, width = images[0].shape
    top = int(rng.integers(0, height - size + 1))
    left = int(rng.integers(0, width - size + 1))
    flip_h, flip_v = rng.random() < 0.5, rng.random() < 0.5
    out = []
    for im in images:
        patch = im[top : top + size, left : left + size]
        if flip_h:
            patch = patch[:, ::-1]
        if flip_v:
            patch = patch[::-1, :]
        out.append(np.ascontiguousarray(patch))
    return out


def scaled_crop(
    image: np.ndarray, size: int, rng: np.random.Generator, scale: tuple[float, ...]
) -> np.ndarray:
    """A random crop showing ``size / s`` pixels of ``image`` resized to ``size``, with flips.

    Args:
        image: (H, W) uint8.
        size: output side.
        rng: seeded generator.
        scale: range of s; (1, 1) is :func:`crop_and_flip` exactly (no extra random draws).

    Returns:
        (size, size) float32 in [0, 1].
    """
    if tuple(scale) == (1.0, 1.0):
        (patch,) = crop_and_flip([image], size, rng)
        return patch.astype(np.float32) / 255.0
    s = float(rng.uniform(scale[0], scale[1]))
    side = max(size, min(round(size / s), *image.shape))
    (patch,) = crop_and_flip([image], side, rng)
    patch = patch.astype(np.float32) / 255.0
    if side == size:
        return patch
    # Antialiased resampling: a plain bilinear reduction would alias fine texture into moire,
    # which no camera produces.
    resized = F.interpolate(
        torch.from_numpy(patch)[None, None], size=(size, size), mode="bilinear",
        antialias=True, align_corners=False,
    )  # fmt: skip
    return resized[0, 0].clamp_(0.0, 1.0).numpy()


def labeled_batch(
    items: Sequence[LabeledItem],
    task: str,
    *,
    batch: int,
    crop: int,
    step: int,
    seed: int,
    rank: int,
    mff: MFFSimulation,
    mef: MEFSimulation,
    scale: tuple[float, ...] = (1.0, 1.0),
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The MFF or MEF batch of one step: crops of real triples or simulated from sharp images.

    ``scale`` is the scale augmentation of the simulated crops (see :func:`scaled_crop`).

    Returns:
        source 1, source 2, ground truth: (batch, 1, crop, crop) float32 in [0, 1].
    """
    stream = STREAM_MFF if task == "mff" else STREAM_MEF
    sources_a, sources_b, targets = [], [], []
    for k, index in enumerate(
        epoch_indices(len(items), batch, step, seed=seed + rank, stream=stream)
    ):
        rng = np.random.default_rng([seed, stream, rank, step, k])
        item = items[index]
        if item.sources is None:
            gt = scaled_crop(item.target, crop, rng, scale)
            a, b = simulate_mff(gt, rng, mff) if task == "mff" else simulate_mef(gt, rng, mef)
        else:
            a, b, gt = (
                x.astype(np.float32) / 255.0
                for x in crop_and_flip([*item.sources, item.target], crop, rng)
            )
        if task == "mef" and mef.random_order and rng.random() < 0.5:
            a, b = b, a
        sources_a.append(a)
        sources_b.append(b)
        targets.append(gt)
    return _stack(sources_a), _stack(sources_b), _stack(targets)


def unlabeled_batch(
    items: Sequence[PairItem], *, batch: int, crop: int, step: int, seed: int, rank: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The unlabeled (IVF/MMF) batch of one step.

    Returns:
        source 1, source 2: (batch, 1, crop, crop) float32 in [0, 1].
        folders: (batch,) int64, the ``data.unlabeled`` index each crop comes from.
    """
    sources_a, sources_b, folders = [], [], []
    for k, index in enumerate(
        epoch_indices(len(items), batch, step, seed=seed + rank, stream=STREAM_UNLABELED)
    ):
        rng = np.random.default_rng([seed, STREAM_UNLABELED, rank, step, k])
        a, b = crop_and_flip([items[index].a, items[index].b], crop, rng)
        sources_a.append(a)
        sources_b.append(b)
        folders.append(items[index].folder)
    return _stack(sources_a), _stack(sources_b), torch.tensor(folders, dtype=torch.int64)


def stage_seed(recipe: Recipe, stage: int) -> int:
    """The seed of every batch of a stage: each stage draws its own crops."""
    return recipe.seed * 1000 + stage


def step_batches(
    recipe: Recipe, data: TrainData, stage: int, step: int, *, rank: int = 0
) -> dict[str, tuple[torch.Tensor, ...]]:
    """All batches of one training step, as the trainer draws them (on the CPU).

    Args:
        recipe: gives the stage's batch sizes and crops, the simulations and the seed.
        data: this rank's shard (see :func:`load_train_data`).
        stage: 1 or 2.
        step: the step within the stage (0-based); resuming at step t draws the same batches.
        rank: this process's rank.

    Returns:
        ``mff`` and ``mef``: (source 1, source 2, ground truth), each (B, 1, S, S) float32, for
        the tasks the stage draws and has data for; ``unlabeled``: (source 1, source 2, folder
        index (B,) int64) when the stage uses unlabeled pairs.
    """
    config = recipe.stage(stage)
    seed = stage_seed(recipe, stage)
    batches: dict[str, tuple[torch.Tensor, ...]] = {}
    for name, size in (("mff", config.batch_mff), ("mef", config.batch_mef)):
        items = data.mff if name == "mff" else data.mef
        if size and items:
            batches[name] = labeled_batch(
                items, name, batch=size, crop=config.crop_labeled, step=step, seed=seed,
                rank=rank, mff=recipe.data.mff, mef=recipe.data.mef,
                scale=recipe.data.natural.scale,
            )  # fmt: skip
    if config.batch_unlabeled:
        batches["unlabeled"] = unlabeled_batch(
            data.unlabeled, batch=config.batch_unlabeled, crop=config.crop_unlabeled,
            step=step, seed=seed, rank=rank,
        )  # fmt: skip
    return batches
