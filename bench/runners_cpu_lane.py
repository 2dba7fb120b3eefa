"""Time the CPU tiny presubmit lane (the issue's < 3 min bound on the 2-core CI machine).

    python bench/runners_cpu_lane.py [--lane presubmit] [--out DIR]

Prints the machine (date, nproc, CPU model, load average), the lane's wall time and each fresh
process's wall time from the result files.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lane", default="presubmit")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    from runners import run_lane
    from runners.device import cpu_model

    out = Path(args.out or tempfile.mkdtemp(prefix="cpu-lane-"))
    print(
        f"date {datetime.now(UTC):%Y-%m-%dT%H:%M:%SZ}  nproc {os.cpu_count()}  cpu {cpu_model()}  "
        f"loadavg {os.getloadavg()[0]:.2f}"
    )
    t0 = time.perf_counter()
    files = run_lane(args.lane, device="cpu", scale="tiny", out_dir=out, progress=False)
    wall = time.perf_counter() - t0
    for f in files:
        r = json.loads(Path(f).read_text())
        print(f"{r['workload']['name']:32s} {r['status']:6s} process wall s {r['extra']['process_wall_s']}")
    print(f"lane {args.lane}: {len(files)} workloads, {wall:.1f} s wall  (loadavg after {os.getloadavg()[0]:.2f})")


if __name__ == "__main__":
    main()
