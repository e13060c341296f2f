"""Runs inside the benchmark virtualenv (benchmarks/.venv), never in fusecli's own.

    python tools_runner.py version DISTRIBUTION     # prints the installed version
    python tools_runner.py mertens JOBS.json        # OpenCV Mertens exposure fusion

JOBS.json: {"weights": [contrast, saturation, exposure], "jobs": [{"sources": [...],
"output": "..."}]}. Each output is a 16-bit PNG of the fused image clipped to [0, 1]; the card
quantises it to 8 bits like every other method's result.
"""

from __future__ import annotations

import json
import sys
from importlib.metadata import version
from pathlib import Path


def mertens(listing: str) -> None:
    import cv2
    import numpy as np

    spec = json.loads(Path(listing).read_text())
    contrast, saturation, exposure = spec["weights"]
    merge = cv2.createMergeMertens(contrast, saturation, exposure)
    for job in spec["jobs"]:
        images = [cv2.imread(path, cv2.IMREAD_COLOR) for path in job["sources"]]
        if any(image is None for image in images):
            raise SystemExit(f"could not read {job['sources']}")
        fused = np.clip(merge.process(images), 0.0, 1.0)
        if not cv2.imwrite(job["output"], np.round(fused * 65535.0).astype(np.uint16)):
            raise SystemExit(f"could not write {job['output']}")


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "version":
        print(version(argv[1]))
        return 0
    if len(argv) == 2 and argv[0] == "mertens":
        mertens(argv[1])
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
