"""Tests of the external tools' wrappers (each skips, with the reason, when its tool is absent)."""

import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from external import TOOLS, describe_tools, fuse_with_tool

from fusecli.io import read_image, write_image


def _needs(name: str) -> None:
    reason = TOOLS[name].missing()
    if reason:
        pytest.skip(f"{name} not available: {reason}")


def _blur(image: torch.Tensor, passes: int = 8) -> torch.Tensor:
    kernel = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0]) / 16.0
    c = image.shape[1]
    for _ in range(passes):
        image = F.conv2d(
            F.pad(image, (2, 2, 0, 0), mode="replicate"),
            kernel.view(1, 1, 1, 5).repeat(c, 1, 1, 1),
            groups=c,
        )
        image = F.conv2d(
            F.pad(image, (0, 0, 2, 2), mode="replicate"),
            kernel.view(1, 1, 5, 1).repeat(c, 1, 1, 1),
            groups=c,
        )
    return image


def _focus_pair(tmp_path: Path) -> tuple[torch.Tensor, list[Path]]:
    """A colour texture, sharp on the left in a and on the right in b."""
    sharp = torch.rand(1, 3, 64, 96, generator=torch.Generator().manual_seed(0))
    blurred = _blur(sharp)
    a = torch.cat([sharp[..., :48], blurred[..., 48:]], dim=-1)
    b = torch.cat([blurred[..., :48], sharp[..., 48:]], dim=-1)
    paths = [write_image(tmp_path / "a.png", a).path, write_image(tmp_path / "b.png", b).path]
    return sharp, paths


def _exposure_pair(tmp_path: Path) -> list[Path]:
    scene = torch.rand(1, 3, 48, 64, generator=torch.Generator().manual_seed(1))
    dark, bright = (scene * 0.25), (scene * 3.0).clamp(0, 1)
    return [
        write_image(tmp_path / "dark.png", dark).path,
        write_image(tmp_path / "bright.png", bright).path,
    ]


def _sharp_error(fused: torch.Tensor, sharp: torch.Tensor) -> float:
    # Away from the seam between the two focus regions.
    columns = torch.cat([torch.arange(4, 40), torch.arange(56, 92)])
    return float((fused - sharp)[..., 4:-4, columns].abs().mean())


@pytest.mark.parametrize("name", ["enfuse", "openfocus"])
def test_multi_focus_tools_keep_the_sharp_halves(name: str, tmp_path: Path) -> None:
    _needs(name)
    sharp, sources = _focus_pair(tmp_path)
    output = tmp_path / f"{name}.png"
    fuse_with_tool(TOOLS[name], "mff", [(sources, output)])
    fused = read_image(output).pixels
    assert fused.shape == sharp.shape
    average = (read_image(sources[0]).pixels + read_image(sources[1]).pixels) / 2
    assert _sharp_error(fused, sharp) < 0.5 * _sharp_error(average, sharp)


@pytest.mark.parametrize("name", ["enfuse", "mertens"])
def test_exposure_tools_return_an_image_between_the_exposures(name: str, tmp_path: Path) -> None:
    _needs(name)
    sources = _exposure_pair(tmp_path)
    output = tmp_path / f"{name}.png"
    fuse_with_tool(TOOLS[name], "mef", [(sources, output)])
    fused = read_image(output).pixels
    dark, bright = (read_image(p).pixels for p in sources)
    assert fused.shape == dark.shape
    assert dark.mean() < fused.mean() < bright.mean()


def test_a_missing_tool_is_reported_with_its_reason(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FUSECLI_BENCH_VENV", str(tmp_path / "no-venv"))
    lines = describe_tools(["mef", "mff"], ["mertens", "openfocus"])
    mertens = next(line for line in lines if line.startswith("- mertens"))
    assert "**not run**" in mertens and "make bench-tools" in mertens
    enfuse = next(line for line in lines if line.startswith("- enfuse"))
    assert "not requested" in enfuse
    # Tools for other tasks are not listed at all.
    assert describe_tools(["ivf"], list(TOOLS)) == []
