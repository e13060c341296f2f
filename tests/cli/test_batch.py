"""`fuse batch`: layouts, resume, corrupt pairs, JSON summary, dry run and sharded ranks."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from fusecli.cli.batch import parse_shard, plan_batch, shard
from fusecli.cli.main import build_app
from fusecli.engine import PSLPT, save_weights
from fusecli.errors import FuseError
from fusecli.io import read_image, write_image
from fusecli.plugins import load_catalog

REPO_ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_weights(PSLPT(), tmp_path_factory.mktemp("w") / "w.safetensors", {})


def _image(path: Path, channels: int = 1, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(seed)
    write_image(path, torch.rand(1, channels, 32, 48, generator=generator))
    return path


def _run(*args: str):
    return runner.invoke(build_app(), list(args), catch_exceptions=False)


def test_plan_finds_sibling_folders_suffix_pairs_and_scene_folders(tmp_path: Path) -> None:
    root = tmp_path / "in"
    for stem in ("x1", "x2"):
        _image(root / "road" / "IR" / f"{stem}.png")
        _image(root / "road" / "vi" / f"{stem}.png", 3)
    _image(root / "road" / "IR" / "lonely.png")
    _image(root / "flat" / "p_ir.png")
    _image(root / "flat" / "p_vis.png", 3)
    _image(root / "flat" / "q_A.jpg", 3)
    _image(root / "flat" / "q_B.jpg", 3)
    _image(root / "flat" / "r_A.jpg", 3)
    for i in (1, 2, 10):
        _image(root / "mef" / "scene" / f"e{i}.png", 3)
    _image(root / "out" / "road" / "x1.png")  # earlier outputs inside the input folder
    plan = plan_batch(root, tmp_path / "in" / ".." / "in" / "out", load_catalog(autoload=False))
    found = {
        (job.task, str(job.output.relative_to(root / ".." / "in" / "out")), job.sources[0].name)
        for job in plan.jobs
    }
    assert found == {
        ("ivf", "road/x1.png", "x1.png"),
        ("ivf", "road/x2.png", "x2.png"),
        ("ivf", "flat/p.png", "p_ir.png"),
        ("mff", "flat/q.png", "q_A.jpg"),
        ("mef", "mef/scene.png", "e1.png"),
    }
    scene = next(job for job in plan.jobs if job.task == "mef")
    assert [p.name for p in scene.sources] == ["e1.png", "e2.png", "e10.png"]
    ivf = next(job for job in plan.jobs if job.output.name == "x1.png")
    assert [p.parent.name for p in ivf.sources] == ["IR", "vi"]  # role order, not folder order
    assert len(plan.problems) == 2
    assert any("lonely" in p for p in plan.problems) and any("r_A.jpg" in p for p in plan.problems)
    assert [j.output for j in plan.jobs] == sorted((j.output for j in plan.jobs), key=str)


def test_a_scene_folder_without_a_task_name_asks_for_task(tmp_path: Path) -> None:
    for i in range(3):
        _image(tmp_path / "in" / "shots" / f"s{i}.png")
    catalog = load_catalog(autoload=False)
    plan = plan_batch(tmp_path / "in", tmp_path / "out", catalog)
    assert not plan.jobs and "pass --task" in plan.problems[0]
    plan = plan_batch(tmp_path / "in", tmp_path / "out", catalog, task="mff")
    assert [job.task for job in plan.jobs] == ["mff"]


def test_shards_are_disjoint_and_cover_everything(monkeypatch: pytest.MonkeyPatch) -> None:
    jobs = list(range(7))
    slices = [shard(jobs, rank, 3) for rank in range(3)]  # type: ignore[arg-type]
    assert sorted(itertools.chain(*slices)) == jobs
    assert parse_shard("1/4") == (1, 4)
    monkeypatch.setenv("RANK", "2")
    monkeypatch.setenv("WORLD_SIZE", "3")
    assert parse_shard(None) == (2, 3)
    for bad in ("4/4", "a/b", "1"):
        with pytest.raises(FuseError, match="--shard"):
            parse_shard(bad)


@pytest.fixture
def pairs_with_a_corrupt_one(tmp_path: Path) -> Path:
    root = tmp_path / "in"
    for i in range(3):
        _image(root / "ir" / f"p{i}.png", seed=i)
        _image(root / "vi" / f"p{i}.png", 3, seed=10 + i)
    (root / "vi" / "p1.png").write_bytes(b"\x89PNG\r\n\x1a\ntruncated")
    _image(root / "ir" / "alone.png")
    return root


def test_batch_fuses_the_good_pairs_reports_the_bad_and_resumes(
    pairs_with_a_corrupt_one: Path, tmp_path: Path, weights: Path
) -> None:
    out = tmp_path / "out"
    args = ("batch", str(pairs_with_a_corrupt_one), "-o", str(out), "--weights", str(weights))
    first = _run(*args, "--json")
    assert first.exit_code == 1
    summary = json.loads(first.stdout)
    assert (summary["done"], summary["skipped"], summary["failed"]) == (2, 0, 2)
    reasons = " ".join(f["reason"] for f in summary["failures"])
    assert "p1.png" in reasons and "alone" in reasons
    assert sorted(p.name for p in out.iterdir()) == ["p0.png", "p2.png"]
    assert read_image(out / "p0.png").pixels.shape == (1, 3, 32, 48)

    (out / "p2.png").unlink()
    again = _run(*args)
    assert again.exit_code == 1
    assert "1 fused, 1 skipped (exist), 2 failed" in again.stderr
    assert "p1.png" in again.stderr

    dry = _run(*args, "--dry-run")
    assert (
        dry.exit_code == 0
        and "skip (exists)" in dry.stdout
        and "3 jobs (1 to fuse), 1 problems" in dry.stderr
    )


def test_a_misnamed_source_is_noted_once_on_stderr_and_not_with_q(tmp_path: Path) -> None:
    root = tmp_path / "in"
    misnamed = _image(root / "ir" / "x.jpg").rename(root / "ir" / "x.png")
    _image(root / "vi" / "x.png", 3)
    out = tmp_path / "out"
    # Two methods: two jobs read the same misnamed source, which is still noted once.
    args = ["batch", str(root), "-o", str(out), "--method", "average,laplacian", "--json"]
    result = _run(*args)
    assert result.exit_code == 0, result.stderr
    notes = [line for line in result.stderr.splitlines() if line.startswith("note: ")]
    assert notes == [f"note: {misnamed} is a JPEG file with a .png name; read as JPEG"]
    summary = json.loads(result.stdout)  # stdout carries the JSON alone
    assert summary["done"] == 2
    # The record keeps the note with each output that read the source.
    assert sorted(summary["notes"], key=lambda n: n["output"]) == [
        {"output": str(out / method / "x.png"), "note": notes[0].removeprefix("note: ")}
        for method in ("average", "laplacian")
    ]

    quiet = _run("-q", *args, "--overwrite")
    assert quiet.exit_code == 0 and quiet.stderr == ""


def test_unknown_task_and_empty_folder_are_one_line_errors(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    result = _run("batch", str(tmp_path / "empty"), "-o", str(tmp_path / "o"))
    assert result.exit_code == 1 and "holds no pairs or stacks" in result.stderr
    result = _run("batch", str(tmp_path / "empty"), "-o", str(tmp_path / "o"), "--task", "nope")
    assert result.exit_code == 1 and "no task named 'nope'" in result.stderr


def test_two_cpu_ranks_split_the_folder(tmp_path: Path, weights: Path) -> None:
    root = tmp_path / "in"
    for i in range(5):
        _image(root / "a" / f"f{i}.png", seed=i)
        _image(root / "b" / f"f{i}.png", seed=20 + i)
    out = tmp_path / "out"
    code = "from fusecli.cli.main import main; main()"
    procs = []
    for rank in range(2):
        env = {**os.environ, "RANK": str(rank), "WORLD_SIZE": "2", "OMP_NUM_THREADS": "1"}
        env["PYTHONPATH"] = str(REPO_ROOT)
        cmd = [sys.executable, "-c", code, "batch", str(root), "-o", str(out)]
        procs.append(
            subprocess.Popen(
                [*cmd, "--weights", str(weights), "--json"],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    summaries = []
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 0, stderr
        summaries.append(json.loads(stdout))
    assert [s["done"] for s in summaries] == [3, 2]
    assert not set(summaries[0]["outputs"]) & set(summaries[1]["outputs"])
    assert sorted(p.name for p in out.iterdir()) == [f"f{i}.png" for i in range(5)]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])  # SIGTERM: scancel, kill
def test_an_interrupt_leaves_only_complete_outputs_and_a_rerun_resumes(
    tmp_path: Path, weights: Path, signum: int
) -> None:
    root = tmp_path / "in"
    for i in range(40):
        _image(root / "a" / f"f{i:02d}.png", seed=i)
        _image(root / "b" / f"f{i:02d}.png", seed=100 + i)
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}
    code = "from fusecli.cli.main import main; main()"
    proc = subprocess.Popen(
        [sys.executable, "-c", code, "batch", str(root), "-o", str(out), "--weights", str(weights)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while not (out.is_dir() and any(out.glob("*.png"))) and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signum)
    stdout, stderr = proc.communicate(timeout=120)
    if proc.returncode == 0:
        pytest.skip("the batch finished before the interrupt arrived")
    assert proc.returncode == 130, stderr
    assert "interrupted, rerun to resume" in stderr and stdout == ""
    written = sorted(out.iterdir())
    assert all(not p.name.startswith(".") for p in written), "a temporary or claim file was left"
    for path in written:
        assert read_image(path).pixels.shape == (1, 1, 32, 48)
    dry = _run("batch", str(root), "-o", str(out), "--dry-run")
    assert dry.stdout.count("skip (exists)") == len(written)
    assert f"40 jobs ({40 - len(written)} to fuse)" in dry.stderr


@pytest.mark.data
def test_the_shared_data_tree_is_planned_per_task(data_dir: Path, tmp_path: Path) -> None:
    catalog = load_catalog(autoload=False)
    medical = plan_batch(data_dir / "mmf", tmp_path, catalog)
    assert not medical.problems
    assert len(medical.jobs) == 11 + 20 + 73 and {j.task for j in medical.jobs} == {"mmf"}
    ct_job = next(j for j in medical.jobs if "mri-ct" in str(j.output))
    assert [p.parent.name for p in ct_job.sources] == ["mri", "ct"]  # role order
    stacks = plan_batch(data_dir / "mef" / "sequences", tmp_path, catalog)
    assert {j.task for j in stacks.jobs} == {"mef"} and len(stacks.jobs) == 4
    assert sum(len(j.sources) for j in stacks.jobs) == 22
    focus = plan_batch(data_dir / "mff", tmp_path, catalog)
    assert len(focus.jobs) == 30 + 13 and not focus.problems


@pytest.mark.data
@pytest.mark.slow
def test_batch_on_shared_data_with_a_corrupt_file(
    data_dir: Path, tmp_path: Path, weights: Path
) -> None:
    root = tmp_path / "in"
    pairs = data_dir / "mmf" / "mri-pet"
    stems = sorted(p.name for p in (pairs / "mri").iterdir())[:1]
    for folder in ("mri", "pet"):
        (root / folder).mkdir(parents=True)
        for stem in stems:
            (root / folder / stem).symlink_to(pairs / folder / stem)
    (root / "mri" / "zz.png").write_bytes((pairs / "mri" / stems[0]).read_bytes()[:300])
    (root / "pet" / "zz.png").symlink_to(pairs / "pet" / stems[0])
    out = tmp_path / "out"
    result = _run("batch", str(root), "-o", str(out), "--weights", str(weights), "--json")
    assert result.exit_code == 1
    summary = json.loads(result.stdout)
    assert (summary["done"], summary["failed"]) == (1, 1)
    assert "zz.png" in summary["failures"][0]["reason"]
    for stem in stems:
        fused = read_image(out / stem)
        assert fused.pixels.shape == (1, 3, 256, 256) and fused.bit_depth == 8


def test_torchrun_gives_each_rank_its_slice(tmp_path: Path, weights: Path) -> None:
    root = tmp_path / "in"
    for i in range(4):
        _image(root / "near" / f"f{i}.png", seed=i)
        _image(root / "far" / f"f{i}.png", seed=30 + i)
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    fuse = [sys.executable, "-c", "from fusecli.cli.main import main; main()"]
    batch = ["batch", str(root), "-o", str(out), "--weights", str(weights)]
    result = subprocess.run(
        [*launcher, "--nproc-per-node", "2", "--no-python", *fuse, *batch],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("2 fused, 0 skipped (exist), 0 failed") == 2
    assert sorted(p.name for p in out.iterdir()) == [f"f{i}.png" for i in range(4)]
