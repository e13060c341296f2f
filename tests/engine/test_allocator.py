"""Freed memory is kept for reuse: repeated large allocations stop costing page faults."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT

# Allocates and frees a 64 MB tensor (above glibc's largest mmap threshold) 20 times after a
# first one, and prints the minor page faults those 20 cost.
PROBE = """
import resource, sys, torch
if sys.argv[1] == "retain":
    from fusecli.engine.allocator import retain_freed_memory
    print(retain_freed_memory())
else:
    print(False)
torch.ones(16 * 1024**2)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    torch.ones(16 * 1024**2)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _probe(mode: str, **environment: str) -> tuple[bool, int]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    env.pop("FUSECLI_SYSTEM_MALLOC", None)
    env.update(environment)
    result = subprocess.run(
        [sys.executable, "-c", PROBE, mode],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env=env,
        check=True,
    )
    changed, faults = result.stdout.split()
    return changed == "True", int(faults)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc only")
def test_retained_memory_is_reused_without_page_faults() -> None:
    changed, faults = _probe("retain")
    if not changed:
        pytest.skip("not glibc")
    _, system_faults = _probe("system")
    # Each fresh 64 MB block is 16,384 pages (20 of them); reused ones fault nothing. A few
    # blocks may still fault where the heap has to move or is shared with other threads (CI
    # measured 3), so the bar is a quarter of the system allocator's cost, not zero.
    assert system_faults > 20 * 16_384 * 0.9
    assert faults <= system_faults // 4


def test_it_can_be_turned_off() -> None:
    assert _probe("retain", FUSECLI_SYSTEM_MALLOC="1")[0] is False
    # glibc's own tuning variables win over ours.
    assert _probe("retain", MALLOC_TRIM_THRESHOLD_="1000000")[0] is False
