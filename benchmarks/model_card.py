"""Results table of the model card: the shipped model against the tools a user would pick instead.

    python benchmarks/model_card.py                        # the whole table (~40 min on 2 cores)
    python benchmarks/model_card.py --max-pairs 2          # a quick look at every set
    python benchmarks/model_card.py --weights seed0.safetensors seed1.safetensors   # seed spread
    python benchmarks/model_card.py --update-card --contact-sheet weights/contact-sheet.png

Development sets: the pairs the recipe keeps out of training (RoadScene, MRI-PET, MRI-SPECT,
MRI-CT, with the trainer's own split) and MFI-WHU, MFFW and MEFB, which a recipe that does not
list them never trains on (if it does list them, only their development split is used). Each
pair is fused by every method that applies to its task and scored with `fuse eval`:

- average: per-pixel mean of the two sources (every task);
- laplacian: Laplacian pyramid, choose-max-abs details, average base (benchmarks/classical.py;
  every task);
- guided: guided-filter fusion, Li, Kang, Hu, IEEE TIP 2013 (benchmarks/classical.py; every task);
- enfuse (MEF: exposure weights; MFF: hard-mask contrast weights), mertens (OpenCV, MEF) and
  openfocus (its default method, MFF): external tools, see benchmarks/external.py. A tool that
  is not installed is named in the card with the reason and left out;
- stage1: the network at the end of stage 1. Stage 2 trains only FAF set 2, starting from set 1
  and leaving everything else frozen, so the stage-1 network is the shipped file with set 2
  replaced by set 1 (`--stage1` takes a separate file instead). On MFF and MEF, which use set 1,
  it is the shipped model by construction;
- ours: the shipped weights (or every `--weights` file: the same recipe trained with different
  seeds), exactly as `fuse <task>` runs them. With two or more files the table gives their mean
  and their spread (max - min); stage1 is derived from the first file. Files that give identical
  results on a task (seeds of stage 2 alone, on the set-1 tasks MFF and MEF) have no spread
  there: it is unknown, not zero.

average, laplacian, guided and the network fuse the single-channel inputs the task plugin
prepares and get their colour back through the plugin's colour policy; the external tools take
the colour sources and fuse colour their own way. Every result is scored the same way
(`--colour`: per channel by default, as VIFB and MEFB do; `gray` scores luminance only).

Comparison (issue 17): per task and primary metric (PRIMARY), ours against the best tool; a lead
counts only when it is larger than the seed spread. Bar (issue 7): on every task, ours beats
both the average and the Laplacian pyramid on Qabf and on at least two of SSIM, MI, NMI, FMI,
Qcb (and MEF_SSIM for MEF). Task means pool the pairs of its sets. The exit status is 1 when
the issue-7 bar does not hold.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parent))

from external import TOOLS, ExternalTool, describe_tools, fuse_with_tool

from fusecli.classical import average_fusion, guided_filter_fusion, laplacian_fusion
from fusecli.color import restore_color
from fusecli.engine.model import PSLPT
from fusecli.engine.weights import load_weights, shipped_weights_path
from fusecli.hookspecs import TaskSpec
from fusecli.io import read_image, write_image
from fusecli.pipeline import DETAIL_BANDS, fuse_sources, network_inputs
from fusecli.plugins import get_catalog
from fusecli.train.data import held_out_pairs, list_images
from fusecli.train.recipe import Recipe

REPO = Path(__file__).resolve().parents[1]
# Methods that fuse the luminance the task plugin prepares (colour through the task's policy).
CLASSICAL: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "average": average_fusion,
    "laplacian": laplacian_fusion,
    "guided": guided_filter_fusion,
}
BASELINES = ("average", "laplacian")  # the issue-7 bar's two baselines
NETWORK_METHODS = ("stage1", "ours")
BAR_METRIC = "Qabf"
OTHER_METRICS = ("SSIM", "MI", "NMI", "FMI", "Qcb")
MEF_METRIC = "MEF_SSIM"
# Issue 17: the metrics a task's comparison is decided on; SSIM, MI and NMI are secondary.
PRIMARY = {
    "ivf": ("Qabf", "Qcb", "FMI"),
    "mmf": ("Qabf", "Qcb", "FMI"),
    "mff": ("Qabf", "Qcb", "FMI"),
    "mef": ("MEF_SSIM", "Qabf"),
}
SECONDARY = ("SSIM", "MI", "NMI")
COLUMNS = ("Qabf", "Qcb", "FMI", MEF_METRIC, *SECONDARY)
CARD_START, CARD_END = "<!-- results:start -->", "<!-- results:end -->"

# Sets that no shipped recipe trains on: (name, task, folder under the data root, source folders
# in the task's role order).
EVALUATION_ONLY = (
    ("MFI-WHU", "mff", "mff/mfi-whu", ("a", "b")),
    ("MFFW", "mff", "mff/mffw", ("a", "b")),
    ("MEFB", "mef", "mef/mefb", ("under", "over")),
)
# Display names and role order of the recipe's unlabeled folders, by their folder.
UNLABELED_SETS = {
    "ivf/roadscene": ("RoadScene", "ivf", ("ir", "vi")),
    "mmf/mri-pet": ("MRI-PET", "mmf", ("mri", "pet")),
    "mmf/mri-spect": ("MRI-SPECT", "mmf", ("mri", "spect")),
    "mmf/mri-ct": ("MRI-CT", "mmf", ("mri", "ct")),
}
TASK_ORDER = ("ivf", "mmf", "mff", "mef")


@dataclass(frozen=True)
class EvalSet:
    """Held-out pairs of one data set.

    Attributes:
        name: display name (e.g. "RoadScene").
        task: built-in task that fuses it.
        folder: the data set's folder.
        dirs: the two source sub-folders, in the task's role order.
        names: held-out file names (same name in both sub-folders).
    """

    name: str
    task: str
    folder: Path
    dirs: tuple[str, str]
    names: tuple[str, ...]


def evaluation_sets(recipe: Recipe, data_root: Path, max_pairs: int) -> list[EvalSet]:
    """The development sets of the issue, each limited to its held-out pairs.

    Args:
        recipe: the recipe the weights were trained with (it defines the splits).
        data_root: folder holding ivf/, mmf/, mff/, mef/.
        max_pairs: keep the first N pairs of each set (0: all).

    Returns:
        Sets in task order (IVF, MMF, MFF, MEF).
    """
    held_out = held_out_pairs(data_root, recipe.data)
    sets = []
    for path, (name, task, dirs) in UNLABELED_SETS.items():
        if path not in held_out:
            raise SystemExit(
                f"error: the recipe does not list {path}, so its held-out pairs are unknown"
            )
        sets.append(EvalSet(name, task, data_root / path, dirs, tuple(held_out[path])))
    for name, task, path, dirs in EVALUATION_ONLY:
        names = held_out.get(path, list_images(data_root / path / dirs[0]))
        sets.append(EvalSet(name, task, data_root / path, dirs, tuple(names)))
    if max_pairs:
        sets = [EvalSet(s.name, s.task, s.folder, s.dirs, s.names[:max_pairs]) for s in sets]
    return sorted(sets, key=lambda s: TASK_ORDER.index(s.task))


def stage1_network(shipped: PSLPT) -> PSLPT:
    """The shipped network with FAF set 2 replaced by set 1: the network at the end of stage 1."""
    net = PSLPT(shipped.config)
    net.load_state_dict(shipped.state_dict())
    net.faf2.load_state_dict(net.faf1.state_dict())
    return net.eval()


def fuse_pair(
    method: str, net: PSLPT | None, spec: TaskSpec, sources: Sequence[torch.Tensor]
) -> torch.Tensor:
    """Fuse (1, C, H, W) sources in [0, 1] with the network or a CLASSICAL method.

    Returns:
        (1, C_out, H, W) in [0, 1].
    """
    if net is not None:
        return fuse_sources(net, spec, sources)
    luma = network_inputs(spec, sources)
    fused_y = CLASSICAL[method](luma[0], luma[1])
    return restore_color(fused_y, list(sources), spec.color).clamp(0.0, 1.0)


def competitors(task: str, tools: Sequence[str]) -> list[str]:
    """The methods ours is compared with on a task: CLASSICAL, then the external tools for it."""
    return [*CLASSICAL, *(name for name in tools if task in TOOLS[name].tasks)]


def ours_folders(count: int) -> list[str]:
    """Result folders of the weights files: ours, ours-2, ours-3, ..."""
    return ["ours", *(f"ours-{k}" for k in range(2, count + 1))]


def network_digest(net: PSLPT, faf_set: int) -> str:
    """sha256 of the tensors a task's fusion reads: both encoders, the decoder, one FAF set.

    Outputs are cached under this digest, so results of a set whose tensors did not change (MFF
    and MEF across stage 2, which trains only FAF set 2) are reused, not recomputed.
    """
    digest = hashlib.sha256()
    for module in (net.encoder1, net.encoder2, net.decoder, net.faf_set(faf_set)):
        for name, tensor in module.state_dict().items():
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().float().contiguous().numpy().tobytes())
    return digest.hexdigest()


def composition_stamp(spec: TaskSpec) -> str:
    """How a task turns the network's fusion into its output, for the cache stamp: results
    composed another way (the pipeline's composition changed) are not reused."""
    detail = f" bands={DETAIL_BANDS}" if spec.compose == "detail" else ""
    return f" compose={spec.compose}{detail} global_view={spec.global_view}"


def prepare_sources(work: Path, eval_set: EvalSet) -> Path:
    """Link the held-out pairs into work/<set>/sources/<dir>/ so `fuse eval` sees only them."""
    base = work / eval_set.name / "sources"
    for folder in eval_set.dirs:
        (base / folder).mkdir(parents=True, exist_ok=True)
        for name in eval_set.names:
            link = base / folder / name
            if not link.exists():
                link.symlink_to((eval_set.folder / folder / name).resolve())
    return base


def _stamped_folder(folder: Path, stamp_text: str) -> None:
    """Create a method folder; results made for another stamp (other weights) are deleted."""
    folder.mkdir(parents=True, exist_ok=True)
    stamp = folder / ".weights"
    if stamp.exists() and stamp.read_text() != stamp_text:
        for stale in folder.glob("*.png"):
            stale.unlink()
    stamp.write_text(stamp_text)


def tool_stamp(tool: ExternalTool, task: str) -> str:
    """Cache stamp of an external tool's results: its name, version and options."""
    return f"external:{tool.name}:{tool.version()}:{tool.options(task)}"


def fuse_set(
    work: Path,
    eval_set: EvalSet,
    spec: TaskSpec,
    networks: dict[str, PSLPT],
    tools: Sequence[str] = (),
) -> None:
    """Write every method's fused image of every pair to work/<set>/<method>/<stem>.png.

    A method folder is reused while its stamp (the digest of the tensors the method reads, or an
    external tool's version and options) matches, so reruns that only change the table cost
    nothing, and outputs of other weights are never mixed in. Networks with one digest (stage1
    and ours on MFF and MEF) are fused once.

    Args:
        networks: result folder name -> network (stage1, ours, ours-2, ...).
        tools: names of the external tools to run (those that apply to the set's task run).
    """
    stems = [Path(name).stem + ".png" for name in eval_set.names]
    for method in competitors(eval_set.task, tools):
        folder = work / eval_set.name / method
        if method in CLASSICAL:
            _stamped_folder(folder, f"classical:{method}")
            for name, stem in zip(eval_set.names, stems):
                if not (folder / stem).exists():
                    sources = [read_image(eval_set.folder / d / name).pixels for d in eval_set.dirs]
                    write_image(folder / stem, fuse_pair(method, None, spec, sources), bit_depth=8)
            continue
        tool = TOOLS[method]
        _stamped_folder(folder, tool_stamp(tool, eval_set.task))
        todo = [
            ([eval_set.folder / d / name for d in eval_set.dirs], folder / stem)
            for name, stem in zip(eval_set.names, stems)
            if not (folder / stem).exists()
        ]
        fuse_with_tool(tool, eval_set.task, todo)

    folder_by_stamp: dict[str, Path] = {}
    for method, net in networks.items():
        stamp_text = network_digest(net, spec.faf_set) + composition_stamp(spec)
        folder = work / eval_set.name / method
        _stamped_folder(folder, stamp_text)
        twin = folder_by_stamp.setdefault(stamp_text, folder)
        for name, stem in zip(eval_set.names, stems):
            output = folder / stem
            if output.exists():
                continue
            if twin != folder:
                partial = output.with_suffix(".partial")
                shutil.copyfile(twin / output.name, partial)
                os.replace(partial, output)  # an interrupted copy is never taken for a result
                continue
            sources = [read_image(eval_set.folder / d / name).pixels for d in eval_set.dirs]
            write_image(output, fuse_pair(method, net, spec, sources), bit_depth=8)


def metric_names(task: str) -> list[str]:
    """Metrics of the table for a task (MEF_SSIM only for MEF)."""
    return [m for m in COLUMNS if m != MEF_METRIC or task == "mef"]


def evaluate_set(
    work: Path, eval_set: EvalSet, folders: Sequence[str], jobs: int, colour: str = "channels"
) -> dict[str, dict[str, dict]]:
    """Run `fuse eval` on the set's sources and method folders; its JSON, per folder."""
    sources = work / eval_set.name / "sources"
    command = [
        sys.executable,
        "-m",
        "fusecli",
        "eval",
        str(sources / eval_set.dirs[0]),
        str(sources / eval_set.dirs[1]),
        *(str(work / eval_set.name / folder) for folder in folders),
        "--metrics",
        ",".join(metric_names(eval_set.task)),
        "--colour",
        colour,
        "--json",
        "--jobs",
        str(jobs),
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"error: fuse eval failed on {eval_set.name}: {done.stderr.strip()}")
    return json.loads(done.stdout)


def pooled_means(
    results: dict[str, dict], sets: Sequence[EvalSet], task: str, folders: Sequence[str]
) -> dict[str, dict[str, float]]:
    """{folder: {metric: mean over every pair of the task's sets}}."""
    pooled: dict[str, dict[str, float]] = {}
    for folder in folders:
        per_image = [
            values
            for s in sets
            if s.task == task
            for values in results[s.name][folder]["images"].values()
        ]
        pooled[folder] = {
            metric: float(np.mean([v[metric] for v in per_image])) for metric in metric_names(task)
        }
    return pooled


@dataclass(frozen=True)
class Stat:
    """A method's means; for ours, the mean over the weights files and their spread.

    Attributes:
        mean: metric -> value.
        spread: metric -> max - min over the weights files; None when unknown: one file, or
            files that run the same network on this task (``shared``).
        shared: several weights files gave identical results here. Seeds of stage 2 alone
            differ only in FAF set 2, so on MFF and MEF (set 1) they are one network, and a
            spread of zero would make every lead count.
    """

    mean: dict[str, float]
    spread: dict[str, float] | None = None
    shared: bool = False


def summarise(values: dict[str, dict[str, float]], seeds: Sequence[str]) -> dict[str, Stat]:
    """Per method: folders other than ``seeds`` as they are, the ``seeds`` folders as "ours".

    Args:
        values: result folder -> {metric: mean}.
        seeds: the folders of the weights files (ours, ours-2, ...).

    Returns:
        method -> Stat; "ours" holds the mean over the seeds and, with two or more, the spread.
    """
    stats = {f: Stat(dict(v)) for f, v in values.items() if f not in seeds}
    per_seed = [values[f] for f in seeds]
    metrics = per_seed[0].keys()
    mean = {m: float(np.mean([v[m] for v in per_seed])) for m in metrics}
    spread = (
        {m: float(max(v[m] for v in per_seed) - min(v[m] for v in per_seed)) for m in metrics}
        if len(per_seed) > 1
        else None
    )
    shared = spread is not None and not any(spread.values())
    stats["ours"] = Stat(mean, None if shared else spread, shared)
    return stats


@dataclass(frozen=True)
class Comparison:
    """Ours against the best competitor on one metric (every metric is higher-is-better).

    Attributes:
        metric: the metric.
        ours: our mean over the weights files.
        spread: max - min over the weights files, None when only one was given.
        tool: the competitor with the highest mean.
        tool_value: its mean.
    """

    metric: str
    ours: float
    spread: float | None
    tool: str
    tool_value: float
    shared: bool = False

    @property
    def margin(self) -> float:
        """Ours minus the best competitor: positive is a lead, negative a loss."""
        return self.ours - self.tool_value

    @property
    def state(self) -> str:
        """wins / within spread / loses (spread known), or ahead / behind (spread unknown).

        A lead counts only when it is larger than the spread; a deficit within the spread is
        not a loss either.
        """
        if self.spread is None:
            return "ahead" if self.margin > 0 else "behind"
        if self.margin > self.spread:
            return "wins"
        if self.margin < -self.spread:
            return "loses"
        return "within spread"

    def text(self) -> str:
        spread = "spread unknown" if self.spread is None else f"spread {self.spread:.4f}"
        why = "the weights files share this task's network" if self.shared else "one weights file"
        against = f"{self.tool} {self.tool_value:.4f}"
        what = {
            "wins": f"**wins** by {self.margin:.4f}, more than the {spread}",
            "loses": f"**loses** by {-self.margin:.4f} ({spread})",
            "within spread": (
                f"{'ahead' if self.margin > 0 else 'behind'} by {abs(self.margin):.4f}, within "
                f"the {spread}: not a lead"
            ),
            "ahead": f"ahead by {self.margin:.4f} ({spread}: {why})",
            "behind": f"**behind** by {-self.margin:.4f} ({spread}: {why})",
        }[self.state]
        return f"{self.metric} {self.ours:.4f} against {against}: {what}"


def compare(stats: dict[str, Stat], task: str, rivals: Sequence[str]) -> list[Comparison]:
    """Ours against the best of ``rivals`` on each primary metric of the task."""
    comparisons = []
    for metric in PRIMARY[task]:
        best = max(rivals, key=lambda method: stats[method].mean[metric])
        ours = stats["ours"]
        spread = None if ours.spread is None else ours.spread[metric]
        comparisons.append(
            Comparison(
                metric, ours.mean[metric], spread, best, stats[best].mean[metric], ours.shared
            )
        )
    return comparisons


def verdict(means: dict[str, dict[str, float]], task: str) -> tuple[bool, list[str]]:
    """Issue-7 bar: ours beats average and laplacian on Qabf and on >= 2 other metrics."""

    def beats(metric: str) -> bool:
        return all(means["ours"][metric] > means[base][metric] for base in BASELINES)

    wins = [m for m in metric_names(task) if m != BAR_METRIC and beats(m)]
    return beats(BAR_METRIC) and len(wins) >= 2, wins


def _cell(stat: Stat, metric: str, bold: bool) -> str:
    text = f"{stat.mean[metric]:.4f}"
    if bold:
        text = f"**{text}**"
    if stat.spread is not None:
        text += f" [{stat.spread[metric]:.4f}]"
    return text


def markdown_table(blocks: Sequence[tuple[str, str, dict[str, Stat]]]) -> str:
    """The table of the model card: one block of rows per set and per pooled task.

    Args:
        blocks: (label, task, method -> Stat) in display order; methods in row order.
    """
    header = ["set (pairs)", "method", *COLUMNS]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for label, task, stats in blocks:
        metrics = metric_names(task)
        # Every metric of the table is higher-is-better.
        best = {m: max(stats, key=lambda method: stats[method].mean[m]) for m in metrics}
        for index, (method, stat) in enumerate(stats.items()):
            cells = [_cell(stat, m, best[m] == method) if m in metrics else "" for m in COLUMNS]
            first = label if index == 0 else ""
            lines.append(f"| {first} | {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def table_blocks(
    results: dict[str, dict],
    sets: Sequence[EvalSet],
    tools: Sequence[str],
    seeds: Sequence[str],
) -> tuple[list[tuple[str, str, dict[str, Stat]]], dict[str, dict[str, Stat]]]:
    """The table's blocks (every set, then a pooled block per task with several sets).

    Returns:
        (blocks for :func:`markdown_table`, task -> pooled method -> Stat for every task).
    """
    blocks = []
    pooled: dict[str, dict[str, Stat]] = {}
    for task in TASK_ORDER:
        task_sets = [s for s in sets if s.task == task]
        if not task_sets:
            continue
        folders = [*competitors(task, tools), "stage1", *seeds]
        for s in task_sets:
            values = {f: results[s.name][f]["mean"] for f in folders}
            blocks.append(
                (f"{task.upper()} {s.name} ({len(s.names)})", task, summarise(values, seeds))
            )
        pooled[task] = summarise(pooled_means(results, sets, task, folders), seeds)
        if len(task_sets) > 1:
            n = sum(len(s.names) for s in task_sets)
            blocks.append((f"**{task.upper()} all ({n})**", task, pooled[task]))
    return blocks, pooled


def comparison_lines(pooled: dict[str, dict[str, Stat]], tools: Sequence[str]) -> list[str]:
    """Issue 17: per task, ours against the best competitor on each primary metric."""
    lines = []
    for task, stats in pooled.items():
        parts = [c.text() for c in compare(stats, task, competitors(task, tools))]
        lines.append(f"- {task.upper()}: " + "; ".join(parts) + ".")
    return lines


def verdict_lines(pooled: dict[str, dict[str, Stat]]) -> list[str]:
    """Issue-7 bar, one line per task: verdict, Qabf against the better baseline, other wins."""
    lines = []
    for task, stats in pooled.items():
        means = {method: stat.mean for method, stat in stats.items()}
        ok, wins = verdict(means, task)
        baseline = max(BASELINES, key=lambda b: means[b][BAR_METRIC])
        state = "bar holds" if ok else "bar NOT met"
        lines.append(
            f"- {task.upper()}: {state}. Qabf {means['ours'][BAR_METRIC]:.4f}"
            f" against {means[baseline][BAR_METRIC]:.4f} ({baseline}); other metrics on which"
            f" ours beats both baselines: {', '.join(wins) or 'none'}."
        )
    return lines


def update_card(card: Path, text: str) -> None:
    """Replace the text between the results markers of the model card."""
    content = card.read_text()
    if CARD_START not in content or CARD_END not in content:
        raise SystemExit(f"error: {card} lacks the {CARD_START} / {CARD_END} markers")
    head, rest = content.split(CARD_START, 1)
    _, tail = rest.split(CARD_END, 1)
    card.write_text(f"{head}{CARD_START}\n{text}\n{CARD_END}{tail}")


def _fit(image: Image.Image, width: int, height: int) -> Image.Image:
    """The image scaled to fit width x height, centred on a white cell."""
    scale = min(width / image.width, height / image.height)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    cell = Image.new("RGB", (width, height), "white")
    cell.paste(
        image.convert("RGB").resize(size, Image.Resampling.LANCZOS),
        ((width - size[0]) // 2, (height - size[1]) // 2),
    )
    return cell


def contact_sheet(
    work: Path, sets: Sequence[EvalSet], output: Path, tools: Sequence[str] = (), cell: int = 240
) -> None:
    """One row per set (its first held-out pair): both sources, then every method's result.

    A method that does not apply to a set's task leaves its cell empty; ours is the first
    weights file.
    """
    methods = [*CLASSICAL, *tools, *NETWORK_METHODS]
    columns = ["source 1", "source 2", *methods]
    label_width, header = 110, 24
    cell_height = cell * 3 // 4
    sheet = Image.new(
        "RGB", (label_width + cell * len(columns), header + cell_height * len(sets)), "white"
    )
    draw = ImageDraw.Draw(sheet)
    for col, title in enumerate(columns):
        draw.text((label_width + col * cell + 8, 6), title, fill="black")
    for row, eval_set in enumerate(sets):
        name = eval_set.names[0]
        top = header + row * cell_height
        draw.text(
            (6, top + cell_height // 2 - 12),
            f"{eval_set.task.upper()}\n{eval_set.name}",
            fill="black",
        )
        applies = {*competitors(eval_set.task, tools), *NETWORK_METHODS}
        images: list[Image.Image | None] = [
            Image.open(eval_set.folder / d / name) for d in eval_set.dirs
        ]
        images += [
            Image.open(work / eval_set.name / m / (Path(name).stem + ".png"))
            if m in applies
            else None
            for m in methods
        ]
        for col, image in enumerate(images):
            if image is not None:
                sheet.paste(
                    _fit(image, cell - 4, cell_height - 4), (label_width + col * cell + 2, top + 2)
                )
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_suffix(".tmp.png")
    sheet.save(tmp, optimize=True)
    os.replace(tmp, output)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--weights",
        type=Path,
        nargs="+",
        default=None,
        help="weights file(s); two or more of one recipe trained with different seeds give the "
        "spread (default: the shipped weights)",
    )
    parser.add_argument(
        "--stage1",
        type=Path,
        default=None,
        help="stage-1 weights file (default: derived from the first --weights)",
    )
    parser.add_argument(
        "--recipe",
        type=Path,
        default=REPO / "recipes" / "cpu_stage2_balance.yaml",
        help="recipe the weights were trained with; it defines the held-out pairs",
    )
    parser.add_argument("--data", type=Path, default=None, help="default: the recipe's data root")
    parser.add_argument(
        "--work",
        type=Path,
        default=REPO / "runs" / "model-card",
        help="fused images and links (reused when the weights are unchanged)",
    )
    parser.add_argument("--max-pairs", type=int, default=0, help="first N pairs per set (0: all)")
    parser.add_argument(
        "--tasks",
        default=",".join(TASK_ORDER),
        help="comma-separated tasks to evaluate (the bar needs all four)",
    )
    parser.add_argument(
        "--tools",
        default=",".join(TOOLS),
        help="comma-separated external tools to run ('' for none); missing ones are reported",
    )
    parser.add_argument(
        "--colour",
        choices=("channels", "gray"),
        default="channels",
        help="`fuse eval --colour`: score colour results per channel (VIFB, MEFB) or on grey",
    )
    parser.add_argument("--jobs", type=int, default=2, help="`fuse eval --jobs`")
    parser.add_argument("--json", type=Path, default=None, help="also write every mean here")
    parser.add_argument("--contact-sheet", type=Path, default=None, help="PNG to write")
    parser.add_argument(
        "--update-card", action="store_true", help="rewrite the table in weights/README.md"
    )
    return parser.parse_args(argv)


def select_tools(names: str, tasks: Sequence[str]) -> tuple[list[str], list[str]]:
    """(the requested external tools, those of them that apply to ``tasks`` and can run here)."""
    requested = [n.strip() for n in names.split(",") if n.strip()]
    if set(requested) - set(TOOLS):
        raise SystemExit(f"error: --tools takes names from {', '.join(TOOLS)}")
    usable = []
    for name in requested:
        if not any(t in TOOLS[name].tasks for t in tasks):
            continue
        reason = TOOLS[name].missing()
        if reason:
            print(f"warning: {name} is not run: {reason}", file=sys.stderr)
        else:
            usable.append(name)
    return requested, usable


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    recipe = Recipe.from_file(args.recipe)
    data_root = (args.data or recipe.data_root).resolve()
    weights = [w.resolve() for w in (args.weights or [shipped_weights_path()])]
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    if not tasks or set(tasks) - set(TASK_ORDER):
        raise SystemExit(f"error: --tasks takes names from {', '.join(TASK_ORDER)}")
    sets = [s for s in evaluation_sets(recipe, data_root, args.max_pairs) if s.task in tasks]
    requested, tools = select_tools(args.tools, tasks)
    catalog = get_catalog()

    nets = [load_weights(w, map_location="cpu") for w in weights]
    stage1 = (
        load_weights(args.stage1, map_location="cpu") if args.stage1 else stage1_network(nets[0])
    )
    seeds = ours_folders(len(nets))
    networks: dict[str, PSLPT] = {"stage1": stage1, **dict(zip(seeds, nets))}
    digests = [hashlib.sha256(w.read_bytes()).hexdigest() for w in weights]

    results: dict[str, dict] = {}
    for eval_set in sets:
        start = time.perf_counter()
        prepare_sources(args.work, eval_set)
        fuse_set(args.work, eval_set, catalog.get(eval_set.task).spec, networks, tools)
        folders = [*competitors(eval_set.task, tools), *networks]
        results[eval_set.name] = evaluate_set(args.work, eval_set, folders, args.jobs, args.colour)
        print(
            f"{eval_set.name}: {len(eval_set.names)} pairs in {time.perf_counter() - start:.0f} s",
            file=sys.stderr,
        )

    blocks, pooled = table_blocks(results, sets, tools, seeds)
    weights_text = ", ".join(f"`{w.name}` (sha256 {d[:12]})" for w, d in zip(weights, digests))
    spread_text = (
        f"ours: mean of {len(weights)} weights files, [spread] = max - min over them (none"
        " where the files run the same network on a task, as stage-2 seeds do on MFF and MEF)"
        if len(weights) > 1
        else "one weights file, so the seed spread is unknown"
    )
    stage1_text = (
        f"stage1 from `{args.stage1.name}`"
        if args.stage1
        else "stage1: the first file with FAF set 1 on every task"
    )
    colour_text = {
        "channels": "colour results scored per channel and averaged, as VIFB and MEFB do",
        "gray": "every result scored on its greyscale (rgb2gray) version",
    }[args.colour]
    text = "\n".join(
        [
            markdown_table(blocks),
            "",
            f"Weights: {weights_text}; recipe `{args.recipe.name}`; {spread_text}; {stage1_text};"
            f" {colour_text}; bold: best mean. Produced by "
            f"`python benchmarks/model_card.py`.",
            "",
            "Tools (average, laplacian, guided and the network fuse luminance and take colour"
            " through the task's colour policy, except that for MFF the network's output takes"
            " every pixel from the sources by its decision map, as `fuse mff` does; external"
            " tools get the colour sources and fuse colour their own way):",
            "",
            *describe_tools(tasks, requested),
            "",
            "Ours against the best tool per primary metric (issue 17; a lead within the seed"
            " spread is not a lead):",
            "",
            *comparison_lines(pooled, tools),
            "",
            "Issue-7 bar (against average and laplacian):",
            "",
            *verdict_lines(pooled),
        ]
    )
    print(text)
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "sets": results,
                    "tasks": {
                        t: {m: {"mean": s.mean, "spread": s.spread} for m, s in stats.items()}
                        for t, stats in pooled.items()
                    },
                    "weights": [str(w) for w in weights],
                    "colour": args.colour,
                },
                indent=2,
            )
        )
    if args.update_card:
        update_card(REPO / "weights" / "README.md", text)
    if args.contact_sheet:
        contact_sheet(args.work, sets, args.contact_sheet, tools)
    ok = all(verdict({m: s.mean for m, s in p.items()}, t)[0] for t, p in pooled.items())
    return 0 if tasks == list(TASK_ORDER) and ok else 1


if __name__ == "__main__":
    sys.exit(main())
