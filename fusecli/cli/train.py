"""`fuse train`: run a training recipe (both stages, or one), resume it, or plot its loss curves."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from fusecli.cli.common import options_of, status
from fusecli.errors import FuseError

if TYPE_CHECKING:
    from fusecli.train import TrainProgress


@contextmanager
def training_bar(enabled: bool) -> Iterator[Callable[[TrainProgress], None]]:
    """A rich progress bar per stage, with the last loss; yields the trainer's callback.

    Drawn on stderr, with the status lines, so that stdout carries only data; and only on a
    terminal, since elsewhere Rich prints the bar once at the end, or a blank line when the run
    fails before its first step (log.jsonl holds the losses).
    """
    from rich import progress as rich_progress
    from rich.console import Console

    console = Console(stderr=True)
    bar = rich_progress.Progress(
        rich_progress.TextColumn("[bold]{task.description}"),
        rich_progress.BarColumn(),
        rich_progress.MofNCompleteColumn(),
        rich_progress.TimeElapsedColumn(),
        rich_progress.TimeRemainingColumn(),
        rich_progress.TextColumn("{task.fields[losses]}"),
        console=console,
        disable=not (enabled and console.is_terminal),
    )
    tasks = {}

    def update(progress: TrainProgress) -> None:
        if progress.stage not in tasks:
            tasks[progress.stage] = bar.add_task(
                f"stage {progress.stage}", total=progress.total, completed=progress.step, losses=""
            )
        losses = {} if progress.loss is None else {"losses": f"loss {progress.loss:.4f}"}
        bar.update(tasks[progress.stage], completed=progress.step, **losses)

    with bar:
        yield update


def register(app: typer.Typer) -> None:
    """Add the `train` command to the root app."""

    @app.command("train")
    def train_command(
        ctx: typer.Context,
        recipe: Path = typer.Argument(
            None,
            exists=True,
            dir_okay=False,
            help="Training recipe (YAML), e.g. recipes/cpu.yaml; a run's recipe.yaml to resume it.",
        ),
        stage: int = typer.Option(
            0, "--stage", min=0, max=2, help="Run only stage 1 or 2 (default 0: both, in order)."
        ),
        resume: bool = typer.Option(
            False, "--resume", help="Continue exactly from the run directory's checkpoint.pt."
        ),
        output: Path = typer.Option(
            None,
            "-o",
            "--output",
            help="Run directory (default: the recipe's output_dir); with --plot, the PNG to write.",
        ),
        init: Path = typer.Option(
            None,
            "--init",
            exists=True,
            dir_okay=False,
            help="Weights (.safetensors) the first stage run starts from: stage 2 with --stage 2 "
            "(instead of the stage-1 output), else stage 1 (fine-tuning).",
        ),
        overrides: list[str] = typer.Option(
            [],
            "-s",
            "--set",
            help="Override a recipe key, e.g. --set stage1.length=100 (repeatable; same type).",
        ),
        max_steps: int = typer.Option(
            0, "--max-steps", min=0, help="Stop after this many steps (0: run to the end)."
        ),
        plot: Path = typer.Option(
            None,
            "--plot",
            exists=True,
            dir_okay=False,
            help="Draw the loss curves of a log.jsonl to a PNG (-o, default curves.png) and exit.",
        ),
    ) -> None:
        """Train PSLPT with the paper's two-stage multi-task semi-supervised method.

        Multi-GPU / multi-process: torchrun --nproc_per_node N -m fusecli train RECIPE.
        """
        if plot is not None:
            from fusecli.train.plot import plot_log

            written = plot_log(plot, output or Path("curves.png"))
            status(ctx, f"wrote {written}")
            return
        if recipe is None:
            raise FuseError("give a recipe file (e.g. recipes/cpu.yaml) or --plot LOG")
        # Imported here so `fuse --help` stays fast.
        from fusecli.train import Recipe, train

        parsed = Recipe.from_file(recipe, tuple(overrides))
        options = options_of(ctx)
        # The trainer reports on rank 0 only; the other ranks of a torchrun draw nothing.
        with training_bar(enabled=int(os.environ.get("RANK", "0")) == 0) as progress:
            result = train(
                parsed,
                run_dir=output,
                stages=(stage,) if stage else (1, 2),
                resume=resume,
                init_weights=init,
                # auto: the recipe's device (the root resolved it for the fusion commands only).
                device=None if options.device_name == "auto" else str(options.device),
                stop_after=max_steps or None,
                progress=progress,
            )
        if result.stage == 0:
            raise FuseError(f"{recipe} enables none of the requested stages; nothing was trained")
        if int(os.environ.get("RANK", "0")) == 0:  # one summary line, from rank 0
            timing = ", ".join(
                f"stage {s}: {t:.2f} s/step" for s, t in result.seconds_per_step.items()
            )
            state = "stopped" if result.stopped_early else "finished"
            status(
                ctx,
                f"{state} at stage {result.stage} step {result.step} in {result.run_dir}"
                + (f" ({timing})" if timing else ""),
            )
