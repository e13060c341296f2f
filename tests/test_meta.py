"""Project-level checks: layering, lint, and that a built wheel carries the weights."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
import warnings
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT


def _modules_loaded_by(imports: str, candidates: tuple[str, ...]) -> list[str]:
    """Which of ``candidates`` a fresh interpreter has loaded after ``import <imports>``."""
    code = textwrap.dedent(
        f"""
        import sys
        import {imports}
        print(",".join(m for m in {candidates!r} if m in sys.modules))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO_ROOT
    )
    return [name for name in result.stdout.strip().split(",") if name]


# What neither the engine nor the trainer may load: the CLI and its drawing, the plugin
# machinery, the pipeline and the metrics.
ABOVE_THE_ENGINE = (
    "typer",
    "pluggy",
    "rich",
    "fusecli.cli",
    "fusecli.plugins",
    "fusecli.pipeline",
    "fusecli.metrics",
)


def test_engine_imports_neither_the_cli_nor_plugin_machinery_nor_metrics_nor_training() -> None:
    banned = (*ABOVE_THE_ENGINE, "fusecli.train")
    loaded = _modules_loaded_by(
        "fusecli.engine, fusecli.io, fusecli.color, fusecli.filters", banned
    )
    assert loaded == []


def test_training_is_a_sibling_of_the_engine_below_the_cli() -> None:
    # The trainer builds on the engine; it draws nothing (the CLI draws its progress callback)
    # and knows neither plugins nor the metrics.
    assert _modules_loaded_by("fusecli.train, fusecli.train.plot", ABOVE_THE_ENGINE) == []


def test_metrics_are_a_numpy_sibling_of_the_engine() -> None:
    # The metrics score images; they need neither the network nor torch.
    banned = (
        "torch",
        "fusecli.engine",
        "fusecli.train",
        "typer",
        "pluggy",
        "fusecli.cli",
        "fusecli.plugins",
    )
    assert _modules_loaded_by("fusecli.metrics", banned) == []


def test_the_pipeline_and_the_plugins_do_not_import_the_cli() -> None:
    assert (
        _modules_loaded_by("fusecli.pipeline, fusecli.plugins", ("typer", "rich", "fusecli.cli"))
        == []
    )


# Modules of fusecli/cli that are not one command's: shared options, the root app, batch's layout,
# the help's value names, Typer's coercion built when needed.
CLI_SHARED_MODULES = {"__init__", "common", "main", "layout", "metavars", "coercion"}


def test_command_modules_never_import_each_other() -> None:
    import ast

    cli = REPO_ROOT / "fusecli" / "cli"
    commands = {p.stem for p in cli.glob("*.py")} - CLI_SHARED_MODULES
    crossings = []
    for path in sorted(cli.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            for name in names:
                parts = name.split(".")
                if parts[:2] == ["fusecli", "cli"] and len(parts) > 2:
                    other = parts[2]
                    if other in commands and other != path.stem:
                        crossings.append(f"{path.name} imports {name}")
    assert crossings == []


def test_errors_below_the_cli_name_no_command_line_flag() -> None:
    """A FuseError raised below the CLI names its fix through ``hint``; the CLI names the flag.

    Library users (``import fusecli``) have no ``--resume``; the CLI's HINTS table does.
    """
    import ast
    import re

    flag = re.compile(r"(?<![\w-])--[a-z]")
    found = []
    for path in sorted((REPO_ROOT / "fusecli").rglob("*.py")):
        if "cli" in path.relative_to(REPO_ROOT / "fusecli").parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            callee = node.func.attr if isinstance(node.func, ast.Attribute) else ""
            callee = node.func.id if isinstance(node.func, ast.Name) else callee
            if not (callee.endswith("Error") or callee == "append"):
                continue
            for arg in [*node.args, *(k.value for k in node.keywords)]:
                for const in ast.walk(arg):
                    text = const.value if isinstance(const, ast.Constant) else None
                    if isinstance(text, str) and flag.search(text):
                        found.append(f"{path.name}:{node.lineno}: {const.value!r}")
    assert found == []


def test_the_cli_turns_a_training_hint_into_its_flag(tmp_path) -> None:
    from fusecli.cli.common import error_message
    from fusecli.errors import FuseError
    from fusecli.train.checkpoint import load_checkpoint

    with pytest.raises(FuseError) as raised:
        load_checkpoint(tmp_path / "checkpoint.pt")
    assert "--" not in str(raised.value)
    assert "start without --resume" in error_message(raised.value, "train")


def test_ruff_lint_and_format_are_clean() -> None:
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff is not installed (pip install -e '.[test]')")
    check = subprocess.run([ruff, "check", "."], cwd=REPO_ROOT, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout
    fmt = subprocess.run(
        [ruff, "format", "--check", "."], cwd=REPO_ROOT, capture_output=True, text=True
    )
    assert fmt.returncode == 0, fmt.stdout


@pytest.mark.slow
def test_built_wheel_installs_the_cli_and_the_weights(tmp_path) -> None:
    wheel_dir = tmp_path / "dist"
    build = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "-q",
            "-w",
            str(wheel_dir),
            str(REPO_ROOT),
        ],
        capture_output=True,
        text=True,
    )
    if build.returncode != 0 and "setuptools" in build.stderr and "find" in build.stderr:
        pytest.skip("no package index to fetch setuptools for the isolated build")
    assert build.returncode == 0, build.stderr
    (wheel,) = wheel_dir.glob("fusecli-*.whl")

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    # Dependencies come from the test environment; fusecli itself only from the wheel.
    deps = sysconfig.get_paths()["purelib"]
    Path(site, "deps.pth").write_text(deps + "\n")
    env = {**os.environ, "PYTHONNOUSERSITE": "1"}
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", site, str(wheel)],
        check=True,
    )
    code = textwrap.dedent(
        """
        import fusecli, importlib.resources as r
        print(fusecli.__file__)
        print(r.files("fusecli.weights"))
        files = r.files("fusecli.weights").iterdir()
        print(sorted(p.name for p in files if p.name.endswith(".safetensors")))
        """
    )
    shown = subprocess.run(
        [python, "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path, env=env
    ).stdout.splitlines()
    assert shown[0].startswith(site), "fusecli was imported from the checkout, not the wheel"
    shipped = sorted(p.name for p in (REPO_ROOT / "weights").glob("*.safetensors"))
    assert shown[2] == str(shipped)
    help_text = subprocess.run(
        [python, "-m", "fusecli", "--help"], capture_output=True, text=True, cwd=tmp_path, env=env
    )
    assert help_text.returncode == 0, help_text.stderr
    assert "Usage" in help_text.stdout


def test_package_metadata_has_no_deprecated_fields() -> None:
    # setuptools deprecates the table form of project.license (an SPDX string since PEP 639).
    config = pytest.importorskip("setuptools.config.pyprojecttoml")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        project = config.read_configuration(REPO_ROOT / "pyproject.toml")["project"]
    assert project["license"] == "MIT"
    assert not [w for w in caught if "Deprecat" in type(w.message).__name__], caught


def test_modules_that_import_torch_lazily_import_it_where_they_use_it() -> None:
    """A module kept free of torch at import (for a fast --help) imports it in each function.

    A function that uses ``torch`` without importing it runs only when that path is taken, so a
    merge that adds one fails late, as a NameError in the middle of a fusion.
    """
    import ast

    def imports_torch(node: ast.AST) -> bool:
        return any(
            (isinstance(n, ast.Import) and any(a.name.split(".")[0] == "torch" for a in n.names))
            or (isinstance(n, ast.ImportFrom) and (n.module or "").split(".")[0] == "torch")
            for n in ast.walk(node)
        )

    missing = []
    for path in sorted(
        [*(REPO_ROOT / "fusecli").rglob("*.py"), *(REPO_ROOT / "plugins").rglob("*.py")]
    ):
        tree = ast.parse(path.read_text())
        top_level = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
        if any(imports_torch(n) for n in top_level):
            continue
        for node in ast.walk(tree):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            # Annotations are strings (`from __future__ import annotations`): not a use.
            annotations = {
                id(n)
                for statement in node.body
                for a in ast.walk(statement)
                if isinstance(a, ast.AnnAssign)
                for n in ast.walk(a.annotation)
            }
            uses = any(
                isinstance(n, ast.Name) and n.id == "torch" and id(n) not in annotations
                for statement in node.body
                for n in ast.walk(statement)
            )
            if uses and not any(imports_torch(s) for s in node.body):
                missing.append(f"{path.relative_to(REPO_ROOT)}:{node.lineno} {node.name}()")
    assert missing == []
