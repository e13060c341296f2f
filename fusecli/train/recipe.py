"""Training recipes: YAML into frozen, validated dataclasses (Recipe, DataConfig, StageConfig).

Every key of the YAML file maps to a dataclass field; the ``model:`` section is the engine's
:class:`ModelConfig` and the ``loss:`` section the losses' :class:`LossWeights`. Unknown keys, wrong
types and out-of-range values are collected over the whole file and reported together in one
RecipeError naming each key path and its line, before any data is read or any model is built.
Below the CLI nothing handles a raw dict.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

import yaml

from fusecli.engine.config import ModelConfig
from fusecli.errors import RecipeError
from fusecli.train.losses import LOSS_KEYS, UNSUPERVISED_LOSS_KEYS, LossWeights, check_overrides

__all__ = [
    "DataConfig",
    "LabeledFolders",
    "MEFSimulation",
    "MFFSimulation",
    "NaturalImages",
    "OptimizerConfig",
    "PairFolders",
    "Recipe",
    "StageConfig",
    "apply_overrides",
    "recipe_to_dict",
]


def _raise_problems(problems: list[str]) -> None:
    """Raise every problem of one section together (the loader adds the key path and line)."""
    if problems:
        raise ValueError("; ".join(problems))


@dataclass(frozen=True)
class OptimizerConfig:
    """Adam settings shared by both stages (the learning rate is per stage)."""

    name: Literal["adam", "adamw"] = "adam"
    betas: tuple[float, ...] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.0

    def __post_init__(self) -> None:
        if len(self.betas) != 2:
            raise ValueError("betas needs exactly two numbers")


@dataclass(frozen=True)
class MFFSimulation:
    """Multi-focus supervision from a sharp image: blur complementary regions (see simulate.py)."""

    blur_sigma: tuple[float, ...] = (1.0, 4.0)  # Gaussian defocus sigma range, pixels
    feather_sigma: tuple[float, ...] = (0.5, 2.0)  # softness of the focus boundary, pixels
    foreground_fraction: tuple[float, ...] = (0.25, 0.75)  # share of the crop that is region A
    shapes: tuple[str, ...] = ("ellipses", "blobs", "half_plane")


@dataclass(frozen=True)
class MEFSimulation:
    """Multi-exposure supervision from a well-exposed image (see simulate.py)."""

    under_stops: tuple[float, ...] = (1.0, 3.0)  # exposure scale 2**-stops
    over_stops: tuple[float, ...] = (1.0, 3.0)  # exposure scale 2**+stops
    gamma: tuple[float, ...] = (1.8, 2.6)  # camera response: y = E ** (1 / gamma)
    # Variance per unit linear signal. A real sensor at base ISO is near 1e-4 (about 1% noise at
    # full scale); 0.01 taught the network to smooth away the fine detail of clean brackets.
    shot_noise: tuple[float, ...] = (0.0, 0.001)
    read_noise: tuple[float, ...] = (0.0, 0.002)  # standard deviation, linear units
    # Scene illumination: the linear image is multiplied by 2 ** (s * field), field a smooth random
    # map spanning [-0.5, 0.5] and s uniform in this range of stops. A natural image alone has the
    # dynamic range of a display; real brackets span more, and fusing them means keeping local
    # contrast while compressing illumination. The ground truth stays the unlit image, which is
    # exactly that compression. (0, 0): off.
    illumination_stops: tuple[float, ...] = (0.0, 0.0)
    # Feed the two exposures in a random order instead of always the darker first. A network
    # trained on one order learns an order-specific role for each encoder, and on real brackets
    # (MEFB) that role fits worse than the swapped one (model card, "MEF input order").
    random_order: bool = False


@dataclass(frozen=True)
class NaturalImages:
    """Sharp natural images from which MFF and MEF supervision is simulated on the fly."""

    dirs: tuple[str, ...] = ()
    dev_fraction: float = 0.1  # share kept out of training for labeled validation
    max_images: int = 0  # 0: all; otherwise the first N of the sorted training list (smoke tests)
    # Scale augmentation: each simulated crop shows a region of crop / s pixels resized to the
    # crop, s uniform in this range. Below 1 a crop holds more of the scene (the network sees
    # objects whole and at the sizes of smaller photographs); (1, 1): off, no resampling.
    scale: tuple[float, ...] = (1.0, 1.0)

    def __post_init__(self) -> None:
        if len(self.scale) != 2 or not 0 < self.scale[0] <= self.scale[1] <= 1:
            raise ValueError(
                f"natural.scale must be two numbers 0 < low <= high <= 1, got {self.scale}"
            )


@dataclass(frozen=True)
class LabeledFolders:
    """Real labeled triples in three sibling folders: source 1, source 2, ground truth."""

    task: Literal["mff", "mef"] = "mff"
    path: str = ""
    dirs: tuple[str, ...] = ("source1", "source2", "gt")
    dev_fraction: float = 0.1
    max_pairs: int = 0

    def __post_init__(self) -> None:
        if len(self.dirs) != 3:
            raise ValueError("labeled dirs need three names: source 1, source 2, ground truth")


@dataclass(frozen=True)
class PairFolders:
    """Unlabeled pairs in two sibling folders with the same file names (IVF, MMF).

    ``split`` says how the development pairs are chosen: ``contiguous`` takes the last block of
    the names in natural (numeric) order, so frames of one drive stay on one side except at a single
    boundary; ``spread`` takes every k-th group. ``group_offset`` > 0 keeps names ``n`` and
    ``n + group_offset`` together (MRI-PET: 21, the two MRI weightings share one PET image).
    ``repeat`` draws each training pair of the folder that many times per epoch, so a small folder
    can weigh as much in the batches as a large one (an epoch then counts the repeats).
    """

    name: str = ""
    path: str = ""
    dirs: tuple[str, ...] = ("a", "b")
    dev_fraction: float = 0.1
    split: Literal["contiguous", "spread"] = "contiguous"
    group_offset: int = 0
    max_pairs: int = 0
    repeat: int = 1
    # Unsupervised loss weights for the pairs of this folder only, by LossWeights name (those of
    # Eq. 6-7): IVF and MMF are judged differently, and one shared trade-off cost one of them.
    # They take precedence over the recipe's and the stage's values.
    loss: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        problems = check_overrides(self.loss, UNSUPERVISED_LOSS_KEYS)
        if len(self.dirs) != 2:
            problems.insert(0, "pair dirs need two names")
        if self.repeat < 1:
            problems.insert(0, "repeat must be a whole number of at least 1")
        _raise_problems(problems)

    def loss_weights(self, base: LossWeights) -> LossWeights:
        """The loss weights of this folder's pairs: ``base`` (the stage's) with its overrides."""
        return base.with_overrides(self.loss)


@dataclass(frozen=True)
class DataConfig:
    """Where the training data comes from. Relative paths resolve against ``root``."""

    root: str = "../shared/data"  # relative to the recipe file's folder
    natural: NaturalImages = field(default_factory=NaturalImages)
    labeled: tuple[LabeledFolders, ...] = ()
    unlabeled: tuple[PairFolders, ...] = ()
    mff: MFFSimulation = field(default_factory=MFFSimulation)
    mef: MEFSimulation = field(default_factory=MEFSimulation)
    val_crop: int = 128  # centre crop of validation images (multiple of 16)
    val_max_pairs: int = 16  # per validation set


@dataclass(frozen=True)
class StageConfig:
    """One training stage. ``unit`` says whether length and decay points count epochs or steps.

    An epoch is one pass over the stage's main data on one rank: the simulated and folder MFF/MEF
    training images in stage 1, the unlabeled pairs in stage 2 (the data stage 2 adds).
    """

    enabled: bool = True
    unit: Literal["epoch", "step"] = "step"
    length: int = 1
    lr: float = 1e-4
    lr_decay_at: tuple[int, ...] = ()
    lr_decay_factor: float = 0.5
    batch_mff: int = 2
    batch_mef: int = 2
    batch_unlabeled: int = 0
    crop_labeled: int = 128
    crop_unlabeled: int = 64
    grad_clip: float = 0.0  # 0: no clipping
    grad_clip_norm: float = 2.0  # 1, 2, or inf
    faf_set: int = 1
    # FAF set of the supervised MFF/MEF crops when it differs from ``faf_set`` (0: the same).
    # A joint stage trains encoders and decoder on every task at once, each task through its own
    # set: labeled_faf_set 1 for MFF/MEF, faf_set 2 for the unlabeled IVF/MMF pairs.
    labeled_faf_set: int = 0
    train: tuple[str, ...] = ("encoder1", "encoder2", "decoder", "faf1")
    init_faf2_from_faf1: bool = False
    init_from: Literal["previous_last", "previous_best", "scratch"] = "scratch"
    # Loss weights that differ in this stage from the recipe's loss section, by LossWeights name:
    # stage 1 and stage 2 of a refinement recipe may want different trade-offs.
    loss: dict[str, float] = field(default_factory=dict)
    # > 0: validate and export an exponential moving average of the weights with this decay
    # (0.995 averages over about the last 200 steps); training itself moves the raw weights.
    ema_decay: float = 0.0
    log_every: int = 1
    val_every: int = 100
    checkpoint_every: int = 100

    def __post_init__(self) -> None:
        problems = []
        for name in ("crop_labeled", "crop_unlabeled"):
            size = getattr(self, name)
            if size < 16 or size % 16:
                problems.append(f"{name} must be a positive multiple of 16, got {size}")
        if self.faf_set not in (1, 2):
            problems.append(f"faf_set must be 1 or 2, got {self.faf_set}")
        if self.labeled_faf_set not in (0, 1, 2):
            problems.append(
                f"labeled_faf_set must be 0 (same as faf_set), 1 or 2, got {self.labeled_faf_set}"
            )
        allowed = {"encoder1", "encoder2", "decoder", "faf1", "faf2"}
        if set(self.train) - allowed:
            problems.append(f"train may list only {sorted(allowed)}, got {list(self.train)}")
        if min(self.length, self.log_every, self.val_every, self.checkpoint_every) < 1:
            problems.append("length, log_every, val_every and checkpoint_every must be >= 1")
        if self.batch_mff + self.batch_mef < 1:
            problems.append("a stage needs batch_mff + batch_mef >= 1")
        if not 0.0 <= self.ema_decay < 1.0:
            problems.append(f"ema_decay must be 0 (off) or lie in (0, 1), got {self.ema_decay}")
        if not self.lr >= 0:  # 0 runs a stage without moving the weights (validation, export)
            problems.append(f"lr must be >= 0, got {self.lr}")
        if not 0.0 < self.lr_decay_factor <= 1.0:
            problems.append(f"lr_decay_factor must lie in (0, 1], got {self.lr_decay_factor}")
        if any(point < 1 for point in self.lr_decay_at):
            problems.append(f"lr_decay_at points must be >= 1, got {list(self.lr_decay_at)}")
        if min(self.batch_mff, self.batch_mef, self.batch_unlabeled) < 0:
            problems.append("batch_mff, batch_mef and batch_unlabeled must be >= 0")
        if not self.grad_clip >= 0:
            problems.append(f"grad_clip must be >= 0 (0: no clipping), got {self.grad_clip}")
        if not self.grad_clip_norm > 0:
            problems.append(f"grad_clip_norm must be > 0 (1, 2 or inf), got {self.grad_clip_norm}")
        _raise_problems(problems + check_overrides(self.loss, LOSS_KEYS))

    @property
    def faf_set_labeled(self) -> int:
        """The FAF set the supervised MFF/MEF crops go through."""
        return self.labeled_faf_set or self.faf_set

    def loss_weights(self, base: LossWeights) -> LossWeights:
        """The loss weights of this stage: ``base`` (the recipe's) with this stage's overrides."""
        return base.with_overrides(self.loss)


@dataclass(frozen=True)
class Recipe:
    """A full training recipe: both stages, data, losses, optimiser and run settings."""

    seed: int = 0
    output_dir: str = "runs/train"  # relative to the current directory
    device: str = "auto"
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"  # autocast dtype, used on CUDA only
    deterministic: bool = False
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossWeights = field(default_factory=LossWeights)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    data: DataConfig = field(default_factory=DataConfig)
    stage1: StageConfig = field(default_factory=StageConfig)
    stage2: StageConfig = field(default_factory=StageConfig)
    source: str = ""  # file the recipe was read from (set by from_file, not by users)

    @classmethod
    def from_file(cls, path: str | Path, overrides: tuple[str, ...] = ()) -> Recipe:
        """Read, override and validate a recipe file.

        Args:
            path: YAML file.
            overrides: ``dotted.key=value`` strings; each must name an existing key and keep its
                type (values are parsed as YAML).

        Raises:
            RecipeError: unreadable file, invalid YAML, unknown keys, wrong types or values; all
                problems are reported at once.
        """
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise RecipeError(
                f"cannot read recipe {path}: {exc.strerror}; check the path"
            ) from None
        try:
            raw = yaml.safe_load(text)
            lines = _key_lines(yaml.compose(text, Loader=yaml.SafeLoader))
        except yaml.YAMLError as exc:
            raise RecipeError(
                f"recipe {path} is not valid YAML: {exc}".replace("\n", " ")
            ) from None
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise RecipeError(f"recipe {path} must be a mapping of keys to values")
        raw = apply_overrides(raw, overrides, where=str(path))
        raw["source"] = str(path.resolve())
        errors: list[str] = []
        recipe = _build(cls, raw, (), lines, errors)
        if errors:
            raise RecipeError(f"recipe {path} has {len(errors)} problem(s): " + "; ".join(errors))
        return recipe

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Recipe:
        """Validate a plain mapping (e.g. the recipe stored in a checkpoint)."""
        errors: list[str] = []
        recipe = _build(cls, dict(raw), (), {}, errors)
        if errors:
            raise RecipeError("recipe has problem(s): " + "; ".join(errors))
        return recipe

    def stage(self, index: int) -> StageConfig:
        """Stage 1 or 2."""
        return self.stage1 if index == 1 else self.stage2

    def loss_weights(self, stage: int) -> tuple[LossWeights, tuple[LossWeights, ...]]:
        """The loss weights of a stage, and of each ``data.unlabeled`` folder in that stage.

        The recipe's ``loss`` section, overridden by the stage's ``loss`` and then by each pair
        folder's ``loss``.
        """
        weights = self.stage(stage).loss_weights(self.loss)
        return weights, tuple(pairs.loss_weights(weights) for pairs in self.data.unlabeled)

    @property
    def data_root(self) -> Path:
        """``data.root`` resolved against the folder of the recipe file."""
        root = Path(self.data.root).expanduser()
        if root.is_absolute() or not self.source:
            return root
        return Path(self.source).parent / root


def recipe_to_dict(recipe: Any) -> Any:
    """Plain YAML/JSON-able form of a recipe (tuples become lists)."""
    if dataclasses.is_dataclass(recipe):
        return {f.name: recipe_to_dict(getattr(recipe, f.name)) for f in dataclasses.fields(recipe)}
    if isinstance(recipe, (tuple, list)):
        return [recipe_to_dict(v) for v in recipe]
    if isinstance(recipe, dict):
        return {k: recipe_to_dict(v) for k, v in recipe.items()}
    return recipe


def apply_overrides(
    raw: dict[str, Any], overrides: tuple[str, ...], *, where: str = "recipe"
) -> dict[str, Any]:
    """Return a copy of ``raw`` with ``a.b.c=value`` overrides applied (nanoGPT configurator).

    Only keys that exist in the recipe or as dataclass defaults may be set; the type check happens
    in validation. Missing intermediate sections are created, since their defaults exist.
    """
    out = _deep_copy(raw)
    for item in overrides:
        if "=" not in item:
            raise RecipeError(f"override {item!r} must look like key.path=value")
        key, _, text = item.partition("=")
        parts = key.strip().split(".")
        if not _known_path(Recipe, parts):
            raise RecipeError(f"override {key!r} names no recipe key; see the keys in {where}")
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise RecipeError(f"override {key!r}: {part} is not a section")
        node[parts[-1]] = yaml.safe_load(text)
    return out


def _deep_copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _deep_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_deep_copy(v) for v in value]
    return value


def _known_path(cls: type, parts: list[str]) -> bool:
    hints = typing.get_type_hints(cls)
    if parts[0] not in hints:
        return False
    if len(parts) == 1:
        return True
    inner = hints[parts[0]]
    if typing.get_origin(inner) is dict:
        return len(parts) == 2  # a free-form mapping (stage loss overrides): keys checked later
    return dataclasses.is_dataclass(inner) and _known_path(inner, parts[1:])


def _key_lines(node: yaml.Node | None, path: tuple = ()) -> dict[tuple, int]:
    """Map each key path (tuple of keys / list indices) to its 1-based line in the file."""
    lines: dict[tuple, int] = {}
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            sub = (*path, key_node.value)
            lines[sub] = key_node.start_mark.line + 1
            lines.update(_key_lines(value_node, sub))
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            sub = (*path, i)
            lines[sub] = item.start_mark.line + 1
            lines.update(_key_lines(item, sub))
    return lines


def _where(path: tuple, lines: dict[tuple, int]) -> str:
    name = ".".join(str(p) for p in path) or "<top>"
    probe = path
    while probe and probe not in lines:
        probe = probe[:-1]
    return f"{name} (line {lines[probe]})" if probe in lines else name


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(v) for v in typing.get_args(tp))
    if origin is tuple:
        return f"a list of {_type_name(typing.get_args(tp)[0])}"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(
        tp, getattr(tp, "__name__", str(tp))
    )


def _build(tp: Any, value: Any, path: tuple, lines: dict[tuple, int], errors: list[str]) -> Any:
    """Convert ``value`` to type ``tp``; append a message to ``errors`` on every mismatch."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            errors.append(f"{_where(path, lines)} must be a mapping")
            return None
        hints = typing.get_type_hints(tp)
        names = {f.name for f in dataclasses.fields(tp)}
        for key in value:
            if key not in names:
                errors.append(
                    f"{_where((*path, key), lines)} is not a known key "
                    f"(known: {', '.join(sorted(names - {'source'}))})"
                )
        # A key with a wrong value keeps its default here, so that the section's own checks
        # (ranges, consistency) still run and their problems are reported in the same error.
        kwargs = {}
        valid = True
        for key in (f.name for f in dataclasses.fields(tp) if f.name in value):
            n_errors = len(errors)
            built = _build(hints[key], value[key], (*path, key), lines, errors)
            if len(errors) == n_errors:
                kwargs[key] = built
            else:
                valid = False
        try:
            built = tp(**kwargs)
        except (TypeError, ValueError) as exc:
            # A section reports all its problems in one exception, joined by "; ".
            errors.extend(f"{_where(path, lines)}: {problem}" for problem in str(exc).split("; "))
            return None
        return built if valid else None
    if origin is tuple:
        (item_type, *_) = typing.get_args(tp)
        if not isinstance(value, list):
            errors.append(f"{_where(path, lines)} must be {_type_name(tp)}")
            return None
        return tuple(_build(item_type, v, (*path, i), lines, errors) for i, v in enumerate(value))
    if origin is Literal:
        if value not in typing.get_args(tp):
            errors.append(f"{_where(path, lines)} must be {_type_name(tp)}, got {value!r}")
        return value
    if origin is dict:
        if not isinstance(value, dict):
            errors.append(f"{_where(path, lines)} must be a mapping")
            return None
        return dict(value)
    if origin in (Union, types.UnionType):
        return value
    if tp is float:
        if isinstance(value, str):
            # YAML 1.1 reads 1e-4 (no dot) as a string; accept what Python reads as a number.
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            errors.append(f"{_where(path, lines)} must be a number, got {value!r}")
            return None
        return float(value)
    if tp in (int, str, bool):
        if isinstance(value, bool) != (tp is bool) or not isinstance(value, tp):
            errors.append(f"{_where(path, lines)} must be {_type_name(tp)}, got {value!r}")
            return None
        return value
    return value
