"""Does the HTML comparison report stay usable with 100 images? (issue 21)

    nice -n 10 python benchmarks/bench_report.py                  # 100 RoadScene pairs
    python benchmarks/bench_report.py --pairs 20 --methods average  # a quick look

What a user runs, timed step by step: `fuse batch PAIRS -o OUT --method M1,M2` on the first
``--pairs`` infrared/visible pairs of RoadScene (../shared/data), `fuse eval PAIRS OUT --report`,
then headless Chromium (Debian's package) on the report: a screenshot (start to PNG), and, in a
copy of the report with a small timing script appended, how long sorting the table by each
column takes and how many full-size images the page fetched before any was opened (it should be
none: thumbnails are embedded, full images load on demand). Prints one table; the CPU is named.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_methods import cpu_name

REPO = Path(__file__).resolve().parent.parent
DATA = REPO.parent / "shared" / "data" / "ivf" / "roadscene"
FUSE = [sys.executable, "-m", "fusecli"]
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"]

# Appended to a copy of the report: sorts by every column twice, counts the images the page
# requested, and writes the figures into the title, which --dump-dom prints.
TIMING_SCRIPT = """<script>
window.addEventListener('load', () => {
  const heads = Array.from(document.querySelectorAll('#metrics th'));
  const start = performance.now();
  heads.forEach(th => { th.click(); th.click(); });
  const sortMs = (performance.now() - start) / (2 * heads.length);
  const fetched = performance.getEntriesByType('resource')
    .filter(e => e.initiatorType === 'img').length;
  document.title = `timing sort_ms=${sortMs.toFixed(1)} images_fetched=${fetched} ` +
    `rows=${document.querySelectorAll('#metrics tbody tr').length}`;
});
</script>"""


def make_pairs(folder: Path, count: int) -> int:
    """Link the first ``count`` RoadScene pairs as PAIRS/ir/NAME and PAIRS/vi/NAME."""
    names = sorted(p.name for p in (DATA / "ir").iterdir())[:count]
    for role in ("ir", "vi"):
        (folder / role).mkdir(parents=True)
        for name in names:
            (folder / role / name).symlink_to(DATA / role / name)
    return len(names)


def timed(command: list[str], what: str) -> float:
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"error: {what} failed: {done.stderr.strip()[-400:]}")
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=int, default=100)
    parser.add_argument("--methods", default="average,laplacian")
    parser.add_argument("--keep", type=Path, default=None, help="keep the files in this folder")
    args = parser.parse_args()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not DATA.is_dir():
        raise SystemExit(f"error: {DATA} is missing (the shared datasets)")
    if chromium is None:
        raise SystemExit("error: Chromium is not installed (Debian: apt-get install chromium)")

    root = Path(args.keep or tempfile.mkdtemp(prefix="bench-report-"))
    pairs, out, report = root / "pairs", root / "out", root / "report.html"
    count = make_pairs(pairs, args.pairs)
    batch_s = timed([*FUSE, "-q", "batch", str(pairs), "-o", str(out), "--task", "ivf",
                     "--method", args.methods], "fuse batch")  # fmt: skip
    eval_s = timed([*FUSE, "-q", "eval", str(pairs), str(out), "--report", str(report)],
                   "fuse eval")  # fmt: skip
    shot = root / "shot.png"
    screenshot_s = timed([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={root / 'profile'}",
                          f"--screenshot={shot}", "--window-size=1200,1400", report.as_uri()],
                         "chromium --screenshot")  # fmt: skip
    timing_page = root / "report-timing.html"
    timing_page.write_text(report.read_text().replace("</body>", TIMING_SCRIPT + "</body>"))
    dom = subprocess.run(
        [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={root / 'profile'}",
         "--virtual-time-budget=20000", "--dump-dom", timing_page.as_uri()],
        capture_output=True, text=True, check=False, timeout=300,
    ).stdout  # fmt: skip
    found = re.search(r"<title>timing ([^<]*)</title>", dom)
    timing = dict(item.split("=") for item in found.group(1).split()) if found else {}

    methods = args.methods.split(",")
    print(f"CPU: {cpu_name()}; {count} RoadScene pairs, methods {', '.join(methods)}")
    print("| step | figure |\n| --- | --- |")
    print(f"| fuse batch ({count * len(methods)} results) | {batch_s:.1f} s |")
    print(f"| fuse eval --report | {eval_s:.1f} s |")
    print(f"| report size | {report.stat().st_size / 1e6:.2f} MB |")
    print(f"| Chromium: start to screenshot | {screenshot_s:.1f} s |")
    print(f"| table rows | {timing.get('rows', '?')} |")
    print(f"| sorting by one column | {timing.get('sort_ms', '?')} ms |")
    fetched = timing.get("images_fetched", "?")
    print(f"| full-size images fetched before one is opened | {fetched} |")
    if args.keep is None:
        shutil.rmtree(root)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
