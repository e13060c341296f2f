"""Long focus stacks: quality against the known sharp image, and the effect of frame order.

Each stack is simulated from a natural image (../shared/data/natural): a smooth random depth map,
and frame k focused at depth k / (n - 1), every pixel blurred in proportion to its distance from
that focal depth. The ground truth is the sharp image. For stacks of 5, 10 and 30 frames the
script fuses the frames with each fold of ``PSLPT.fuse_many`` (``sequential``: frame by frame,
``tree``: a balanced binary tree), in order and reversed, and prints PSNR and SSIM of the fused
luminance to the ground truth for both directions, the PSNR change reversing makes, the PSNR of
the best single frame, the seconds and the peak resident memory of the process so far
(ru_maxrss: it only grows). ``--tools enfuse openfocus`` scores those focus stackers on the
same stacks (benchmarks/external.py; they get the frames as 8-bit files). ``--product`` adds a
row for what ``fuse mff`` outputs: the default fold, then every pixel taken from the frames by
the network's decision (``fusecli.pipeline.fuse_sources``).

    .venv/bin/python benchmarks/bench_stacks.py --size 128 --images 2 --frames 5 10 30

With ``--memory`` it measures instead the peak resident memory of ``fuse mff`` (the command,
in a fresh process, so nothing of this script counts) on stacks of colour PNG frames of each
``--sizes``, for each ``--frames`` count, with a forced ``--tile``. ``--tiny-network`` fuses
with a small random network (4 channels, depth 1) so that large stacks finish in minutes: the
memory that follows the image size (frames, blending, colour) is the command's and does not
depend on the network, only the tile's working memory does. ``--source-tree`` runs another
checkout's fusecli (e.g. the commit before streaming) for comparison. The last lines fit
peak = base + per-pixel x pixels over the sizes at the largest frame count and project it to a
12-megapixel frame. ``--stack-memory-mb 0`` makes the command keep every stack's frames in a
temporary file, as it does for long stacks of large frames.

    .venv/bin/python benchmarks/bench_stacks.py --memory --sizes 1024x768 2048x1280 \
        --frames 2 10 30 --tile 256 --tiny-network
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from bench_methods import cpu_name  # this folder is first on sys.path when run as a script
from external import TOOLS, ExternalTool, fuse_with_tool

from fusecli.color import luminance
from fusecli.engine import PSLPT, ModelConfig, save_weights
from fusecli.engine.model import STACK_ORDERS
from fusecli.filters import gaussian_blur
from fusecli.io import image_files, read_image, write_image
from fusecli.metrics.structural import structural_similarity
from fusecli.pipeline import fuse_sources, open_network
from fusecli.plugins import get_catalog

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "natural"
# Blur (Gaussian sigma, pixels) of a point one full depth range away from the focal plane.
MAX_SIGMA = 4.0
BLUR_LEVELS = 17
# What the --memory projection is for: a 12-megapixel camera frame (4000 x 3000).
CAMERA_PIXELS = 12_000_000
# A network small enough to fuse 30 frames of several megapixels in minutes on two cores.
TINY_NETWORK = ModelConfig(channels=4, num_heads=1, depth=1, mlp_ratio=1.0, cpb_hidden=8)


def depth_map(size: int, generator: torch.Generator) -> torch.Tensor:
    """(1, 1, size, size) smooth depths in [0, 1]: low-pass noise, stretched to the range."""
    noise = torch.rand(1, 1, size // 16 + 2, size // 16 + 2, generator=generator)
    depth = torch.nn.functional.interpolate(noise, size=(size, size), mode="bicubic")
    depth = gaussian_blur(depth, size / 24, radius=round(size / 8))
    return (depth - depth.min()) / (depth.max() - depth.min() + 1e-8)


def focus_stack(sharp: torch.Tensor, depth: torch.Tensor, frames: int) -> list[torch.Tensor]:
    """Frames focused at evenly spaced depths; blur grows with the distance from focus."""
    sigmas = torch.linspace(0.0, MAX_SIGMA, BLUR_LEVELS)
    # One blurred copy per sigma; each pixel interpolates between the two nearest sigmas.
    levels = torch.stack(
        [
            sharp if s == 0 else gaussian_blur(sharp, float(s), radius=round(3 * float(s)))
            for s in sigmas
        ]
    )
    stack = []
    for k in range(frames):
        focal = k / (frames - 1)
        wanted = (depth - focal).abs() * (BLUR_LEVELS - 1)  # index into sigmas
        low = wanted.floor().clamp(max=BLUR_LEVELS - 2).long()
        weight = wanted - low
        gathered_low = torch.gather(levels, 0, low.expand_as(sharp)[None]).squeeze(0)
        gathered_high = torch.gather(levels, 0, (low + 1).expand_as(sharp)[None]).squeeze(0)
        stack.append(gathered_low * (1 - weight) + gathered_high * weight)
    return stack


def psnr(x: np.ndarray, y: np.ndarray) -> float:
    mse = float(np.mean((x - y) ** 2))
    return 10 * np.log10(1.0 / mse) if mse > 0 else float("inf")


def colour_frames(folder: Path, count: int, width: int, height: int) -> list[Path]:
    """``count`` 8-bit RGB PNG frames: smooth random colour with fine noise (PNG cannot
    squeeze it to nothing, as a real photograph)."""
    generator = torch.Generator().manual_seed(width * height)
    paths = []
    for index in range(count):
        coarse = torch.rand(1, 3, height // 64 + 2, width // 64 + 2, generator=generator)
        frame = torch.nn.functional.interpolate(coarse, size=(height, width), mode="bilinear")
        frame = frame * 0.9 + 0.1 * torch.rand(1, 3, height, width, generator=generator)
        paths.append(write_image(folder / f"frame{index:03d}.png", frame).path)
    return paths


def peak_of_command(command: list[str], environment: dict[str, str]) -> tuple[float, float]:
    """(seconds, peak RSS in MB) of a child process, from its own rusage (os.wait4)."""
    start = time.perf_counter()
    with tempfile.TemporaryFile() as messages:
        process = subprocess.Popen(
            command, env=environment, stdout=subprocess.DEVNULL, stderr=messages
        )
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        if process.returncode != 0:
            messages.seek(0)
            sys.stderr.write(messages.read().decode(errors="replace"))
            raise SystemExit(f"the fusion failed with exit code {process.returncode}")
    return time.perf_counter() - start, usage.ru_maxrss / 1024


def fuse_with(tool: ExternalTool, sources: list[torch.Tensor]) -> torch.Tensor:
    """(1, 1, H, W) luminance of an external tool's fusion of (1, 1, H, W) frames.

    The tool gets the frames as 8-bit files (see external.fuse_with_tool), the network the
    float frames: rounding to 8 bits alone would cost nothing visible (about 59 dB PSNR).
    """
    with tempfile.TemporaryDirectory(prefix="bench-stacks-tool-") as folder:
        paths = [
            write_image(Path(folder) / f"frame{k:03d}.png", frame, bit_depth=16).path
            for k, frame in enumerate(sources)
        ]
        output = Path(folder) / "fused.png"
        fuse_with_tool(tool, "mff", [(paths, output)])
        return luminance(read_image(output).pixels)


def memory_main(args: argparse.Namespace) -> None:
    sizes = [tuple(int(v) for v in text.lower().split("x")) for text in args.sizes]
    environment = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    if args.source_tree:
        environment["PYTHONPATH"] = str(Path(args.source_tree).resolve())
    if args.stack_memory_mb is not None:
        environment["FUSECLI_STACK_MEMORY_MB"] = str(args.stack_memory_mb)
    tree = args.source_tree or "this checkout"
    limit = (
        "" if args.stack_memory_mb is None else f", FUSECLI_STACK_MEMORY_MB={args.stack_memory_mb}"
    )
    print(f"fuse mff --tile {args.tile}, {tree}{limit}, threads {args.threads}, {cpu_name()}")
    print("size        MP    frames  seconds  peak RSS MB")
    peaks: dict[tuple[int, int], float] = {}
    with tempfile.TemporaryDirectory(prefix="bench-stacks-") as folder:
        weights: list[str] = []
        if args.tiny_network:
            tiny = save_weights(PSLPT(TINY_NETWORK).eval(), Path(folder) / "tiny.safetensors", {})
            weights = ["--weights", str(tiny)]
        for width, height in sizes:
            frames = colour_frames(Path(folder), max(args.frames), width, height)
            for count in args.frames:
                output = Path(folder) / f"fused-{count}.tif"
                command = [
                    sys.executable, "-c", "from fusecli.cli.main import main; main()",
                    "mff", *map(str, frames[:count]), "-o", str(output), "--overwrite",
                    "--tile", str(args.tile), *weights,
                ]  # fmt: skip
                seconds, peak = peak_of_command(command, environment)
                if count == max(args.frames):
                    peaks[(width, height)] = peak
                megapixels = width * height / 1e6
                size = f"{width}x{height}"
                print(
                    f"{size:<11} {megapixels:4.2f}  {count:6}  {seconds:7.1f}  {peak:11.0f}",
                    flush=True,
                )
            for frame in frames:
                frame.unlink()
    if len(peaks) >= 2:
        pixels = np.array([w * h for w, h in peaks], dtype=np.float64)
        slope, base = np.polyfit(pixels, np.array(list(peaks.values())), 1)
        print(
            f"{max(args.frames)} frames: peak = {base:.0f} MB + {slope * 1e6:.0f} MB per megapixel "
            f"({slope * 1024**2:.0f} bytes per pixel); at 12 MP: "
            f"{base + slope * CAMERA_PIXELS:.0f} MB"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=192, help="square crop side (pixels)")
    parser.add_argument("--images", type=int, default=2, help="natural images to use (CSet5)")
    parser.add_argument("--frames", type=int, nargs="+", default=[5, 10, 30])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--orders",
        nargs="+",
        choices=STACK_ORDERS,
        default=["sequential", "tree"],
        help="folds to compare (default: sequential tree)",
    )
    parser.add_argument(
        "--tools",
        nargs="*",
        choices=[name for name, tool in TOOLS.items() if "mff" in tool.tasks],
        default=[],
        help="external focus stackers to score on the same stacks (see external.py; "
        "FUSECLI_BENCH_VENV names their virtualenv)",
    )
    parser.add_argument(
        "--product",
        action="store_true",
        help="also score what `fuse mff` outputs (auto fold, pixels selected from the frames by "
        "the network's decision; row 'fuse mff')",
    )
    parser.add_argument("--memory", action="store_true", help="peak memory of `fuse mff` instead")
    parser.add_argument(
        "--sizes", nargs="+", default=["1024x768", "2048x1280"], help="--memory: WIDTHxHEIGHT"
    )
    parser.add_argument("--tile", type=int, default=256, help="--memory: tile side")
    parser.add_argument(
        "--tiny-network", action="store_true", help="--memory: a small random network"
    )
    parser.add_argument(
        "--source-tree", help="--memory: run the fusecli package found in this folder instead"
    )
    parser.add_argument(
        "--stack-memory-mb",
        type=float,
        help="--memory: FUSECLI_STACK_MEMORY_MB for the command (0: frames always in a file)",
    )
    args = parser.parse_args()
    if args.memory:
        memory_main(args)
        return
    torch.set_num_threads(args.threads)
    tools = list(dict.fromkeys(args.tools))
    for name in tools:
        reason = TOOLS[name].missing()
        if reason:
            raise SystemExit(f"{name} cannot run: {reason}")
    spec = get_catalog().get("mff").spec
    net, weights = open_network(spec)
    generator = torch.Generator().manual_seed(0)
    print(f"weights {weights.name}, size {args.size}, threads {args.threads}, {cpu_name()}")
    print(
        "image        frames  fold        PSNR fwd/rev dB  |change|  SSIM fwd/rev   "
        "best frame dB  seconds  peak RSS MB"
    )
    for path in image_files(DATA / "CSet5")[: args.images]:
        pixels = read_image(path).pixels
        side = min(pixels.shape[-2:])
        top, left = (pixels.shape[-2] - side) // 2, (pixels.shape[-1] - side) // 2
        square = pixels[..., top : top + side, left : left + side]
        sharp = torch.nn.functional.interpolate(square, size=(args.size,) * 2, mode="area")
        sharp = luminance(sharp) if sharp.shape[1] == 3 else sharp
        depth = depth_map(args.size, generator)
        truth = sharp[0, 0].numpy().astype(np.float64)
        for frames in args.frames:
            stack = focus_stack(sharp, depth, frames)
            # The sharpest single frame: what fusion has to beat.
            best = max(psnr(f[0, 0].numpy().astype(np.float64), truth) for f in stack)
            product = ["fuse mff"] if args.product else []
            for order in [*args.orders, *product, *tools]:
                start = time.perf_counter()
                scores = []
                for sources in (stack, stack[::-1]):
                    if order in tools:
                        fused = fuse_with(TOOLS[order], sources)
                    elif order == "fuse mff":
                        fused = fuse_sources(net, spec, sources, precision="fp32")
                    else:
                        with torch.inference_mode():
                            fused = net.fuse_many(sources, faf_set=spec.faf_set, order=order)
                    result = fused[0, 0].numpy().astype(np.float64)
                    scores.append(
                        (
                            psnr(result, truth),
                            structural_similarity(result, truth, data_range=1.0),
                        )
                    )
                seconds = (time.perf_counter() - start) / 2
                # A tool runs in processes of its own, which this process's peak does not show.
                peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
                peak_text = "       -" if order in tools else f"{peak:8.0f}"
                (forward, ssim_forward), (backward, ssim_backward) = scores
                print(
                    f"{path.stem:<12} {frames:>6}  {order:<10}  {forward:6.2f}/{backward:6.2f}  "
                    f"{abs(forward - backward):8.2f}  {ssim_forward:.4f}/{ssim_backward:.4f}  "
                    f"{best:13.2f}  {seconds:7.1f}  {peak_text}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
