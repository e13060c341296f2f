"""LuminanceStore: frames in memory or in a temporary file, read back window by window."""

from __future__ import annotations

import pytest
import torch

from fusecli.engine import FrameStack
from fusecli.frame_store import LuminanceStore


@pytest.mark.parametrize("spill", [False, True])
def test_windows_are_the_frames_pixels(spill: bool) -> None:
    frames = torch.rand(3, 1, 1, 7, 9, generator=torch.Generator().manual_seed(0))
    store = LuminanceStore(3, 7, 9, spill=spill)
    for frame in frames:
        store.append(frame)
    assert isinstance(store, FrameStack) and store.spilled == spill
    assert store.shape == (1, 1, 7, 9) and len(store) == 3 and store.dtype == torch.float32
    for index, frame in enumerate(frames):
        assert torch.equal(store.frame(index), frame)
        window = store.window(index, slice(2, 6), slice(3, 8))
        assert torch.equal(window, frame[..., 2:6, 3:8])
    store.close()


def test_frames_must_fit_and_be_stored_before_they_are_read() -> None:
    store = LuminanceStore(1, 4, 4, spill=True)
    with pytest.raises(ValueError, match=r"expected a frame of shape \(1, 1, 4, 4\)"):
        store.append(torch.zeros(1, 1, 4, 5))
    with pytest.raises(IndexError, match="frame 0 is not stored"):
        store.frame(0)
    store.append(torch.zeros(1, 1, 4, 4))
    with pytest.raises(ValueError, match="holds 1 frames and is full"):
        store.append(torch.zeros(1, 1, 4, 4))
    store.close()
