"""Run the real Apache Otava change-point analysis on many series (executed inside Otava's own venv).

stdin: {"window_len": 50, "max_pvalue": 0.001, "min_magnitude": 0.0, "series": [[v, ...], ...]}
stdout: [[index, ...], ...]  (Otava's change point indices per series; an index is where the new level starts)
"""

import json
import sys

from otava.analysis import compute_change_points


def main() -> None:
    job = json.load(sys.stdin)
    out = []
    for values in job["series"]:
        if len(values) < 3:
            out.append([])
            continue
        cps, _ = compute_change_points(
            values,
            window_len=job.get("window_len", 50),
            max_pvalue=job.get("max_pvalue", 0.001),
            min_magnitude=job.get("min_magnitude", 0.0),
        )
        out.append([int(cp.index) for cp in cps])
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
