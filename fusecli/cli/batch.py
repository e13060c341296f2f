"""`fuse batch`: fuse every pair or stack found in a folder tree, resumably and in shards.

Layouts recognised anywhere below FOLDER (task names come from each TaskSpec's batch_names):

* sibling subfolders holding same-named files, e.g. ``ir/x.jpg`` + ``vi/x.jpg`` (ivf) or
  ``under/`` + ``over/`` (mef); the task follows from the folder names, or ``--task``;
* flat suffix pairs in one folder, e.g. ``x_ir.png`` + ``x_vis.png`` or ``x_A.jpg`` + ``x_B.jpg``;
* scene folders of 2 or more images each (a stack per folder), for ``--task`` or when a folder
  above is named after the task (``.../mef/sequences/chair/``).

Outputs mirror the input tree under OUTDIR; with ``--save-map`` each has its source map beside
it (``x.png`` -> ``x.map.png``). Existing outputs are skipped unless --overwrite, so
a rerun resumes; every write is atomic, so an interrupt never leaves a partial file. Processes
sharing OUTDIR (two terminals, a cluster job array) share the work: each claims a pair by
creating ``.<output name>.claim`` beside its output, exclusively, before fusing it.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from fusecli.cli.common import (
    align_option,
    compression_option,
    crop_option,
    depth_option,
    error_message,
    json_option,
    options_of,
    output_folder_option,
    overwrite_option,
    parse_depth,
    precision_option,
    quality_option,
    status,
    strip_option,
    tile_option,
    weights_option,
)
from fusecli.cli.layout import Job, Plan, plan_batch
from fusecli.errors import FuseError
from fusecli.imagefiles import SUPPORTED_EXTENSIONS
from fusecli.methods import DEFAULT_METHOD
from fusecli.plugins import TaskCatalog, get_catalog

if TYPE_CHECKING:  # the pipeline (and torch) load only when a batch runs, not for --help
    import torch

    from fusecli.pipeline import FusedFile, FusionJob


def _shard_from_environment() -> tuple[str, str, str]:
    """(rank, world size, where from): torchrun's RANK/WORLD_SIZE, else a SLURM job array's
    SLURM_ARRAY_TASK_ID (counted from SLURM_ARRAY_TASK_MIN) and SLURM_ARRAY_TASK_COUNT."""
    env = os.environ
    if "RANK" in env or "WORLD_SIZE" in env or "SLURM_ARRAY_TASK_ID" not in env:
        return env.get("RANK", "0"), env.get("WORLD_SIZE", "1"), "RANK/WORLD_SIZE"
    source = "SLURM_ARRAY_TASK_ID/SLURM_ARRAY_TASK_COUNT"
    try:
        rank = int(env["SLURM_ARRAY_TASK_ID"]) - int(env.get("SLURM_ARRAY_TASK_MIN", "0"))
    except ValueError:
        return env["SLURM_ARRAY_TASK_ID"], "", source
    return str(rank), env.get("SLURM_ARRAY_TASK_COUNT", ""), source


def parse_shard(text: str | None) -> tuple[int, int]:
    """``(rank, world_size)`` from ``--shard I/N`` (I counts from 0), else torchrun's RANK and
    WORLD_SIZE, else a SLURM job array's task id and count, else ``(0, 1)``.

    Raises:
        FuseError: malformed value.
    """
    if text is None:
        rank, world, source = _shard_from_environment()
    else:
        rank, _, world = text.partition("/")
        source = f"--shard {text}"
    try:
        index, count = int(rank), int(world)
    except ValueError:
        raise FuseError(f"{source} is not I/N with whole numbers, e.g. --shard 0/4") from None
    if count < 1 or not 0 <= index < count:
        raise FuseError(f"{source}: I must be 0 to N-1 and N at least 1, e.g. --shard 0/4")
    return index, count


def shard(jobs: Sequence[Job], rank: int, world: int) -> list[Job]:
    """This rank's slice: every ``world``-th job starting at ``rank`` (jobs are sorted)."""
    return list(jobs[rank::world])


MAP_SUFFIX = ".map.png"
"""What ``--save-map`` puts in place of an output's extension: maps are 8-bit grey PNG, lossless
whatever the outputs' format."""


def source_map_path(output: Path) -> Path:
    """Where ``--save-map`` writes an output's source map: beside it, ``x.tif`` -> ``x.map.png``."""
    return output.with_name(output.stem + MAP_SUFFIX)


@dataclass(frozen=True)
class FileOptions:
    """Per-job settings passed through to ``fuse_files``: alignment, metadata, encoding, and
    whether to write each output's source map (see :func:`source_map_path`)."""

    align: bool = False
    crop: bool = True
    keep_metadata: bool = True
    bit_depth: int | None = None
    quality: int | None = None
    compression: str | None = None
    precision: str = "auto"
    save_map: bool = False


@dataclass
class Summary:
    """Outcome of a batch run, as ``--json`` prints it."""

    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[dict[str, object]] = field(default_factory=list)
    rank: int = 0
    world_size: int = 1
    interrupted: bool = False
    claimed: list[str] = field(default_factory=list)
    unmatched: list[str] = field(default_factory=list)
    # Every output's notes (stderr prints each once; the record keeps them per output).
    notes: list[dict[str, str]] = field(default_factory=list)
    # The maps written beside the fused outputs; None without --save-map, so that the summary
    # of other runs keeps its keys.
    source_maps: list[str] | None = None

    def as_dict(self) -> dict[str, object]:
        fields: dict[str, object] = {
            "done": len(self.done),
            "skipped": len(self.skipped),
            "failed": len(self.failed),
            "claimed_elsewhere": len(self.claimed),
            "rank": self.rank,
            "world_size": self.world_size,
            "interrupted": self.interrupted,
            "outputs": self.done,
            "skipped_outputs": self.skipped,
            "claimed_outputs": self.claimed,
            "failures": self.failed,
            "unmatched": self.unmatched,
            "notes": self.notes,
        }
        if self.source_maps is not None:
            fields["source_maps"] = self.source_maps
        return fields


def report_problems(ctx: typer.Context, problems: Sequence[str]) -> None:
    """The plan's problems, one ``problem: ...`` line each on stderr, in dry and real runs."""
    for problem in problems:
        status(ctx, f"problem: {problem}")


def _dry_run(
    ctx: typer.Context,
    jobs: Sequence[Job],
    problems: list[str],
    overwrite: bool,
    json_out: bool,
    save_map: bool,
) -> None:
    rows: list[dict[str, object]] = []
    for job in jobs:
        row: dict[str, object] = {
            "task": job.task,
            "method": job.method,
            "sources": [str(p) for p in job.sources],
            "output": str(job.output),
            "action": "skip (exists)" if job.output.exists() and not overwrite else "fuse",
        }
        # Only with --save-map, so that the rows of other runs keep their keys.
        if save_map:
            row["source_map"] = str(source_map_path(job.output))
        rows.append(row)
    if json_out:
        typer.echo(json.dumps({"jobs": rows, "problems": problems}, indent=2))
    else:
        for job, row in zip(jobs, rows):
            sources = " + ".join(f"{p.parent.name}/{p.name}" for p in job.sources)
            written = f"{row['output']}, map {row['source_map']}" if save_map else row["output"]
            typer.echo(f"{row['action']:<13} {row['task']:<6} {sources} -> {written}")
    report_problems(ctx, problems)
    todo = sum(row["action"] == "fuse" for row in rows)
    status(ctx, f"{len(rows)} jobs ({todo} to fuse), {len(problems)} problems")


def batch(
    ctx: typer.Context,
    folder: Path = typer.Argument(
        ...,
        exists=True,
        file_okay=False,
        help="Folder to search (sibling subfolders, flat x_ir/x_vis pairs, scene folders).",
        show_default=False,
    ),
    outdir: Path = output_folder_option("Output folder (created); outputs mirror the input tree."),
    task: str | None = typer.Option(
        None, "--task", help="Fuse only this task (needed for scene folders without a task name)."
    ),
    ext: str = typer.Option(
        "png",
        "--ext",
        metavar="png|tif|jpg|bmp",
        help="Output format: png (default, keeps 16-bit), tif, jpg or bmp.",
    ),
    weights: Path | None = weights_option("each task's shipped weights"),
    tile: int | None = tile_option(),
    resize: bool = typer.Option(
        False, "--resize", help="Resize sources to the first one's size instead of failing."
    ),
    shard_text: str | None = typer.Option(
        None,
        "--shard",
        metavar="I/N",
        help="Fuse only slice I of N (I from 0); default: torchrun's RANK/WORLD_SIZE, else a "
        "SLURM array's SLURM_ARRAY_TASK_ID/SLURM_ARRAY_TASK_COUNT, else all.",
    ),
    skip_unmatched: bool = typer.Option(
        False,
        "--skip-unmatched",
        help="List files that belong to no pair or stack but do not fail for them (exit 0).",
    ),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="List the work and problems; fuse nothing."
    ),
    overwrite: bool = overwrite_option("Redo outputs that already exist."),
    align: bool = align_option(),
    crop: bool = crop_option(),
    strip: bool = strip_option(),
    depth: str | None = depth_option(),
    quality: int | None = quality_option(),
    compression: str | None = compression_option(),
    json_out: bool = json_option("Print a JSON summary on stdout."),
    methods_text: str | None = typer.Option(
        None,
        "--method",
        metavar="NAME[,NAME...]",
        help="Fusion methods from `fuse methods`, comma-separated; each writes its own tree "
        "OUTPUT/<method>/. Default: pslpt, straight into OUTPUT.",
    ),
    precision: str = precision_option(),
    save_map: bool = typer.Option(
        False,
        "--save-map",
        help="Also write beside each output a grey PNG of which source each pixel mostly came "
        "from (x.png -> x.map.png; source k of n is 255*k/(n-1)). Network only.",
    ),
) -> None:
    """Fuse every pair or stack found in a folder tree; rerun to resume.

    Layouts: sibling subfolders of same-named files (ir/ + vi/, mri/ + pet/, under/ + over/,
    a/ + b/; `fuse tasks` lists every task's names), flat suffix pairs (x_ir.png + x_vis.png,
    x_A.jpg + x_B.jpg), and scene folders of 2 or more images each, fused as one stack (with
    --task, or below a folder named after the task, e.g. mef/).

    Outputs mirror the input tree under OUTPUT; existing ones are skipped, so a rerun resumes.
    A pair that cannot be fused is reported and skipped; the exit status is then 1.
    Several processes may share one OUTPUT: each pair is claimed by one of them.
    """
    catalog = get_catalog()
    if task is not None:
        catalog.get(task)
    suffix = "." + ext.lower().lstrip(".")
    if suffix not in SUPPORTED_EXTENSIONS:
        raise FuseError(f"--ext {ext} is not an image format; use png, tif, jpg or bmp")
    bit_depth = parse_depth(depth)
    from fusecli.io import check_encoding

    # One check for every output, before any folder is searched or network opened.
    check_encoding(
        Path(f"output{suffix}"), bit_depth=bit_depth, quality=quality, compression=compression
    )
    from fusecli.engine.precision import resolve_precision

    rank, world = parse_shard(shard_text)
    # Resolved here, so an unusable --precision fails before any folder is searched.
    precision = resolve_precision(precision, options_of(ctx).device)
    if outdir.resolve() == folder.resolve():
        raise FuseError(
            f"-o {outdir} is the input folder: a rerun would read the outputs as inputs; "
            f"choose another folder, e.g. -o {folder / 'fused'}"
        )
    plan = _plan_methods(folder, outdir, catalog, task, suffix, methods_text)
    if save_map:
        _check_maps_possible(plan.jobs)
    if not plan.jobs and not plan.problems:
        raise FuseError(
            f"{folder} holds no pairs or stacks; see `fuse batch --help` for the layouts"
        )
    jobs = shard(plan.jobs, rank, world)
    # Problems are reported by rank 0 only, so a sharded run lists each once.
    problems = plan.problems if rank == 0 else []
    if dry_run:
        _dry_run(ctx, jobs, problems, overwrite, json_out, save_map)
        return
    device = options_of(ctx).device
    files = FileOptions(
        align=align,
        crop=crop,
        keep_metadata=not strip,
        bit_depth=bit_depth,
        quality=quality,
        compression=compression,
        precision=precision,
        save_map=save_map,
    )
    report_problems(ctx, problems)
    quiet = options_of(ctx).quiet
    summary = _run(
        jobs, catalog, weights, device, tile, resize, overwrite, rank, world, files, quiet=quiet
    )
    if save_map:
        summary.source_maps = [str(source_map_path(Path(output))) for output in summary.done]
    strays = set(plan.strays) if skip_unmatched else set()
    summary.unmatched = [p for p in problems if p in strays]
    failed = [{"sources": [], "reason": p} for p in problems if p not in strays]
    summary.failed = failed + summary.failed
    _report(ctx, summary, json_out)
    if summary.interrupted:
        raise typer.Exit(130)
    if summary.failed:
        raise typer.Exit(1)


def _plan_methods(
    folder: Path,
    outdir: Path,
    catalog: TaskCatalog,
    task: str | None,
    suffix: str,
    methods_text: str | None,
) -> Plan:
    """The batch plan, once per ``--method`` name under OUTPUT/<method>/ when names are given."""
    if methods_text is None:
        return plan_batch(folder, outdir, catalog, task=task, ext=suffix)
    names = [name.strip() for name in methods_text.split(",") if name.strip()]
    if not names:
        raise FuseError("--method names no fusion method; see `fuse methods`")
    for name in names:
        catalog.get_method(name)  # fail before any work on an unknown or ambiguous name
    # Planned once against OUTPUT, so no method's tree is searched for inputs.
    found = plan_batch(folder, outdir, catalog, task=task, ext=suffix)
    jobs = [
        Job(job.task, job.sources, outdir / name / job.output.relative_to(outdir), name)
        for name in dict.fromkeys(names)
        for job in found.jobs
    ]
    return Plan(jobs=jobs, problems=found.problems, strays=found.strays)


def _check_maps_possible(jobs: Sequence[Job]) -> None:
    """Fail before any work when ``--save-map`` meets a method without a network."""
    others = sorted({job.method for job in jobs if job.method != DEFAULT_METHOD})
    if others:
        raise FuseError(
            f"--save-map needs the network's fusion weights, which the fusion method "
            f"{others[0]!r} does not have; drop --save-map or fuse with {DEFAULT_METHOD} only"
        )


def _run(
    jobs: Sequence[Job],
    catalog: TaskCatalog,
    weights: Path | None,
    device: torch.device,
    tile: int | None,
    resize: bool,
    overwrite: bool,
    rank: int,
    world: int,
    files: FileOptions | None = None,
    *,
    quiet: bool = False,
) -> Summary:
    """Fuse the jobs whose outputs are missing (all with ``overwrite``); what became of each.

    Each output's notes (a source whose content is another format than its name says, precision
    lost to the output format) are printed as ``note: ...`` lines on stderr unless ``quiet``.
    """
    files = files or FileOptions()
    summary = Summary(rank=rank, world_size=world)
    todo = [job for job in jobs if overwrite or not job.output.exists()]
    summary.skipped = [str(job.output) for job in jobs if job not in todo]
    if not todo:
        return summary
    # Imported here, not at the top: `fuse batch --help` and completion load this module.
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    console = Console(stderr=True)
    columns = (
        TextColumn("[bold]fusing[/bold]" + (f" (rank {rank}/{world})" if world > 1 else "")),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )
    with (
        Progress(*columns, console=console, disable=not console.is_terminal) as progress,
        _sigterm_as_interrupt(),
    ):
        bar = progress.add_task("batch", total=len(todo))

        # Claims this process holds: taken when a job is read, released when it is recorded, and
        # all released on the way out (an interrupt leaves jobs read ahead but never fused).
        held: dict[Path, Path] = {}
        # A source read by several jobs (one per --method) would repeat its note in each.
        noted: set[str] = set()

        def record(job: Job, outcome: FusedFile | Exception) -> None:
            try:
                if isinstance(outcome, JobNotRun):
                    getattr(summary, outcome.outcome).append(str(job.output))
                elif not isinstance(outcome, Exception):
                    summary.done.append(str(job.output))
                    for note in outcome.notes:
                        summary.notes.append({"output": str(job.output), "note": note})
                        if not quiet and note not in noted:
                            noted.add(note)
                            # Through the bar's console so that a live bar is redrawn below the
                            # line; soft wrap keeps each note on one line for whoever greps it.
                            progress.console.print(
                                f"note: {note}", markup=False, highlight=False, soft_wrap=True
                            )
                else:
                    reason = error_message(outcome, "batch")
                    sources = [str(p) for p in job.sources]
                    summary.failed.append({"sources": sources, "reason": reason})
                    progress.console.print(f"[red]failed[/red] {job.output.name}: {reason}")
            finally:
                claim = held.pop(job.output, None)
                if claim is not None:
                    claim.unlink(missing_ok=True)
                progress.advance(bar)

        def start(job: Job) -> FusionJob:
            from fusecli.pipeline import prepare_job, read_job

            spec = catalog.get(job.task).spec
            method = catalog.get_method(job.method).spec
            job.output.parent.mkdir(parents=True, exist_ok=True)
            claim = claim_output(job.output)
            if claim is None:
                raise JobNotRun("claimed")  # another process is fusing it
            held[job.output] = claim
            if not overwrite and job.output.exists():
                raise JobNotRun("skipped")  # finished by another process meanwhile
            fusion = prepare_job(
                spec, job.sources, job.output, weights=weights, device=device,
                overwrite=overwrite, resize=resize, tile_size=tile, progress=None,
                align=files.align, crop=files.crop, align_model="homography",
                keep_metadata=files.keep_metadata, bit_depth=files.bit_depth,
                quality=files.quality, compression=files.compression,
                method=None if method.name == DEFAULT_METHOD else method,
                precision=files.precision,
                source_map=source_map_path(job.output) if files.save_map else None,
            )  # fmt: skip
            read_job(fusion)
            return fusion

        try:
            run_overlapped(todo, start, record)
        except KeyboardInterrupt:
            summary.interrupted = True
        finally:
            for claim in list(held.values()):
                claim.unlink(missing_ok=True)
    return summary


class JobNotRun(Exception):
    """Raised by a batch job's start for a job this process leaves alone.

    ``outcome`` names the :class:`Summary` list the job goes to: ``claimed`` (another process
    is fusing it) or ``skipped`` (another process finished it).
    """

    def __init__(self, outcome: str) -> None:
        super().__init__(outcome)
        self.outcome = outcome


# Jobs read ahead of the network, and fused images waiting for the writer: enough to hide a
# slow read or write behind one fusion, few enough to bound memory (a 24 MP pair is ~300 MB).
QUEUE_DEPTH = 2
_END = None


def _put(channel: queue.Queue, item: object, stop: threading.Event) -> None:
    """Put unless ``stop`` is set first (so a thread never blocks on a queue nobody reads)."""
    while not stop.is_set():
        try:
            channel.put(item, timeout=0.1)
            return
        except queue.Full:
            continue


def run_overlapped(
    jobs: Sequence[Job],
    start: Callable[[Job], FusionJob],
    record: Callable[[Job, FusedFile | Exception], None],
) -> None:
    """Read, fuse and write jobs in order, the three stages of consecutive jobs overlapping.

    A reader thread checks and reads the next jobs (``start``) while this thread runs the
    network on the current one, and a writer thread writes the previous one (atomically, as
    ever). ``record(job, outcome)`` is called once per job, in order: with what ``write_job``
    returned when its output is written, with the FuseError that stopped it or the JobNotRun
    that ``start`` raised otherwise. On Ctrl-C (KeyboardInterrupt in
    this thread) no new job is read or fused, images already fused are still written, and the
    interrupt propagates. Any other exception (a bug) is re-raised here after both threads end.
    """
    from fusecli.pipeline import fuse_job, write_job

    ready: queue.Queue = queue.Queue(maxsize=QUEUE_DEPTH)
    fused_images: queue.Queue = queue.Queue(maxsize=QUEUE_DEPTH)
    stop = threading.Event()
    bugs: list[BaseException] = []

    def reader() -> None:
        for job in jobs:
            if stop.is_set():
                return
            try:
                item = (job, start(job), None)
            except (FuseError, JobNotRun) as exc:
                item = (job, None, exc)
            except BaseException as exc:
                bugs.append(exc)
                break
            _put(ready, item, stop)
        _put(ready, _END, stop)

    def writer() -> None:
        # Failures pass through here too, so that jobs are recorded in order.
        while (item := fused_images.get()) is not _END:
            job, fusion, fused, error = item
            if bugs:
                continue  # stopping: drain the queue so the network thread never blocks
            try:
                if error is not None:
                    raise error
                record(job, write_job(fusion, fused))
            except (FuseError, JobNotRun) as exc:
                record(job, exc)
            except BaseException as exc:
                bugs.append(exc)

    threads = [threading.Thread(target=target, daemon=True) for target in (reader, writer)]
    for thread in threads:
        thread.start()
    try:
        while not bugs and (item := ready.get()) is not _END:
            job, fusion, error = item
            fused = None
            if error is None:
                try:
                    fused = fuse_job(fusion)
                except FuseError as exc:
                    error = exc
            fused_images.put((job, fusion, fused, error))
    finally:
        stop.set()
        fused_images.put(_END)
        for thread in threads:
            thread.join()
    if bugs:
        raise bugs[0]


def claim_path(output: Path) -> Path:
    """The claim file of an output: ``.<name>.claim`` beside it."""
    return output.with_name(f".{output.name}.claim")


def claim_output(output: Path) -> Path | None:
    """Claim ``output`` for this process; None when another live process holds the claim.

    The claim file is created with O_EXCL, so of several processes exactly one succeeds, and
    holds ``<host> <pid>``. A claim left on this host by a process that no longer exists (a
    SIGKILL skips the clean-up) is taken over; on another host it must be removed by hand.
    """
    path = claim_path(output)
    for _ in range(2):
        try:
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            if not _claim_is_stale(path):
                return None
            path.unlink(missing_ok=True)
            continue
        with os.fdopen(descriptor, "w") as handle:
            handle.write(f"{socket.gethostname()} {os.getpid()}\n")
        return path
    return None


def _claim_is_stale(path: Path) -> bool:
    try:
        host, pid = path.read_text().split()
        process = int(pid)
    except (OSError, ValueError):  # being written, or gone: not ours to take
        return False
    if host != socket.gethostname() or process == os.getpid():
        return False
    try:
        os.kill(process, 0)
    except ProcessLookupError:
        return True
    except OSError:  # alive, owned by another user
        return False
    return False


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Handle SIGTERM (``kill``, SLURM's ``scancel``) like Ctrl-C while the batch runs."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread: leave signals alone
        previous = None
    try:
        yield
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _report(ctx: typer.Context, summary: Summary, json_out: bool) -> None:
    if json_out:
        typer.echo(json.dumps(summary.as_dict(), indent=2))
    else:
        for failure in summary.failed:
            sources = " + ".join(Path(str(p)).name for p in failure["sources"])  # type: ignore[attr-defined]
            if sources:  # the plan's problems were listed before the run
                print(f"failed: {sources}: {failure['reason']}", file=sys.stderr)
    claimed = f", {len(summary.claimed)} claimed by another process" if summary.claimed else ""
    unmatched = f", {len(summary.unmatched)} unmatched files ignored" if summary.unmatched else ""
    status(
        ctx,
        f"{len(summary.done)} fused, {len(summary.skipped)} skipped (exist), "
        f"{len(summary.failed)} failed{claimed}{unmatched}"
        + (" - interrupted, rerun to resume" if summary.interrupted else ""),
    )


def register(app: typer.Typer) -> None:
    """Add ``fuse batch``."""
    app.command(name="batch")(batch)
