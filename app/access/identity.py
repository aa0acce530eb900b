"""Who is asking: one `Identity` per request, resolved the same way for the UI's events, the program API and the
file guard, whatever the deployment.

- Hugging Face Spaces with `hf_oauth: true`: the signed-in person is their OAuth profile's username (`oauth`).
- Self-hosted with an accounts file (`python app.py --accounts accounts.toml`): Gradio's sign-in sets the request's
  username, an `account`.
- A laptop with nothing configured, served on a loopback address: the one local person is the `owner` (an admin).
- Anyone else is a `visitor`, known only by a pseudonymous id per browser (a cookie the studio sets, or for a program
  its session), stored as a keyed hash so a record never holds the raw id. A typed name is never an identity.

Roles: `admin` (owner, or a name in `STUDIO_ADMINS`, or an account whose role is admin), `annotator` (signed in; with
`STUDIO_ANNOTATORS` set, only the names it lists) and `visitor` (everyone else). What each role may do is
`app/access/policies.py`.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import math
import os
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.accounts import AccountBook

VISITOR_COOKIE = "studio_visitor"
SECRET_FILENAME = ".identity-secret"
ROLES = ("admin", "annotator", "visitor")


@dataclass(frozen=True)
class Identity:
    """One person (or program) as the studio knows them: kind of identity, its id, and the role it has here."""

    kind: str  # "owner" | "account" | "oauth" | "visitor"
    id: str  # the account name, the HF username, "owner", or a visitor's hashed id
    role: str  # one of ROLES
    address: str = ""  # the client's address (for a visitor's second rate-limit key); not part of who they are

    @property
    def key(self) -> tuple[str, str]:
        """(kind, id): what records store and what ownership is compared by."""
        return (self.kind, self.id)

    @property
    def label(self) -> str:
        """The `annotator` of a record: the signed-in name, "owner", or "visitor-<hash>"."""
        if self.kind == "visitor":
            return f"visitor-{self.id[:12]}"
        return self.id

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    def describe(self) -> str:
        """How a message names the person: "signed in as ann1", "the local owner", "not signed in"."""
        if self.kind == "owner":
            return "the local owner"
        if self.kind == "visitor":
            return "not signed in"
        return f"signed in as {self.id}"


def _names(value: str | None) -> frozenset[str]:
    return frozenset(name.strip() for name in (value or "").replace(";", ",").split(",") if name.strip())


def _true(value: str | None) -> bool:
    return (value or "").strip().lower() not in ("", "0", "false", "no", "off")


def is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass
class AccessConfig:
    """How identities are resolved in this process, read once at start from the flags and the environment."""

    accounts: AccountBook | None = None
    oauth: bool = False
    local_owner: bool = True
    admins: frozenset[str] = frozenset()
    annotators: frozenset[str] | None = None  # None: every signed-in person may annotate
    anonymous_votes: bool = False
    trust_proxy: bool = False  # read the client address from x-forwarded-for (behind the Spaces proxy)
    secret: bytes = field(default_factory=lambda: secrets.token_bytes(32), repr=False)

    @classmethod
    def from_env(
        cls,
        *,
        accounts_path: str | Path | None = None,
        host: str = "127.0.0.1",
        data_dir: str | Path | None = None,
        environ: Mapping[str, str] = os.environ,
    ) -> AccessConfig:
        """The configuration for `python app.py`: --accounts (or STUDIO_ACCOUNTS), OAuth when the Space has it
        (OAUTH_CLIENT_ID is set by `hf_oauth: true`), the local owner only on a loopback address with neither."""
        accounts_path = accounts_path or environ.get("STUDIO_ACCOUNTS") or None
        accounts = AccountBook(accounts_path) if accounts_path else None
        oauth = bool(environ.get("OAUTH_CLIENT_ID")) and bool(environ.get("SPACE_ID"))
        allow_list = _names(environ.get("STUDIO_ANNOTATORS"))
        return cls(
            accounts=accounts,
            oauth=oauth,
            local_owner=accounts is None and not oauth and is_loopback(host),
            admins=_names(environ.get("STUDIO_ADMINS")),
            annotators=allow_list or None,
            anonymous_votes=_true(environ.get("STUDIO_ANONYMOUS_VOTES")),
            trust_proxy=bool(environ.get("SPACE_ID")) or _true(environ.get("STUDIO_TRUST_PROXY")),
            secret=_secret(data_dir) if data_dir is not None else secrets.token_bytes(32),
        )

    @property
    def open_to_strangers(self) -> bool:
        """True when nobody signs in and the studio is not a loopback-only laptop: everyone is a visitor."""
        return self.accounts is None and not self.oauth and not self.local_owner

    def role_of(self, kind: str, name: str) -> str:
        if kind == "owner" or name in self.admins:
            return "admin"
        if kind == "account":
            return (self.accounts.role(name) if self.accounts else None) or "visitor"
        if kind == "oauth" and (self.annotators is None or name in self.annotators):
            return "annotator"
        return "visitor"

    def visitor_id(self, raw: str) -> str:
        """A visitor's stored id: a keyed hash of their browser id, so records and logs never hold the raw id."""
        return hmac.new(self.secret, raw.encode("utf-8"), hashlib.sha256).hexdigest()[:24]

    def identify(
        self,
        *,
        username: str | None = None,
        oauth_username: str | None = None,
        visitor: str | None = None,
        address: str = "",
    ) -> Identity:
        """The identity of a request from what it carries: Gradio's signed-in username, the OAuth profile's
        username, and the browser's visitor id (or, for a program, its session)."""
        if username and self.accounts is not None:
            return Identity("account", username, self.role_of("account", username), address)
        if oauth_username and self.oauth:
            return Identity("oauth", oauth_username, self.role_of("oauth", oauth_username), address)
        if self.local_owner:
            return Identity("owner", "owner", "admin", address)
        raw = visitor or f"address:{address or 'unknown'}"
        return Identity("visitor", self.visitor_id(raw), "visitor", address)

    def from_http(self, request: Any, *, username: str | None = None, session_hash: str | None = None) -> Identity:
        """The identity of a Starlette / FastAPI request (None when there is none), with the username Gradio's
        sign-in resolved for it and the Gradio session it belongs to (a program's pseudonym when no cookie)."""
        cookies = _safe(lambda: dict(request.cookies)) or {}
        visitor = cookies.get(VISITOR_COOKIE) or (f"session:{session_hash}" if session_hash else None)
        return self.identify(
            username=username,
            oauth_username=_oauth_username(request),
            visitor=visitor,
            address=self.client_address(request),
        )

    def client_address(self, request: Any) -> str:
        headers = _safe(lambda: dict(request.headers)) or {}
        if self.trust_proxy:
            forwarded = headers.get("x-forwarded-for", "") or headers.get("cf-connecting-ip", "")
            if forwarded.split(",")[0].strip():
                return forwarded.split(",")[0].strip()
        return str(_safe(lambda: request.client.host) or "")


def _oauth_username(request: Any) -> str | None:
    """The HF username of a request's OAuth session (Gradio keeps the profile in the signed session cookie)."""
    session = _safe(lambda: request.session)
    if not isinstance(session, Mapping):
        return None
    info = session.get("oauth_info") or {}
    if not isinstance(info, Mapping) or float(info.get("expires_at") or math.inf) < time.time():
        return None  # signed out, or the sign-in expired (hf_oauth_expiration_minutes)
    userinfo = info.get("userinfo")
    name = userinfo.get("preferred_username") if isinstance(userinfo, Mapping) else None
    return str(name) if name else None


def _safe(read: Any) -> Any:
    """A request attribute that may be missing (no session middleware, a pickled `gr.Request`, no client)."""
    try:
        return read()
    except (AttributeError, AssertionError, KeyError, TypeError):
        return None


def _secret(data_dir: str | Path) -> bytes:
    """The key visitor ids are hashed with, kept in the data directory so the same browser keeps the same
    pseudonym across restarts (and replicas sharing a data directory agree)."""
    path = Path(data_dir) / SECRET_FILENAME
    try:
        secret = path.read_bytes()
        if len(secret) >= 32:
            return secret
    except OSError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_bytes(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(secret)
    return secret
