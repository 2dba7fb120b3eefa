"""Benchmark: stream-parse a ~50 MB JUnit file (~100,000 test cases) and group it into verdicts.

    python bench/bench_junit.py [--cases 100000] [--out /tmp/bench-junit.xml] [--tracemalloc]

Each measurement runs in a fresh subprocess so that peak RSS (``ru_maxrss``) belongs to it alone.
A 10x smaller file is measured too: flat memory means both peaks are about the same.
Figures are recorded in docs/flaky.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import subprocess
import sys
import time
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

_TRACE = """\
self = <tests.{mod}.{cls} object at 0x{addr:x}>
device = 'npu:{dev}', dtype = torch.{dtype}

    def {name}(self, device, dtype):
        pipe = self._pipeline(device, dtype, steps={steps})
        out = pipe(prompt="a cat on a red sofa", num_inference_steps={steps}, generator=self.gen)
>       torch.testing.assert_close(out.frames, self.reference, atol=1e-3, rtol=1e-3)
E       AssertionError: Tensor-likes are not close!
E
E       Mismatched elements: {bad} / {total} ({pct:.1f}%)
E       Greatest absolute difference: {diff:.6f} at index (0, {i}, {j}) (up to 0.001 allowed)
E       Greatest relative difference: {rdiff:.6f} at index (0, {i}, {j}) (up to 0.001 allowed)

/opt/ci/_work/{run}/repo/tests/{mod}.py:{line}: AssertionError
"""
_MESSAGES = [
    "AssertionError: Tensor-likes are not close! Mismatched elements: {bad} / {total} ({pct:.1f}%)",
    "RuntimeError: ACL stream synchronize failed, error code is 5070{dev}5",
    "TimeoutError: worker {dev} did not answer within 30.0s (pid {pid})",
    "torch.OutOfMemoryError: NPU out of memory. Tried to allocate {mib} MiB (NPU {dev}; 60.94 GiB total)",
    "ConnectionResetError: [Errno 104] Connection reset by peer: /tmp/pytest-of-ci/pytest-{run}/sock{dev}",
]
_LOG = "[I 2026-11-21 02:{mm:02d}:{ss:02d}.{ms:03d}] step {k}/{steps} latency {lat:.3f} ms on npu:{dev}\n"


def generate(path: Path, cases: int, seed: int = 7) -> int:
    """Write a realistic pytest-style JUnit file; returns the number of <testcase> elements."""
    rnd = random.Random(seed)
    n_files = max(1, cases // 100)
    written = 0
    with path.open("w", encoding="utf-8") as f:
        f.write('<?xml version="1.0" encoding="utf-8"?>\n<testsuites name="pytest tests">\n')
        f.write(
            f'<testsuite name="pytest" errors="0" failures="0" skipped="0" tests="{cases}" time="9999.0" '
            'timestamp="2026-11-21T02:00:00" hostname="npu-runner-07">\n'
            '<properties><property name="hardware" value="Ascend910B3"/></properties>\n'
        )
        i = 0
        while written < cases:
            mod = f"test_mod{i % n_files:04d}"
            cls = f"TestPipeline{(i // n_files) % 7}"
            name = f"test_case_{i:06d}"
            if i % 3 == 0:
                name += f"[{rnd.choice(['float16', 'bfloat16', 'float32'])}-{rnd.choice([256, 512, 1024])}]"
            cname = f"tests.{mod}.{cls}"
            t = rnd.lognormvariate(-1.5, 1.2)
            head = f'<testcase classname="{cname}" name={quoteattr(name)} time="{t:.3f}"'
            v = dict(
                mod=mod, cls=cls, name=name.split("[")[0], addr=rnd.getrandbits(44), dev=rnd.randrange(8),
                dtype="float16", steps=rnd.choice([4, 20, 50]), bad=rnd.randrange(1, 500), total=4096 * 64,
                pct=rnd.random(), diff=rnd.random(), rdiff=rnd.random(),
                i=rnd.randrange(64), j=rnd.randrange(64),
                run=rnd.randrange(10**6), line=rnd.randrange(20, 900), pid=rnd.randrange(1000, 60000),
                mib=rnd.randrange(100, 4000),
            )  # fmt: skip
            r = rnd.random()
            body = ""
            if r < 0.03:  # pytest-rerunfailures: earlier attempts as bare testcases, then the final one
                f.write(head + "/>\n")
                written += 1
                if written >= cases:
                    break
                msg = rnd.choice(_MESSAGES).format(**v)
                body = f"<failure message={quoteattr(msg)}>{escape(_TRACE.format(**v))}</failure>"
            elif r < 0.07:
                msg = rnd.choice(_MESSAGES).format(**v)
                body = f"<failure message={quoteattr(msg)}>{escape(_TRACE.format(**v))}</failure>"
            elif r < 0.08:
                msg = "failed on setup with " + rnd.choice(_MESSAGES).format(**v)
                body = f"<error message={quoteattr(msg)}>{escape(_TRACE.format(**v))}</error>"
            elif r < 0.11:
                body = '<skipped type="pytest.skip" message="needs 2 NPUs">tests/x.py:12: needs 2 NPUs</skipped>'
            elif r < 0.13:  # PyTorch-style in-process rerun, then a pass
                msg = rnd.choice(_MESSAGES).format(**v)
                body = f"<rerun message={quoteattr(msg)}>{escape(_TRACE.format(**v))}</rerun>"
            if rnd.random() < 0.53:
                lines = "".join(
                    _LOG.format(mm=k % 60, ss=k % 60, ms=k, k=k, steps=50, lat=rnd.uniform(90, 140), dev=v["dev"])
                    for k in range(rnd.randrange(4, 16))
                )
                body += f"<system-out>{escape(lines)}</system-out>"
            if rnd.random() < 0.1:
                body += f'<properties><property name="seed" value="{rnd.randrange(10**6)}"/></properties>'
            f.write(head + (f">{body}</testcase>\n" if body else "/>\n"))
            written += 1
            i += 1
        f.write("</testsuite>\n</testsuites>\n")
    return written


def measure(path: str, mode: str, use_tracemalloc: bool) -> dict:
    """Run in the child: parse (and group) ``path``; report time and peak memory."""
    import tracemalloc

    from guardrail.ingest.junit_verdicts import group_verdicts
    from guardrail.ingest.junit_xml import iter_junit

    if use_tracemalloc:
        tracemalloc.start()
    t0 = time.perf_counter()
    c0 = time.process_time()
    if mode == "parse":
        n = sum(1 for _ in iter_junit(path))
        verdicts = None
    else:
        records = list(iter_junit(path))
        n = len(records)
        t_parse = time.perf_counter() - t0
        verdicts = len(group_verdicts(records, head_commit="a" * 40, base_commit="b" * 40))
    elapsed = time.perf_counter() - t0
    out = {
        "mode": mode,
        "records": n,
        "verdicts": verdicts,
        "seconds": round(elapsed, 3),
        "cpu_seconds": round(time.process_time() - c0, 3),  # wall time suffers when the 2 cores are shared
        "load_avg_1m": os.getloadavg()[0],
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    if mode != "parse":
        out["parse_seconds"] = round(t_parse, 3)
    if use_tracemalloc:
        out["tracemalloc_peak_mib"] = round(tracemalloc.get_traced_memory()[1] / 2**20, 1)
    return out


def measure_flaky(n_verdicts: int, tests: int = 5000) -> dict:
    """assess() + flaky_report() over n synthetic verdicts (the Python side of `guardrail flaky`)."""
    from datetime import UTC, datetime, timedelta

    from guardrail.analysis.flaky_scores import HistoricVerdict, assess, flaky_report

    rnd = random.Random(3)
    now = datetime(2026, 11, 22, tzinfo=UTC)
    names = [f"tests/test_m{i % 500:03d}.py::test_{i}@Ascend910B3" for i in range(tests)]
    kinds = rnd.choices(["pass", "flaky", "fail", "skip"], [0.95, 0.02, 0.01, 0.02], k=n_verdicts)
    runs = n_verdicts // tests
    stamps = [now - timedelta(hours=6 * j) for j in range(runs)]
    hist = [
        HistoricVerdict(names[i], kinds[j * tests + i], stamps[j], f"c{j}", f"r{j}")
        for j in range(runs)
        for i in range(tests)
    ]
    t0 = time.perf_counter()
    doc = flaky_report(assess(hist, now=now))
    return {"verdicts": len(hist), "tests": tests, "seconds": round(time.perf_counter() - t0, 3),
            "summary": doc["summary"]}  # fmt: skip


def _child(path: str, mode: str, use_tracemalloc: bool) -> dict:
    cmd = [sys.executable, __file__, "--child", mode, "--out", path]
    if use_tracemalloc:
        cmd.append("--tracemalloc")
    res = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(res.stdout)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", type=int, default=100_000)
    ap.add_argument("--out", default="/tmp/bench-junit.xml")
    ap.add_argument("--tracemalloc", action="store_true")
    ap.add_argument("--verdicts", type=int, default=500_000, help="history size for the assess() timing")
    ap.add_argument("--child", choices=["parse", "group"])
    args = ap.parse_args()
    if args.child:
        print(json.dumps(measure(args.out, args.child, args.tracemalloc)))
        return

    big = Path(args.out)
    small = big.with_name(big.stem + "-small.xml")
    t0 = time.perf_counter()
    n = generate(big, args.cases)
    gen_s = time.perf_counter() - t0
    generate(small, args.cases // 10)
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor())  # fmt: skip
    report = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "file_mib": round(big.stat().st_size / 2**20, 1),
        "testcases": n,
        "generate_seconds": round(gen_s, 2),
        "small_file_mib": round(small.stat().st_size / 2**20, 1),
        "parse_small": _child(str(small), "parse", False),
        "parse": _child(str(big), "parse", False),
        "parse_and_group": _child(str(big), "group", False),
    }
    report["flaky_assess"] = measure_flaky(args.verdicts)
    if args.tracemalloc:
        report["parse_tracemalloc"] = _child(str(big), "parse", True)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
