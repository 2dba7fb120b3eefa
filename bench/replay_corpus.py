"""Corpus replay (issue 12 acceptance): the vLLM-Omni nightly corpus, night by night, through the real CLI.

    .venv/bin/python bench/replay_corpus.py                    # full replay, prints the tables
    .venv/bin/python bench/replay_corpus.py --quick 8          # the first 8 nights only
    .venv/bin/python bench/replay_corpus.py --json out.json --keep-db /tmp/replay.db --docs

Each night (a Buildkite build folder or a local manual_* folder, at its earliest file time) goes into a fresh
SQLite store with GUARDRAIL_NOW set to that time: `guardrail ingest`, `guardrail check` on every run stored,
`guardrail changepoints --lane nightly`; the alerts are read from the store. The same series are then judged
by the hand-rolled rule users run today (10% worse than the file's baseline on 3 nights in a row) and by
Apache Otava 0.8.0 (defaults, own venv, on each series' full history), and all three are scored against the
ground truth in bench/replay_events.py.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from statistics import median
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from corpus_series import DEFAULT_CORPUS  # noqa: E402
from eval_methods import OtavaRunner, find_otava_python  # noqa: E402
from replay_events import GROUND_TRUTH, Night, corpus_nights, short_range, short_workload, ten_pct_alarms  # noqa: E402
from replay_score import Detection, score, summary_tables  # noqa: E402

VENV_PYTHON = ROOT / ".venv" / "bin" / "python"
PRODUCT = ("guardrail", "baselines")  # what decides the numbers (the policies live in baselines/)
DOC = ROOT / "docs" / "statistics.md"
BEGIN, END = "<!-- replay:begin -->", "<!-- replay:end -->"
LIST_AT_MOST = 3  # verdicts or alerts listed per cell; the rest as "+N more"


@dataclass
class NightLog:
    night: str
    folder: str
    at: str
    ingest_rc: int
    runs: list[int]
    ignored: list[dict[str, str]]  # ingest's {"file", "reason"} for files that are not results
    stored: list[tuple[str, str, str]] = field(default_factory=list)  # (file, hardware, workload) as ingested
    checks: dict[int, int] = field(default_factory=dict)  # run id -> exit code
    regressions: list[dict[str, Any]] = field(default_factory=list)
    improvements: list[dict[str, Any]] = field(default_factory=list)
    missing: dict[int, int] = field(default_factory=dict)  # run id -> missing verdicts
    changepoints_rc: int = 0
    new_alerts: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class Cli:
    """The guardrail CLI of a source tree (this checkout by default), run as a subprocess per call."""

    tree: Path = ROOT

    def __call__(self, args: list[str], *, now: str, db: str) -> tuple[int, Any]:
        env = {**os.environ, "GUARDRAIL_NOW": now, "PYTHONPATH": str(self.tree)}
        cmd = [str(VENV_PYTHON), "-m", "guardrail", *args, "--db", db]
        res = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=self.tree)
        try:
            return res.returncode, json.loads(res.stdout)
        except json.JSONDecodeError:
            sys.stderr.write(f"guardrail {' '.join(args)}: exit {res.returncode}\n{res.stderr[-2000:]}\n")
            return res.returncode, None

    def describe(self) -> str:
        """The code under test: the commit, and whether the product files differ from it."""
        git = ["git", "-C", str(self.tree)]
        head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
        if not head:
            return f"the tree at {self.tree} (not a git checkout)"
        dirty = subprocess.run([*git, "status", "--porcelain", "--", *PRODUCT], capture_output=True, text=True)
        changed = len(dirty.stdout.splitlines())
        return f"commit {head}" + (f" with {changed} uncommitted product files" if changed else "")


def metric_name(entry: dict[str, Any]) -> str:
    """An alert's metric entry names it "metric" today; guardrail.alerts/v1 (issue 12) calls it "name"."""
    return str(entry.get("metric") or entry.get("name"))


def read_alerts(db_path: Path) -> list[dict[str, Any]]:
    with sqlite3.connect(db_path) as con:
        con.row_factory = sqlite3.Row
        rows = con.execute(
            "SELECT a.id, a.kind, w.name AS workload, a.hardware, a.metrics, a.from_commit, a.to_commit, a.state,"
            " a.created_at, a.run_id FROM alerts a JOIN workloads w ON w.id = a.workload_id ORDER BY a.id"
        ).fetchall()
    return [{**dict(r), "metrics": json.loads(r["metrics"])} for r in rows]


def replay_night(night: Night, guardrail: Cli, db_path: Path, seen: dict[int, set[str]]) -> NightLog:
    now, db = night.at.isoformat(), f"sqlite:///{db_path}"
    rc, doc = guardrail(["ingest", "--branch", "main", str(night.path), "--output", "json"], now=now, db=db)
    doc = doc or {}
    log = NightLog(night.name, night.folder, now, rc, list(doc.get("run_ids", [])), list(doc.get("ignored", [])))
    log.stored = [(x["file"], x["hardware"], x["workload"]) for x in doc.get("stored", [])]
    for run_id in log.runs:
        rc, verdicts = guardrail(["check", "--run", str(run_id), "--format", "json"], now=now, db=db)
        log.checks[run_id] = rc
        for v in (verdicts or {}).get("verdicts", []):
            row = {"run": run_id, **{k: v[k] for k in ("workload", "metric", "hardware", "change", "informational")}}
            if v["verdict"] == "regression":
                log.regressions.append(row)
            elif v["verdict"] == "improvement":
                log.improvements.append(row)
            elif v["verdict"] == "missing" and not v["informational"]:
                log.missing[run_id] = log.missing.get(run_id, 0) + 1
    log.changepoints_rc, _ = guardrail(["changepoints", "--lane", "nightly", "--format", "json"], now=now, db=db)
    for a in read_alerts(db_path):
        names = {metric_name(x) for x in a["metrics"]}
        if a["id"] not in seen:
            log.new_alerts.append(a)
        elif names - seen[a["id"]]:  # an alert that gained metrics tonight: those are tonight's detections
            gained = [x for x in a["metrics"] if metric_name(x) not in seen[a["id"]]]
            log.new_alerts.append({**a, "metrics": gained, "gained": True})
        seen[a["id"]] = seen.get(a["id"], set()) | names
    return log


def replay(nights: list[Night], guardrail: Cli, db_path: Path) -> list[NightLog]:
    db_path.unlink(missing_ok=True)
    logs: list[NightLog] = []
    seen: dict[int, set[str]] = {}  # alert id -> the metrics it named so far
    for night in nights:
        logs.append(replay_night(night, guardrail, db_path, seen))
        print(f"{night.name}: {len(logs[-1].runs)} runs, {len(logs[-1].new_alerts)} new alerts", file=sys.stderr)
    return logs


# ------------------------------------------------------------------------------- series for the other rules
@dataclass
class SeriesPoints:
    hardware: str
    workload: str
    metric: str
    direction: str
    nights: list[str] = field(default_factory=list)
    commits: list[str | None] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    baselines: list[float | None] = field(default_factory=list)


def store_series(db_path: Path, night_of_run: dict[int, str]) -> list[SeriesPoints]:
    """Every stored main-branch nightly series, one value per run (the median of its repeats), in run order."""
    with sqlite3.connect(db_path) as con:
        rows = con.execute(
            "SELECT s.id, w.name, s.hardware, s.metric, s.direction, r.id, c.sha, m.median"
            " FROM measurements m JOIN series s ON s.id = m.series_id JOIN results x ON x.id = m.result_id"
            " JOIN runs r ON r.id = x.run_id JOIN workloads w ON w.id = s.workload_id"
            " LEFT JOIN commits c ON c.id = r.commit_id"
            " WHERE r.lane = 'nightly' AND r.branch = 'main' ORDER BY s.id, r.started_at, r.id"
        ).fetchall()
    per_run: dict[int, dict[int, list[float]]] = defaultdict(dict)
    out: dict[int, SeriesPoints] = {}
    for sid, workload, hw, metric, direction, run_id, sha, value in rows:
        s = out.setdefault(sid, SeriesPoints(hw, workload, metric, direction))
        if run_id not in per_run[sid]:
            per_run[sid][run_id] = []
            s.nights.append(night_of_run.get(run_id, "?"))
            s.commits.append(sha)
        per_run[sid][run_id].append(float(value))
    for sid, s in out.items():
        s.values = [median(v) for v in per_run[sid].values()]
    return list(out.values())


def file_baseline_series(logs: list[NightLog], corpus: Path, labels: dict[str, str], directions) -> list[SeriesPoints]:
    """The series that carry a baseline in their own files (benchmark_params.baseline; a TTS file's
    `baseline`), one point per night, with that night's file baseline next to the value."""
    out: dict[tuple[str, str, str], SeriesPoints] = {}
    for log in logs:
        for path in sorted((corpus / log.folder).glob("*.json")):
            data = json.loads(path.read_text())
            hw = labels.get(str(path), "?")
            entries = data if isinstance(data, list) else [data]
            for e in entries:
                if not isinstance(e, dict):
                    continue
                if isinstance(e.get("result"), dict):  # a diffusion entry
                    workload = f"{e.get('test_name')}/{(e.get('benchmark_params') or {}).get('name')}"
                    values, base = e["result"], (e.get("benchmark_params") or {}).get("baseline") or {}
                    commit = e.get("commit_sha") or None
                else:  # a TTS bench object: its workload is the one ingest gave the file
                    workload, values, base, commit = (
                        labels.get(f"{path}#workload", "?"),
                        e,
                        e.get("baseline") or {},
                        None,
                    )
                for metric, ref in base.items():
                    v = values.get(metric)
                    if not isinstance(v, int | float) or not isinstance(ref, int | float):
                        continue
                    key = (hw, workload, metric)
                    direction = directions.get(key, "higher_is_better" if "throughput" in metric else "lower_is_better")
                    s = out.setdefault(key, SeriesPoints(hw, workload, metric, direction))
                    s.nights.append(log.night)
                    s.commits.append(commit)
                    s.values.append(float(v))
                    s.baselines.append(float(ref))
    return list(out.values())


def rule_detections(series: list[SeriesPoints]) -> list[Detection]:
    out = []
    for s in series:
        for first, _alarm in ten_pct_alarms(list(zip(s.values, s.baselines, strict=True)), s.direction):
            lo = s.commits[first - 1] if first > 0 else None
            out.append(Detection(s.hardware, s.workload, (s.metric,), s.nights[first], (lo, s.commits[first])))
    return out


def otava_detections(series: list[SeriesPoints], otava: OtavaRunner) -> list[Detection]:
    found = otava.change_points([s.values for s in series])
    out = []
    for s, idx in zip(series, found, strict=True):
        for i in idx:
            if 0 < i < len(s.values):
                out.append(
                    Detection(s.hardware, s.workload, (s.metric,), s.nights[i], (s.commits[i - 1], s.commits[i]))
                )
    return out


def guardrail_detections(logs: list[NightLog]) -> list[Detection]:
    """The guardrail's own: the causes of failing checks (regressions; missing baselines, which no change
    explains) on their night, and every new alert (its metrics, commit range and night). A check that exits 3
    (the run itself failed, e.g. a TTS bench with 0 completed requests) is shown per night, not scored."""
    out = []
    for log in logs:
        failing = {r for r, rc in log.checks.items() if rc == 1}
        for v in log.regressions:
            if v["run"] in failing and not v["informational"]:
                out.append(Detection(v["hardware"], v["workload"], (v["metric"],), log.night, None, source="check"))
        for run_id, n in log.missing.items():
            if run_id in failing:
                out.append(Detection("?", f"run {run_id}", (f"{n} missing",), log.night, None, source="missing"))
        for a in log.new_alerts:
            metrics = tuple(map(metric_name, a["metrics"]))
            rng = (a["from_commit"], a["to_commit"]) if a["from_commit"] else None
            out.append(
                Detection(
                    a["hardware"], a["workload"], metrics, log.night, rng, source=f"alert:{a['kind']}", ident=a["id"]
                )
            )
    return out


# ----------------------------------------------------------------------------------------------- report
def cell(items: list[str]) -> str:
    if not items:
        return "–"
    more = f" (+{len(items) - LIST_AT_MOST} more)" if len(items) > LIST_AT_MOST else ""
    return "; ".join(items[:LIST_AT_MOST]) + more


def verdict_item(v: dict[str, Any]) -> str:
    change = f"{100 * v['change']:+.1f}%" if v["change"] is not None else "?"
    return f"{short_workload(v['workload'])} · {v['metric']} · {change}"


def alert_item(a: dict[str, Any]) -> str:
    metrics = ", ".join(map(metric_name, a["metrics"][:3])) + (" …" if len(a["metrics"]) > 3 else "")
    what = f"alert {a['id']} gained" if a.get("gained") else a["kind"]
    return f"{what} {short_workload(a['workload'])} [{metrics}] {short_range(a['from_commit'], a['to_commit'])}"


def by_weight(verdicts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Headline metrics (latency, throughput, memory) before stage and queue ones, largest change first."""
    return sorted(verdicts, key=lambda v: (v["metric"].startswith("stage"), -abs(v["change"] or 0)))


def check_counts(logs: list[NightLog]) -> str:
    codes = [rc for lg in logs for rc in lg.checks.values()]
    on_regression = sum(
        1
        for lg in logs
        for run, rc in lg.checks.items()
        if rc == 1 and any(v["run"] == run and not v["informational"] for v in lg.regressions)
    )
    return (
        f"checks: {codes.count(1)} of {len(codes)} exit 1 ({on_regression} with a regression verdict, the others on"
        f" missing baselines only), {sum(1 for c in codes if c not in (0, 1))} exit 3 (the run itself failed)"
    )


def night_table(logs: list[NightLog]) -> str:
    lines = [
        "| night | folder | runs | checks failing (exit 1) | regression verdicts | improvements | new alerts |",
        "|---|---|---|---|---|---|---|",
    ]
    for log in logs:
        failing = [r for r, rc in log.checks.items() if rc == 1]
        other = [f"exit {rc}" for rc in log.checks.values() if rc not in (0, 1)]
        fail = f"{len(failing)}/{len(log.checks)}" + (f" ({', '.join(other)})" if other else "")
        missing = sum(log.missing.get(r, 0) for r in failing)
        if missing:
            fail += f", {missing} missing"
        regressions = cell([verdict_item(v) for v in by_weight(log.regressions)])
        improvements = cell([verdict_item(v) for v in by_weight(log.improvements)])
        alerts = cell([alert_item(a) for a in log.new_alerts])
        if log.ingest_rc or log.changepoints_rc:  # the CLI itself failed: say so where it shows
            alerts += f" (ingest exit {log.ingest_rc}, changepoints exit {log.changepoints_rc})"
        lines.append(
            f"| {log.at[:10]} | {log.night} | {len(log.runs)} | {fail} | {regressions} | {improvements} | {alerts} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    ap.add_argument("--keep-db", type=Path, default=None, help="write the store here (else a temp dir)")
    ap.add_argument("--quick", type=int, nargs="?", const=8, default=None, help="only the first N nights (8)")
    ap.add_argument("--json", type=Path, default=None, help="write the nights and the scores as JSON")
    ap.add_argument(
        "--otava-python",
        default="/tmp/otava-venv/bin/python",
        help="python of a venv with apache-otava 0.8.0, else $OTAVA_PYTHON or ~/.cache/guardrail-bench/otava-venv"
        " (none found: no Otava column)",
    )
    ap.add_argument("--docs", action="store_true", help="rewrite the replay section of docs/statistics.md")
    ap.add_argument("--tree", type=Path, default=ROOT, help="the source tree whose CLI to replay (e.g. a git archive)")
    ap.add_argument(
        "--rescore", type=Path, default=None, help="score the nights of an earlier --json (with its --keep-db)"
    )
    args = ap.parse_args(argv)

    from eval_verdicts import machine

    nights = corpus_nights(args.corpus)[: args.quick]
    with tempfile.TemporaryDirectory() as tmp:
        db_path = args.keep_db.resolve() if args.keep_db else Path(tmp) / "replay.db"
        if args.rescore:
            earlier = json.loads(args.rescore.read_text())
            code = earlier.get("code", "as in the earlier replay")
            logs = [NightLog(**x) for x in earlier["nights"]][: args.quick]
            for lg in logs:  # JSON keys are strings
                lg.checks = {int(k): v for k, v in lg.checks.items()}
                lg.missing = {int(k): v for k, v in lg.missing.items()}
        else:
            code = Cli(args.tree.resolve()).describe()
            logs = replay(nights, Cli(args.tree.resolve()), db_path)
        night_of_run = {r: log.night for log in logs for r in log.runs}
        stored = store_series(db_path, night_of_run)
    labels = {f: hw for lg in logs for f, hw, _ in lg.stored} | {
        f"{f}#workload": w for lg in logs for f, _, w in lg.stored
    }
    directions = {(s.hardware, s.workload, s.metric): s.direction for s in stored}
    baselined = file_baseline_series(logs, args.corpus, labels, directions)
    otava = OtavaRunner(find_otava_python(args.otava_python, install=False))
    methods = {"guardrail": guardrail_detections(logs), "10% x 3 nights": rule_detections(baselined)}
    if otava.available:
        methods[f"Otava {otava.version}"] = otava_detections(stored, otava)
    scores = {name: score(GROUND_TRUTH, d) for name, d in methods.items()}

    head = (
        f"Machine and date: {machine()}. Code: {code}.\n\n"
        f"Command: `.venv/bin/python bench/replay_corpus.py{' --quick ' + str(args.quick) if args.quick else ''}`; "
        f"{len(logs)} nights, {sum(len(lg.runs) for lg in logs)} runs, {len(stored)} stored series "
        f"({len(baselined)} with a file baseline); {check_counts(logs)}.\n\nOtava: "
        + (
            f"apache-otava {otava.version}, defaults (window 50, p 0.001), each series' full history"
            if otava.available
            else "NOT AVAILABLE"
        )
        + "."
    )
    ignored = sorted({f"{Path(x['file']).name} ({x.get('reason')})" for lg in logs for x in lg.ignored})
    head += f"\n\nIgnored by ingest: {', '.join(ignored) if ignored else 'nothing'}."
    if args.rescore:
        head += f" (Re-scored from {args.rescore.name}, the nights of an earlier replay.)"
    text = "\n\n".join([head, "#### Per night (guardrail)", night_table(logs), summary_tables(GROUND_TRUTH, scores)])
    print(text)
    if args.json:
        args.json.write_text(
            json.dumps({"code": code, "nights": [asdict(lg) for lg in logs], "scores": scores}, indent=1, default=str)
        )
    if args.docs:
        write_docs(text)
    return 0


def write_docs(text: str) -> None:
    doc = DOC.read_text()
    section = f"{BEGIN}\n<!-- generated by `bench/replay_corpus.py --docs`; do not edit by hand -->\n\n{text}\n{END}"
    if BEGIN in doc and END in doc:
        doc = doc[: doc.index(BEGIN)] + section + doc[doc.index(END) + len(END) :]
    else:
        doc = doc.rstrip("\n") + "\n\n## Corpus replay (issue 12 acceptance)\n\n" + section + "\n"
    DOC.write_text(doc)


if __name__ == "__main__":
    raise SystemExit(main())
