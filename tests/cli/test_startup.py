"""`fuse --version`, `--help` and shell completion answer without importing torch (issue 19)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
from typer.testing import CliRunner

from fusecli import __version__
from fusecli.cli.main import build_app
from tests.conftest import REPO_ROOT


@pytest.mark.parametrize("flag", ["--version", "-V"])
def test_version_imports_neither_torch_nor_numpy(flag: str) -> None:
    code = textwrap.dedent(
        f"""
        import sys
        from fusecli.cli.main import main
        try:
            main([{flag!r}])
        except SystemExit as exc:
            assert exc.code == 0, exc.code
        print(",".join(m for m in ("torch", "numpy", "PIL") if m in sys.modules))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO_ROOT
    )
    version, loaded = result.stdout.splitlines()
    assert version == f"fusecli {__version__}"
    assert loaded == ""


def test_version_after_root_options_still_answers() -> None:
    result = CliRunner().invoke(build_app(), ["--debug", "-V"])
    assert result.exit_code == 0 and result.stdout.strip() == f"fusecli {__version__}"


def test_help_and_completion_do_not_import_torch() -> None:
    # Counted in modules, not seconds, so that a slow or busy machine cannot fail it. One
    # interpreter runs them all: each answer must leave torch unloaded.
    code = textwrap.dedent(
        """
        import os, sys
        from fusecli.cli.main import main
        for args in (["--help"], ["mff", "--help"], ["batch", "--help"], ["eval", "--help"]):
            try:
                main(args)
            except SystemExit as exc:
                assert exc.code in (0, None), (args, exc.code)
            assert "torch" not in sys.modules, args
        os.environ.update(_FUSE_COMPLETE="complete_bash", COMP_WORDS="fuse m", COMP_CWORD="1")
        try:
            main([])
        except SystemExit as exc:
            assert exc.code in (0, None), ("completion", exc.code)
        assert "torch" not in sys.modules, "completion"
        """
    )
    result = _run_in_a_fresh_interpreter(code)
    assert "Usage: fuse mff [OPTIONS] FOCUS_PLANE..." in result.stdout
    assert result.stdout.endswith("mef\nmff\nmmf\nmethods\n")  # the completions of `fuse m`


def _run_in_a_fresh_interpreter(code: str) -> subprocess.CompletedProcess:
    """Run ``code`` in a new Python (nothing imported yet) at 80 columns; it must succeed."""
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env={**os.environ, "COLUMNS": "80"},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result


# What `fuse --help`, a task's help and shell completion must not import: torch and the image
# stack (numpy, Pillow, codecs), rich's progress bars and tables, and the Pydantic that Typer
# builds its value coercion with (see fusecli.cli.coercion).
HEAVY_MODULES = ("torch", "numpy", "PIL", "imagecodecs", "tifffile", "rich", "pydantic")


def test_help_and_completion_import_no_image_stack_rich_or_pydantic() -> None:
    # Counted in modules, not seconds (shared machines). One interpreter answers them all, so
    # the check after the last one covers every earlier answer too.
    code = textwrap.dedent(
        f"""
        import os, sys
        from fusecli.cli.main import main
        heavy = {HEAVY_MODULES!r}
        def loaded():
            return sorted(m for m in heavy if m in sys.modules)
        for args in (["--help"], ["mff", "--help"], ["batch", "--help"], ["eval", "--help"]):
            try:
                main(args)
            except SystemExit as exc:
                assert exc.code in (0, None), (args, exc.code)
            assert not loaded(), (args, loaded())
        os.environ.update(_FUSE_COMPLETE="complete_bash", COMP_WORDS="fuse mff --t", COMP_CWORD="2")
        try:
            main([])
        except SystemExit as exc:
            assert exc.code in (0, None), ("completion", exc.code)
        assert not loaded(), ("completion", loaded())
        """
    )
    result = _run_in_a_fresh_interpreter(code)
    assert "Known: EN, MI, SSIM" in " ".join(result.stdout.split())  # eval's, without numpy
    assert result.stdout.endswith("--tile\n")  # the completion of `fuse mff --t`


def test_completing_an_int_option_imports_no_pydantic() -> None:
    # `fuse eval -j <Tab>` processes -j's int default, which built Typer's Pydantic coercion.
    code = textwrap.dedent(
        f"""
        import os, sys
        from fusecli.cli.main import main
        os.environ.update(
            _FUSE_COMPLETE="complete_bash", COMP_WORDS="fuse eval -j ", COMP_CWORD="3"
        )
        try:
            main([])
        except SystemExit as exc:
            assert exc.code in (0, None), ("completion", exc.code)
        print(sorted(m for m in {HEAVY_MODULES!r} if m in sys.modules))
        """
    )
    assert _run_in_a_fresh_interpreter(code).stdout.strip().endswith("[]")


@pytest.mark.parametrize("value", ["0", "x"])
def test_an_int_option_given_on_the_line_is_still_converted_and_checked(tmp_path, value) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    args = ["eval", str(tmp_path / "a"), str(tmp_path / "b"), "-j", value]
    result = CliRunner().invoke(build_app(), args)
    assert result.exit_code == 2 and "'--jobs' / '-j'" in result.stderr
