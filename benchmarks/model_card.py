"""Results table of the model card: the shipped model against classical fusion on held-out pairs.

    python benchmarks/model_card.py                        # the whole table (~20 min on 2 cores)
    python benchmarks/model_card.py --max-pairs 2          # a quick look at every set
    python benchmarks/model_card.py --update-card --contact-sheet weights/contact-sheet.png

Development sets: the pairs the recipe keeps out of training (RoadScene, MRI-PET, MRI-SPECT,
MRI-CT, with the trainer's own split) and MFI-WHU, MFFW and MEFB, which a recipe that does not
list them never trains on (if it does list them, only their development split is used). Each
pair is fused by four methods and scored with `fuse eval`:

- average: per-pixel mean of the two sources;
- laplacian: Laplacian pyramid, choose-max-abs details, average base (benchmarks/classical.py);
- stage1: the network at the end of stage 1. Stage 2 trains only FAF set 2, starting from set 1
  and leaving everything else frozen, so the stage-1 network is the shipped file with set 2
  replaced by set 1 (`--stage1` takes a separate file instead). On MFF and MEF, which use set 1,
  it is the shipped model by construction;
- ours: the shipped weights, exactly as `fuse <task>` runs them.

Every method fuses the single-channel inputs the task plugin prepares, and gets its colour back
through the plugin's colour policy, so the table compares fusion rules, not colour handling.

Bar (issue 7): on every task, ours beats both classical baselines on Qabf and on at least two
of SSIM, MI, NMI, FMI, Qcb (and MEF_SSIM for MEF). Task means pool the pairs of its sets.
The exit status is 1 when the bar does not hold.
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

from classical import average_fusion, laplacian_fusion

from fusecli.color import restore_color
from fusecli.engine.model import PSLPT
from fusecli.engine.train.data import held_out_pairs, list_images
from fusecli.engine.train.recipe import Recipe
from fusecli.engine.weights import load_weights, shipped_weights_path
from fusecli.hookspecs import TaskSpec
from fusecli.io import read_image, write_image
from fusecli.pipeline import fuse_sources, network_inputs
from fusecli.plugins import get_catalog

REPO = Path(__file__).resolve().parents[1]
METHODS = ("average", "laplacian", "stage1", "ours")
CLASSICAL: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "average": average_fusion,
    "laplacian": laplacian_fusion,
}
BAR_METRIC = "Qabf"
OTHER_METRICS = ("SSIM", "MI", "NMI", "FMI", "Qcb")
MEF_METRIC = "MEF_SSIM"
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
    """Fuse (1, C, H, W) sources in [0, 1] with one method; (1, C_out, H, W) in [0, 1]."""
    if net is not None:
        return fuse_sources(net, spec, sources)
    luma = network_inputs(spec, sources)
    fused_y = CLASSICAL[method](luma[0], luma[1])
    return restore_color(fused_y, list(sources), spec.color).clamp(0.0, 1.0)


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


def fuse_set(
    work: Path,
    eval_set: EvalSet,
    spec: TaskSpec,
    networks: dict[str, PSLPT | None],
) -> None:
    """Write every method's fused image of every pair to work/<set>/<method>/<stem>.png.

    A method folder is reused while its stamp (the digest of the tensors the method reads)
    matches, so reruns that only change the table cost nothing, and outputs of other weights are
    never mixed in. Methods with one digest (stage1 and ours on MFF and MEF) are fused once.
    """
    folder_by_stamp: dict[str, Path] = {}
    for method, net in networks.items():
        stamp_text = f"classical:{method}" if net is None else network_digest(net, spec.faf_set)
        folder = work / eval_set.name / method
        folder.mkdir(parents=True, exist_ok=True)
        stamp = folder / ".weights"
        if stamp.exists() and stamp.read_text() != stamp_text:
            for stale in folder.glob("*.png"):
                stale.unlink()
        stamp.write_text(stamp_text)
        twin = folder_by_stamp.setdefault(stamp_text, folder)
        for name in eval_set.names:
            output = folder / (Path(name).stem + ".png")
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
    return [BAR_METRIC, *OTHER_METRICS, *([MEF_METRIC] if task == "mef" else [])]


def evaluate_set(work: Path, eval_set: EvalSet, jobs: int) -> dict[str, dict[str, dict]]:
    """Run `fuse eval` on the set's sources and method folders; its JSON, per method."""
    sources = work / eval_set.name / "sources"
    command = [
        sys.executable,
        "-m",
        "fusecli",
        "eval",
        str(sources / eval_set.dirs[0]),
        str(sources / eval_set.dirs[1]),
        *(str(work / eval_set.name / method) for method in METHODS),
        "--metrics",
        ",".join(metric_names(eval_set.task)),
        "--json",
        "--jobs",
        str(jobs),
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"error: fuse eval failed on {eval_set.name}: {done.stderr.strip()}")
    return json.loads(done.stdout)


def pooled_means(results: dict[str, dict], sets: Sequence[EvalSet], task: str) -> dict:
    """{method: {metric: mean over every pair of the task's sets}}."""
    pooled: dict[str, dict[str, float]] = {}
    for method in METHODS:
        per_image = [
            values
            for s in sets
            if s.task == task
            for values in results[s.name][method]["images"].values()
        ]
        pooled[method] = {
            metric: float(np.mean([v[metric] for v in per_image])) for metric in metric_names(task)
        }
    return pooled


def verdict(means: dict[str, dict[str, float]], task: str) -> tuple[bool, list[str]]:
    """Whether ours beats both classical baselines on Qabf and on >= 2 other metrics."""

    def beats(metric: str) -> bool:
        return all(means["ours"][metric] > means[base][metric] for base in CLASSICAL)

    wins = [m for m in metric_names(task) if m != BAR_METRIC and beats(m)]
    return beats(BAR_METRIC) and len(wins) >= 2, wins


def _row(label: str, method: str, values: dict[str, float], metrics: Sequence[str], best) -> str:
    cells = []
    for metric in (BAR_METRIC, *OTHER_METRICS, MEF_METRIC):
        if metric not in metrics:
            cells.append("")
            continue
        text = f"{values[metric]:.4f}"
        cells.append(f"**{text}**" if best[metric] == method else text)
    return f"| {label} | {method} | " + " | ".join(cells) + " |"


def markdown_table(
    results: dict[str, dict], sets: Sequence[EvalSet], pooled: dict[str, dict]
) -> str:
    """The table of the model card: one block of four rows per set and per pooled task."""
    header = ["set (pairs)", "method", BAR_METRIC, *OTHER_METRICS, MEF_METRIC]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]

    def block(label: str, task: str, means: dict[str, dict[str, float]]) -> None:
        metrics = metric_names(task)
        # Every metric of the table is higher-is-better.
        best = {m: max(METHODS, key=lambda method: means[method][m]) for m in metrics}
        for method in METHODS:
            lines.append(
                _row(label if method == METHODS[0] else "", method, means[method], metrics, best)
            )

    for task in TASK_ORDER:
        task_sets = [s for s in sets if s.task == task]
        for s in task_sets:
            block(
                f"{task.upper()} {s.name} ({len(s.names)})",
                task,
                {m: results[s.name][m]["mean"] for m in METHODS},
            )
        if len(task_sets) > 1:
            n = sum(len(s.names) for s in task_sets)
            block(f"**{task.upper()} all ({n})**", task, pooled[task])
    return "\n".join(lines)


def verdict_lines(pooled: dict[str, dict]) -> list[str]:
    """One line per task: the bar's verdict, Qabf against the better baseline, the other wins."""
    lines = []
    for task, means in pooled.items():
        ok, wins = verdict(means, task)
        baseline = max(CLASSICAL, key=lambda b: means[b][BAR_METRIC])
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


def contact_sheet(work: Path, sets: Sequence[EvalSet], output: Path, cell: int = 240) -> None:
    """One row per set (its first held-out pair): both sources, then every method's result."""
    columns = ["source 1", "source 2", *METHODS]
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
        images = [Image.open(eval_set.folder / d / name) for d in eval_set.dirs]
        images += [
            Image.open(work / eval_set.name / m / (Path(name).stem + ".png")) for m in METHODS
        ]
        for col, image in enumerate(images):
            sheet.paste(
                _fit(image, cell - 4, cell_height - 4), (label_width + col * cell + 2, top + 2)
            )
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_suffix(".tmp.png")
    sheet.save(tmp, optimize=True)
    os.replace(tmp, output)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--weights", type=Path, default=None, help="default: the shipped weights")
    parser.add_argument(
        "--stage1",
        type=Path,
        default=None,
        help="stage-1 weights file (default: derived from --weights)",
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
    parser.add_argument("--jobs", type=int, default=2, help="`fuse eval --jobs`")
    parser.add_argument("--json", type=Path, default=None, help="also write every mean here")
    parser.add_argument("--contact-sheet", type=Path, default=None, help="PNG to write")
    parser.add_argument(
        "--update-card", action="store_true", help="rewrite the table in weights/README.md"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    recipe = Recipe.from_file(args.recipe)
    data_root = (args.data or recipe.data_root).resolve()
    weights = (args.weights or shipped_weights_path()).resolve()
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    if not tasks or set(tasks) - set(TASK_ORDER):
        raise SystemExit(f"error: --tasks takes names from {', '.join(TASK_ORDER)}")
    sets = [s for s in evaluation_sets(recipe, data_root, args.max_pairs) if s.task in tasks]
    catalog = get_catalog()

    shipped = load_weights(weights, map_location="cpu")
    stage1 = (
        load_weights(args.stage1, map_location="cpu") if args.stage1 else stage1_network(shipped)
    )
    networks: dict[str, PSLPT | None] = {
        "average": None,
        "laplacian": None,
        "stage1": stage1,
        "ours": shipped,
    }
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()

    results: dict[str, dict] = {}
    for eval_set in sets:
        start = time.perf_counter()
        prepare_sources(args.work, eval_set)
        fuse_set(args.work, eval_set, catalog.get(eval_set.task).spec, networks)
        results[eval_set.name] = evaluate_set(args.work, eval_set, args.jobs)
        print(
            f"{eval_set.name}: {len(eval_set.names)} pairs in {time.perf_counter() - start:.0f} s",
            file=sys.stderr,
        )

    pooled = {task: pooled_means(results, sets, task) for task in TASK_ORDER if task in tasks}
    verdicts = verdict_lines(pooled)
    text = "\n".join(
        [
            markdown_table(results, sets, pooled),
            "",
            f"Weights: `{weights.name}` (sha256 {digest[:12]}); recipe `{args.recipe.name}`; "
            f"bold: best of the four. Produced by `python benchmarks/model_card.py`.",
            "",
            *verdicts,
        ]
    )
    print(text)
    if args.json:
        args.json.write_text(json.dumps({"sets": results, "tasks": pooled}, indent=2))
    if args.update_card:
        update_card(REPO / "weights" / "README.md", text)
    if args.contact_sheet:
        contact_sheet(args.work, sets, args.contact_sheet)
    return (
        0 if tasks == list(TASK_ORDER) and all(verdict(p, t)[0] for t, p in pooled.items()) else 1
    )


if __name__ == "__main__":
    sys.exit(main())
