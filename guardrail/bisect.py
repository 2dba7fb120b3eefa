"""`guardrail bisect`: find the commit of a range that made a workload slower, with the guardrail's own statistics.

The range is the first-parent history from the good commit to the bad one, read from git in a checkout. Each
pass reads what the store holds at the range's commits (lane `bisect`, this workload, this hardware), asks the
pure decision (guardrail.analysis.bisection.decide) for the next action, stores it as a step, and carries it
out through a dispatcher: `print` (the commands for a human), `local` (a command template run in a temporary
worktree at the commit, its result files ingested with lane `bisect`), `github` (a workflow_dispatch) or
`buildkite` (a new build). Results of dispatched CI jobs arrive through `guardrail ingest` like any other;
running the same `guardrail bisect` again resumes the stored bisection from them (docs/bisect.md).
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from guardrail import clock
from guardrail.analysis.bisection import Action, Config, Observed, decide, spent_minutes, steps_left
from guardrail.errors import InfraError, InputError, NotFound
from guardrail.store.models import Alert, Bisection, BisectionStep, Commit, Measurement, Result, Run, Series, Workload

LANE = "bisect"
SCHEMA = "guardrail.bisection/v1"
DISPATCHERS = ("print", "local", "github", "buildkite")
FAILED = ("infra_error", "timeout", "failed")  # never read as performance: the commit is skipped
# The default `--dispatch local` command, run in a worktree at the commit (placeholders: docs/bisect.md).
LOCAL_TEMPLATE = (
    "{python} -m guardrail run --lane {lane} --workload {workload} --workloads-dir {checkout}/workloads"
    " --scale {scale} --repeats {repeats} --commit {sha} --out {out} --quiet"
)


# --- the range -------------------------------------------------------------------------------------------------


def _git(repo: Path, *args: str) -> str:
    try:
        proc = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=120)
    except FileNotFoundError:
        raise InfraError("git is not installed") from None
    if proc.returncode != 0:
        raise subprocess.CalledProcessError(proc.returncode, args, proc.stdout, proc.stderr)
    return proc.stdout.strip()


def _resolve(repo: Path, sha: str, flag: str) -> str:
    try:
        return _git(repo, "rev-parse", "--verify", "--quiet", f"{sha}^{{commit}}")
    except subprocess.CalledProcessError:
        raise InputError(f"unknown commit {sha!r} in {repo}", field=flag) from None


def commit_range(repo: Path, good: str, bad: str) -> list[str]:
    """The first-parent commits from `good` to `bad`, both included, oldest first (`git rev-list --first-parent`).

    Bad input (exit 2): not a git checkout, an unknown SHA, good == bad, good not on bad's first-parent history.
    """
    if not (repo / ".git").exists() and not repo.is_dir():
        raise InputError("not a directory", field="--repo")
    try:
        _git(repo, "rev-parse", "--git-dir")
    except subprocess.CalledProcessError:
        raise InputError(f"{repo} is not a git checkout", field="--repo") from None
    g, b = _resolve(repo, good, "--good"), _resolve(repo, bad, "--bad")
    if g == b:
        raise InputError(f"good and bad are the same commit ({g[:12]})", field="--good")
    inside = _git(repo, "rev-list", "--first-parent", "--reverse", f"{g}..{b}").split()
    parent = _git(repo, "rev-parse", f"{inside[0]}^") if inside else None
    if not inside or parent != g:
        raise InputError(f"{g[:12]} is not on the first-parent history of {b[:12]}", field="--good")
    return [g, *inside]


# --- what the store holds --------------------------------------------------------------------------------------


@dataclass
class CommitData:
    metrics: dict[str, tuple[str, list[list[float]]]] = field(default_factory=dict)  # name -> (direction, repeats)
    failures: int = 0
    infra_failures: int = 0
    minutes: float = 0.0


def _minutes(extra: Mapping[str, Any]) -> float:
    """Device minutes of one result: its processes' wall times (runners), or its command's (command engine)."""
    walls = extra.get("process_wall_s")
    if isinstance(walls, list):
        return sum(float(w) for w in walls if isinstance(w, int | float)) / 60.0
    cmd = extra.get("command")
    if isinstance(cmd, Mapping) and isinstance(cmd.get("wall_s"), int | float):
        return float(cmd["wall_s"]) / 60.0
    return float(extra["wall_s"]) / 60.0 if isinstance(extra.get("wall_s"), int | float) else 0.0


def observe(session: Session, commits: Sequence[str], workload: str, hardware: str | None) -> dict[int, CommitData]:
    """Position -> what lane `bisect` holds for `workload` at that commit (every metric's repeats, failures, cost)."""
    pos = {sha: i for i, sha in enumerate(commits)}
    q = (
        select(Result.id, Result.status, Result.extra, Commit.sha)
        .join(Run, Result.run_id == Run.id)
        .join(Commit, Run.commit_id == Commit.id)
        .join(Workload, Result.workload_id == Workload.id)
        .where(Run.lane == LANE, Workload.name == workload, Commit.sha.in_(list(commits)))
        .order_by(Result.id)
    )
    if hardware:
        # a command that failed never said what it ran on ("external"): its failure still counts at the commit
        q = q.where(Run.hardware.in_([hardware, "external"]))
    out: dict[int, CommitData] = {}
    ok_at: dict[int, int] = {}
    for rid, status, extra, sha in session.execute(q):
        d = out.setdefault(pos[sha], CommitData())
        d.minutes += _minutes(extra or {})
        if status == "ok":
            ok_at[rid] = pos[sha]
        else:
            d.failures += 1
            d.infra_failures += status in ("infra_error", "timeout")
    if ok_at:
        rows = session.execute(
            select(Measurement.result_id, Series.metric, Series.direction, Measurement.samples)
            .join(Series, Measurement.series_id == Series.id)
            .where(Measurement.result_id.in_(list(ok_at)))
            .order_by(Measurement.result_id, Measurement.repeat_index)
        )
        import numpy as np  # lazily, as the store's own reads do

        for rid, metric, direction, samples in rows:
            d = out[ok_at[rid]]
            values = np.frombuffer(samples, dtype="<f8").tolist()
            d.metrics.setdefault(metric, (direction, []))[1].append(values)
    return out


def _pick_metric(data: Mapping[int, CommitData], n: int) -> str | None:
    """Without --metric: the metric stored at both ends whose median moved most between them."""
    import statistics

    ends = data.get(0), data.get(n - 1)
    if not ends[0] or not ends[1]:
        return None
    best: tuple[float, str] | None = None
    for name in sorted(set(ends[0].metrics) & set(ends[1].metrics)):
        meds = [statistics.median(v for rep in e.metrics[name][1] for v in rep) for e in ends]  # type: ignore[union-attr]
        if meds[0]:
            move = abs(meds[1] / meds[0] - 1.0)
            if best is None or move > best[0]:
                best = (move, name)
    return best[1] if best else None


def _observed(
    data: Mapping[int, CommitData], metric: str | None, extra_failures: Mapping[int, int]
) -> dict[int, Observed]:
    out = {}
    for p in set(data) | set(extra_failures):
        d = data.get(p, CommitData())
        reps = d.metrics.get(metric, ("", []))[1] if metric else []
        out[p] = Observed(repeats=reps, infra_failures=d.failures + extra_failures.get(p, 0), minutes=d.minutes)
    return out


# --- dispatchers -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    """One run to make: `repeats` repeats of `workload` at `sha` (position `position` of bisection `bisection_id`)."""

    bisection_id: int
    sha: str
    position: int
    workload: str
    repeats: int
    why: str


class Dispatcher(Protocol):
    name: str
    waits: bool  # True: results arrive later through `guardrail ingest` (CI); False: done on return

    def dispatch(self, req: Request) -> dict[str, Any]: ...


@dataclass
class PrintDispatcher:
    """No dispatch: the commands a human runs at the commit, printed (`say`)."""

    say: Callable[[str], None]
    lane: str
    scale: str
    repo: Path = Path(".")
    name: str = "print"
    waits: bool = True

    def dispatch(self, req: Request) -> dict[str, Any]:
        # `--run-at` is the local dispatcher for one commit: worktree, `guardrail run`, ingest as lane bisect.
        # The database is the same --db / $GUARDRAIL_DB (never printed: its URL may hold a password).
        cmds = [
            f"guardrail bisect --run-at {req.sha} --workload {shlex.quote(req.workload)} --lane {self.lane}"
            f" --scale {self.scale} --repeats {req.repeats} --repo {shlex.quote(str(self.repo))}",
        ]
        for c in cmds:
            self.say(f"    {c}")
        return {"commands": cmds}


@dataclass
class LocalDispatcher:
    """Runs the command template at the commit in a temporary worktree of `repo`, then ingests its result files
    with lane `bisect` (the run keeps its commit; the lane is relabelled so it never enters a lane's history)."""

    repo: Path
    db_url: str
    template: str
    lane: str
    scale: str
    say: Callable[[str], None]
    name: str = "local"
    waits: bool = False

    def dispatch(self, req: Request) -> dict[str, Any]:
        from guardrail.ingest import ingest

        got, failures, attempts, files_in = 0, 0, 0, 0
        with tempfile.TemporaryDirectory(prefix="guardrail-bisect-") as tmp:
            checkout = Path(tmp) / "checkout"
            try:
                _git(self.repo, "worktree", "add", "--detach", "--force", str(checkout), req.sha)
            except subprocess.CalledProcessError as exc:
                raise InfraError(
                    f"git worktree add at {req.sha[:12]} failed: {(exc.stderr or '').strip()[:300]}"
                ) from None
            try:
                # A command engine's run is one fresh process per invocation: invoke until the repeats are there.
                last_failed = False
                while got < req.repeats and attempts < req.repeats + 2:
                    attempts += 1
                    out = Path(tmp) / f"out{attempts}"
                    argv = self._argv(req, checkout, out, req.repeats - got)
                    env = {**os.environ, "GUARDRAIL_BISECT_CHECKOUT": str(checkout), "GUARDRAIL_BISECT_COMMIT": req.sha}
                    t0 = time.perf_counter()
                    proc = subprocess.run(argv, cwd=checkout, env=env, capture_output=True, text=True)
                    wall = time.perf_counter() - t0
                    files = _relabel(sorted(out.glob("*.json")) if out.is_dir() else [], req.sha)
                    last_failed = not files
                    if not files:
                        # `guardrail run` itself died (a workload's own failure still writes a result file):
                        # tried once more, then the commit counts as failed
                        failures += 1
                        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or [""]
                        self.say(f"    no result file after {wall:.1f} s (exit {proc.returncode}): {tail[0][:200]}")
                        if failures >= 2:
                            break
                        continue
                    files_in += len(files)
                    ingest(self.db_url, files)
                    ok = [f for f in files if json.loads(f.read_text()).get("status") == "ok"]
                    if len(ok) < len(files):
                        break  # a failed result is stored: the decision skips the commit
                    got += sum(_repeats_in(f) for f in ok)
            finally:
                subprocess.run(
                    ["git", "-C", str(self.repo), "worktree", "remove", "--force", str(checkout)],
                    capture_output=True,
                    check=False,
                )
        return {"invocations": attempts, "files": files_in, "repeats": got, "no_result": int(last_failed),
                "retried": failures}  # fmt: skip

    def _argv(self, req: Request, checkout: Path, out: Path, repeats: int) -> list[str]:
        values = {
            "python": shlex.quote(sys.executable),
            "lane": shlex.quote(self.lane),
            "workload": shlex.quote(req.workload),
            "checkout": shlex.quote(str(checkout)),
            "scale": shlex.quote(self.scale),
            "repeats": str(repeats),
            "sha": req.sha,
            "out": shlex.quote(str(out)),
        }
        try:
            return shlex.split(self.template.format(**values))
        except (KeyError, IndexError, ValueError) as exc:
            raise InputError(f"bad command template ({exc})", field="--command") from None


def run_at(
    repo: Path,
    db_url: str,
    sha: str,
    workload: str,
    *,
    repeats: int,
    lane: str,
    scale: str,
    template: str = LOCAL_TEMPLATE,
    say: Callable[[str], None] = lambda line: None,
) -> dict[str, Any]:
    """`guardrail bisect --run-at SHA`: one commit measured and stored as lane bisect, outside any bisection (what
    a CI job dispatched by a bisection, or a human following a printed plan, runs)."""
    full = _resolve(repo, sha, "--run-at")
    disp = LocalDispatcher(repo=repo, db_url=db_url, template=template, lane=lane, scale=scale, say=say)
    return {"commit": full, **disp.dispatch(Request(0, full, -1, workload, repeats, "run-at"))}


def _relabel(files: list[Path], sha: str) -> list[Path]:
    """Result files as lane `bisect` at `sha` (only guardrail.result/v1 files; anything else is left alone)."""
    out = []
    for f in files:
        try:
            doc = json.loads(f.read_text())
        except ValueError:
            continue
        if not isinstance(doc, dict) or doc.get("schema") != "guardrail.result/v1":
            continue
        doc["run"]["lane"] = LANE
        doc["run"].setdefault("source", {})["commit"] = sha
        f.write_text(json.dumps(doc))
        out.append(f)
    return out


def _repeats_in(path: Path) -> int:
    doc = json.loads(path.read_text())
    return max((len(m.get("repeats") or []) for m in doc.get("metrics") or []), default=0)


def _token(env_var: str, what: str) -> str:
    token = os.environ.get(env_var, "").strip()
    if not token:
        raise InputError(f"{what} needs a token in ${env_var}", field="--token-env")
    return token


@dataclass
class GitHubDispatcher:
    """`workflow_dispatch` of a workflow that runs the workload at the commit and ingests it with lane bisect."""

    repo: str  # owner/name
    workflow: str  # file name or id
    ref: str
    token_env: str = "GITHUB_TOKEN"
    api_url: str | None = None
    name: str = "github"
    waits: bool = True

    def dispatch(self, req: Request) -> dict[str, Any]:
        from guardrail.reports.github import DEFAULT_API_URL, HttpSender

        owner, _, name = self.repo.partition("/")
        if not owner or not name:
            raise InputError(f"must be OWNER/NAME, got {self.repo!r}", field="--github-repo")
        token = _token(self.token_env, "--dispatch github")
        body = {
            "ref": self.ref,
            # workflow_dispatch inputs are strings
            "inputs": {
                "commit": req.sha,
                "workload": req.workload,
                "repeats": str(req.repeats),
                "lane": LANE,
                "bisection": str(req.bisection_id),
            },
        }
        path = f"/repos/{owner}/{name}/actions/workflows/{self.workflow}/dispatches"
        headers = {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28"}
        with HttpSender(
            self.api_url or os.environ.get("GITHUB_API_URL") or DEFAULT_API_URL,
            token=token,
            service="GitHub",
            headers=headers,
        ) as http:
            resp = http.request("POST", path, json=body, retry_server_errors=False)  # a second POST = a second run
        return {"workflow": self.workflow, "ref": self.ref, "status": resp.status_code}


@dataclass
class BuildkiteDispatcher:
    """A new Buildkite build of the pipeline at the commit; the pipeline reads the GUARDRAIL_BISECT_* variables."""

    org: str
    pipeline: str
    branch: str
    token_env: str = "BUILDKITE_API_TOKEN"
    api_url: str = "https://api.buildkite.com"
    name: str = "buildkite"
    waits: bool = True

    def dispatch(self, req: Request) -> dict[str, Any]:
        from guardrail.reports.github import HttpSender

        token = _token(self.token_env, "--dispatch buildkite")
        body = {
            "commit": req.sha,
            "branch": self.branch,
            "message": f"guardrail bisect {req.bisection_id}: {req.workload} at {req.sha[:12]} ({req.why})",
            "env": {
                "GUARDRAIL_BISECT_COMMIT": req.sha,
                "GUARDRAIL_BISECT_WORKLOAD": req.workload,
                "GUARDRAIL_BISECT_REPEATS": str(req.repeats),
                "GUARDRAIL_BISECT_LANE": LANE,
                "GUARDRAIL_BISECT_ID": str(req.bisection_id),
            },
        }
        path = f"/v2/organizations/{self.org}/pipelines/{self.pipeline}/builds"
        with HttpSender(self.api_url, token=token, service="Buildkite") as http:
            resp = http.request("POST", path, json=body, retry_server_errors=False)
        build = resp.json() if resp.content else {}
        return {"build": build.get("number"), "url": build.get("web_url"), "status": resp.status_code}


# --- the bisection -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """What is bisected: the workload (and metric, hardware) between two commits, from flags or an alert."""

    workload: str
    good: str
    bad: str
    metric: str | None = None
    hardware: str | None = None
    lane: str = "nightly"  # the lane the workload runs in (`guardrail run --lane`)
    alert_id: int | None = None


def target_of_alert(session: Session, alert_id: int) -> Target:
    alert = session.get(Alert, alert_id)
    if alert is None:
        raise NotFound(f"no alert {alert_id}")
    if not alert.from_commit or not alert.to_commit:
        raise InputError(f"alert {alert_id} has no commit range (last good / first bad)", field="ALERT")
    metrics = [m for m in alert.metrics or [] if isinstance(m, dict) and m.get("metric")]
    worst = max(metrics, key=lambda m: abs(m.get("change") or 0.0), default=None)
    return Target(
        workload=alert.workload.name,
        good=alert.from_commit,
        bad=alert.to_commit,
        metric=worst["metric"] if worst else None,
        hardware=alert.hardware,
        lane=alert.lane,
        alert_id=alert.id,
    )


@dataclass
class Outcome:
    """What a `guardrail bisect` invocation ended with, and the document it prints (guardrail.bisection/v1)."""

    state: str  # culprit | stopped | running
    exit_code: int
    doc: dict[str, Any]


def _find_or_start(session: Session, t: Target, commits: list[str], dispatch: str, cfg: Config) -> Bisection:
    q = select(Bisection).where(
        Bisection.workload == t.workload,
        Bisection.good == commits[0],
        Bisection.bad == commits[-1],
        Bisection.state == "running",
    )
    q = q.where(Bisection.hardware == t.hardware) if t.hardware else q.where(Bisection.hardware.is_(None))
    for b in session.scalars(q.order_by(Bisection.id.desc())):
        if not t.metric or b.metric in ("", t.metric):
            return b
    b = Bisection(
        alert_id=t.alert_id,
        workload=t.workload,
        metric=t.metric or "",
        hardware=t.hardware,
        good=commits[0],
        bad=commits[-1],
        commits=commits,
        dispatch=dispatch,
        state="running",
        low=0,
        high=len(commits) - 1,
        budget_minutes=cfg.budget_minutes,
        spent_minutes=0.0,
        config=_cfg_dict(cfg),
        confidence={},
    )
    session.add(b)
    session.flush()
    return b


def _cfg_dict(cfg: Config) -> dict[str, Any]:
    return {k: getattr(cfg, k) for k in ("direction", "threshold", "alpha", "repeats", "max_looks", "max_infra")}


def _no_result_failures(b: Bisection) -> dict[int, int]:
    """Positions where a local run left no result file at all: counted as failures (they are not in the store)."""
    out: dict[int, int] = {}
    for s in b.steps:
        n = int((s.detail or {}).get("no_result") or 0)
        if s.position is not None and n:
            out[s.position] = out.get(s.position, 0) + n
    return out


def _repeats_at(obs: Mapping[int, Observed], p: int | None) -> int:
    o = obs.get(p) if p is not None else None
    return len(o.repeats) + o.infra_failures if o else 0


def _latest_run(b: Bisection, position: int | None) -> BisectionStep | None:
    """The newest run step at a position (its results may still be arriving)."""
    return next((s for s in reversed(b.steps) if s.action == "run" and s.position == position), None)


def _still_waiting(last: BisectionStep | None, a: Action, obs: Mapping[int, Observed]) -> bool:
    """The action repeats a dispatched (or printed) step whose results have not all arrived: no new dispatch.
    A failure that arrives ends the wait (the decision then skips the commit or tries an end again)."""
    if a.kind != "run" or last is None or last.action != "run" or last.position != a.position:
        return False
    if last.outcome not in ("dispatched", "printed"):
        return False
    o = obs.get(a.position) if a.position is not None else None
    reps, fails = (len(o.repeats), o.infra_failures) if o else (0, 0)
    d = last.detail or {}
    return fails == d.get("had_failures", 0) and reps < d.get("had_repeats", 0) + last.repeats


def _add_step(
    session: Session, b: Bisection, a: Action, obs: Mapping[int, Observed], outcome: str | None
) -> BisectionStep:
    at = obs.get(a.position) if a.position is not None else None
    step = BisectionStep(
        bisection_id=b.id,
        seq=len(b.steps) + 1,
        action=a.kind,
        position=a.position,
        sha=b.commits[a.position] if a.position is not None else None,
        why=a.why,
        repeats=a.repeats,
        outcome=outcome,
        readings={str(k): v for k, v in a.readings.items()},
        detail={
            "had": _repeats_at(obs, a.position),
            "had_repeats": len(at.repeats) if at else 0,
            "had_failures": at.infra_failures if at else 0,
            "low": a.low,
            "high": a.high,
            "confidence": a.confidence,
            "spent_minutes": round(spent_minutes(obs), 4),
        },
        created_at=clock.now(),
    )
    b.steps.append(step)
    session.flush()
    return step


def run_bisection(
    db_url: str,
    repo: Path,
    target: Target | int,
    *,
    dispatcher_for: Callable[[Target], Dispatcher],
    dispatch: str,
    cfg_for: Callable[[str, str], Config],
    say: Callable[[str], None] = lambda line: None,
    wait_s: float = 0.0,
    poll_s: float = 10.0,
    max_passes: int = 200,
) -> Outcome:
    """Bisect until a culprit, a stop, or a step that waits for CI results (then `running`, resumable)."""
    from guardrail.store.db import session_scope

    if isinstance(target, int):
        with session_scope(db_url) as s:
            target = target_of_alert(s, target)
    commits = commit_range(repo, target.good, target.bad)
    say(
        f"range {commits[0][:12]}..{commits[-1][:12]}: {len(commits) - 2} commit(s) between the ends "
        f"(first parent), at most {steps_left(0, len(commits) - 1)} midpoint(s)"
    )
    disp = dispatcher_for(target)
    deadline = time.monotonic() + wait_s
    passes = 0
    while True:
        with session_scope(db_url, write=True) as s:
            cfg0 = cfg_for(target.metric or "", "lower_is_better")
            b = _find_or_start(s, target, commits, dispatch, cfg0)
            data = observe(s, commits, target.workload, target.hardware)
            metric = b.metric or target.metric or _pick_metric(data, len(commits)) or ""
            if metric and not b.metric:
                b.metric = metric
            # Until both ends are measured the metric is provisional: any stored metric tells measured from not.
            metric = metric or min((m for d in data.values() for m in d.metrics), default="")
            direction = next((d.metrics[metric][0] for d in data.values() if metric in d.metrics), "lower_is_better")
            cfg = cfg_for(metric, direction) if metric else cfg0
            obs = _observed(data, metric, _no_result_failures(b))
            a = decide(len(commits), obs, cfg)
            b.spent_minutes = round(spent_minutes(obs), 4)
            b.config = _cfg_dict(cfg)  # what this pass judged with (a resumed bisection may be asked differently)
            b.low, b.high, b.updated_at = a.low, a.high, clock.now()
            last = b.steps[-1] if b.steps else None
            pending = _latest_run(b, a.position) if a.kind == "run" else None
            waiting = _still_waiting(pending, a, obs)
            if (
                a.kind == "run"
                and last is not None
                and last.action == "run"
                and last.position == a.position
                and last.outcome == "done"
                and (last.detail or {}).get("had") == _repeats_at(obs, a.position)
            ):
                raise InfraError(
                    f"the run at {commits[a.position or 0][:12]} added no result of {target.workload!r}"
                    + (f" on {target.hardware!r}" if target.hardware else "")
                    + " to the store (check --workload, --hardware and --command)"
                )
            if a.kind != "run":
                _add_step(s, b, a, obs, a.kind)
                b.state = "culprit" if a.kind == "culprit" else "stopped"
                b.stop_reason = a.stop
                b.culprit = commits[a.position] if a.kind == "culprit" and a.position is not None else None
                b.confidence = a.confidence
                _say_action(say, b, a)
                return Outcome(b.state, _exit_code(a, obs), document(b))
            todo: list[tuple[int, Request]] = []
            if waiting:
                assert pending is not None
                if time.monotonic() >= deadline:
                    say(
                        f"waiting for the results of step {pending.seq} at {(pending.sha or '?')[:12]}: "
                        "run the same command again once they are ingested (or pass --wait SECONDS)"
                    )
                    return Outcome("running", 0, document(b))
            else:
                actions = [a]
                bad_end = len(commits) - 1
                if a.position == 0 and disp.waits and bad_end not in obs and _latest_run(b, bad_end) is None:
                    # CI jobs take long: both ends go out together instead of one after the other
                    actions.append(Action("run", "verify the bad end", position=bad_end, repeats=a.repeats,
                                          low=a.low, high=a.high))  # fmt: skip
                for act in actions:
                    step = _add_step(s, b, act, obs, None)
                    _say_action(say, b, act)
                    pos = act.position or 0
                    todo.append((step.id, Request(b.id, commits[pos], pos, target.workload, act.repeats, act.why)))
            bid = b.id
        if not todo:  # waiting for dispatched results: a wait is not a pass
            time.sleep(max(0.0, min(poll_s, deadline - time.monotonic())))
            continue
        passes += 1
        if passes > max_passes:
            raise InfraError(f"bisection did not settle within {max_passes} steps")
        for step_id, req in todo:
            detail = disp.dispatch(req)
            with session_scope(db_url, write=True) as s:
                st = s.get(BisectionStep, step_id)
                assert st is not None
                st.outcome = "printed" if disp.name == "print" else "dispatched" if disp.waits else "done"
                st.detail = {**(st.detail or {}), **detail, "dispatch": disp.name}
        if disp.waits and time.monotonic() >= deadline:
            with session_scope(db_url) as s:
                bb = s.get(Bisection, bid)
                assert bb is not None
                if disp.name != "print":
                    say(
                        "dispatched; the results arrive through `guardrail ingest`: "
                        "run the same command again to continue"
                    )
                return Outcome("running", 0, document(bb))


def _exit_code(a: Action, obs: Mapping[int, Observed]) -> int:
    if a.kind == "culprit":
        return 0
    if a.stop == "infra":
        return 3
    if a.stop == "only_skipped":
        inside = [obs[p] for p in range(a.low + 1, a.high) if p in obs]
        if inside and all(not o.repeats for o in inside):
            return 3  # every commit in the range failed: nothing was ever measured
    return 1


def _pval(side: Mapping[str, Any]) -> str:
    p = side.get("p_value")
    ch = side.get("change")
    return f"{ch:+.1%} (p={p:.2g})" if isinstance(p, float) and isinstance(ch, float) else "?"


def _say_action(say: Callable[[str], None], b: Bisection, a: Action) -> None:
    sha = b.commits[a.position][:12] if a.position is not None else ""
    if a.kind == "run":
        say(
            f"step {len(b.steps)}: {a.why}: {a.repeats} repeat(s) at {sha} (position {a.position} of "
            f"{len(b.commits) - 1}; open range {a.low}..{a.high})"
        )
    elif a.kind == "culprit":
        c = a.confidence
        say(
            f"culprit {b.commits[a.position or 0]} (position {a.position}): against the good end "
            f"{_pval(c.get('culprit_vs_good') or {})}; its parent {b.commits[a.low][:12]} against the bad end "
            f"{_pval(c.get('parent_vs_bad') or {})}; {b.spent_minutes:.2f} device minutes"
        )
    else:
        say(
            f"stopped: {a.why}; open range {b.commits[a.low][:12]}..{b.commits[a.high][:12]} "
            f"(positions {a.low}..{a.high})"
        )


def document(b: Bisection) -> dict[str, Any]:
    """The bisection as guardrail.bisection/v1: the read model of the API, and `guardrail bisect --format json`."""
    return {
        "schema": SCHEMA,
        "id": b.id,
        "alert_id": b.alert_id,
        "workload": b.workload,
        "metric": b.metric,
        "hardware": b.hardware,
        "good": b.good,
        "bad": b.bad,
        "commits": list(b.commits),
        "dispatch": b.dispatch,
        "state": b.state,
        "stop_reason": b.stop_reason,
        "culprit": b.culprit,
        "confidence": b.confidence,
        "open_range": {"low": b.commits[b.low], "high": b.commits[b.high], "positions": [b.low, b.high]},
        "budget_minutes": b.budget_minutes,
        "spent_minutes": b.spent_minutes,
        "config": b.config,
        "steps": [
            {
                "seq": s.seq,
                "action": s.action,
                "position": s.position,
                "sha": s.sha,
                "why": s.why,
                "repeats": s.repeats,
                "outcome": s.outcome,
                "readings": s.readings,
                "detail": s.detail,
                "at": s.created_at.isoformat().replace("+00:00", "Z") if s.created_at else None,
            }
            for s in b.steps
        ],
    }
