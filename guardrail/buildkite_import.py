"""`guardrail import buildkite`: history that already exists on Buildkite, read through its REST API and ingested.

For each build of a pipeline created since a date (GET /v2/organizations/{org}/pipelines/{pipeline}/builds,
paged by the Link header), each job's artifacts are listed (…/builds/{number}/jobs/{job}/artifacts) and the
result files among them (vLLM-Omni's `diffusion_result_*.json` and `result_*.json` by default) downloaded
(…/artifacts/{id}/download answers 302 to the storage URL, fetched without our token). One build is one
ingest (one transaction); the build number is the run's CI run id, so a second import stores nothing new.

The token (from $BUILDKITE_API_TOKEN) travels only in the Authorization header to the API host and is
scrubbed from every message. 429 and 5xx answers and dropped connections are retried with backoff
(RateLimit-Reset / Retry-After honoured); any other 4xx is not: 401 and 403 are exit 3, 404 exit 2.
"""

from __future__ import annotations

import fnmatch
import random
import re
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import quote, urlsplit

import httpx

from guardrail.errors import InfraError, InputError

DEFAULT_API = "https://api.buildkite.com"
RESULT_FILES = ("diffusion_result_*.json", "result_*.json")
PER_PAGE = 100  # the API's largest page
MAX_ARTIFACT_BYTES = 64 * 1024 * 1024
_LINK = re.compile(r'<([^>]+)>\s*;\s*rel="?([^";]+)"?')


@dataclass(frozen=True)
class Retry:
    attempts: int = 5
    base_delay: float = 1.0
    max_delay: float = 30.0
    max_wait: float = 120.0  # a rate-limit reset further away than this fails instead of sleeping
    timeout: float = 60.0


def _scrub(text: str, token: str | None) -> str:
    return " ".join((text.replace(token, "***") if token else text).split())


def next_link(header: str | None) -> str | None:
    """The rel="next" URL of a Link header, if any."""
    for url, rel in _LINK.findall(header or ""):
        if "next" in rel.split():
            return url
    return None


def _wait_for(resp: httpx.Response) -> float | None:
    """Seconds a 429 asks for: Buildkite's RateLimit-Reset (seconds to the next window), or Retry-After."""
    for name in ("ratelimit-reset", "retry-after"):
        value = resp.headers.get(name)
        if value:
            try:
                return max(0.0, float(value))
            except ValueError:
                continue
    return None


class BuildkiteAPI:
    """The few REST calls the import needs, with bounded retries; every failure is one line without the token."""

    def __init__(
        self,
        api: str,
        token: str,
        *,
        retry: Retry | None = None,
        sleep: Callable[[float], None] = time.sleep,
        transport: httpx.BaseTransport | None = None,
    ):
        parts = urlsplit(api)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InputError(f"must be an http(s) URL, got {api!r}", field="--api")
        if parts.scheme == "http" and parts.hostname not in ("127.0.0.1", "localhost", "::1"):
            # The token would cross the network in clear text; plain http is for a server on this machine.
            raise InputError("must be https (plain http only to this machine)", field="--api")
        self.base = api.rstrip("/")
        self._token = token
        self.retry = retry or Retry()
        self._sleep = sleep
        self.requests = 0
        self.retries = 0
        self._client = httpx.Client(
            headers={"Authorization": f"Bearer {token}", "User-Agent": "perf-guardrail"},
            timeout=self.retry.timeout,
            transport=transport,
            follow_redirects=False,
        )
        # Storage URLs (an artifact's 302 target) get a client that carries no credentials at all.
        self._plain = httpx.Client(
            headers={"User-Agent": "perf-guardrail"}, timeout=self.retry.timeout, transport=transport
        )

    def close(self) -> None:
        self._client.close()
        self._plain.close()

    def __enter__(self) -> BuildkiteAPI:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _url(self, path_or_url: str) -> str:
        if not path_or_url.startswith(("http://", "https://")):
            return f"{self.base}/{path_or_url.lstrip('/')}"
        there, here = urlsplit(path_or_url), urlsplit(self.base)
        # Links come from the server's answers: the token goes to the API host only, never elsewhere.
        if (there.scheme, there.netloc) != (here.scheme, here.netloc):
            raise InfraError("Buildkite API: refusing to send the token to a link on another host or scheme")
        return path_or_url

    def _fail(self, url: str, resp: httpx.Response | None, detail: str) -> NoReturn:
        text = _scrub(f"Buildkite API GET {urlsplit(url).path}: {detail}", self._token)
        code = resp.status_code if resp is not None else None
        if code is not None and 400 <= code < 500 and code not in (401, 403, 429):
            raise InputError(text)
        raise InfraError(text)

    def _backoff(self, attempt: int, wait: float | None) -> None:
        self.retries += 1
        if wait is None:
            delay = min(self.retry.max_delay, self.retry.base_delay * 2 ** (attempt - 1))
            wait = delay * (0.5 + random.random() / 2)  # jitter: parallel importers must not retry in step
        self._sleep(min(wait, self.retry.max_wait))

    def get(self, path_or_url: str, params: Mapping[str, Any] | None = None) -> httpx.Response:
        url = self._url(path_or_url)
        for attempt in range(1, self.retry.attempts + 1):
            last = attempt == self.retry.attempts
            self.requests += 1
            try:
                resp = self._client.get(url, params=params)
            except httpx.TransportError as exc:  # a GET is safe to repeat
                if last:
                    self._fail(url, None, f"{type(exc).__name__} after {attempt} attempts")
                self._backoff(attempt, None)
                continue
            code = resp.status_code
            if code < 400:
                return resp
            if code == 429:
                wait = _wait_for(resp)
                if last or (wait is not None and wait > self.retry.max_wait):
                    after = f"; RateLimit-Reset {wait:.0f}s" if wait is not None else ""
                    self._fail(url, resp, f"HTTP 429 rate limited after {attempt} attempt(s){after}")
                self._backoff(attempt, wait)
                continue
            if code >= 500 and not last:
                self._backoff(attempt, None)
                continue
            hint = {
                401: "bad or missing token (set $BUILDKITE_API_TOKEN)",
                403: "forbidden (the token needs the read_builds and read_artifacts scopes for this organization)",
                404: "not found (check --org and --pipeline)",
            }.get(code, f"server error after {attempt} attempts" if code >= 500 else "rejected")
            self._fail(url, resp, f"HTTP {code} {hint}")
        raise AssertionError("unreachable")  # pragma: no cover

    def pages(self, path: str, params: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
        """Every item of a paged list, following rel="next" until there is none."""
        url: str | None = path
        query: Mapping[str, Any] | None = {**params, "per_page": PER_PAGE}
        seen: set[str] = set()
        while url is not None:
            resp = self.get(url, query)
            try:
                items = resp.json()
            except ValueError:
                self._fail(self._url(url), resp, "answer is not JSON")
            if not isinstance(items, list):
                self._fail(self._url(url), resp, "expected a JSON list")
            yield from (i for i in items if isinstance(i, dict))
            url, query = next_link(resp.headers.get("link")), None
            if url is not None:
                if url in seen:  # a server that links a page to itself must not loop us forever
                    self._fail(url, resp, "the Link header's next page was already read")
                seen.add(url)

    def builds(self, org: str, pipeline: str, since: datetime, branch: str | None) -> Iterator[dict[str, Any]]:
        params: dict[str, Any] = {"created_from": since.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}
        if branch:
            params["branch"] = branch
        yield from self.pages(f"/v2/organizations/{_seg(org)}/pipelines/{_seg(pipeline)}/builds", params)

    def job_artifacts(self, org: str, pipeline: str, number: int, job_id: str) -> Iterator[dict[str, Any]]:
        path = f"/v2/organizations/{_seg(org)}/pipelines/{_seg(pipeline)}/builds/{number}/jobs/{_seg(job_id)}/artifacts"
        yield from self.pages(path, {})

    def download(self, artifact: Mapping[str, Any]) -> bytes:
        """The artifact's bytes: the API answers 302 to a short-lived storage URL, fetched without the token."""
        url = str(artifact.get("download_url") or "")
        if not url:
            raise InfraError(f"Buildkite API: artifact {artifact.get('path')!r} has no download_url")
        resp = self.get(url)
        if resp.status_code in (301, 302, 303, 307, 308):
            target = resp.headers.get("location")
            if not target:
                self._fail(url, resp, f"HTTP {resp.status_code} without a Location")
            resp = self._storage_get(str(httpx.URL(url).join(target)), str(artifact.get("path")))
        if len(resp.content) > MAX_ARTIFACT_BYTES:
            raise InputError(f"artifact {artifact.get('path')!r} is larger than {MAX_ARTIFACT_BYTES} bytes")
        return resp.content

    def _storage_get(self, url: str, what: str) -> httpx.Response:
        """The signed storage URL, with the same retries on 5xx and dropped connections (no token to send)."""
        for attempt in range(1, self.retry.attempts + 1):
            last = attempt == self.retry.attempts
            self.requests += 1
            try:
                resp = self._plain.get(url)
            except httpx.TransportError as exc:
                if last:
                    raise InfraError(f"artifact storage: {type(exc).__name__} for {what!r}") from None
                self._backoff(attempt, None)
                continue
            if resp.status_code >= 500 and not last:
                self._backoff(attempt, None)
                continue
            if resp.status_code >= 400:
                raise InfraError(f"artifact storage: HTTP {resp.status_code} for {what!r}")
            return resp
        raise AssertionError("unreachable")  # pragma: no cover


def _seg(value: str) -> str:
    return quote(str(value), safe="")


@dataclass
class BuildOutcome:
    number: int
    files: int = 0
    stored: int = 0
    skipped: int = 0
    error: str | None = None


@dataclass
class ImportReport:
    builds: list[BuildOutcome] = field(default_factory=list)
    requests: int = 0
    retries: int = 0

    @property
    def stored(self) -> int:
        return sum(b.stored for b in self.builds)

    @property
    def skipped(self) -> int:
        return sum(b.skipped for b in self.builds)

    @property
    def failed(self) -> list[BuildOutcome]:
        return [b for b in self.builds if b.error]

    def lines(self) -> list[str]:
        out = []
        for b in self.builds:
            if b.error:
                out.append(f"build {b.number}: not imported: {b.error}")
            elif b.files == 0:
                out.append(f"build {b.number}: no result files")
            else:
                out.append(f"build {b.number}: {b.files} file(s), {b.stored} stored, {b.skipped} already there")
        files = sum(b.files for b in self.builds)
        if self.stored == 0 and self.skipped and not self.failed:
            out.append(f"nothing new: all {self.skipped} results of {len(self.builds)} build(s) were already stored")
        else:
            out.append(
                f"{len(self.builds)} build(s), {files} result file(s): {self.stored} stored, "
                f"{self.skipped} already there" + (f", {len(self.failed)} build(s) failed" if self.failed else "")
            )
        return out


def _source(build: Mapping[str, Any], repo: str | None) -> Any:
    """What the build says of its run; a result file's own values win over it (AdaptContext.source)."""
    from guardrail.schema import CIInfo, Source

    pr = build.get("pull_request") or {}
    pr_id = str(pr.get("id") or "") if isinstance(pr, Mapping) else ""
    commit = build.get("commit")
    return Source(
        repo=repo,
        commit=commit if isinstance(commit, str) and commit not in ("", "HEAD") else None,
        branch=build.get("branch") or None,
        pr=int(pr_id) if pr_id.isdigit() and int(pr_id) > 0 else None,
        # No attempt: vLLM-Omni's files name their build by URL only, and one build must stay one run.
        ci=CIInfo(provider="buildkite", run_id=str(build["number"]), url=build.get("web_url") or None),
    )


def _repo_of(build: Mapping[str, Any]) -> str | None:
    from guardrail.ci_env import repo_slug

    pipe = build.get("pipeline")
    return repo_slug(pipe.get("repository")) if isinstance(pipe, Mapping) else None


def import_builds(
    db_url: str,
    *,
    org: str,
    pipeline: str,
    since: datetime,
    token: str | None,
    api: str = DEFAULT_API,
    branch: str | None = None,
    lane: str = "nightly",
    hardware: str | None = None,
    patterns: tuple[str, ...] = RESULT_FILES,
    retry: Retry | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> ImportReport:
    """Import every build created since `since`, oldest first; a build whose files are bad input is reported
    and the others still imported; the infrastructure failing (the API, the database) stops the import."""
    from guardrail.adapters import AdaptDefaults
    from guardrail.ingest import ingest

    token = (token or "").strip()
    if not token:
        raise InputError(
            "is not set; create an API token with read_builds and read_artifacts", field="$BUILDKITE_API_TOKEN"
        )
    if any(c.isspace() or ord(c) < 32 for c in token):
        raise InputError("contains whitespace or a control character inside", field="$BUILDKITE_API_TOKEN")
    report = ImportReport()
    with BuildkiteAPI(api, token, retry=retry, sleep=sleep) as bk, tempfile.TemporaryDirectory() as tmp:
        builds = sorted(bk.builds(org, pipeline, since, branch), key=lambda b: int(b.get("number") or 0))
        for build in builds:
            number = int(build["number"])
            outcome = BuildOutcome(number)
            report.builds.append(outcome)
            folder = Path(tmp) / str(number)
            folder.mkdir()
            for job in build.get("jobs") or []:
                if not isinstance(job, Mapping) or job.get("type") != "script" or not job.get("id"):
                    continue  # waits, blocks and triggers have no artifacts
                if job.get("retried"):
                    continue  # superseded by its retry, which is in the list too: its numbers are the build's
                for art in bk.job_artifacts(org, pipeline, number, str(job["id"])):
                    name = Path(str(art.get("filename") or art.get("path") or "")).name
                    if art.get("state") not in (None, "finished") or not any(
                        fnmatch.fnmatch(name, p) for p in patterns
                    ):
                        continue
                    target = folder / name
                    if target.exists():  # the same file name from a retried job: keep both
                        target = folder / f"{Path(name).stem}.{str(job['id'])[:8]}{Path(name).suffix}"
                    target.write_bytes(bk.download(art))
                    outcome.files += 1
            if not outcome.files:
                continue
            defaults = AdaptDefaults(lane=lane, hardware=hardware, source=_source(build, _repo_of(build)))
            try:
                result = ingest(db_url, [folder], "auto", defaults)
            except InputError as exc:
                outcome.error = _scrub(str(exc).replace(str(folder) + "/", ""), token)
                continue
            outcome.stored, outcome.skipped = len(result.stored), len(result.skipped)
        report.requests, report.retries = bk.requests, bk.retries
    return report
