"""`fuse eval`: fusion quality metrics of fused images, one method or several side by side.

Two ways to name the images: ``PAIRS FUSED`` (the folder ``fuse batch`` read and the folder it
wrote; pairs are found by batch's own layout planner and matched by relative path), or
``SRC_A SRC_B FUSED...`` (files, or folders matched by file name).
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypedDict

import typer

from fusecli.cli.common import error_message, status
from fusecli.errors import FuseError, ImageReadError
from fusecli.imagefiles import SUPPORTED_EXTENSIONS, image_files, natural_key
from fusecli.metric_names import COLOUR_MODES, METRIC_NAMES

if TYPE_CHECKING:
    import numpy as np
    from rich.table import Table

# numpy, the metrics, image decoding, the report and rich's table and progress bar are imported
# by the functions that use them: `fuse --help` and shell completion load this module too.


@dataclass(frozen=True)
class Job:
    """One image to evaluate: its sources, optional reference and each method's fused file."""

    stem: str
    source_a: Path
    source_b: Path
    reference: Path | None
    fused: tuple[Path, ...]  # one per method, in method order


class Summary(TypedDict):
    """One method's results, as printed by --json."""

    mean: dict[str, float]
    images: dict[str, dict[str, float]]
    n: int


def _require(path: Path, role: str) -> None:
    if not path.exists():
        raise FuseError(f"{role} {path} does not exist; check the path.")


def _images_by_stem(folder: Path, role: str) -> dict[str, Path]:
    images: dict[str, Path] = {}
    for path in image_files(folder):
        if path.stem in images:
            raise FuseError(
                f"{role} folder {folder} has two images named {path.stem!r} "
                f"({images[path.stem].name}, {path.name}); keep one per name."
            )
        images[path.stem] = path
    if not images:
        known = ", ".join(sorted(SUPPORTED_EXTENSIONS))
        raise FuseError(f"{role} folder {folder} contains no images ({known}).")
    return images


def plan_jobs(
    source_a: Path, source_b: Path, fused: list[Path], reference: Path | None
) -> list[Job]:
    """Match the inputs: all files (one image) or all folders (matched by file stem).

    Args:
        source_a, source_b: source files or folders.
        fused: one file or folder per method.
        reference: optional ground-truth file or folder.

    Returns:
        One job per image, in source A's sorted order.
    """
    roles = [("SRC_A", source_a), ("SRC_B", source_b)]
    roles += [("FUSED", path) for path in fused]
    roles += [("--ref", reference)] if reference is not None else []
    for role, path in roles:
        _require(path, role)
    kinds = {path.is_dir() for _, path in roles}
    if len(kinds) > 1:
        listing = ", ".join(f"{role} {'folder' if p.is_dir() else 'file'}" for role, p in roles)
        raise FuseError(f"give either files or folders for every input, not a mix ({listing}).")
    if not source_a.is_dir():
        return [Job(source_a.stem, source_a, source_b, reference, tuple(fused))]

    stems = _images_by_stem(source_a, "SRC_A")
    others = [("SRC_B", _images_by_stem(source_b, "SRC_B"), source_b)]
    others += [("FUSED", _images_by_stem(path, "FUSED"), path) for path in fused]
    if reference is not None:
        others.append(("--ref", _images_by_stem(reference, "--ref"), reference))
    for role, images, folder in others:
        missing = [stem for stem in stems if stem not in images]
        if missing:
            more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
            raise FuseError(
                f"{role} folder {folder} has no image named {missing[0]!r}{more} to match "
                f"SRC_A folder {source_a}; folders are matched by file name without extension."
            )
    b_images = others[0][1]
    fused_images = [images for role, images, _ in others if role == "FUSED"]
    ref_images = others[-1][1] if reference is not None else None
    return [
        Job(
            stem,
            path,
            b_images[stem],
            None if ref_images is None else ref_images[stem],
            tuple(images[stem] for images in fused_images),
        )
        for stem, path in stems.items()
    ]


@dataclass
class PairsPlan:
    """``PAIRS FUSED`` matched: jobs, method names and one line per thing left out."""

    jobs: list[Job]
    methods: list[str]
    skipped: list[str]


def method_trees(fused: Path) -> list[tuple[str, Path]]:
    """(method, folder): FUSED's subfolders named after a registered method (the layout of
    ``fuse batch --method a,b``), else FUSED itself as one method named after it."""
    from fusecli.plugins import get_catalog

    methods = get_catalog().methods
    trees = [(p.name, p) for p in sorted(fused.iterdir(), key=lambda p: p.name) if p.is_dir()]
    found = [(name, folder) for name, folder in trees if name in methods]
    return found or [(fused.name, fused)]


def _fused_images(folder: Path, others: list[Path]) -> dict[Path, Path]:
    """Every image below ``folder`` (not below another method's folder), by relative path
    without extension."""
    images: dict[Path, Path] = {}
    for path in sorted(folder.rglob("*"), key=lambda p: natural_key(p.name)):
        hidden = any(part.startswith(".") for part in path.relative_to(folder).parts)
        if hidden or path.suffix.lower() not in SUPPORTED_EXTENSIONS or not path.is_file():
            continue
        if any(other in path.parents for other in others if other != folder):
            continue
        images.setdefault(path.relative_to(folder).with_suffix(""), path)
    return images


def plan_pairs(pairs: Path, fused: Path) -> PairsPlan:
    """Match the pairs ``fuse batch`` finds in PAIRS with each method's fused images.

    Args:
        pairs: the folder ``fuse batch`` read.
        fused: the folder it wrote (``-o``); with ``--method a,b``, the folder holding a/ and b/.

    Returns:
        One job per pair fused by every method, named by its relative path; stacks of 3 or
        more images (the metrics compare two sources), pairs without a fused image, fused
        images of no pair and the planner's own problems are listed in ``skipped``.

    Raises:
        FuseError: a folder is missing, or nothing at all can be evaluated.
    """
    from fusecli.cli.layout import plan_batch
    from fusecli.plugins import get_catalog

    for role, path in (("PAIRS", pairs), ("FUSED", fused)):
        if not path.is_dir():
            what = "is a file" if path.exists() else "does not exist"
            raise FuseError(
                f"{role} {path} {what}; PAIRS FUSED are the folders fuse batch read and wrote "
                "(for single images give SRC_A SRC_B FUSED)."
            )
    plan = plan_batch(pairs, fused, get_catalog())
    trees = method_trees(fused)
    found = {name: _fused_images(folder, [f for _, f in trees]) for name, folder in trees}
    skipped = list(plan.problems)
    jobs: list[Job] = []
    planned: set[Path] = set()
    for job in plan.jobs:
        relative = job.output.relative_to(fused).with_suffix("")
        planned.add(relative)
        if len(job.sources) != 2:
            skipped.append(
                f"{relative}: a stack of {len(job.sources)} images; the metrics compare two "
                "sources; skipped"
            )
            continue
        missing = [name for name in found if relative not in found[name]]
        if missing:
            skipped.append(f"{relative}: no fused image in {', '.join(missing)}; skipped")
            continue
        outputs = tuple(found[name][relative] for name in found)
        jobs.append(Job(relative.as_posix(), job.sources[0], job.sources[1], None, outputs))
    for images in found.values():
        skipped += [
            f"{path}: matches no pair in {pairs}; skipped"
            for relative, path in images.items()
            if relative not in planned
        ]
    if not jobs:
        raise FuseError(
            f"no pair in {pairs} has a fused image in {fused} ({len(skipped)} files or "
            "folders left out); give the folder fuse batch read and the one it wrote."
        )
    return PairsPlan(jobs, list(found), skipped)


def read_planes(path: Path) -> np.ndarray:
    """Read an image with :func:`fusecli.io.read_image` as (C, H, W) on the 8-bit scale.

    8-bit files give uint8; 16-bit files float64 0..255 (the metrics' scale). Alpha is dropped
    and a colour file whose channels are identical is grey (C = 1), as fusecli.io reads it.
    """
    import numpy as np

    from fusecli.io import read_image

    image = read_image(path)
    if image.bit_depth == 32:
        raise ImageReadError(f"{path} holds floating-point pixels; save it as 8- or 16-bit.")
    # io scales integers by 1 / (2^bits - 1); rint recovers the stored values exactly.
    top = 2**image.bit_depth - 1
    levels = np.rint(image.pixels[0].numpy().astype(np.float64) * top)
    return levels.astype(np.uint8) if image.bit_depth == 8 else levels * (255.0 / top)


def _method_names(fused: list[Path]) -> list[str]:
    names = [path.name if path.is_dir() else path.stem for path in fused]
    # Two folders with the same name (e.g. a/out, b/out): fall back to the paths as given.
    return [str(path) for path in fused] if len(set(names)) < len(names) else names


def evaluate_job(job: Job, names: list[str] | None, colour: str) -> list[dict[str, float]]:
    """Metrics of one image for every method, in method order."""
    from fusecli.metrics import compute_metrics_many

    images = [read_planes(path) for path in job.fused]
    a, b = read_planes(job.source_a), read_planes(job.source_b)
    ref = None if job.reference is None else read_planes(job.reference)
    expected = a.shape[1:]
    for path, planes in [(job.source_b, b), (job.reference, ref), *zip(job.fused, images)]:
        if planes is not None and planes.shape[1:] != expected:
            raise FuseError(
                f"{path} is {planes.shape[2]}x{planes.shape[1]} but {job.source_a} is "
                f"{expected[1]}x{expected[0]}; evaluated images must have the same size."
            )
    return compute_metrics_many(a, b, images, reference=ref, names=names, colour=colour)


def evaluate_jobs(
    jobs: list[Job],
    names: list[str] | None,
    colour: str,
    *,
    workers: int = 1,
    on_done: Callable[[], None] = lambda: None,
) -> list[dict[str, dict[str, float]]]:
    """Metrics of every job: for each method, {image stem: {metric: value}}.

    With workers > 1, images are evaluated in threads (numpy releases the GIL in its array
    loops); the result does not depend on the number of workers. `on_done` is called after
    each image (progress display).
    """
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = []
        for values in pool.map(lambda job: evaluate_job(job, names, colour), jobs):
            results.append(values)
            on_done()
    per_method: list[dict[str, dict[str, float]]] = [{} for _ in jobs[0].fused]
    for job, values_per_method in zip(jobs, results, strict=True):
        for store, values in zip(per_method, values_per_method, strict=True):
            store[job.stem] = values
    return per_method


def common_metrics(per_method: list[dict[str, dict[str, float]]]) -> list[str]:
    """Metrics computed for every image (by default small images skip e.g. MS_SSIM)."""
    key_sets = [list(values) for images in per_method for values in images.values()]
    return [name for name in key_sets[0] if all(name in keys for keys in key_sets)]


def summarise(images: dict[str, dict[str, float]], names: list[str]) -> Summary:
    """{"mean": {metric: mean}, "images": {stem: {...}}, "n": count} for one method."""
    import numpy as np

    kept = {stem: {name: values[name] for name in names} for stem, values in images.items()}
    mean = {name: float(np.mean([values[name] for values in kept.values()])) for name in names}
    return Summary(mean=mean, images=kept, n=len(kept))


def _finite_or_null(data: object) -> object:
    """JSON has no inf/nan: write null (e.g. PSNR_ref of an image identical to its reference)."""
    if isinstance(data, dict):
        return {key: _finite_or_null(value) for key, value in data.items()}
    if isinstance(data, float) and not math.isfinite(data):
        return None
    return data


def _format(value: float) -> str:
    return "inf" if math.isinf(value) else "nan" if math.isnan(value) else f"{value:.4f}"


def _best(values: list[float], higher_is_better: bool) -> float | None:
    finite = [v for v in values if not math.isnan(v)]
    if len(finite) < 2:
        return None
    return max(finite) if higher_is_better else min(finite)


def heading(summaries: dict[str, Summary], colour: str) -> str:
    """'Mean over N images (colour: MODE)', printed above the table."""
    count = next(iter(summaries.values()))["n"]
    return f"Mean over {count} image{'s' if count != 1 else ''} (colour: {colour})"


def render_table(summaries: dict[str, Summary]) -> Table:
    """Metrics as rows, methods as columns; the best mean per metric in bold green."""
    from rich.table import Table

    from fusecli.metrics import METRICS

    methods = list(summaries)
    first = summaries[methods[0]]
    metric_names = list(first["mean"])
    table = Table()
    table.add_column("Metric")
    for method in methods:
        table.add_column(method, justify="right")
    for name in metric_names:
        metric = METRICS[name]
        values = [summaries[m]["mean"][name] for m in methods]
        best = _best(values, metric.higher_is_better)
        cells = [
            f"[bold green]{_format(v)}[/]" if best is not None and v == best else _format(v)
            for v in values
        ]
        table.add_row(f"{name} {'↑' if metric.higher_is_better else '↓'}", *cells)
    return table


def write_csv(path: Path, summaries: dict[str, Summary]) -> None:
    """One row per (method, image) plus a 'mean' row per method."""
    metric_names = list(next(iter(summaries.values()))["mean"])
    try:
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["method", "image", *metric_names])
            for method, summary in summaries.items():
                for stem, values in summary["images"].items():
                    writer.writerow([method, stem, *(repr(values[n]) for n in metric_names)])
                mean = summary["mean"]
                writer.writerow([method, "mean", *(repr(mean[n]) for n in metric_names)])
    except OSError as exc:
        raise FuseError(
            f"cannot write {path} ({exc.strerror}); choose another --csv path."
        ) from None


def method_folders(fused: list[Path]) -> list[Path]:
    """FUSED as given, or the method subfolders of a single folder holding only subfolders.

    ``fuse batch --method a,b`` writes OUTPUT/a/ and OUTPUT/b/; giving OUTPUT compares them.
    """
    if len(fused) != 1 or not fused[0].is_dir():
        return fused
    entries = [p for p in fused[0].iterdir() if not p.name.startswith(".")]
    folders = sorted(p for p in entries if p.is_dir())
    if folders and len(folders) == len(entries):
        return folders
    return fused


def _write_report(
    path: Path, plan: list[Job], summaries: dict[str, Summary], sources: tuple[Path, Path]
) -> None:
    from fusecli.metrics import METRICS
    from fusecli.report import ReportImage, write_report

    labels = [p.name if p.is_dir() else "SRC_A" for p in sources]
    if labels[0] == labels[1]:
        labels = ["SRC_A", "SRC_B"]
    methods = list(summaries)
    images = [
        ReportImage(
            job.stem,
            ((labels[0], job.source_a), (labels[1], job.source_b)),
            dict(zip(methods, job.fused, strict=True)),
        )
        for job in plan
    ]
    metric_names = list(next(iter(summaries.values()))["mean"])
    higher = {name: METRICS[name].higher_is_better for name in metric_names}
    try:
        write_report(path, images, {m: s["images"] for m, s in summaries.items()}, higher)
    except OSError as exc:
        raise FuseError(
            f"cannot write {path} ({exc.strerror}); choose another --report path."
        ) from None


def _parse_metrics(text: str | None) -> list[str] | None:
    if text is None:
        return None
    names = [name.strip() for name in text.split(",") if name.strip()]
    lookup = {name.lower(): name for name in METRIC_NAMES}
    unknown = [name for name in names if name.lower() not in lookup]
    if unknown or not names:
        raise FuseError(
            f"unknown metric {', '.join(unknown) or '(none given)'} in --metrics; "
            f"choose from {', '.join(METRIC_NAMES)}."
        )
    return [lookup[name.lower()] for name in names]


def register(app: typer.Typer) -> None:
    """Add the `eval` command to the root app."""

    @app.command("eval")
    def eval_command(
        ctx: typer.Context,
        paths: list[Path] = typer.Argument(
            ...,
            metavar="PAIRS FUSED | SRC_A SRC_B FUSED...",
            help="Two folders: the one `fuse batch` read and the one it wrote (with --method "
            "a,b, the folder holding a/ and b/); pairs are matched by relative path. Or three "
            "or more: first source, second source, then one fused image or folder per method.",
            show_default=False,
        ),
        reference: Path | None = typer.Option(
            None,
            "--ref",
            help="Ground truth (file or folder): adds PSNR_ref, SSIM_ref, MS_SSIM_ref.",
        ),
        metrics: str | None = typer.Option(
            None,
            "--metrics",
            help=f"Comma-separated metrics (default: all). Known: {', '.join(METRIC_NAMES)}.",
        ),
        as_json: bool = typer.Option(False, "--json", help="Print JSON instead of the table."),
        csv_path: Path | None = typer.Option(
            None, "--csv", help="Also write every per-image value to this CSV file."
        ),
        jobs: int = typer.Option(
            1,
            "--jobs",
            "-j",
            min=1,
            help="Images evaluated in parallel (threads); each keeps its sources' "
            "intermediates in memory.",
        ),
        report_path: Path | None = typer.Option(
            None,
            "--report",
            help="Also write an HTML report comparing the methods: sortable table, bar charts, "
            "each image with a wipe slider and zoom (full images linked relative to it).",
        ),
        colour: str = typer.Option(
            "channels",
            "--colour",
            "--color",
            help="channels: evaluate colour images per channel and average (VIFB/MEFB); "
            "gray: convert colour images to greyscale first.",
        ),
    ) -> None:
        """Compute fusion quality metrics (VIFB/MEFB definitions) of fused images.

        fuse eval PAIRS FUSED: every pair `fuse batch PAIRS -o FUSED` finds, against each
        method's result; pairs without a result, results without a pair and stacks of three or
        more images are listed on stderr and left out.
        """
        try:
            _evaluate(ctx, paths, reference, metrics, as_json, csv_path, jobs, report_path, colour)
        except FuseError as exc:
            if as_json:  # the failure as data too, for scripts reading stdout
                typer.echo(json.dumps({"error": error_message(exc, "eval")}))
            raise


def _evaluate(
    ctx: typer.Context,
    paths: list[Path],
    reference: Path | None,
    metrics: str | None,
    as_json: bool,
    csv_path: Path | None,
    jobs: int,
    report_path: Path | None,
    colour: str,
) -> None:
    """The body of ``fuse eval`` (see its help)."""
    from rich.console import Console
    from rich.progress import Progress

    from fusecli.metrics import DEFAULT_METRICS, METRICS, REFERENCE_METRICS

    if colour not in COLOUR_MODES:
        raise FuseError(f"unknown --colour {colour!r}; choose from {', '.join(COLOUR_MODES)}.")
    names = _parse_metrics(metrics)
    if len(paths) < 2:
        raise typer.BadParameter("give PAIRS FUSED or SRC_A SRC_B FUSED...", param_hint="PATHS")
    if len(paths) == 2:
        if reference is not None:
            raise FuseError("--ref works with SRC_A SRC_B FUSED..., not with PAIRS FUSED.")
        pairs = plan_pairs(paths[0], paths[1])
        for line in pairs.skipped:
            status(ctx, f"problem: {line}")
        plan, methods = pairs.jobs, pairs.methods
        first = plan[0]
        sources = (first.source_a.parent, first.source_b.parent)
    else:
        source_a, source_b, *fused = paths
        fused = method_folders(fused)
        plan = plan_jobs(source_a, source_b, fused, reference)
        methods, sources = _method_names(fused), (source_a, source_b)
    # A transient progress bar on stderr, only when it is a terminal (big folders take minutes).
    progress_console = Console(stderr=True)
    with Progress(
        *Progress.get_default_columns(),
        console=progress_console,
        transient=True,
        disable=not progress_console.is_terminal or len(plan) < 2,
    ) as progress:
        task = progress.add_task("evaluating", total=len(plan))
        per_method = evaluate_jobs(
            plan, names, colour, workers=jobs, on_done=lambda: progress.advance(task)
        )
    kept = common_metrics(per_method)
    if names is None:
        applicable = list(DEFAULT_METRICS) + (list(REFERENCE_METRICS) if reference else [])
        for name in (name for name in applicable if name not in kept):
            size = METRICS[name].min_size
            typer.echo(
                f"note: {name} left out: it needs images of at least {size}x{size} pixels.",
                err=True,
            )
    summaries = {
        method: summarise(images, kept) for method, images in zip(methods, per_method, strict=True)
    }
    if csv_path is not None:
        write_csv(csv_path, summaries)
    if report_path is not None:
        _write_report(report_path, plan, summaries, sources)
    if as_json:
        payload = next(iter(summaries.values())) if len(summaries) == 1 else summaries
        typer.echo(json.dumps(_finite_or_null(payload), indent=2))
    else:
        console = Console(width=max(100, 18 + 12 * len(summaries)))
        console.print(heading(summaries, colour), highlight=False)
        console.print(render_table(summaries))
