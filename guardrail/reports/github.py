"""GitHub REST client for the PR comment and the commit status, with bounded, rate-limit-aware retries.

Also the retrying HTTP sender that `guardrail.upload` shares. Secrets travel only in the Authorization
header and are scrubbed from every message this module builds.
"""

from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, NoReturn
from urllib.parse import urlsplit

import httpx

from guardrail.errors import InfraError, InputError

DEFAULT_API_URL = "https://api.github.com"
COMMENT_LIMIT = 65_000  # GitHub rejects issue comment bodies above 65,536 characters
STATUS_STATES = ("success", "failure", "error", "pending")


class ServerError(InfraError):
    """5xx, timeout or a dropped connection: the request may or may not have been carried out."""


class RequestRejected(InputError):
    """The server refused the request as wrong (a renamed repository, a wrong PR or SHA, an invalid payload):
    sending it again will not help. `status` is the HTTP status it answered with."""

    def __init__(self, message: str, *, status: int):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try: `attempts` requests at most, exponential backoff, waits capped by `max_wait`."""

    attempts: int = 5
    base_delay: float = 1.0
    max_delay: float = 30.0
    max_wait: float = 120.0  # a Retry-After or rate-limit reset further away than this fails instead
    timeout: float = 30.0


def scrub(text: str, secrets: tuple[str | None, ...]) -> str:
    """The text with every secret replaced, flattened to one line."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return " ".join(text.split())


def _retry_after(resp: httpx.Response, now: float) -> float | None:
    """Seconds the server asks us to wait (Retry-After, or x-ratelimit-reset when the quota is spent).

    `now` is the wall clock (time.time()), not guardrail.clock: these are instants on the remote server's
    clock, and a replayed or test clock must not stretch a real wait."""
    value = resp.headers.get("retry-after")
    if value:
        try:
            return max(0.0, float(value))
        except ValueError:
            when = email.utils.parsedate_to_datetime(value) if value else None
            if when is not None:
                return max(0.0, when.timestamp() - now)
    if resp.headers.get("x-ratelimit-remaining") == "0" and resp.headers.get("x-ratelimit-reset"):
        try:
            return max(0.0, float(resp.headers["x-ratelimit-reset"]) - now)
        except ValueError:
            return None
    return None


def _is_rate_limited(resp: httpx.Response) -> bool:
    if resp.status_code == 429:
        return True
    if resp.status_code != 403:
        return False
    if "retry-after" in resp.headers or resp.headers.get("x-ratelimit-remaining") == "0":
        return True
    return "rate limit" in resp.text[:2000].lower()


def _server_message(resp: httpx.Response) -> str:
    try:
        body = resp.json()
    except ValueError:
        return resp.reason_phrase or ""
    if not isinstance(body, Mapping):
        return resp.reason_phrase or ""
    detail = body.get("detail")  # FastAPI's error shape (the ingest server)
    if isinstance(detail, list):
        detail = "; ".join(
            f"{'.'.join(map(str, d.get('loc', [])))}: {d.get('msg')}" if isinstance(d, Mapping) else str(d)
            for d in detail
        )
    msg = str(body.get("message") or detail or resp.reason_phrase or "")[:500]
    errors = body.get("errors")
    if isinstance(errors, list) and errors:
        details = [str(e.get("message") or e.get("code") or e) if isinstance(e, Mapping) else str(e) for e in errors]
        msg += " (" + "; ".join(details)[:300] + ")"
    return msg


class HttpSender:
    """One httpx client plus the retry loop; every error leaves as a one-line InfraError/InputError."""

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None,
        service: str,
        headers: Mapping[str, str] | None = None,
        policy: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        transport: httpx.BaseTransport | None = None,
    ):
        self.base_url = base_url.rstrip("/")
        self.service = service
        self.policy = policy or RetryPolicy()
        self._token = token
        self._sleep = sleep
        all_headers = {"User-Agent": "perf-guardrail", **(headers or {})}
        if token:
            all_headers["Authorization"] = f"Bearer {token}"
        self._client = httpx.Client(
            headers=all_headers, timeout=self.policy.timeout, transport=transport, follow_redirects=False
        )
        self.retries = 0  # how many times a request was repeated (for reports and tests)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> HttpSender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _url(self, path_or_url: str) -> str:
        if path_or_url.startswith(("http://", "https://")):
            # Paging links come from the server: never send the token to another host, or in plain text.
            there, here = urlsplit(path_or_url), urlsplit(self.base_url)
            if (there.scheme, there.netloc) != (here.scheme, here.netloc):
                raise InfraError(f"{self.service}: refusing to follow a link to another host or scheme")
            return path_or_url
        return f"{self.base_url}/{path_or_url.lstrip('/')}"

    def _fail(
        self, method: str, url: str, resp: httpx.Response | None, detail: str, *, server: bool = False
    ) -> NoReturn:
        path = urlsplit(url).path
        text = scrub(f"{self.service} {method} {path}: {detail}", (self._token,))
        code = resp.status_code if resp is not None else None
        if code is not None and (300 <= code < 400 or code in (400, 404, 413, 422)):
            raise RequestRejected(text, status=code)
        if server or (code is not None and code >= 500):
            raise ServerError(text)
        raise InfraError(text)

    def request(
        self,
        method: str,
        path_or_url: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        retry_server_errors: bool = True,
    ) -> httpx.Response:
        """Send with retries on transport errors, 5xx (if `retry_server_errors`) and rate limits."""
        url = self._url(path_or_url)
        policy = self.policy
        for attempt in range(1, policy.attempts + 1):
            last = attempt == policy.attempts
            try:
                resp = self._client.request(method, url, json=json, params=params)
            except httpx.ConnectError as exc:  # nothing was sent: always safe to try again
                if last:
                    self._fail(method, url, None, f"cannot connect ({exc})", server=True)
                self.backoff(attempt, None)
                continue
            except httpx.TransportError as exc:  # timeout or dropped connection: it may have happened
                if last or not retry_server_errors:
                    self._fail(method, url, None, f"{type(exc).__name__} after {attempt} attempt(s)", server=True)
                self.backoff(attempt, None)
                continue
            code = resp.status_code
            if code < 300:
                return resp
            if _is_rate_limited(resp):
                wait = _retry_after(resp, time.time())
                if wait is None:
                    wait = 60.0  # GitHub's advice for a secondary limit without a header
                if last or wait > policy.max_wait:
                    self._fail(
                        method,
                        url,
                        resp,
                        f"HTTP {code} rate limited; retry after {wait:.0f}s ({_server_message(resp)})",
                    )
                self.backoff(attempt, wait)
                continue
            if code >= 500 and retry_server_errors and not last:
                self.backoff(attempt, _retry_after(resp, time.time()))
                continue
            self._fail(method, url, resp, self._explain(code, resp))
        raise AssertionError("unreachable")  # pragma: no cover

    def _explain(self, code: int, resp: httpx.Response) -> str:
        msg = _server_message(resp)
        if 300 <= code < 400:
            moved = urlsplit(resp.headers.get("location", "")).path
            where = f" to {moved}" if moved else ""
            return f"HTTP {code} moved{where} (a renamed repository or a moved server: use the new one)"
        hint = {
            400: "bad request",
            401: "bad or missing credentials (check the token)",
            403: "forbidden (the token lacks a permission this step needs)",
            404: "not found (check the repository, number or SHA, and that the token can see the repository)",
            413: "request too large",
            422: "rejected as invalid",
        }.get(code)
        if code >= 500:
            hint = f"server error after {self.policy.attempts} attempts"
        return f"HTTP {code} {hint or 'error'}: {msg}" if msg else f"HTTP {code} {hint or 'error'}"

    def backoff(self, attempt: int, wait: float | None) -> None:
        """Sleep before attempt `attempt` + 1: `wait` seconds when the server named them, else exponentially."""
        self.retries += 1
        if wait is None:
            delay = min(self.policy.max_delay, self.policy.base_delay * 2 ** (attempt - 1))
            wait = delay * (0.5 + random.random() / 2)  # jitter: concurrent CI jobs must not retry in step
        self._sleep(min(wait, self.policy.max_wait))


def marker_for(key: str) -> str:
    safe = "".join(ch if ch.isalnum() or ch in "-_./" else "-" for ch in key)[:80] or "default"
    return f"<!-- perf-guardrail:{safe} -->"


def _split_repo(repo: str) -> tuple[str, str]:
    owner, _, name = repo.partition("/")
    valid = all(part and all(ch.isalnum() or ch in "-_." for ch in part) for part in (owner, name))
    if not valid or "/" in name:
        raise InputError(f"--repo must be OWNER/NAME, got {repo!r}")
    return owner, name


def fit_comment(body: str, limit: int = COMMENT_LIMIT) -> str:
    """Cut an over-long body at a line boundary, keeping HTML balanced enough to render."""
    if len(body) <= limit:
        return body
    note = "\n\n_… truncated: the full report is in the job summary and on the dashboard._\n"
    cut = body[: limit - len(note) - 20]
    cut = cut[: cut.rfind("\n")] if "\n" in cut else cut
    if cut.count("<details>") > cut.count("</details>"):
        cut += "\n\n</details>"
    return cut + note


@dataclass
class UpsertResult:
    action: str  # "created", "updated" or "unchanged"
    comment_id: int
    url: str | None


class GitHub:
    """The few GitHub REST calls `guardrail comment` needs."""

    def __init__(
        self,
        repo: str,
        *,
        token: str | None,
        api_url: str | None = None,
        policy: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.owner, self.name = _split_repo(repo)
        self.http = HttpSender(
            api_url or DEFAULT_API_URL,
            token=token,
            service="GitHub",
            headers={"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28"},
            policy=policy,
            sleep=sleep,
        )

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> GitHub:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def _repo_path(self) -> str:
        return f"/repos/{self.owner}/{self.name}"

    def list_comments(self, pr: int) -> list[dict[str, Any]]:
        """Every comment on the PR, following the Link header's rel="next" pages."""
        out: list[dict[str, Any]] = []
        url: str | None = f"{self._repo_path}/issues/{pr}/comments"
        params: dict[str, Any] | None = {"per_page": 100}
        for _ in range(1000):  # bounded: 100,000 comments is more than any PR has
            if url is None:
                break
            resp = self.http.request("GET", url, params=params)
            page = resp.json()
            if not isinstance(page, list):
                raise InfraError(f"GitHub GET {urlsplit(url).path}: expected a list of comments")
            out.extend(c for c in page if isinstance(c, dict))
            url = resp.links.get("next", {}).get("url")
            params = None  # the next link carries its own query
        return out

    def find_comment(self, pr: int, marker: str) -> dict[str, Any] | None:
        """Our sticky comment: the body starts with the marker; a bot's comment wins over a human's copy."""
        ours = [c for c in self.list_comments(pr) if str(c.get("body") or "").startswith(marker)]
        if not ours:
            return None
        bots = [c for c in ours if (c.get("user") or {}).get("type") == "Bot"]
        return (bots or ours)[0]

    def upsert_comment(self, pr: int, marker: str, body: str) -> UpsertResult:
        """Create the comment once, update it after. A create that failed with a 5xx may still have
        happened, so before trying again we look for it rather than re-posting blindly."""
        full = fit_comment(f"{marker}\n{body}")
        for attempt in range(1, self.http.policy.attempts + 1):
            existing = self.find_comment(pr, marker)
            if existing is not None:
                if existing.get("body") == full:
                    return UpsertResult("unchanged", int(existing["id"]), existing.get("html_url"))
                try:
                    resp = self.http.request(
                        "PATCH", f"{self._repo_path}/issues/comments/{existing['id']}", json={"body": full}
                    )
                except RequestRejected as exc:
                    # Deleted between the listing and the edit: look again (and create it anew).
                    if exc.status == 404 and attempt < self.http.policy.attempts:
                        continue
                    raise
                data = resp.json()
                return UpsertResult("updated", int(data.get("id", existing["id"])), data.get("html_url"))
            try:
                resp = self.http.request(
                    "POST",
                    f"{self._repo_path}/issues/{pr}/comments",
                    json={"body": full},
                    retry_server_errors=False,
                )
            except ServerError:
                if attempt == self.http.policy.attempts:
                    raise
                self.http.backoff(attempt, None)
                continue
            data = resp.json()
            return UpsertResult("created", int(data["id"]), data.get("html_url"))
        raise AssertionError("unreachable")  # pragma: no cover

    def set_status(
        self, sha: str, *, state: str, context: str, description: str, target_url: str | None = None
    ) -> dict[str, Any]:
        if state not in STATUS_STATES:
            raise InputError(f"commit status state must be one of {', '.join(STATUS_STATES)}, got {state!r}")
        if not sha or not all(ch in "0123456789abcdefABCDEF" for ch in sha) or not 7 <= len(sha) <= 64:
            raise InputError(f"--sha must be a hexadecimal commit SHA, got {sha!r}")
        payload: dict[str, Any] = {"state": state, "context": context, "description": description[:140]}
        if target_url:
            payload["target_url"] = target_url
        return self.http.request("POST", f"{self._repo_path}/statuses/{sha}", json=payload).json()
