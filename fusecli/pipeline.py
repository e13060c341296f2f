"""Running a task: its weights and network, input checks, size matching, fusion, colour, files.

Every command that fuses (``fuse <task>``, ``fuse batch``, ``fuse demo``) goes through here;
the task itself is a :class:`~fusecli.hookspecs.TaskSpec` from the plugin catalog.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from fusecli.align import FrameMotion, Registration, register_frames
from fusecli.classical import with_source_detail
from fusecli.color import ChromaAccumulator, apply_chroma, luminance, restore_color
from fusecli.engine import (
    PSLPT,
    FrameStack,
    decide_tiled,
    fuse_tiled,
    load_weights,
    shipped_weights_path,
)
from fusecli.engine.precision import resolve_precision
from fusecli.errors import FuseError, InternalError, PluginError, WeightsError
from fusecli.filters import separable_blur
from fusecli.frame_store import LuminanceStore
from fusecli.hookspecs import MethodInput, MethodSpec, Preprocessing, TaskSpec
from fusecli.imagefiles import writable_name
from fusecli.io import (
    LoadedImage,
    check_encoding,
    check_writable,
    read_image,
    same_file,
    write_image,
)
from fusecli.metadata import ImageMetadata

Progress = Callable[[int, int], None]
"""Called as ``progress(done_tiles, total_tiles)`` after each tile."""

SOURCE_MAP_FORMATS = frozenset({".png", ".tif", ".tiff", ".bmp"})
"""Lossless formats a source map may be written in: JPEG would blur the source indices."""

STACK_MEMORY_BYTES = 256 * 1024**2
"""A job whose network inputs (float32 luminance, all frames) take more than this keeps them
in a temporary file while it is fused (see :mod:`fusecli.frame_store`): 30 frames of 2 MP are
240 MB, of 12 MP 1.4 GB. Smaller ones, pairs up to 30 MP included, stay in memory. The
environment variable FUSECLI_STACK_MEMORY_MB overrides it (0: always a file)."""


def stack_memory_limit() -> int:
    """Bytes of network inputs a job keeps in memory: FUSECLI_STACK_MEMORY_MB, else
    :data:`STACK_MEMORY_BYTES`.

    Raises:
        FuseError: the variable is set but not a number.
    """
    configured = os.environ.get("FUSECLI_STACK_MEMORY_MB", "").strip()
    if not configured:
        return STACK_MEMORY_BYTES
    try:
        return int(float(configured) * 1024**2)
    except ValueError:
        raise FuseError(
            f"FUSECLI_STACK_MEMORY_MB={configured!r} is not a number; set it to megabytes"
        ) from None


def resolve_weights(spec: TaskSpec, override: str | os.PathLike | None = None) -> Path:
    """The weights file a task runs with: ``override`` if given, else its shipped default.

    Raises:
        WeightsError: no override and no such weights are installed.
    """
    if override is not None:
        return Path(override)
    try:
        return shipped_weights_path(spec.default_weights)
    except WeightsError:
        raise WeightsError(
            f"no trained weights are installed (fusecli.weights/{spec.default_weights}"
            ".safetensors is missing)",
            remedy="give a weights file, e.g. the authors' checkpoint converted with "
            "from_authors_state_dict and save_weights",
            hint="weights",
        ) from None


def open_network(
    spec: TaskSpec,
    weights: str | os.PathLike | None = None,
    device: torch.device | str = "cpu",
) -> tuple[PSLPT, Path]:
    """The network a task runs with, in eval mode on ``device``, and the weights file it came from.

    A weights file is loaded once per device and process, and again only if the file changed,
    so a batch of jobs or a demo of several tasks shares one network. It is shared: fuse with
    it, do not train or modify it.

    Args:
        spec: the task; its ``default_weights`` are used when ``weights`` is None.
        weights: a weights file (.safetensors) to use instead.
        device: where the network runs.

    Raises:
        WeightsError: no weights given and none shipped, or the file is unusable.
    """
    path = resolve_weights(spec, weights)
    try:
        stat = path.stat()
        stamp = (stat.st_mtime_ns, stat.st_size)
    except OSError:
        stamp = None  # load_weights says what is wrong with the path
    return _load_network(path.resolve(), torch.device(device), stamp), path


@functools.lru_cache(maxsize=4)
def _load_network(path: Path, device: torch.device, stamp: tuple[int, int] | None) -> PSLPT:
    # `stamp` (modification time, size) is only part of the key: a rewritten file reloads.
    return load_weights(path, map_location=device)


def network_inputs(spec: TaskSpec, sources: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Turn each source into the single channel the network fuses, per its role's preprocessing.

    Args:
        spec: the task.
        sources: (1, C, H, W) float tensors in [0, 1], C in {1, 3}.

    Returns:
        (1, 1, H, W) tensors in [0, 1], one per source.
    """
    return [network_input(spec, index, source) for index, source in enumerate(sources)]


def network_input(spec: TaskSpec, index: int, source: torch.Tensor) -> torch.Tensor:
    """:func:`network_inputs` of source ``index`` alone: (1, C, H, W) -> (1, 1, H, W)."""
    role = spec.role_of(index)
    step = role.preprocessing
    if callable(step):
        return _plugin_preprocessed(spec, role.name, step, source)
    if source.shape[1] == 1:
        return source
    if step == "luminance":
        return luminance(source)
    if step == "channel_mean":
        return source.mean(dim=1, keepdim=True)
    raise AssertionError(f"unknown preprocessing {step!r}")  # TaskSpec validation prevents it


# How far outside [0, 1] a plugin's preprocessing may round before its result counts as wrong.
_SLACK = 1e-4


def _plugin_preprocessed(
    spec: TaskSpec, role: str, step: Preprocessing, source: torch.Tensor
) -> torch.Tensor:
    """A plugin's own preprocessing of one source, checked against the contract.

    Raises:
        PluginError: it returned something other than (1, 1, H, W) floats in [0, 1].
    """
    expected = (1, 1, *source.shape[-2:])
    result = step(source)
    if not isinstance(result, torch.Tensor):
        problem = f"a {type(result).__name__}"
    elif tuple(result.shape) != expected or not result.is_floating_point():
        problem = f"a {result.dtype} tensor of shape {tuple(result.shape)}"
    elif not bool(torch.isfinite(result).all()):
        problem = "NaN or infinite values"
    elif not -_SLACK <= float(result.min()) <= float(result.max()) <= 1 + _SLACK:
        problem = f"values from {float(result.min()):.4g} to {float(result.max()):.4g}"
    else:
        return result.to(source.dtype).clamp(0.0, 1.0)
    raise PluginError(
        f"the preprocessing of task {spec.name!r}, input {role!r}, returned {problem}; "
        f"it must return a float tensor of shape {expected} in [0, 1]",
        remedy="fix the task's plugin or report it to its authors",
    )


def check_input_count(spec: TaskSpec, count: int) -> None:
    """Raise FuseError unless ``count`` sources suit the task."""
    too_many = spec.max_inputs is not None and count > spec.max_inputs
    if count < spec.min_inputs or too_many:
        roles = ", ".join(role.name for role in spec.roles)
        raise FuseError(
            f"task {spec.name!r} takes {spec.inputs_text()} input images ({roles}), got {count}",
            hint="sources",
        )


def match_sizes(
    sources: Sequence[torch.Tensor], names: Sequence[str], *, resize: bool
) -> list[torch.Tensor]:
    """Check that all sources have the first one's size, or resize them to it.

    Args:
        sources: (1, C, H, W) tensors.
        names: file names for the error message, one per source.
        resize: resample differing sources (bilinear, antialiased) instead of refusing.

    Returns:
        (1, C, H0, W0) tensors, H0, W0 the first source's size.

    Raises:
        FuseError: sizes differ and ``resize`` is False.
    """
    height, width = sources[0].shape[-2:]
    return [sources[0]] + [
        match_size(source, name, (height, width), names[0], resize=resize)
        for source, name in zip(sources[1:], names[1:], strict=True)
    ]


def match_size(
    source: torch.Tensor,
    name: str,
    size: tuple[int, int],
    first_name: str,
    *,
    resize: bool,
) -> torch.Tensor:
    """:func:`match_sizes` for one source: ``source`` at ``size`` (height, width), the size of
    the first source ``first_name``.

    Raises:
        FuseError: sizes differ and ``resize`` is False.
    """
    height, width = size
    if source.shape[-2:] == (height, width):
        return source
    if not resize:
        raise FuseError(
            f"{name} is {source.shape[-1]}x{source.shape[-2]} but {first_name} is {width}x{height}",
            remedy="register the images to one size or fuse with resize=True",
            hint="resize",
        )
    resized = F.interpolate(
        source, size=(height, width), mode="bilinear", align_corners=False, antialias=True
    )
    return resized.clamp(0.0, 1.0)


def fuse_sources(
    net: PSLPT,
    spec: TaskSpec,
    sources: Sequence[torch.Tensor],
    *,
    tile_size: int | None = None,
    progress: Progress | None = None,
    precision: str = "auto",
) -> torch.Tensor:
    """Fuse registered sources with a task's preprocessing, FAF set and colour policy.

    Args:
        net: the network, on its device, in eval mode (e.g. from :func:`open_network`).
        spec: the task.
        sources: (1, C, H, W) float tensors in [0, 1] of one size, C in {1, 3}, in role order.
        tile_size: tile side for tiled inference; None picks one that fits in memory.
        progress: see :data:`Progress`.
        precision: ``fp32``, ``bf16`` or ``auto``, see
            :func:`~fusecli.engine.precision.resolve_precision`.

    Returns:
        (1, C_out, H, W) float in [0, 1] on the CPU; C_out is 1 when every source is grayscale.

    Raises:
        FuseError: the number of sources does not suit the task, or bf16 is not native here.
    """
    check_input_count(spec, len(sources))
    device = next(net.parameters()).device
    precision = resolve_precision(precision, device)
    return _fuse_and_map(net, spec, sources, tile_size, progress, precision, with_map=False)[0]


def _fuse_and_map(
    net: PSLPT,
    spec: TaskSpec,
    sources: Sequence[torch.Tensor],
    tile_size: int | None,
    progress: Progress | None,
    precision: str,
    *,
    with_map: bool,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """:func:`fuse_sources` once the number of sources is known to suit the task; with
    ``with_map`` also the (1, 1, H, W) index of each pixel's main source."""
    luma = network_inputs(spec, sources)
    fused_y, source_map = run_network(
        net, spec, luma, tile_size=tile_size, progress=progress, precision=precision,
        with_map=with_map,
    )  # fmt: skip
    if fused_y is None:
        assert source_map is not None
        source_map = clean_decision(source_map)
        fused = select_pixels(sources, source_map)
    else:
        fused = restore_color(fused_y, list(sources), spec.color)
    fused = finished_output(fused, f"the {len(sources)} sources of task {spec.name!r}")
    return fused.cpu(), source_map if with_map else None


def run_network(
    net: PSLPT,
    spec: TaskSpec,
    frames: Sequence[torch.Tensor] | FrameStack,
    *,
    tile_size: int | None,
    progress: Progress | None,
    precision: str,
    with_map: bool,
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """What the network gives a task, from its (1, 1, H, W) network inputs.

    A ``compose="select"`` task gets only the decision (:func:`~fusecli.engine.decide_tiled`,
    not yet cleaned): ``(None, indices)``. Any other task gets its fused luminance, with the
    task's global view (and for ``compose="detail"`` the frames' finest bands, read one frame
    at a time), and with ``with_map`` the source map: ``(fused, map or None)``.
    """
    with torch.inference_mode():
        if spec.compose == "select":
            decision = decide_tiled(
                net, frames, spec.faf_set, tile_size=tile_size, progress=progress,
                precision=precision,
            )  # fmt: skip
            return None, decision
        source_map = None
        if with_map:
            shape = frames.shape if isinstance(frames, FrameStack) else frames[0].shape
            source_map = torch.zeros(shape, dtype=torch.int64)
        fused = fuse_tiled(
            net, frames, spec.faf_set, tile_size=tile_size, progress=progress,
            precision=precision, source_map=source_map, global_view=spec.global_view,
        )  # fmt: skip
        if spec.compose == "detail":
            fused = with_source_detail(fused, _whole_frames(frames), DETAIL_BANDS)
        return fused, source_map


def _whole_frames(frames: Sequence[torch.Tensor] | FrameStack) -> Iterator[torch.Tensor]:
    """Each frame whole, one at a time (a stack in a temporary file is read frame by frame)."""
    if not isinstance(frames, FrameStack):
        yield from frames
        return
    height, width = frames.shape[-2:]
    for index in range(len(frames)):
        yield frames.window(index, slice(0, height), slice(0, width))


def source_map_image(indices: torch.Tensor, count: int) -> torch.Tensor:
    """Grey levels of a source map: source k of ``count`` becomes k / (count - 1).

    Args:
        indices: (1, 1, H, W) integer source indices in [0, count).
        count: the number of sources (2 or more).

    Returns:
        (1, 1, H, W) float64 in [0, 1]; written with 8 bits, source k is 255 k / (count - 1).
    """
    return indices.to(torch.float64) / (count - 1)


def check_source_map(
    sources: Sequence[Path],
    output: Path,
    source_map: Path,
    *,
    overwrite: bool,
    method: MethodSpec | None,
) -> None:
    """Fail before any work unless a source map can be made and written to ``source_map``.

    Raises:
        FuseError: a lossy or unknown format, a fusion method other than the network, a name
            that is the output's or a source's, or an existing file without ``overwrite``.
    """
    suffix = source_map.suffix.lower()
    if suffix not in SOURCE_MAP_FORMATS:
        kind = suffix or "a file without an extension"
        raise FuseError(
            f"{source_map}: a source map must be stored losslessly, not as {kind}; "
            "write a .png, .tif or .bmp file"
        )
    if method is not None:
        raise FuseError(
            f"a source map comes from the network's fusion weights, which the fusion method "
            f"{method.name!r} does not have",
            remedy="fuse with the network or do not ask for a source map",
            hint="source-map-method",
        )
    if same_file(source_map, output):
        raise FuseError(
            f"the source map {source_map} is also the output; give the map another name"
        )
    _check_target(
        source_map,
        sources,
        overwrite=overwrite,
        role="the source map",
        remedy="give the map another name",
    )


def fuse_with_method(
    method: MethodSpec,
    spec: TaskSpec,
    sources: Sequence[torch.Tensor],
    *,
    weights: str | os.PathLike | None = None,
    device: torch.device | str = "cpu",
    tile_size: int | None = None,
    progress: Progress | None = None,
) -> torch.Tensor:
    """Fuse registered sources with a fusion method, the task's preprocessing and colour policy.

    Args:
        method: the fusion method (e.g. from the plugin catalog).
        spec: the task.
        sources: (1, C, H, W) float tensors in [0, 1] of one size, C in {1, 3}, in role order.
        weights, device, tile_size, progress: passed to the method (see MethodInput).

    Returns:
        (1, C_out, H, W) float in [0, 1] on the CPU; C_out is 1 when every source is grayscale.

    Raises:
        FuseError: the number of sources suits the task or the method not, or the method
            returned an image of the wrong shape.
    """
    check_input_count(spec, len(sources))
    check_method(method, spec, len(sources))
    luma = tuple(image.cpu() for image in network_inputs(spec, sources))
    fused_y = _method_luminance(
        method,
        spec,
        luma,
        weights=weights,
        device=device,
        tile_size=tile_size,
        progress=progress,
    )
    fused = restore_color(fused_y, [s.cpu() for s in sources], spec.color)
    return finished_output(fused, f"the {len(sources)} sources of task {spec.name!r}", method)


def finished_output(
    fused: torch.Tensor, sources: str, method: MethodSpec | None = None
) -> torch.Tensor:
    """A fused image clamped to [0, 1], after checking that every pixel is a number.

    Rounding may take a pixel a little outside [0, 1]; NaN or infinity only comes from a bug
    (in the engine, a fusion method or a plugin's preprocessing). It is reported, never
    replaced by a plausible value that would hide it.

    Args:
        fused: the fused image.
        sources: the inputs, as the error names them (file names, or a description).
        method: the fusion method that made it, or None for the network.

    Raises:
        InternalError: some pixel is NaN or infinite.
    """
    finite = torch.isfinite(fused)
    if not bool(finite.all()):
        maker = "the network" if method is None else f"fusion method {method.name!r}"
        bad = int((~finite).sum())
        raise InternalError(
            f"{maker} produced {bad} NaN or infinite pixel value(s) fusing {sources}",
            remedy="this is a bug; please report it with these input images",
            hint="internal",
        )
    return fused.clamp(0.0, 1.0)


def _method_luminance(
    method: MethodSpec,
    spec: TaskSpec,
    luma: tuple[torch.Tensor, ...],
    *,
    weights: str | os.PathLike | None,
    device: torch.device | str,
    tile_size: int | None,
    progress: Progress | None,
) -> torch.Tensor:
    """A method's fused luminance of (1, 1, H, W) CPU network inputs, checked, as their dtype.

    Raises:
        FuseError: the method returned an image of the wrong shape.
    """
    request = MethodInput(
        images=luma,
        task=spec,
        weights=None if weights is None else str(weights),
        device=str(device),
        tile_size=tile_size,
        progress=progress,
    )
    fused_y = method.fuse(request)
    expected = tuple(luma[0].shape)
    if not isinstance(fused_y, torch.Tensor) or tuple(fused_y.shape) != expected:
        got = tuple(fused_y.shape) if isinstance(fused_y, torch.Tensor) else type(fused_y).__name__
        raise FuseError(
            f"fusion method {method.name!r} returned {got}, expected a tensor of shape {expected}"
        )
    return fused_y.to(luma[0].dtype)


def check_method(method: MethodSpec, spec: TaskSpec, count: int) -> None:
    """Raise FuseError unless ``method`` can fuse ``count`` sources of ``spec``."""
    reason = method.unsuitable_for(spec, count)
    if reason is not None:
        raise FuseError(reason, remedy="choose another fusion method", hint="method")


@dataclass(frozen=True)
class FusedFile:
    """What :func:`fuse_files` wrote.

    Attributes:
        output: the file written.
        sources: the source files, in role order.
        weights: the weights file the network came from, or None (a method without a network).
        width, height: size of the output (the first source's size).
        channels: 1 (grey) or 3 (colour).
        bit_depth: bits per channel stored (JPEG and BMP hold 8 whatever the sources).
        seconds: wall time of loading the network (when not loaded yet), reading, fusing and
            writing.
        metadata_from: the source whose EXIF and ICC profile the output carries, or None.
        notes: things the user may not expect, e.g. precision lost to the output format.
        motions: when aligned, each source's estimated motion relative to the reference.
        crop: when aligned, (top, left, height, width) of the output in reference pixels.
        source_map: the source map written, or None.
    """

    output: Path
    sources: tuple[Path, ...]
    weights: Path | None
    width: int
    height: int
    channels: int
    bit_depth: int
    seconds: float
    metadata_from: Path | None = None
    notes: tuple[str, ...] = ()
    motions: tuple[FrameMotion, ...] = ()
    crop: tuple[int, int, int, int] | None = None
    source_map: Path | None = None


def reference_index(spec: TaskSpec, count: int) -> int:
    """The source an output takes its metadata from (and alignment registers to).

    The colour source of a ``chroma_from`` task (the visible image, the functional scan), else
    the middle frame: the middle exposure of a bracket, the middle focus plane of a stack.
    """
    if spec.color.mode == "chroma_from" and spec.color.source < count:
        return spec.color.source
    return count // 2


@dataclass(frozen=True)
class SourceFile:
    """What writing an output needs of a source once its pixels are gone.

    Attributes:
        path: the file.
        bit_depth: 8 or 16 for integer files, 32 for floating-point TIFF.
        metadata: its EXIF and ICC profile.
        notes: what reading it told the user, e.g. a format other than the extension says.
    """

    path: Path
    bit_depth: int
    metadata: ImageMetadata
    notes: tuple[str, ...] = ()

    @classmethod
    def of(cls, image: LoadedImage) -> SourceFile:
        return cls(image.path, image.bit_depth, image.metadata, image.notes)


def deepest_bit_depth(sources: Sequence[SourceFile | LoadedImage]) -> int:
    """Bit depth a fused result keeps: the deepest source's (8, 16, or 32 for float TIFF)."""
    return max(source.bit_depth for source in sources)


def depth_notes(
    images: Sequence[SourceFile | LoadedImage], output: Path, stored: int
) -> tuple[str, ...]:
    """A note when the output format holds less than the deepest source."""
    deepest = deepest_bit_depth(images)
    if stored >= deepest:
        return ()
    held = "32-bit float" if deepest == 32 else f"{deepest}-bit"
    return (
        f"the sources are {held} but {output.suffix.lstrip('.').upper()} stores {stored} bits "
        f"per channel; {output.name} is {stored}-bit",
    )


def check_alignable(spec: TaskSpec) -> None:
    """Raise FuseError unless the task fuses frames of one scene and sensor (a stack)."""
    if not spec.is_stack:
        raise FuseError(
            f"task {spec.name!r} fuses different kinds of images, which alignment cannot "
            "register; register them beforehand"
        )


def register_sources(
    spec: TaskSpec,
    read_frame: Callable[[int], torch.Tensor],
    names: Sequence[str],
    *,
    model: str = "homography",
    crop: bool = True,
) -> Registration:
    """Register a stack's frames to its reference frame (see :func:`reference_index`).

    Reads every frame once through ``read_frame(index)`` and keeps no more than two of them
    (see :func:`~fusecli.align.register_frames`); the caller reads them again to warp them.

    Raises:
        FuseError: the task is not a stack, or from ``read_frame``; AlignmentError naming a
            frame that cannot be registered.
    """
    check_alignable(spec)
    return register_frames(
        read_frame, names, reference=reference_index(spec, len(names)), model=model, crop=crop
    )


class _SizeMatchingReader:
    """Reads sources by index at the first source's size (which it must read first)."""

    def __init__(self, paths: Sequence[Path], *, resize: bool) -> None:
        self._paths = paths
        self._resize = resize
        self._size: tuple[int, int] | None = None

    def image(self, index: int) -> tuple[LoadedImage, torch.Tensor]:
        image = read_image(self._paths[index])
        if self._size is None:
            if index != 0:
                raise ValueError("the first source must be read first: it sets the size")
            self._size = (image.height, image.width)
        pixels = match_size(
            image.pixels,
            str(self._paths[index]),
            self._size,
            str(self._paths[0]),
            resize=self._resize,
        )
        return image, pixels

    def pixels(self, index: int) -> torch.Tensor:
        return self.image(index)[1]


def check_output(sources: Sequence[Path], output: Path, *, overwrite: bool) -> None:
    """Fail before any work if ``output`` is one of the sources or cannot be written.

    Raises:
        FuseError: the output names a source, or ImageWriteError from ``check_writable``.
    """
    _check_target(
        output, sources, overwrite=overwrite, role="the output", remedy="choose another output name"
    )


def _check_target(
    target: Path, sources: Sequence[Path], *, overwrite: bool, role: str, remedy: str
) -> None:
    """Fail unless ``target`` is none of ``sources`` and can be written.

    The output and the source map are refused on the same grounds; only the words differ.

    Args:
        target: the file to be written.
        sources: the input files, which must survive the run.
        overwrite: replace an existing ``target``.
        role: how the message names ``target``, e.g. "the output".
        remedy: what the message tells the user to do when ``target`` is an input.

    Raises:
        FuseError: ``target`` is an input, or ImageWriteError from ``check_writable``.
    """
    for source in sources:
        if same_file(source, target):
            raise FuseError(f"{role} {target} is also the input {source}; {remedy}")
    check_writable(target, overwrite=overwrite)


def fuse_files(
    spec: TaskSpec,
    sources: Sequence[str | os.PathLike],
    output: str | os.PathLike,
    *,
    weights: str | os.PathLike | None = None,
    device: torch.device | str = "cpu",
    overwrite: bool = False,
    resize: bool = False,
    tile_size: int | None = None,
    progress: Progress | None = None,
    keep_metadata: bool = True,
    bit_depth: int | None = None,
    quality: int | None = None,
    compression: str | None = None,
    align: bool = False,
    crop: bool = True,
    align_model: str = "homography",
    method: MethodSpec | None = None,
    precision: str = "auto",
    source_map: str | os.PathLike | None = None,
) -> FusedFile:
    """Read source files, fuse them with a task and write the result atomically.

    The number of sources and the output are checked before the network is opened (see
    :func:`open_network`). The output has the first source's size, the deepest source's bit
    depth (as far as its format holds it) and the colour the task's policy gives; alpha is not
    carried over, the output is opaque. Nothing is written unless fusion succeeded.

    Args:
        spec: the task.
        sources: image files in role order.
        output: destination file; its extension picks the format.
        weights: weights file; default: the task's shipped weights.
        device: where the network runs.
        overwrite: replace an existing output.
        resize: resample sources to the first one's size instead of refusing.
        tile_size: tile side for tiled inference; None picks one that fits in memory.
        progress: see :data:`Progress`.
        keep_metadata: embed the reference source's EXIF and ICC profile (see
            :func:`reference_index`) in JPEG, PNG and TIFF outputs.
        bit_depth: 8, 16 or 32 (float TIFF); None keeps the deepest source's, as far as the
            format holds it.
        quality: JPEG quality 1-100 (default 95).
        compression: TIFF ``none``/``deflate``/``lzw``/``packbits`` or PNG level ``0``-``9``.
        align: register every frame to the reference frame first (stack tasks; OpenCV).
        crop: after aligning, keep the region all frames cover; else fill the border by
            repeating edge pixels.
        align_model: ``homography`` or ``affine``.
        method: a fusion method to use instead of the task's network; the weights file is
            then only what the method makes of it, and the record's ``weights`` is None
            unless the method is the network.
        precision: ``fp32``, ``bf16`` or ``auto`` for the network, see
            :func:`~fusecli.engine.precision.resolve_precision`.
        source_map: also write, to this lossless grey image (PNG, TIFF, BMP), which source each
            output pixel mostly came from: source k of n as 255 k / (n - 1) (see
            :meth:`~fusecli.engine.PSLPT.fuse_with_map`). Needs the network.

    Raises:
        FuseError: wrong number of sources, unreadable source or weights, output equal to a
            source or not writable, sizes differ without ``resize``, an encoding setting the
            output format cannot honour, a frame that cannot be registered, bf16 where it
            is not native, a source map that cannot be made or written (see
            :func:`check_source_map`).
    """
    job = prepare_job(
        spec,
        sources,
        output,
        weights=weights,
        device=device,
        overwrite=overwrite,
        resize=resize,
        tile_size=tile_size,
        progress=progress,
        keep_metadata=keep_metadata,
        bit_depth=bit_depth,
        quality=quality,
        compression=compression,
        align=align,
        crop=crop,
        align_model=align_model,
        method=method,
        precision=precision,
        source_map=source_map,
    )
    read_job(job)
    return write_job(job, fuse_job(job))


@dataclass
class FusionJob:
    """One :func:`fuse_files` call between its stages: checked, read, fused, written.

    ``fuse_batch``-style callers run the stages of consecutive jobs on different threads
    (reading the next pair while the network fuses this one); :func:`fuse_files` runs them in
    turn. The fields after ``start`` are filled by :func:`read_job`.

    A read job holds no source as a colour image: only each frame's network input (in a
    :class:`~fusecli.frame_store.LuminanceStore`, on disk for a large stack) and the chroma
    the colour policy combined, so its memory does not grow with the number of frames.

    Attributes:
        spec, paths, output, settings: what :func:`fuse_files` was given (settings are its
            keyword arguments after ``output``, precision resolved, ``source_map`` a Path or
            None).
        net, weights_path: the network and its weights file (None for another method).
        start: when the job was prepared (``perf_counter``), for :attr:`FusedFile.seconds`.
        sources_read: each source's path, bit depth and metadata, in role order.
        frames: the network inputs, (1, 1, H, W) each; released by :func:`fuse_job`.
        chroma: (1, 2, H, W) Cb/Cr per the colour policy, or None for a grey result or a
            job that :attr:`selects` its pixels.
        aligned: the alignment's motions and crop.
        source_indices: filled by :func:`fuse_job` when a source map was asked for or the
            task selects its output's pixels (then the cleaned decision, see
            :func:`clean_decision`).
    """

    spec: TaskSpec
    paths: tuple[Path, ...]
    output: Path
    settings: dict
    net: PSLPT | None
    weights_path: Path | None
    start: float
    sources_read: list[SourceFile] = field(default_factory=list)
    frames: LuminanceStore | None = None
    chroma: torch.Tensor | None = None
    aligned: Registration | None = None
    source_indices: torch.Tensor | None = None

    @property
    def selects(self) -> bool:
        """Whether the output is composed from the sources' pixels (``compose="select"`` with
        the network), so that no chroma needs gathering."""
        return self.net is not None and self.spec.compose == "select"


def prepare_job(
    spec: TaskSpec, sources: Sequence[str | os.PathLike], output: str | os.PathLike, **settings
) -> FusionJob:
    """Check a :func:`fuse_files` call before any work and open its network.

    Raises:
        FuseError: see :func:`fuse_files`, except what reading and fusing find.
    """
    start = time.perf_counter()
    paths = tuple(Path(p) for p in sources)
    output = Path(output)
    check_input_count(spec, len(paths))
    check_output(paths, output, overwrite=settings["overwrite"])
    check_encoding(
        output,
        bit_depth=settings["bit_depth"],
        quality=settings["quality"],
        compression=settings["compression"],
    )
    settings["precision"] = resolve_precision(settings["precision"], settings["device"])
    map_path = settings.get("source_map")
    settings["source_map"] = None if map_path is None else Path(map_path)
    if settings["source_map"] is not None:
        check_source_map(
            paths,
            output,
            settings["source_map"],
            overwrite=settings["overwrite"],
            method=settings["method"],
        )
    if settings["align"]:
        check_alignable(spec)
    net, weights_path = None, None
    if settings["method"] is None:
        net, weights_path = open_network(spec, settings["weights"], settings["device"])
    else:
        check_method(settings["method"], spec, len(paths))
    return FusionJob(spec, paths, output, settings, net, weights_path, start)


def read_job(job: FusionJob) -> None:
    """Read (and align) a job's sources, one at a time, into its network inputs and chroma.

    Only one source is decoded at a time; alignment reads the sources twice (once to register
    them, see :func:`register_sources`, once to warp them).

    Raises:
        FuseError: unreadable sources, sizes that differ without ``resize``, a frame that
            cannot be registered.
    """
    count = len(job.paths)
    colour = None if job.selects else ChromaAccumulator(job.spec.color, count)
    job.sources_read, job.frames = [], None
    for index, (source, pixels) in enumerate(_read_sources(job)):
        job.sources_read.append(source)
        if colour is not None:
            colour.add(index, pixels)
        network_luma = network_input(job.spec, index, pixels)
        if job.frames is None:
            height, width = network_luma.shape[-2:]
            spill = count * height * width * 4 > stack_memory_limit()
            job.frames = LuminanceStore(count, height, width, spill=spill)
        job.frames.append(network_luma)
    job.chroma = None if colour is None else colour.chroma()


def _read_sources(job: FusionJob) -> Iterator[tuple[SourceFile, torch.Tensor]]:
    """Each source and its (1, C, H, W) pixels at the first source's size, aligned if asked."""
    settings = job.settings
    reader = _SizeMatchingReader(job.paths, resize=settings["resize"])
    if settings["align"] and job.aligned is None:  # registered once, on the first reading
        job.aligned = register_sources(
            job.spec,
            reader.pixels,
            [p.name for p in job.paths],
            model=settings["align_model"],
            crop=settings["crop"],
        )
    for index in range(len(job.paths)):
        image, pixels = reader.image(index)
        if job.aligned is not None:
            pixels = job.aligned.warp(index, pixels)
        yield SourceFile.of(image), pixels


def fuse_job(job: FusionJob) -> torch.Tensor:
    """Fuse a read job's sources: (1, C_out, H, W) float in [0, 1] on the CPU.

    The network folds the frames tile by tile, reading each frame's tile when the fold takes
    it in (see :func:`~fusecli.engine.fuse_tiled`). The job's frames are released afterwards.
    """
    settings = job.settings
    frames = job.frames
    if frames is None:
        raise ValueError("fuse_job needs a job read by read_job")
    try:
        if job.net is not None:
            fused_y, job.source_indices = run_network(
                job.net, job.spec, frames, tile_size=settings["tile_size"],
                progress=settings["progress"], precision=settings["precision"],
                with_map=settings["source_map"] is not None,
            )  # fmt: skip
        else:
            fused_y = _method_luminance(
                settings["method"],
                job.spec,
                tuple(frames.frame(index) for index in range(len(frames))),
                weights=settings["weights"],
                device=settings["device"],
                tile_size=settings["tile_size"],
                progress=settings["progress"],
            )
    finally:
        frames.close()
        job.frames = None
    if job.selects and job.source_indices is not None:
        # The map written by --save-map is then the one the output was composed from.
        job.source_indices = clean_decision(job.source_indices)
        fused = select_from_sources(job, job.source_indices)
    else:
        fused = apply_chroma(fused_y, job.chroma)
    job.chroma = None
    sources = ", ".join(path.name for path in job.paths)
    return finished_output(fused, sources, settings["method"]).cpu()


SELECT_MAJORITY = 15
"""Side in pixels of the box in which a ``compose="select"`` task's decision is replaced by
its most frequent source, which removes specks where the network hesitated (on the MFF
development pairs Qcb rose by 0.003-0.009 over the decision as it is; 31 did not do better)."""

DETAIL_BANDS = 4
"""How many of the finest Laplacian bands a ``compose="detail"`` task takes from its sources,
as many as the Laplacian-pyramid method fuses. On every 3rd MEFB pair (22), per channel, with
run 5's network: Qabf / MEF-SSIM 0.7251 / 0.9684 for the network alone; 2 bands 0.7469 /
0.9740, 3 0.7475 / 0.9762, 4 0.7474 / 0.9783, 5 0.7465 / 0.9802 (benchmarks/README.md,
"Multi-exposure: the sources' own detail")."""

SELECT_BLEND = 11
"""Side in pixels of the box that the decision is then averaged over, so that the output
blends from one source to the next over a few pixels instead of switching between
neighbours. On the MFF development pairs 5 to 21 scored alike (Qabf, Qcb, FMI within 0.003)
and a hard switch lower on MFFW."""


def clean_decision(indices: torch.Tensor, side: int = SELECT_MAJORITY) -> torch.Tensor:
    """Each pixel's most frequent source index in the ``side`` x ``side`` box around it (a
    mode filter; ties go to the lower index), which removes specks where the network
    hesitated. Two maps in memory whatever the number of sources; the result is int16 (a
    quarter of the int64 map's memory at camera sizes)."""
    box = torch.full((side,), 1.0 / side)
    best_share = torch.full(indices.shape, -1.0)
    best = torch.zeros(indices.shape, dtype=torch.int16)
    for index in range(int(indices.max()) + 1):
        share = separable_blur((indices == index).float(), box)
        better = share > best_share
        best_share = torch.where(better, share, best_share)
        best.masked_fill_(better, index)
    return best


def select_from_sources(job: FusionJob, source_indices: torch.Tensor) -> torch.Tensor:
    """:func:`select_pixels` of a job's sources, read again one at a time (aligned as the
    network saw them), so a long stack never has two colour frames in memory."""
    return select_pixels((pixels for _, pixels in _read_sources(job)), source_indices)


def select_pixels(sources: Iterable[torch.Tensor], source_indices: torch.Tensor) -> torch.Tensor:
    """A ``compose="select"`` task's output: each source's own pixels (all its channels),
    weighted by how much of the box of :data:`SELECT_BLEND` pixels around each pixel chose it.
    The weights sum to one everywhere.

    Args:
        sources: (1, C, H, W) float tensors in source order, taken one at a time.
        source_indices: (1, 1, H, W) integers, the source each pixel is taken from (the
            network's decision after :func:`clean_decision`).

    Returns:
        (1, C, H, W) float, C = 3 when any source has colour, else 1.
    """
    box = torch.full((SELECT_BLEND,), 1.0 / SELECT_BLEND)
    fused: torch.Tensor | None = None
    for index, pixels in enumerate(sources):
        weight = separable_blur((source_indices == index).float(), box)
        pixels = pixels.to(weight.device)
        if fused is None:
            fused = weight * pixels
            continue
        if fused.shape[1] != pixels.shape[1]:  # grey and colour sources: grey as RGB
            channels = max(fused.shape[1], pixels.shape[1])
            fused = fused.expand(-1, channels, -1, -1).clone()
            pixels = pixels.expand(-1, channels, -1, -1)
        fused.addcmul_(weight, pixels)
    if fused is None:
        raise ValueError("select_pixels needs at least one source")
    return fused


def write_job(job: FusionJob, fused: torch.Tensor) -> FusedFile:
    """Write a job's fused image atomically, with its metadata; what was written."""
    settings = job.settings
    images = job.sources_read
    bit_depth = settings["bit_depth"]
    reference = images[reference_index(job.spec, len(images))]
    metadata = reference.metadata if settings["keep_metadata"] else None
    written = write_image(
        job.output,
        fused,
        bit_depth=deepest_bit_depth(images) if bit_depth is None else bit_depth,
        overwrite=settings["overwrite"],
        metadata=metadata,
        quality=settings["quality"],
        compression=settings["compression"],
    )
    map_path = settings["source_map"]
    if map_path is not None and job.source_indices is not None:
        try:
            write_image(
                map_path,
                source_map_image(job.source_indices, len(job.paths)),
                bit_depth=8,
                overwrite=settings["overwrite"],
            )
        except FuseError:
            # Both files or neither: the fused image alone would look like a finished run.
            written.path.unlink(missing_ok=True)
            raise
    return FusedFile(
        output=written.path,
        sources=job.paths,
        weights=job.weights_path,
        width=written.width,
        height=written.height,
        channels=written.channels,
        bit_depth=written.bit_depth,
        seconds=time.perf_counter() - job.start,
        metadata_from=reference.path if metadata is not None and not metadata.empty else None,
        notes=tuple(note for image in images for note in image.notes)
        + (depth_notes(images, job.output, written.bit_depth) if bit_depth is None else ()),
        motions=tuple(job.aligned.motions) if job.aligned else (),
        crop=job.aligned.crop if job.aligned else None,
        source_map=map_path,
    )


@dataclass(frozen=True)
class AlignedFiles:
    """What :func:`align_files` wrote.

    Attributes:
        outputs: one registered file per source, in source order.
        sources: the source files.
        reference: the source the others were registered to.
        motions: each source's estimated motion relative to the reference.
        crop: (top, left, height, width) of the outputs in reference pixels.
    """

    outputs: tuple[Path, ...]
    sources: tuple[Path, ...]
    reference: Path
    motions: tuple[FrameMotion, ...]
    crop: tuple[int, int, int, int]


def align_files(
    sources: Sequence[str | os.PathLike],
    folder: str | os.PathLike,
    *,
    overwrite: bool = False,
    crop: bool = True,
    model: str = "homography",
    keep_metadata: bool = True,
) -> AlignedFiles:
    """Register frames to the middle one and write each under its own name into ``folder``.

    Each output keeps its source's format (camera RAW becomes 16-bit TIFF), bit depth and
    (unless ``keep_metadata`` is False) EXIF and ICC profile. Every output is checked before
    any work, and nothing is written unless every frame registered.

    Raises:
        FuseError: fewer than two sources, two sources with one name, an output that exists or
            names a source, unreadable sources, sizes that differ, a frame that cannot be
            registered.
    """
    paths = tuple(Path(p) for p in sources)
    folder = Path(folder)
    if len(paths) < 2:
        raise FuseError(f"alignment needs 2 or more frames, got {len(paths)}", hint="sources")
    outputs = tuple(folder / writable_name(p) for p in paths)
    if len(set(outputs)) != len(outputs):
        raise FuseError("two frames have the same file name; rename one of them")
    for output in outputs:
        check_output(paths, output, overwrite=overwrite)
    reader = _SizeMatchingReader(paths, resize=False)
    registration = register_frames(
        reader.pixels, [p.name for p in paths], reference=len(paths) // 2, model=model, crop=crop
    )
    for index, output in enumerate(outputs):
        image, pixels = reader.image(index)
        write_image(
            output,
            registration.warp(index, pixels),
            bit_depth=image.bit_depth,
            overwrite=overwrite,
            metadata=image.metadata if keep_metadata else None,
        )
    return AlignedFiles(
        outputs=outputs,
        sources=paths,
        reference=paths[registration.reference],
        motions=registration.motions,
        crop=registration.crop,
    )
