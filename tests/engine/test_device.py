"""Device selection."""

from __future__ import annotations

import pytest
import torch

from fusecli.engine import select_device
from fusecli.errors import FuseError


def test_auto_picks_an_available_device() -> None:
    assert select_device("auto").type in {"cpu", "cuda", "mps"}
    assert select_device("CPU") == torch.device("cpu")


@pytest.mark.parametrize("spec", ["tpu", "gpu0", "cuda:99"])
def test_unknown_or_absent_devices_are_refused(spec) -> None:
    if spec.startswith("cuda") and torch.cuda.device_count() > 99:
        pytest.skip("machine has 100 GPUs")
    with pytest.raises(FuseError):
        select_device(spec)
