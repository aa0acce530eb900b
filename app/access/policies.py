"""What each role may do, on one screen: every UI handler and program endpoint that touches data calls `authorize`
before it does, so a hidden button is never the only guard.

| action      | who                                                                 |
|-------------|---------------------------------------------------------------------|
| chat        | everyone (visitors included)                                        |
| vote        | annotators and admins; visitors too when STUDIO_ANONYMOUS_VOTES=1   |
| export      | admins (the Export tab, /export, /export_all)                       |
| push        | admins (/push_to_hub)                                               |
| read_all    | admins (other people's records; everyone reads their own)           |
| campaigns   | admins (defining and running annotation campaigns)                  |
"""

from __future__ import annotations

from app.access.identity import AccessConfig, Identity

ADMIN_ONLY = {
    "export": "export",
    "push": "push to the Hub",
    "read_all": "read other people's records",
    "campaigns": "manage campaigns",
}
ACTIONS = ("chat", "vote", *ADMIN_ONLY)


class AccessDenied(PermissionError):
    """A refused action; its text says what was refused and who the caller is signed in as."""


def refusal(who: Identity, action: str, config: AccessConfig) -> str | None:
    """Why `who` may not do `action` here, or None when they may."""
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}; known: {', '.join(ACTIONS)}")
    if action == "chat" or who.is_admin:
        return None
    if action == "vote":
        if who.role == "annotator" or config.anonymous_votes:
            return None
        if who.kind == "visitor":
            return "sign in to vote: visitors may chat but not vote here"
        return f"you are {who.describe()}, who is not on this studio's annotator list"
    return f"only admins can {ADMIN_ONLY[action]}; you are {who.describe()}"


def authorize(who: Identity, action: str, config: AccessConfig) -> None:
    """Raise `AccessDenied` with the person's message unless `who` may do `action`."""
    reason = refusal(who, action, config)
    if reason is not None:
        raise AccessDenied(reason)


def may(who: Identity, action: str, config: AccessConfig) -> bool:
    return refusal(who, action, config) is None
