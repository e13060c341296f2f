"""Distributed training: two CPU processes (gloo) on their own shards end with identical weights."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from fusecli.train.loop import parameter_checksum, train
from fusecli.train.recipe import Recipe

SMOKE = Path(__file__).resolve().parents[2] / "recipes" / "smoke.yaml"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world_size: int, port: int, data_dir: str, run_dir: str, out: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world_size),
    )
    torch.set_num_threads(1)
    recipe = Recipe.from_file(
        SMOKE, (f"data.root={data_dir}", "stage1.length=2", "stage2.length=1")
    )
    try:
        result = train(recipe, run_dir=Path(run_dir))
        Path(out, f"rank{rank}.txt").write_text(repr(parameter_checksum(result.net)))
    finally:
        dist.destroy_process_group()


@pytest.mark.data
@pytest.mark.slow
def test_two_cpu_ranks_agree(data_dir, tmp_path):
    mp.spawn(
        _worker,
        args=(2, _free_port(), str(data_dir), str(tmp_path / "run"), str(tmp_path)),
        nprocs=2,
        join=True,
    )
    sums = [float((tmp_path / f"rank{r}.txt").read_text()) for r in range(2)]
    assert sums[0] == sums[1]
    # Only rank 0 writes the run directory.
    assert (tmp_path / "run" / "stage2_last.safetensors").is_file()
    rows = (tmp_path / "run" / "log.jsonl").read_text().splitlines()
    assert len([r for r in rows if '"kind": "train"' in r]) == 3
