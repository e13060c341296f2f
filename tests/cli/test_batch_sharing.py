"""`fuse batch`: stray files, -o inside the input, shared output folders, SLURM shards."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from fusecli.cli.batch import claim_output, claim_path, parse_shard
from fusecli.cli.main import build_app
from fusecli.engine import PSLPT, save_weights
from fusecli.io import write_image
from tests.conftest import REPO_ROOT

runner = CliRunner()


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_weights(PSLPT(), tmp_path_factory.mktemp("w") / "w.safetensors", {})


def _pairs(root: Path, count: int) -> Path:
    for i in range(count):
        for side in ("ir", "vi"):
            path = root / side / f"p{i}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            write_image(path, torch.rand(1, 1, 24, 32, generator=torch.Generator().manual_seed(i)))
    return root


def _lines(text: str, words: str) -> list[str]:
    return [line for line in text.splitlines() if words in line]


def _run(*args: object):
    return runner.invoke(build_app(), [str(a) for a in args], catch_exceptions=False)


def test_skip_unmatched_lists_strays_once_and_reruns_exit_0(tmp_path: Path, weights) -> None:
    root = _pairs(tmp_path / "in", 2)
    write_image(root / "ir" / "stray.png", torch.rand(1, 1, 24, 32))
    out = tmp_path / "out"
    base = ("batch", root, "-o", out, "--weights", weights, "--method", "average,pslpt")
    strict = _run(*base)
    assert strict.exit_code == 1 and len(_lines(strict.stderr, "stray")) == 1
    for _ in range(2):  # the first run fuses, the rerun only skips
        result = _run(*base, "--skip-unmatched")
        assert result.exit_code == 0, result.output
        assert len(_lines(result.stderr, "stray")) == 1
        assert "1 unmatched files ignored" in result.stderr
    summary = json.loads(_run(*base, "--skip-unmatched", "--json").stdout)
    assert summary["failed"] == 0 and len(summary["unmatched"]) == 1


def test_dry_run_and_real_run_use_the_same_words(tmp_path: Path, weights) -> None:
    root = _pairs(tmp_path / "in", 1)
    write_image(root / "vi" / "stray.png", torch.rand(1, 1, 24, 32))
    args = ("batch", root, "-o", tmp_path / "out", "--weights", weights)
    dry = [line for line in _run(*args, "--dry-run").stderr.splitlines() if "stray" in line]
    real = [line for line in _run(*args).stderr.splitlines() if "stray" in line]
    assert dry == real and dry[0].startswith("problem: ")


def test_output_folder_equal_to_or_inside_the_input(tmp_path: Path, weights) -> None:
    root = _pairs(tmp_path / "in", 2)
    same = runner.invoke(build_app(), ["batch", str(root), "-o", str(root / "ir" / "..")])
    assert same.exit_code == 1 and "is the input folder" in same.stderr
    assert sorted(p.name for p in root.iterdir()) == ["ir", "vi"]
    inside = root / "fused"
    for _ in range(2):  # the rerun must not read fused/ as inputs
        result = _run("batch", root, "-o", inside, "--weights", weights)
        assert result.exit_code == 0 and "problem" not in result.output, result.output
    assert "0 fused, 2 skipped (exist), 0 failed" in result.output


def test_a_claim_is_exclusive_and_a_dead_process_claim_is_taken_over(tmp_path: Path) -> None:
    output = tmp_path / "x.png"
    claim = claim_output(output)
    assert claim == claim_path(output) and claim.name == ".x.png.claim"
    host, pid = claim.read_text().split()
    assert (host, int(pid)) == (socket.gethostname(), os.getpid())
    claim.write_text(f"{socket.gethostname()} 1\n")  # pid 1 is alive: not stale
    assert claim_output(output) is None
    claim.write_text("elsewhere.example 12345\n")  # another host: never taken
    assert claim_output(output) is None
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], text=True,
                          capture_output=True, check=True).stdout.strip()  # fmt: skip
    claim.write_text(f"{socket.gethostname()} {dead}\n")
    assert claim_output(output) == claim and claim.read_text().split()[1] == str(os.getpid())


def test_two_processes_share_one_output_folder(tmp_path: Path, weights) -> None:
    root = _pairs(tmp_path / "in", 6)
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}
    for name in ("RANK", "WORLD_SIZE", "SLURM_ARRAY_TASK_ID"):
        env.pop(name, None)
    command = [sys.executable, "-m", "fusecli", "batch", str(root), "-o", str(out)]
    procs = [
        subprocess.Popen(
            [*command, "--weights", str(weights), "--json"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    summaries = []
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=600)
        assert proc.returncode == 0, stderr
        summaries.append(json.loads(stdout))
    done = [output for summary in summaries for output in summary["outputs"]]
    assert sorted(done) == sorted(str(out / f"p{i}.png") for i in range(6))  # each once
    assert all(summary["failed"] == 0 for summary in summaries)
    assert sorted(p.name for p in out.iterdir()) == [f"p{i}.png" for i in range(6)]


def test_shard_defaults_read_slurm_array_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("RANK", "WORLD_SIZE", "SLURM_ARRAY_TASK_MIN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "2")
    monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "4")
    assert parse_shard(None) == (2, 4)
    monkeypatch.setenv("SLURM_ARRAY_TASK_MIN", "1")  # --array=1-4
    assert parse_shard(None) == (1, 4)
    monkeypatch.setenv("RANK", "0")  # torchrun's variables win
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert parse_shard(None) == (0, 2)
    assert parse_shard("3/5") == (3, 5)
