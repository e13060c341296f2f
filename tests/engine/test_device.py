"""Device selection and precision."""

from __future__ import annotations

import pytest
import torch

from fusecli.engine import PSLPT, precision, select_device
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


def test_bf16_on_cpu_stays_close_to_fp32() -> None:
    net = PSLPT().eval()
    a, b = torch.rand(2, 1, 1, 32, 32)
    reference = net.fuse(a, b)
    with precision(torch.device("cpu"), "bf16"):
        reduced = net.fuse(a, b)
    assert reduced.dtype in (torch.float32, torch.bfloat16)
    assert (reduced.float() - reference).abs().max() < 0.1


def test_fp16_on_cpu_is_refused() -> None:
    with pytest.raises(FuseError, match="fp16"), precision(torch.device("cpu"), "fp16"):
        pass
