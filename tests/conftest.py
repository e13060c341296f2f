"""Shared fixtures: paths to ../shared, a CPU device, deterministic seeds."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = REPO_ROOT.parent / "shared"
DATA = SHARED / "data"
REFERENCE_FIXTURE = SHARED / "reference" / "pslpt_reference_fixture.safetensors"

# Third-party plugins installed on the developer's machine must not change test results.
os.environ.setdefault("FUSECLI_DISABLE_PLUGIN_AUTOLOAD", "1")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--device", default="cpu", help="device for engine tests (cpu, cuda, mps)")


@pytest.fixture
def device(request: pytest.FixtureRequest) -> torch.device:
    return torch.device(request.config.getoption("--device"))


@pytest.fixture
def data_dir() -> Path:
    if not DATA.is_dir():
        pytest.skip(f"shared data not found at {DATA}")
    return DATA


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
