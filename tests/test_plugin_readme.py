"""plugins/README.md's example plugin installs with pip exactly as written (issue 19)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT


def _blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.S)


@pytest.mark.slow
def test_the_readme_example_installs_verbatim_and_registers_its_task(tmp_path: Path) -> None:
    readme = (REPO_ROOT / "plugins" / "README.md").read_text()
    (module,) = [b for b in _blocks(readme, "python") if b.startswith("# fusecli_rgbnir/")]
    (pyproject,) = [b for b in _blocks(readme, "toml") if 'name = "fusecli-rgbnir"' in b]
    project = tmp_path / "fusecli-rgbnir"
    (project / "fusecli_rgbnir").mkdir(parents=True)
    (project / "fusecli_rgbnir" / "__init__.py").write_text(module)
    (project / "pyproject.toml").write_text(pyproject)
    target = tmp_path / "site"
    # Offline: the build backend comes from this environment, fusecli is already installed.
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps"]
    pip += ["--no-build-isolation", "--target", str(target), str(project)]
    installed = subprocess.run(pip, capture_output=True, text=True, timeout=300)
    assert installed.returncode == 0, installed.stderr
    env = {**os.environ, "PYTHONPATH": str(target), "FUSECLI_DISABLE_PLUGIN_AUTOLOAD": "0"}
    code = (
        "from fusecli.plugins import load_catalog; c = load_catalog(); "
        "t = c.get('rgbnir'); print(t.package, c.warnings)"
    )
    found = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert found.stdout.strip() == "fusecli-rgbnir 1.0.0 []"
