"""A training run killed with SIGKILL at a random moment leaves a loadable checkpoint."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fusecli.engine import load_weights
from fusecli.train.checkpoint import load_checkpoint
from tests.conftest import DATA, REPO_ROOT

SMOKE = REPO_ROOT / "recipes" / "smoke.yaml"
LONGER = ["--set", "stage1.length=30", "--set", "stage1.checkpoint_every=1"]


def _train(run_dir: Path, *extra: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "fusecli", "train", str(SMOKE), "-o", str(run_dir), *LONGER]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [*command, *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True
    )


@pytest.mark.slow
@pytest.mark.data
def test_sigkill_mid_run_never_corrupts_the_checkpoint(tmp_path) -> None:
    if not DATA.is_dir():
        pytest.skip(f"shared data not found at {DATA}")
    run_dir = tmp_path / "run"
    checkpoint = run_dir / "checkpoint.pt"
    process = _train(run_dir)
    deadline = time.monotonic() + 300
    while not checkpoint.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.05)
    # Kill at a random moment while checkpoints are being written every step.
    time.sleep(random.Random(os.getpid()).uniform(0.0, 1.5))
    if process.poll() is not None:
        pytest.skip("the run finished before it could be killed")
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)

    state = load_checkpoint(checkpoint)
    assert state["stage"] == 1 and 1 <= state["step"] <= 30

    resumed = _train(run_dir, "--resume")
    _, err = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, err
    assert load_weights(run_dir / "stage2_last.safetensors") is not None
