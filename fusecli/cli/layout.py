"""Where the pairs and stacks of a folder tree are, and where their fused images go.

The layout planner of ``fuse batch`` (see its module docstring for the layouts), kept apart from
the command so that ``fuse eval PAIRS FUSED`` finds pairs exactly as batch does without one
command module importing another.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from fusecli.errors import FuseError
from fusecli.imagefiles import image_files, natural_key
from fusecli.methods import DEFAULT_METHOD
from fusecli.plugins import TaskCatalog


@dataclass(frozen=True)
class Job:
    """One fusion to do: a task, its sources in role order and the output file."""

    task: str
    sources: tuple[Path, ...]
    output: Path
    method: str = DEFAULT_METHOD


@dataclass
class Plan:
    """Everything found below a folder: jobs to run and files or folders that cannot be used.

    Attributes:
        jobs: the fusions to do.
        problems: one line per file or folder that cannot be used.
        strays: those of ``problems`` that are single files without a partner (a stray
            ``notes.jpg``, a frame missing in one folder); ``--skip-unmatched`` ignores them.
    """

    jobs: list[Job] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    strays: list[str] = field(default_factory=list)

    def add(self, other: Plan) -> None:
        """Append another plan's jobs and problems."""
        self.jobs += other.jobs
        self.problems += other.problems
        self.strays += other.strays

    def stray(self, line: str) -> None:
        """Record a file that belongs to no pair or stack."""
        self.problems.append(line)
        self.strays.append(line)


def _subfolders(folder: Path, skip: Path) -> list[Path]:
    return sorted(
        (
            p
            for p in folder.iterdir()
            if p.is_dir() and not p.name.startswith(".") and p.resolve() != skip
        ),
        key=natural_key,
    )


def _schemes(catalog: TaskCatalog, task: str | None) -> list[tuple[str, tuple[str, ...]]]:
    """(task, names) for every naming scheme, longest first so under/mid/over beats under/over."""
    names = [task] if task else sorted(catalog.tasks)
    schemes = [(name, scheme) for name in names for scheme in catalog.tasks[name].spec.batch_names]
    return sorted(schemes, key=lambda item: -len(item[1]))


def _match_scheme(
    present: Sequence[str], schemes: list[tuple[str, tuple[str, ...]]]
) -> tuple[list[str], tuple[str, ...]] | None:
    """Tasks whose scheme names are all in ``present`` (lower case), for the longest scheme."""
    lowered = {name.lower() for name in present}
    matches = [(task, scheme) for task, scheme in schemes if set(scheme) <= lowered]
    if not matches:
        return None
    longest = len(matches[0][1])
    best = [(t, s) for t, s in matches if len(s) == longest]
    scheme = best[0][1]
    return sorted({t for t, s in best if s == scheme}), scheme


def _task_from_ancestors(folder: Path, catalog: TaskCatalog) -> str | None:
    """A task named by the folder or one of its ancestors (a folder named ``mef`` or ``mff``)."""
    for part in reversed(folder.resolve().parts):
        if part.lower() in catalog.tasks:
            return part.lower()
    return None


def _out(outdir: Path, relative: Path, stem: str, ext: str) -> Path:
    return outdir / relative / f"{stem}{ext}"


def _sibling_jobs(
    folder: Path, root: Path, outdir: Path, task: str, scheme: tuple[str, ...], ext: str
) -> Plan:
    by_name = {p.name.lower(): p for p in folder.iterdir() if p.is_dir()}
    columns = [{p.stem: p for p in image_files(by_name[name])} for name in scheme]
    plan = Plan()
    stems = sorted(set().union(*columns), key=natural_key)
    relative = folder.relative_to(root)
    for stem in stems:
        missing = [by_name[n].name for n, col in zip(scheme, columns) if stem not in col]
        if missing:
            plan.stray(
                f"{relative / stem}: no image named {stem!r} in {', '.join(missing)}/; skipped"
            )
            continue
        sources = tuple(col[stem] for col in columns)
        plan.jobs.append(Job(task, sources, _out(outdir, relative, stem, ext)))
    return plan


def _suffix_jobs(
    folder: Path, root: Path, outdir: Path, schemes: list[tuple[str, tuple[str, ...]]], ext: str
) -> tuple[Plan, list[Path]]:
    """Group ``<prefix>_<suffix>`` files into pairs; returns the plan and the files left over."""
    suffixes = {name for _, scheme in schemes for name in scheme}
    groups: dict[str, dict[str, Path]] = {}
    loose: list[Path] = []
    for image in image_files(folder):
        prefix, sep, suffix = image.stem.rpartition("_")
        if sep and prefix and suffix.lower() in suffixes:
            groups.setdefault(prefix, {})[suffix.lower()] = image
        else:
            loose.append(image)
    plan = Plan()
    relative = folder.relative_to(root)
    for prefix in sorted(groups, key=natural_key):
        members = groups[prefix]
        found = _match_scheme(list(members), schemes)
        if found is None:
            names = ", ".join(p.name for p in members.values())
            plan.stray(f"{relative / prefix}: {names} make no known pair; skipped")
            continue
        tasks, scheme = found
        if len(tasks) > 1:
            plan.problems.append(
                f"{relative / prefix}: suffixes {'/'.join(scheme)} fit tasks "
                f"{', '.join(tasks)}; pass --task"
            )
            continue
        sources = tuple(members[name] for name in scheme)
        plan.jobs.append(Job(tasks[0], sources, _out(outdir, relative, prefix, ext)))
        extra = sorted(set(members) - set(scheme))
        for name in extra:
            plan.stray(f"{members[name]}: not part of a pair; skipped")
    return plan, loose


def plan_batch(
    root: Path, outdir: Path, catalog: TaskCatalog, *, task: str | None = None, ext: str = ".png"
) -> Plan:
    """Find every job below ``root`` (see the module docstring for the layouts).

    Args:
        root: the input folder.
        outdir: where outputs go; never searched for inputs, even when inside ``root``.
        catalog: the registered tasks.
        task: restrict to this task (and use it for scene folders).
        ext: output extension, with the dot.

    Returns:
        Jobs in a deterministic order (sorted by output path) and one line per unusable file.

    Raises:
        FuseError: two jobs would write the same output.
    """
    schemes = _schemes(catalog, task)
    plan = Plan()
    pending = [root]
    while pending:
        folder = pending.pop()
        subfolders = _subfolders(folder, outdir.resolve())
        found = _match_scheme([p.name for p in subfolders], schemes)
        if found is not None:
            tasks, scheme = found
            if len(tasks) > 1:
                plan.problems.append(
                    f"{folder.relative_to(root) / '/'.join(scheme)}: folder names fit tasks "
                    f"{', '.join(tasks)}; pass --task"
                )
            else:
                plan.add(_sibling_jobs(folder, root, outdir, tasks[0], scheme, ext))
            subfolders = [p for p in subfolders if p.name.lower() not in scheme]
        pending.extend(reversed(subfolders))
        sub, loose = _suffix_jobs(folder, root, outdir, schemes, ext)
        plan.add(sub)
        if loose:
            _scene(folder, root, outdir, catalog, task, loose, ext, plan, paired=bool(sub.jobs))
    plan.jobs.sort(key=lambda job: str(job.output))
    _check_unique(plan.jobs)
    return plan


def _scene(
    folder: Path,
    root: Path,
    outdir: Path,
    catalog: TaskCatalog,
    task: str | None,
    images: list[Path],
    ext: str,
    plan: Plan,
    *,
    paired: bool,
) -> None:
    """Treat the images of a folder that are in no pair as one stack, if that makes sense."""
    relative = folder.relative_to(root)
    if paired or len(images) < 2:
        for image in images:
            plan.stray(f"{relative / image.name}: not part of a pair or stack; skipped")
        return
    name = task or _task_from_ancestors(folder, catalog)
    if name is None:
        plan.problems.append(
            f"{relative}/: {len(images)} images in no recognised layout; pass --task to fuse "
            "them as one stack"
        )
        return
    spec = catalog.tasks[name].spec
    if len(images) < spec.min_inputs or (spec.max_inputs and len(images) > spec.max_inputs):
        plan.problems.append(
            f"{relative}/: {len(images)} images, but task {name!r} takes "
            f"{spec.inputs_text()}; skipped"
        )
        return
    stem = folder.name if folder != root else root.name
    plan.jobs.append(Job(name, tuple(images), _out(outdir, relative.parent, stem, ext)))


def _check_unique(jobs: Sequence[Job]) -> None:
    seen: dict[Path, Job] = {}
    for job in jobs:
        if job.output in seen:
            first = seen[job.output]
            raise FuseError(
                f"{first.sources[0]} and {job.sources[0]} would both be fused into {job.output}; "
                "rename one of them"
            )
        seen[job.output] = job
