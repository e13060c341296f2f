"""`fuse batch` seconds per pair against the network's own seconds on the same pairs.

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/bench_batch.py --threads 1

Two folders are built in a temporary directory from ../shared/data: 256x256 MRI-PET pairs
(PNG, as published) and 1-megapixel exposure brackets (MEFB pairs resized to about 1000x1000
pixels, JPEG quality 95). For each, in one round after a warm-up pair:

* engine: the network's call alone (``fuse_tiled`` on the pairs' luminance, read beforehand),
  what a batch cannot go below;
* batch: ``fuse batch``'s job runner (reader and writer threads around the network);
* serial: the same jobs through ``fuse_files`` one after another (reading, fusing and writing
  in turn, as before the threads).

Prints seconds per pair and the ratio to the engine (the issue's target: batch within 1.10).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import torch
from bench_methods import cpu_name
from PIL import Image

from fusecli.cli.batch import _run, plan_batch
from fusecli.engine import fuse_tiled
from fusecli.io import image_files, read_image
from fusecli.pipeline import fuse_files, network_inputs, open_network
from fusecli.plugins import get_catalog

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def medical_pairs(folder: Path, count: int) -> None:
    """The first ``count`` MRI-PET pairs, copied as they are (256x256 PNG)."""
    source = DATA / "mmf" / "mri-pet"
    for path in image_files(source / "mri")[:count]:
        for role in ("mri", "pet"):
            (folder / role).mkdir(parents=True, exist_ok=True)
            shutil.copy(source / role / path.name, folder / role / path.name)


def megapixel_brackets(folder: Path, count: int) -> None:
    """The first ``count`` MEFB pairs resized to about one megapixel, as JPEG."""
    source = DATA / "mef" / "mefb"
    for path in image_files(source / "under")[:count]:
        for role in ("under", "over"):
            image = Image.open(source / role / path.name).convert("RGB")
            scale = (1e6 / (image.width * image.height)) ** 0.5
            size = (round(image.width * scale), round(image.height * scale))
            (folder / role).mkdir(parents=True, exist_ok=True)
            image.resize(size, Image.LANCZOS).save(folder / role / path.name, quality=95)


def measure(folder: Path, task: str, work: Path) -> dict[str, float]:
    """Seconds per pair: engine, batch (overlapped), serial."""
    catalog = get_catalog()
    spec = catalog.get(task).spec
    device = torch.device("cpu")
    work.mkdir(parents=True, exist_ok=True)
    jobs = plan_batch(folder, work / "plan", catalog, task=task).jobs
    net, _ = open_network(spec, None, device)
    # Warm-up: weights loaded, allocator and caches filled, on the first pair.
    fuse_files(spec, jobs[0].sources, work / "warm.png", device=device, overwrite=True)
    luma = [network_inputs(spec, [read_image(p).pixels for p in job.sources]) for job in jobs]
    start = time.perf_counter()
    with torch.inference_mode():
        for sources in luma:
            fuse_tiled(net, sources, spec.faf_set)
    engine = time.perf_counter() - start

    start = time.perf_counter()
    out = work / "batch"
    jobs = plan_batch(folder, out, catalog, task=task).jobs
    summary = _run(jobs, catalog, None, device, None, False, True, 0, 1)
    batch = time.perf_counter() - start
    assert len(summary.done) == len(jobs), summary.failed

    start = time.perf_counter()
    for job in plan_batch(folder, work / "serial", catalog, task=task).jobs:
        job.output.parent.mkdir(parents=True, exist_ok=True)
        fuse_files(spec, job.sources, job.output, device=device, overwrite=True)
    serial = time.perf_counter() - start
    count = len(jobs)
    return {"engine": engine / count, "batch": batch / count, "serial": serial / count}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--medical", type=int, default=8, help="256x256 MRI-PET pairs")
    parser.add_argument("--brackets", type=int, default=2, help="1-megapixel MEFB brackets")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"CPU: {cpu_name()}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print("| pairs | count | engine s/pair | batch s/pair | batch/engine | serial s/pair | "
          "serial/engine |")  # fmt: skip
    print("| --- | --- | --- | --- | --- | --- | --- |")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        sets = [
            ("256x256 MRI-PET", "mmf", medical_pairs, args.medical),
            ("1 MP MEFB brackets", "mef", megapixel_brackets, args.brackets),
        ]
        for name, task, build, count in sets:
            if not count:
                continue
            folder = work / task
            build(folder, count)
            seconds = measure(folder, task, work / f"{task}-out")
            engine = seconds["engine"]
            print(
                f"| {name} | {count} | {engine:.2f} | {seconds['batch']:.2f} | "
                f"{seconds['batch'] / engine:.2f} | {seconds['serial']:.2f} | "
                f"{seconds['serial'] / engine:.2f} |"
            )


if __name__ == "__main__":
    main()
