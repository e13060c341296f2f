"""A camera-size exposure bracket through the command line: seconds, CPU, page faults, peak memory.

    OMP_NUM_THREADS=1 python benchmarks/bench_camera.py                  # 6000x4000, fuse mef
    OMP_NUM_THREADS=1 python benchmarks/bench_camera.py --size 3000 2000 --method laplacian

Makes two JPEGs one stop under and one over (a natural image from ../shared/data resized to the
size, or a smooth synthetic scene without it) in a temporary folder, runs ``fuse mef`` on them
as a user would (decoding, colour, the network in automatically sized tiles, encoding) and reports
what the child process used (``getrusage``): wall and CPU seconds, minor page faults and the peak
resident size. Extra arguments after ``--`` go to ``fuse mef``.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SCENE = REPO.parent / "shared" / "data" / "natural" / "CSun_Hays80"


def bracket(folder: Path, width: int, height: int) -> tuple[Path, Path]:
    from PIL import Image

    scenes = sorted(SCENE.glob("*.jpg")) if SCENE.is_dir() else []
    if scenes:
        with Image.open(scenes[3]) as image:
            resized = image.convert("RGB").resize((width, height), Image.Resampling.BICUBIC)
        srgb = np.asarray(resized, np.float32) / 255
    else:
        ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
        srgb = np.stack(
            [0.5 + 0.4 * np.sin(xs / 97 + k) * np.cos(ys / 131 - k) for k in range(3)], axis=-1
        )
    linear = srgb**2.2
    paths = []
    for name, stops in (("under", -1.0), ("over", 1.0)):
        exposed = np.clip(linear * 2.0**stops, 0, 1) ** (1 / 2.2)
        path = folder / f"{name}.jpg"
        Image.fromarray((exposed * 255 + 0.5).astype(np.uint8)).save(path, quality=92)
        paths.append(path)
    return paths[0], paths[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, nargs=2, default=[6000, 4000], metavar=("W", "H"))
    parser.add_argument("--method", default=None, help="fuse with --method NAME (default: pslpt)")
    parser.add_argument("extra", nargs="*", help="more fuse mef arguments, after --")
    args = parser.parse_args()

    from bench_engine import cpu_description  # benchmarks/ is on sys.path when run as a script

    cpu, features = cpu_description()
    print(f"CPU: {cpu}; vector features: {', '.join(features) or 'none listed'}")
    with tempfile.TemporaryDirectory(prefix="bench_camera_") as scratch:
        under, over = bracket(Path(scratch), *args.size)
        output = Path(scratch) / "fused.jpg"
        command = [sys.executable, "-m", "fusecli", "mef", str(under), str(over), "-o", str(output)]
        if args.method:
            command += ["--method", args.method]
        command += args.extra
        print(" ".join(["fuse", *command[3:]]), flush=True)
        start = time.perf_counter()
        subprocess.run(command, check=True, cwd=REPO)
        wall = time.perf_counter() - start
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    megapixels = args.size[0] * args.size[1] / 1e6
    print(
        f"{args.size[0]}x{args.size[1]} ({megapixels:.1f} MP): {wall:.1f} s wall, "
        f"{usage.ru_utime:.1f} s user, {usage.ru_stime:.1f} s kernel, "
        f"{usage.ru_minflt / 1e6:.1f} million minor page faults, "
        f"peak {usage.ru_maxrss / 1024**2:.2f} GB resident"
    )


if __name__ == "__main__":
    main()
