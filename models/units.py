"""How the studio writes durations, frame rates and counts for people, in one place.

Every message, note and label that shows a length of video goes through `format_duration`, so a file reads
"2 h 50 min" in the error text, the chat note and the info panel alike, never "10200.0 s" in one and a formatted
time in another. `plural` gives "1 frame" / "2 frames". No gradio here: `models/` and `app/` both import it.
"""

from __future__ import annotations

import math


def format_duration(seconds: float) -> str:
    """A length of video for people: "6.4 s" under a minute, "3 min 05 s" under an hour, "2 h 50 min" from an hour
    on (seconds dropped: at that length they are noise). Rounds first, so 59.97 s reads "1 min 00 s", not "60.0 s"."""
    if not math.isfinite(seconds) or seconds <= 0:
        return "0 s"
    if round(seconds, 1) < 60:
        return f"{seconds:.1f} s"
    total = int(round(seconds))
    if total < 3600:
        minutes, secs = divmod(total, 60)
        return f"{minutes} min {secs:02d} s"
    total_minutes = int(round(seconds / 60))
    hours, minutes = divmod(total_minutes, 60)
    return f"{hours} h {minutes:02d} min"


def format_fps(fps: float) -> str:
    """A frame rate for people: "25 fps", "29.97 fps", "0.5 fps" (as many decimals as the rate needs, 3 significant
    digits below 1 fps), so a slow time-lapse never reads "0 fps"."""
    if not math.isfinite(fps) or fps <= 0:
        return "unknown fps"
    if fps >= 1:
        text = f"{fps:.2f}".rstrip("0").rstrip(".")
    else:
        text = f"{fps:.3g}"
    return f"{text} fps"


def plural(count: int, noun: str, plural_form: str | None = None) -> str:
    """A count with its noun: "1 frame", "2 frames", "0 frames"; `plural_form` for irregular nouns
    (plural(2, "match", "matches") is "2 matches")."""
    word = noun if count == 1 else (plural_form or noun + "s")
    return f"{count} {word}"
