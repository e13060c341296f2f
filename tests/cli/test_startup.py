"""`fuse --version` answers without importing torch or numpy (issue 19: well under 0.5 s)."""

from __future__ import annotations

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
