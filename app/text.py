"""Text a person or a model wrote, made safe to show: escaped for the Markdown-with-HTML renderers of the chat and
the panels, shortened to one line, or neutralised so it shows literally inside the studio's own Markdown."""

from __future__ import annotations

import html
import re


def escape_html(text: str) -> str:
    """Make text inert for Markdown-with-HTML renderers while keeping Markdown formatting."""
    return html.escape(text or "", quote=False)


def short(text: str, max_chars: int | None = None) -> str:
    """Text on one line (whitespace runs collapsed), cut to `max_chars` with an ellipsis."""
    text = " ".join((text or "").split())
    if max_chars is not None and len(text) > max_chars:
        text = text[: max_chars - 1].rstrip() + "…"
    return text


_MARKDOWN_SPECIALS = re.compile(r"([\\`*_{}\[\]()#+\-.!|>~])")


def plain(text: str, max_chars: int | None = None) -> str:
    """User or model text shown literally inside our own Markdown: HTML escaped and Markdown syntax neutralised."""
    return _MARKDOWN_SPECIALS.sub(r"\\\1", html.escape(short(text, max_chars), quote=False))
