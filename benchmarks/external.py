"""The fusion tools a user would pick instead of fusecli, run as the model card's competitors.

None of them is a fusecli dependency. enfuse is the Debian package (`apt-get install enfuse`);
OpenCV and OpenFocus live in a separate virtualenv, `benchmarks/.venv` by default, installed from
benchmarks/requirements.txt (`make bench-tools` does both). OpenFocus pulls in torch and a newer
numpy, which is why they stay out of the project's own .venv.

Every tool gets the colour sources as 8-bit files written by fusecli's reader (so EXIF
orientation and channel handling are the same as for every other method) and returns a colour
image; the card scores its output like every other method's. A tool that is missing is reported
with the reason and left out of the table.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from fusecli.io import read_image, write_image

HERE = Path(__file__).resolve().parent
RUNNER = HERE / "tools_runner.py"
VENV_ENV = "FUSECLI_BENCH_VENV"


def tools_venv() -> Path:
    """The virtualenv holding OpenCV and OpenFocus ($FUSECLI_BENCH_VENV, else benchmarks/.venv)."""
    return Path(os.environ.get(VENV_ENV) or HERE / ".venv")


def _run(command: Sequence[str], what: str) -> str:
    done = subprocess.run(list(command), capture_output=True, text=True, check=False)
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
        raise RuntimeError(f"{what} failed (exit {done.returncode}): " + " | ".join(tail))
    return done.stdout


@dataclass(frozen=True)
class Job:
    """One fusion: 8-bit source files in role order and the file the tool must write."""

    sources: tuple[Path, ...]
    output: Path


class ExternalTool:
    """A fusion program outside fusecli.

    Attributes:
        name: method name in the table.
        tasks: the built-in tasks it is meant for.
        source_suffix: file type the sources are handed over in.
        output_suffix: file type the tool writes.
    """

    name: str = ""
    tasks: tuple[str, ...] = ()
    source_suffix = ".png"
    output_suffix = ".png"

    def missing(self) -> str | None:
        """Why the tool cannot run here, or None when it can."""
        raise NotImplementedError

    def version(self) -> str:
        """The tool's version, for the card and the cache stamp."""
        raise NotImplementedError

    def options(self, task: str) -> str:
        """The exact options used for a task, as text for the card."""
        raise NotImplementedError

    def run(self, task: str, jobs: Sequence[Job]) -> None:
        """Fuse every job; raises RuntimeError when the tool fails."""
        raise NotImplementedError


class Enfuse(ExternalTool):
    """enfuse (enblend-enfuse 4.2): exposure weights for MEF, hard-mask contrast weights for MFF.

    The MEF options are enfuse's own defaults, spelled out; the MFF options are the focus-stacking
    set of its manual (only local contrast counts, and each pixel comes from one source).
    """

    name = "enfuse"
    tasks = ("mef", "mff")
    source_suffix = ".tif"
    output_suffix = ".tif"
    OPTIONS: ClassVar[dict[str, tuple[str, ...]]] = {
        "mef": ("--exposure-weight=1", "--saturation-weight=0.2", "--contrast-weight=0"),
        "mff": (
            "--exposure-weight=0",
            "--saturation-weight=0",
            "--contrast-weight=1",
            "--hard-mask",
        ),
    }
    COMMON = ("--depth=8",)

    def missing(self) -> str | None:
        if shutil.which("enfuse") is None:
            return "the enfuse program is not installed (Debian package `enfuse`)"
        return None

    def version(self) -> str:
        first = _run(["enfuse", "--version"], "enfuse --version").strip().splitlines()[0]
        return first.removeprefix("enfuse").strip()

    def options(self, task: str) -> str:
        return "enfuse " + " ".join((*self.OPTIONS[task], *self.COMMON))

    def run(self, task: str, jobs: Sequence[Job]) -> None:
        for job in jobs:
            _run(
                [
                    "enfuse",
                    *self.OPTIONS[task],
                    *self.COMMON,
                    f"--output={job.output}",
                    *map(str, job.sources),
                ],
                f"enfuse on {job.sources[0].parent.name}",
            )


class _VenvTool(ExternalTool):
    """A tool in the benchmark virtualenv."""

    distribution = ""

    def python(self) -> Path:
        return tools_venv() / "bin" / "python"

    def missing(self) -> str | None:
        if not self.python().exists():
            return f"no benchmark virtualenv at {tools_venv()} (run `make bench-tools`)"
        try:
            self.version()
        except RuntimeError:
            return (
                f"`{self.distribution}` is not installed in {tools_venv()} "
                "(pip install -r benchmarks/requirements.txt)"
            )
        return None

    def version(self) -> str:
        return _run(
            [str(self.python()), str(RUNNER), "version", self.distribution],
            f"{self.distribution} version",
        ).strip()


class Mertens(_VenvTool):
    """OpenCV's Mertens exposure fusion, with the weights of Mertens, Kautz and Van Reeth (2007).

    `cv2.createMergeMertens()` without arguments leaves out the well-exposedness term
    (OpenCV's default exposure_weight is 0); the paper weighs contrast, saturation and
    well-exposedness equally, and so does the card.
    """

    name = "mertens"
    tasks = ("mef",)
    distribution = "opencv-python-headless"
    WEIGHTS = (1.0, 1.0, 1.0)  # contrast, saturation, exposure

    def options(self, task: str) -> str:
        c, s, e = self.WEIGHTS
        return (
            f"cv2.createMergeMertens(contrast_weight={c}, saturation_weight={s}, "
            f"exposure_weight={e}).process(8-bit BGR sources), clipped to [0, 1]"
        )

    def run(self, task: str, jobs: Sequence[Job]) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            listing = Path(tmp) / "jobs.json"
            listing.write_text(
                json.dumps(
                    {
                        "weights": self.WEIGHTS,
                        "jobs": [
                            {"sources": [str(s) for s in j.sources], "output": str(j.output)}
                            for j in jobs
                        ],
                    }
                )
            )
            _run([str(self.python()), str(RUNNER), "mertens", str(listing)], "Mertens fusion")


class OpenFocus(_VenvTool):
    """OpenFocus's command line with its default method (StackMFF V3) and default settings."""

    name = "openfocus"
    tasks = ("mff",)
    distribution = "openfocus"
    OPTIONS = ("--cpu",)

    def executable(self) -> Path:
        return tools_venv() / "bin" / "openfocus"

    def missing(self) -> str | None:
        reason = super().missing()
        if reason is None and not self.executable().exists():
            return f"{self.executable()} is missing"
        return reason

    def options(self, task: str) -> str:
        return "openfocus -i SOURCES -o OUTPUT " + " ".join(self.OPTIONS) + " (method stackmffv3)"

    def run(self, task: str, jobs: Sequence[Job]) -> None:
        for job in jobs:
            _run(
                [
                    str(self.executable()),
                    "-i",
                    *map(str, job.sources),
                    "-o",
                    str(job.output),
                    *self.OPTIONS,
                ],
                f"openfocus on {job.sources[0].parent.name}",
            )


TOOLS: dict[str, ExternalTool] = {tool.name: tool for tool in (Enfuse(), Mertens(), OpenFocus())}


def fuse_with_tool(
    tool: ExternalTool, task: str, pairs: Sequence[tuple[Sequence[Path], Path]]
) -> None:
    """Fuse pairs with an external tool and store each result as an 8-bit PNG.

    Args:
        tool: the tool.
        task: the task whose options to use.
        pairs: (source files in role order, output .png) for every fusion to do.
    """
    if not pairs:
        return
    with tempfile.TemporaryDirectory(prefix=f"bench-{tool.name}-") as tmp:
        jobs = []
        for index, (sources, _) in enumerate(pairs):
            folder = Path(tmp) / f"pair{index:04d}"
            folder.mkdir()
            pixels = [read_image(path).pixels for path in sources]
            colour = any(p.shape[1] == 3 for p in pixels)
            written = []
            for k, image in enumerate(pixels):
                if colour and image.shape[1] == 1:
                    image = image.expand(-1, 3, -1, -1)
                written.append(write_image(folder / f"source{k}{tool.source_suffix}", image).path)
            jobs.append(Job(tuple(written), folder / f"fused{tool.output_suffix}"))
        tool.run(task, jobs)
        for job, (sources, output) in zip(jobs, pairs, strict=True):
            fused = read_image(job.output).pixels
            expected = read_image(sources[0]).pixels.shape[-2:]
            if fused.shape[-2:] != expected:
                raise RuntimeError(
                    f"{tool.name} returned {tuple(fused.shape[-2:])} for {Path(sources[0]).name}, "
                    f"expected {tuple(expected)}"
                )
            write_image(output, fused.clamp(0.0, 1.0), bit_depth=8, overwrite=True)


def describe_tools(tasks: Sequence[str], requested: Sequence[str]) -> list[str]:
    """One line per external tool for ``tasks``: version and options, or why it is not in the table.

    Args:
        tasks: the tasks evaluated.
        requested: the tools asked for (the others are listed as not requested).
    """
    lines = []
    for tool in TOOLS.values():
        used = [t for t in tasks if t in tool.tasks]
        if not used:
            continue
        reason = "not requested (--tools)" if tool.name not in requested else tool.missing()
        if reason:
            for_tasks = ", ".join(t.upper() for t in used)
            lines.append(f"- {tool.name} ({for_tasks}): **not run**: {reason}.")
            continue
        options = "; ".join(f"{t.upper()}: `{tool.options(t)}`" for t in used)
        lines.append(f"- {tool.name} {tool.version()}: {options}.")
    return lines


if __name__ == "__main__":  # a quick check of what is installed
    for tool in TOOLS.values():
        print(tool.name, tool.missing() or tool.version())
