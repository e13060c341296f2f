"""`--help` reads like enfuse's and git's: value names in capitals, no types, no braces (issue 19).

No network runs here: help and the tasks table only.
"""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from fusecli.cli.main import build_app

runner = CliRunner()


def _help(*command: str) -> str:
    result = runner.invoke(build_app(), [*command, "--help"], terminal_width=80)
    assert result.exit_code == 0, result.output
    return result.stdout


@pytest.mark.parametrize(
    ("command", "usage"),
    [
        ((), "Usage: fuse [OPTIONS] COMMAND [ARGS]..."),
        (("ivf",), "Usage: fuse ivf [OPTIONS] INFRARED VISIBLE"),
        (("mff",), "Usage: fuse mff [OPTIONS] FOCUS_PLANE..."),
        (("batch",), "Usage: fuse batch [OPTIONS] FOLDER"),
        (("train",), "Usage: fuse train [OPTIONS] [RECIPE]"),
        (("align",), "Usage: fuse align [OPTIONS] FRAME..."),
        (("eval",), "Usage: fuse eval [OPTIONS] PAIRS FUSED | SRC_A SRC_B FUSED..."),
        (("weights", "convert"), "Usage: fuse weights convert [OPTIONS] CHECKPOINT"),
    ],
)
def test_usage_lines_and_options_name_values_not_types(command, usage) -> None:
    text = _help(*command)
    assert text.startswith(usage + "\n")
    for typer_style in ("<bool>", "<list[", "<int", "<str>", "<path>", "{", "╭"):
        assert typer_style not in text, typer_style


def test_options_show_value_names_and_flags_show_none() -> None:
    text = _help("mff")
    for line in ("-o, --output PATH", "--weights FILE", "--tile N", "--depth 8|16|float"):
        assert line in text
    assert "  --resize  " in text and "--overwrite, --force  " in text
    assert "fusecli[align]" in text  # once read as Rich markup and dropped
    assert "--output FOLDER" in _help("batch")


def test_help_lines_fit_80_columns_without_ragged_wrapping() -> None:
    text = _help("batch")
    lines = text.splitlines()
    assert max(map(len, lines)) <= 80
    # Option help starts in one column, and each wrapped line continues in it.
    options = lines[lines.index("Options:") + 1 :]
    starts = {len(line) - len(line.lstrip()) for line in options if line.startswith("    ")}
    assert len(starts) == 1


@pytest.mark.parametrize("width", ["60", "80", "200"])
def test_the_tasks_table_never_splits_a_word(monkeypatch, width) -> None:
    monkeypatch.setenv("COLUMNS", width)
    text = runner.invoke(build_app(), ["tasks"]).stdout
    assert max(map(len, text.splitlines())) <= int(width)
    words = set(text.split())
    for whole in ("foreground/background", "anatomical/functional", "saturation", "(fusecli"):
        assert any(word.startswith(whole) for word in words), whole
    assert "…" not in text
    shared = " ".join(text.split())
    assert "ivf and mmf share FAF set 2 and one colour rule" in shared
