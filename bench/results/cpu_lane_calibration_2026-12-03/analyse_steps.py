"""Between-process CVs of step CPU time and of the step/calibration ratio over the first 10, 20, 30 measured steps."""

import json
import statistics as st
import sys

rows = json.load(open(sys.argv[1]))


def cv(x):
    return st.stdev(x) / st.fmean(x)


def rel(steps, cal):
    return [s / (sum(cal[max(0, i - 1) : i + 1]) / len(cal[max(0, i - 1) : i + 1])) for i, s in enumerate(steps)]


for n, procs in rows.items():
    out = {}
    for m in (10, 20, 30):
        out[f"step{m}"] = cv([st.fmean(c["step_cpu_ms"][2 : 2 + m]) for c in procs])
        out[f"rel{m}"] = cv([st.fmean(rel(c["step_cpu_ms"], c["ms"])[2 : 2 + m]) for c in procs])
        out[f"relsum{m}"] = cv([sum(c["step_cpu_ms"][2 : 2 + m]) / sum(c["ms"][2 : 2 + m]) for c in procs])
    out["within_rel"] = st.fmean([cv(rel(c["step_cpu_ms"], c["ms"])[2:]) for c in procs])
    print(f"{n:28s}", " ".join(f"{k} {v:.2%}" for k, v in out.items()))
