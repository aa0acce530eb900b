"""Online (streaming) video assistants: frames in one at a time, remarks out while the video plays.

`base` holds the model-independent interface (parameters, events, the θ rule, bounded sessions, `replay`);
`frames` reads a video on the 2 fps grid as a player shows it; `lite` is the embedded default in online mode.
"""

from models.online.base import (
    DEFAULT_FPS,
    DEFAULT_THRESHOLD,
    AnswerStart,
    FrameDecision,
    OnlineEvent,
    OnlineParams,
    OnlineSession,
    OnlineVideoLLM,
    Remark,
    SessionLimits,
    replay,
    respond_bar,
    responds,
)

__all__ = [
    "DEFAULT_FPS",
    "DEFAULT_THRESHOLD",
    "AnswerStart",
    "FrameDecision",
    "OnlineEvent",
    "OnlineParams",
    "OnlineSession",
    "OnlineVideoLLM",
    "Remark",
    "SessionLimits",
    "replay",
    "respond_bar",
    "responds",
]
