"""API tokens for the service's write endpoints: created once, stored only as a SHA-256 digest."""

from __future__ import annotations

import hashlib
import hmac
import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session

from guardrail import clock
from guardrail.errors import InputError
from guardrail.store import models as m

PREFIX = "gr_"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def create_token(session: Session, name: str) -> tuple[m.ApiToken, str]:
    """A new token named `name`; returns the row and the plain token (shown to the user once, never stored)."""
    name = name.strip()
    if not name or len(name) > 200:
        raise InputError("a token needs a name of 1 to 200 characters", field="NAME")
    token = PREFIX + secrets.token_urlsafe(32)
    row = m.ApiToken(name=name, token_hash=hash_token(token))
    session.add(row)
    session.flush()
    return row, token


def verify_token(session: Session, token: str | None, *, touch: bool = True) -> m.ApiToken | None:
    """The live token row matching `token`, or None. Looked up by digest; compared in constant time."""
    if not token:
        return None
    digest = hash_token(token)
    row = session.scalar(select(m.ApiToken).where(m.ApiToken.token_hash == digest))
    if row is None or row.revoked or not hmac.compare_digest(row.token_hash, digest):
        return None
    if touch:
        row.last_used_at = clock.now()
    return row


def touch_token(session: Session, token_id: int) -> None:
    """Record that a token was just used (the service does it at most once a minute per token)."""
    row = session.get(m.ApiToken, token_id)
    if row is not None:
        row.last_used_at = clock.now()


def list_tokens(session: Session) -> list[m.ApiToken]:
    return list(session.scalars(select(m.ApiToken).order_by(m.ApiToken.id)))


def revoke_token(session: Session, ident: str) -> m.ApiToken:
    """Revoke by id or by name (a name must be unambiguous among live tokens)."""
    if ident.isdigit():
        row = session.get(m.ApiToken, int(ident))
        rows = [row] if row else []
    else:
        rows = list(session.scalars(select(m.ApiToken).where(m.ApiToken.name == ident, m.ApiToken.revoked.is_(False))))
    if not rows:
        raise InputError(f"no token {ident!r}", field="TOKEN")
    if len(rows) > 1:
        raise InputError(f"{len(rows)} live tokens are named {ident!r}; revoke by id", field="TOKEN")
    rows[0].revoked = True
    return rows[0]
