"""`fuse batch` reads ahead and writes behind the network: order, failures, bugs and Ctrl-C."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from fusecli import pipeline
from fusecli.cli import batch
from fusecli.cli.batch import Job, run_overlapped
from fusecli.errors import FuseError

WAIT = 30  # seconds before a missing overlap counts as a failure rather than a hang


def _jobs(count: int) -> list[Job]:
    return [Job("ivf", (Path(f"a{i}"), Path(f"b{i}")), Path(f"out{i}.png")) for i in range(count)]


class Stages:
    """Fake read/fuse/write stages that log what ran, on which thread."""

    def __init__(self, monkeypatch, fail: dict[str, int] | None = None) -> None:
        self.log: list[tuple[str, int]] = []
        self.threads: dict[str, set[str]] = {"read": set(), "fuse": set(), "write": set()}
        self.fail = fail or {}
        self.started = {i: threading.Event() for i in range(10)}
        monkeypatch.setattr(pipeline, "fuse_job", self.fuse)
        monkeypatch.setattr(pipeline, "write_job", self.write)

    def _step(self, stage: str, index: int) -> None:
        self.log.append((stage, index))
        self.threads[stage].add(threading.current_thread().name)
        if self.fail.get(stage) == index:
            raise FuseError(f"{stage} {index} failed")

    def start(self, job: Job) -> int:
        index = int(job.output.stem[3:])
        self.started[index].set()
        self._step("read", index)
        return index

    def fuse(self, index: int) -> int:
        # The next job is read while this one is in the network.
        assert index == self.last or self.started[index + 1].wait(WAIT)
        self._step("fuse", index)
        return index

    def write(self, index: int, fused: int) -> None:
        self._step("write", index)


def _record(results: list):
    return lambda job, outcome: results.append(
        (job.output.name, str(outcome) if isinstance(outcome, Exception) else None)
    )


def test_stages_overlap_on_three_threads_and_results_come_in_order(monkeypatch) -> None:
    stages = Stages(monkeypatch)
    stages.last = 4
    results: list = []
    run_overlapped(_jobs(5), stages.start, _record(results))
    assert results == [(f"out{i}.png", None) for i in range(5)]
    assert len(stages.threads["read"] | stages.threads["fuse"] | stages.threads["write"]) == 3
    assert stages.threads["fuse"] == {threading.current_thread().name}


@pytest.mark.parametrize("stage", ["read", "fuse", "write"])
def test_a_failure_in_any_stage_is_recorded_and_the_rest_is_done(monkeypatch, stage) -> None:
    stages = Stages(monkeypatch, fail={stage: 1})
    stages.last = 2
    results: list = []
    run_overlapped(_jobs(3), stages.start, _record(results))
    assert results == [("out0.png", None), ("out1.png", f"{stage} 1 failed"), ("out2.png", None)]
    if stage != "write":  # a job that failed earlier is never handed to the writer
        assert ("write", 1) not in stages.log


def test_a_bug_in_the_reader_is_raised_here_after_the_threads_end(monkeypatch) -> None:
    stages = Stages(monkeypatch)
    stages.last = 0

    def start(job: Job) -> int:
        if job.output.name == "out1.png":
            raise ZeroDivisionError("bug")
        return stages.start(job)

    results: list = []
    before = threading.active_count()
    with pytest.raises(ZeroDivisionError):
        run_overlapped(_jobs(3), start, _record(results))
    assert threading.active_count() == before
    assert ("fuse", 2) not in stages.log


def test_ctrl_c_stops_reading_and_fusing_but_writes_what_was_fused(monkeypatch) -> None:
    stages = Stages(monkeypatch)
    stages.last = 9
    fuse = stages.fuse

    def interrupted(index: int) -> int:
        if index == 2:
            raise KeyboardInterrupt
        return fuse(index)

    monkeypatch.setattr(pipeline, "fuse_job", interrupted)
    results: list = []
    before = threading.active_count()
    with pytest.raises(KeyboardInterrupt):
        run_overlapped(_jobs(10), stages.start, _record(results))
    assert threading.active_count() == before
    assert results == [("out0.png", None), ("out1.png", None)]
    # Reading stopped within the queue's depth of the interrupted job.
    assert max(i for stage, i in stages.log if stage == "read") <= 2 + batch.QUEUE_DEPTH + 1
