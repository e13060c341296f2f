"""A stack's network inputs kept for tiled fusion: in memory, or in a temporary file when large.

Thirty 12-megapixel frames are 1.4 GB as float32 luminance (4.3 GB as colour); held in memory
they would set the peak of a fusion whose tiles need only a window of each frame at a time.
A large stack is therefore written, frame by frame as it is read, to an unlinked temporary
file, and each window is read back with a plain file read when its tile is fused; no file is
mapped into memory, so the process's resident memory does not grow with the stack.
"""

from __future__ import annotations

import tempfile

import numpy as np
import torch


class LuminanceStore:
    """``count`` frames of (1, 1, height, width) float32, filled in order, read by window.

    A :class:`~fusecli.engine.FrameStack`, which :func:`~fusecli.engine.fuse_tiled` fuses.

    Args:
        count: how many frames the stack has.
        height, width: every frame's size.
        spill: keep the frames in a temporary file (in ``tempfile.gettempdir()``) instead of
            in memory.
    """

    def __init__(self, count: int, height: int, width: int, *, spill: bool) -> None:
        self._count, self._height, self._width = count, height, width
        self._frames: list[torch.Tensor] = []
        # Open as long as the store: close() (or garbage collection) removes it.
        self._file = tempfile.TemporaryFile(prefix="fusecli-stack-") if spill else None  # noqa: SIM115
        self._stored = 0

    @property
    def shape(self) -> torch.Size:
        return torch.Size((1, 1, self._height, self._width))

    @property
    def dtype(self) -> torch.dtype:
        return torch.float32

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    @property
    def spilled(self) -> bool:
        """Whether the frames are in a temporary file."""
        return self._file is not None

    def __len__(self) -> int:
        return self._count

    def append(self, frame: torch.Tensor) -> None:
        """Store the next frame, (1, 1, height, width) float."""
        if tuple(frame.shape) != tuple(self.shape):
            raise ValueError(
                f"expected a frame of shape {tuple(self.shape)}, got {tuple(frame.shape)}"
            )
        if self._stored == self._count:
            raise ValueError(f"the store holds {self._count} frames and is full")
        frame = frame.detach().to("cpu", torch.float32)
        if self._file is None:
            self._frames.append(frame.contiguous())
        else:
            self._file.seek(self._offset(self._stored, 0))
            self._file.write(frame.contiguous().numpy().tobytes())
        self._stored += 1

    def window(self, index: int, rows: slice, cols: slice) -> torch.Tensor:
        """(1, 1, h, w) float32 rows x cols of frame ``index`` (slices with start and stop)."""
        if not 0 <= index < self._stored:
            raise IndexError(f"frame {index} is not stored (holds {self._stored})")
        if self._file is None:
            return self._frames[index][..., rows, cols]
        top, bottom = rows.indices(self._height)[:2]
        left, right = cols.indices(self._width)[:2]
        # Whole rows are contiguous in the file: read the band, keep the columns.
        band = np.empty((bottom - top, self._width), dtype=np.float32)
        self._file.seek(self._offset(index, top))
        if self._file.readinto(memoryview(band).cast("B")) != band.nbytes:
            raise OSError("the stack's temporary file is shorter than written")
        if (left, right) != (0, self._width):
            band = np.ascontiguousarray(band[:, left:right])
        return torch.from_numpy(band)[None, None]

    def frame(self, index: int) -> torch.Tensor:
        """The whole of frame ``index``, (1, 1, height, width)."""
        return self.window(index, slice(0, self._height), slice(0, self._width))

    def close(self) -> None:
        """Release the frames (and the temporary file)."""
        self._frames, self._stored = [], 0
        if self._file is not None:
            self._file.close()

    def _offset(self, index: int, row: int) -> int:
        return ((index * self._height) + row) * self._width * 4
