"""Shared fixtures: tiny synthetic videos written with PyAV, files that are not usable videos, and a running studio.

`make_video(name, **options)` writes an H.264 clip into the test's temporary folder and returns its path; see
`write_video` for the options (duration, fps, size, keyframe interval, image segments, variable frame times,
rotation tag, B-frames, container). Synthetic frames carry their frame number as a row of black/white blocks in
the top half, so a test can check that a returned picture really is the frame it is said to be
(`read_frame_number`). `bad_videos` maps each kind of unusable input to a file and a phrase its error message
must contain, for the video module's tests and the app's alike. For the end-to-end tests: `served_studio` is the
app launched in the test process for one module, `start_app_process` / `wait_until_serving` run `python app.py`
as a separate process, and `chromium` is the system Chromium driven by Playwright.

The whole run is isolated from the host (`pytest_configure`): Hub and Spaces variables are removed, the Hub is
offline with an empty temporary cache, and CUDA is hidden, so a developer's token or GPU cannot change what passes;
app processes started by the tests get the same environment. Under `CI` the browser tests cannot skip: a missing
Chromium or Playwright fails them, and the summary says how many browser tests ran.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

import av
import numpy as np
import pytest

if TYPE_CHECKING:
    from app.studio import Studio

ROOT = Path(__file__).resolve().parent.parent
FRAME_CODE_BITS = 10  # frame numbers up to 1023 are written into synthetic frames
# Where Chromium may be installed (Debian/Ubuntu names, Snap); an explicit path in one of these variables wins.
CHROMIUM_PATH_VARIABLES = ("STUDIO_TEST_CHROMIUM", "PLAYWRIGHT_CHROMIUM_EXECUTABLE_PATH", "CHROME_PATH", "CHROME_BIN")
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
CHROMIUM_PATHS = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/snap/bin/chromium")
# Host settings that would let the run reach the Hub, act as a Space or push annotations. Every other STUDIO_*
# variable is removed too, except the cache of converted packaged weights (converting takes ~15 s).
HOST_VARIABLES = (
    "SPACE_ID", "SPACE_HOST", "SPACE_AUTHOR_NAME", "SPACE_REPO_NAME", "SPACES_ZERO_GPU", "SYSTEM",
    "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_TOKEN_PATH", "HF_ENDPOINT", "HF_HUB_ENABLE_HF_TRANSFER",
    "GRADIO_SERVER_NAME", "GRADIO_SERVER_PORT", "GRADIO_ROOT_PATH", "GRADIO_SHARE",
    "OAUTH_CLIENT_ID", "OAUTH_CLIENT_SECRET", "OAUTH_SCOPES", "OPENID_PROVIDER_URL",
)  # fmt: skip
KEPT_STUDIO_VARIABLES = {"STUDIO_CACHE_DIR", "STUDIO_TEST_CHROMIUM"}
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
]


def under_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def isolated_environment(environ: dict[str, str] | None = None, hub_cache: Path | None = None) -> dict[str, str]:
    """A copy of `environ` (default os.environ) without Hub, Spaces or studio settings from the host, offline, with
    CUDA hidden and, when given, `hub_cache` as the Hugging Face home."""
    env = dict(os.environ if environ is None else environ)
    for name in list(env):
        if name in HOST_VARIABLES or (name.startswith("STUDIO_") and name not in KEPT_STUDIO_VARIABLES):
            del env[name]
    env.update(
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        HF_HUB_DISABLE_TELEMETRY="1",
        GRADIO_ANALYTICS_ENABLED="False",
        CUDA_VISIBLE_DEVICES="",
    )
    if hub_cache is not None:
        env.update(HF_HOME=str(hub_cache), HF_HUB_CACHE=str(hub_cache / "hub"), HF_XET_CACHE=str(hub_cache / "xet"))
    return env


_RUN_HF_HOME: Path | None = None


def pytest_configure(config: pytest.Config) -> None:
    """Isolate the whole run (this process, and app processes it starts) from the host before any test imports."""
    global _RUN_HF_HOME
    _RUN_HF_HOME = Path(tempfile.mkdtemp(prefix="studio-tests-hf-"))
    isolated = isolated_environment(hub_cache=_RUN_HF_HOME)
    for name in set(os.environ) - set(isolated):
        del os.environ[name]
    os.environ.update(isolated)


def pytest_unconfigure(config: pytest.Config) -> None:
    if _RUN_HF_HOME is not None:
        shutil.rmtree(_RUN_HF_HOME, ignore_errors=True)


def _browser_reports(terminalreporter) -> dict[str, int]:
    counts: dict[str, int] = {}
    for outcome in ("passed", "failed", "error", "skipped"):
        reports = terminalreporter.stats.get(outcome, [])
        # one count per test: its call report, or the setup report when the test never got to run
        tests = {r.nodeid for r in reports if "browser" in getattr(r, "keywords", {})}
        if tests:
            counts[outcome] = len(tests)
    return counts


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    """One line that says how many browser tests ran, so a log shows they were not silently left out."""
    counts = _browser_reports(terminalreporter)
    line = ", ".join(f"{n} {outcome}" for outcome, n in counts.items()) or "none ran"
    terminalreporter.write_line(f"browser tests: {line}", bold=True)


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests that need the vLLM server run last, so it starts once, late, and is stopped at the end of the run
    without idling beside every other test."""
    items.sort(key=lambda item: bool({"vllm_url", "vllm_env"} & set(getattr(item, "fixturenames", ()))))


def _say_past_capture(request: pytest.FixtureRequest):
    capture = request.config.pluginmanager.getplugin("capturemanager")

    def say(line: str) -> None:  # past pytest's capture, so a CI log shows the set-up and the server's start and stop
        with capture.global_and_fixture_disabled():
            print(f"\n{line}", flush=True)

    return say


@pytest.fixture(scope="session")
def vllm_env(request: pytest.FixtureRequest) -> Path:
    """The interpreter of an environment with vLLM: `ENGINE_TEST_PYTHON`, else `.venv-vllm/`, built on first use.
    When it cannot be built (no network) the engine tests skip locally and fail under CI."""
    from vllm_engine import build_vllm_env, vllm_python

    python = vllm_python() if os.environ.get("ENGINE_TEST_PYTHON") else None
    if python is not None:
        return python
    try:
        return build_vllm_env(_say_past_capture(request))
    except (OSError, subprocess.CalledProcessError) as error:
        reason = f"the vLLM environment could not be built ({error}): the engine tests need a real vLLM"
        if under_ci():
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)


@pytest.fixture(scope="session")
def vllm_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """The base URL (…/v1) of a real vLLM server serving the embedded default's SmolLM2 as `smollm2`, from the
    `vllm_env` environment; stopped after the run. `ENGINE_TEST_URL` points the tests at a server already running
    instead (serving the same folder as `smollm2`)."""
    if os.environ.get("ENGINE_TEST_URL"):
        yield os.environ["ENGINE_TEST_URL"]
        return
    from vllm_engine import smollm2_folder, vllm_server

    python = request.getfixturevalue("vllm_env")
    log = ROOT / "tests" / "artifacts" / "vllm-server.log"
    with vllm_server(python, smollm2_folder(), log, say=_say_past_capture(request)) as url:
        yield url


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Under CI a skipped browser test fails the run (they must run there, whatever made them skip)."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None and under_ci() and _browser_reports(reporter).get("skipped"):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def frame_code_picture(frame_number: int, width: int, height: int) -> np.ndarray:
    """An RGB picture whose top half spells `frame_number` in FRAME_CODE_BITS black/white blocks (most significant
    first) and whose bottom half is a colour gradient that drifts with the frame number (moving content)."""
    picture = np.empty((height, width, 3), dtype=np.uint8)
    band = height // 2
    edges = np.linspace(0, width, FRAME_CODE_BITS + 1).round().astype(int)
    for bit in range(FRAME_CODE_BITS):
        on = (frame_number >> (FRAME_CODE_BITS - 1 - bit)) & 1
        picture[:band, edges[bit] : edges[bit + 1]] = 255 if on else 0
    columns = (np.arange(width) * 2 + frame_number * 3) % 256
    picture[band:, :, 0] = columns.astype(np.uint8)
    picture[band:, :, 1] = 128
    picture[band:, :, 2] = (255 - columns).astype(np.uint8)
    return picture


def read_frame_number(picture: np.ndarray) -> int:
    """The frame number spelled by `frame_code_picture`, read back from a decoded (possibly downscaled) frame."""
    height, width = picture.shape[:2]
    row = picture[height // 8 : height * 3 // 8].mean(axis=(0, 2))  # the middle of the code band
    edges = np.linspace(0, width, FRAME_CODE_BITS + 1)
    number = 0
    for bit in range(FRAME_CODE_BITS):
        lo, hi = edges[bit], edges[bit + 1]
        centre = row[int(lo + (hi - lo) / 3) : max(int(lo + (hi - lo) / 3) + 1, int(hi - (hi - lo) / 3))]
        number = number * 2 + int(centre.mean() > 128)
    return number


def _resized(image: np.ndarray, width: int, height: int) -> np.ndarray:
    from PIL import Image

    image = np.asarray(image)
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    return np.asarray(Image.fromarray(image[:, :, :3].astype(np.uint8)).resize((width, height), Image.BILINEAR))


def write_video(
    path: str | os.PathLike,
    duration_s: float = 2.0,
    fps: float = 10.0,
    width: int = 96,
    height: int = 64,
    keyframe_interval_s: float = 1.0,
    segments: Sequence[tuple[np.ndarray, float]] | None = None,
    frame_times_s: Sequence[float] | None = None,
    rotation: int = 0,
    bframes: int = 0,
    faststart: bool = False,
    container_format: str | None = None,
    seekable: bool = True,
    with_audio: bool = False,
) -> Path:
    """Write a small H.264 video and return its path.

    width/height: the picture as it should be displayed (even numbers). segments: (image, seconds) pairs shown one
    after another (resized to the frame size), replacing the numbered synthetic frames and setting the duration.
    frame_times_s: explicit presentation times for a variable-frame-rate clip (one synthetic frame each).
    rotation: a display rotation tag in degrees counter-clockwise, as phones write; the frames are stored turned the
    other way so they display upright. seekable=False writes through a pipe-like object, so the container gets no
    duration or index (like a browser recording); with_audio adds a silent AAC track.
    """
    path = Path(path)
    if width % 2 or height % 2:
        raise ValueError(f"H.264 in yuv420p needs even sides, got {width}x{height}")
    quarter_turns = (rotation // 90) % 4
    coded_width, coded_height = (height, width) if quarter_turns % 2 else (width, height)
    if frame_times_s is not None:
        time_base = Fraction(1, 1000)
        pictures = [(frame_code_picture(i, width, height), t) for i, t in enumerate(frame_times_s)]
    else:
        time_base = 1 / Fraction(fps).limit_denominator(1001)
        if segments is not None:
            frame_counts = [max(1, round(seconds * fps)) for _, seconds in segments]
            images = [_resized(image, width, height) for image, _ in segments]
            per_frame = [image for image, count in zip(images, frame_counts, strict=True) for _ in range(count)]
        else:
            per_frame = [None] * max(1, round(duration_s * fps))
        pictures = [
            (image if image is not None else frame_code_picture(i, width, height), i * float(time_base))
            for i, image in enumerate(per_frame)
        ]

    class _PipeWriter:  # no seek(): the muxer cannot go back to write a duration or an index
        def __init__(self, handle):
            self.handle = handle

        def write(self, data: bytes) -> int:
            return self.handle.write(data)

    options = {"movflags": "faststart"} if faststart else {}
    with open(path, "wb") as handle:
        target = handle if seekable else _PipeWriter(handle)
        fmt = container_format or ("matroska" if not seekable else None)
        if fmt is None and path.suffix.lower() in {".mp4", ".mov", ".m4v"}:
            fmt = "mp4"
        container = av.open(target, "w", format=fmt, options=options)
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height, stream.pix_fmt = coded_width, coded_height, "yuv420p"
        stream.codec_context.time_base = time_base
        gop = max(1, round(keyframe_interval_s * fps))
        stream.options = {
            # ultrafast never uses B-frames; veryfast does when asked
            "preset": "ultrafast" if bframes == 0 else "veryfast",
            "g": str(gop),
            "keyint_min": str(gop),
            "sc_threshold": "0",
            "bf": str(bframes),
        }
        if quarter_turns:
            stream.set_display_rotation(rotation)
        audio = None
        if with_audio:
            audio = container.add_stream("aac", rate=16000)
            audio.layout = "mono"
        for picture, time_s in pictures:
            stored = np.ascontiguousarray(np.rot90(picture, k=-quarter_turns)) if quarter_turns else picture
            frame = av.VideoFrame.from_ndarray(stored, format="rgb24")
            frame.pts = round(time_s / time_base)
            frame.time_base = time_base
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
        if audio is not None:
            total_s = pictures[-1][1] + float(time_base)
            samples_per_frame = 1024
            for start in range(0, int(total_s * 16000), samples_per_frame):
                silence = av.AudioFrame.from_ndarray(
                    np.zeros((1, samples_per_frame), np.float32), format="fltp", layout="mono"
                )
                silence.sample_rate, silence.pts = 16000, start
                container.mux(audio.encode(silence))
            container.mux(audio.encode())
        container.close()
    return path


def write_audio_only(path: str | os.PathLike, duration_s: float = 1.0) -> Path:
    """An MP4 (M4A) file with one AAC audio track and no video."""
    path = Path(path)
    with av.open(str(path), "w", format="mp4") as container:
        audio = container.add_stream("aac", rate=16000)
        audio.layout = "mono"
        for start in range(0, int(duration_s * 16000), 1024):
            tone = np.sin(np.arange(start, start + 1024) * 2 * np.pi * 440 / 16000).astype(np.float32)[None]
            frame = av.AudioFrame.from_ndarray(tone, format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 16000, start
            container.mux(audio.encode(frame))
        container.mux(audio.encode())
    return path


@pytest.fixture
def make_video(tmp_path: Path) -> Callable[..., Path]:
    """`make_video("clip.mp4", duration_s=..., fps=..., ...)` writes a clip into this test's temporary folder."""

    def make(name: str = "clip.mp4", **options) -> Path:
        return write_video(tmp_path / name, **options)

    return make


@pytest.fixture(scope="session")
def tiny_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2 s, 10 fps, 96x64 clip of numbered frames with a keyframe every second."""
    return write_video(tmp_path_factory.mktemp("tiny") / "tiny.mp4")


# Every kind of unusable input `bad_videos` holds, for tests that try them all.
BAD_VIDEO_KINDS = (
    "missing",
    "empty",
    "truncated",
    "truncated_data",
    "not_a_video",
    "still_image",
    "audio_only",
    "huge_dimensions",
    "too_long",
)


@dataclass(frozen=True)
class BadVideo:
    path: Path
    message: str  # a phrase the error shown to the person must contain (case-insensitive)


@pytest.fixture(scope="session")
def bad_videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, BadVideo]:
    """Unusable inputs by kind: missing, empty, truncated (index lost), truncated_data (index intact, data cut),
    not_a_video (text renamed .mp4), still_image, audio_only, huge_dimensions (8192 px wide), too_long (4 h)."""
    folder = tmp_path_factory.mktemp("bad_videos")

    truncated = folder / "truncated.mp4"
    whole = write_video(folder / "whole.mp4", duration_s=2.0).read_bytes()
    truncated.write_bytes(whole[: len(whole) // 2])  # the index (moov) sits at the end and is lost

    truncated_data = folder / "truncated_data.mp4"
    whole = write_video(folder / "whole_faststart.mp4", duration_s=2.0, faststart=True).read_bytes()
    truncated_data.write_bytes(whole[: len(whole) // 2])

    empty = folder / "empty.mp4"
    empty.write_bytes(b"")
    text = folder / "notes.mp4"
    text.write_text("These are my meeting notes, not a video.\n" * 20)
    still = folder / "photo.mp4"
    from PIL import Image

    Image.fromarray(frame_code_picture(5, 64, 48)).save(still, format="PNG")

    videos = {
        "missing": BadVideo(folder / "does_not_exist.mp4", "not found"),
        "empty": BadVideo(empty, "empty"),
        "truncated": BadVideo(truncated, "incomplete"),
        "truncated_data": BadVideo(truncated_data, "incomplete"),
        "not_a_video": BadVideo(text, "not a video"),
        "still_image": BadVideo(still, "still image"),
        "audio_only": BadVideo(write_audio_only(folder / "voice_memo.mp4"), "no video stream"),
        "huge_dimensions": BadVideo(
            write_video(folder / "huge.mp4", duration_s=0.2, fps=5, width=8192, height=16), "8192x16"
        ),
        "too_long": BadVideo(write_video(folder / "four_hours.mp4", frame_times_s=[0.0, 4 * 3600.0]), "4 h"),
    }
    assert tuple(videos) == BAD_VIDEO_KINDS, "BAD_VIDEO_KINDS names every kind"
    return videos


# ----------------------------------------------------------------------------------------------------------------
# The studio running, and a browser to drive it


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def launched(studio: Studio) -> Iterator[str]:
    """`studio` built and launched as `python app.py` builds it, in this process, for a `with` block: yields its
    URL, then closes the server and the studio."""
    from app import ui

    demo = ui.build_demo(studio)
    _, url, _ = demo.launch(
        prevent_thread_lock=True,
        server_name="127.0.0.1",
        server_port=free_port(),
        quiet=True,
        **ui.launch_kwargs(studio),
    )
    try:
        yield url
    finally:
        demo.close()
        studio.close()


@pytest.fixture(scope="module")
def served_studio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Studio]]:
    """(url, studio) of the app built as `python app.py` builds it, launched in this process for one test module,
    with its own data directory (the real embedded default model)."""
    from app.studio import Studio

    studio = Studio(data_dir=tmp_path_factory.mktemp("studio-data"))
    with launched(studio) as url:
        yield url, studio


def start_app_process(
    data_dir: Path, port: int, *options: str, log_path: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.Popen:
    """`python app.py` serving on `port` with its own data directory, as a separate process; its output goes to
    `log_path` (or nowhere). `env` adds variables to the run's clean environment (e.g. a Space's OAuth settings)."""
    with open(log_path or os.devnull, "w") as log:  # the child keeps its own handle on the file
        return subprocess.Popen(
            [sys.executable, str(ROOT / "app.py"), "--port", str(port), "--data-dir", str(data_dir), *options],
            cwd=ROOT,
            env={**isolated_environment(), "PYTHONUNBUFFERED": "1", **(env or {})},  # the run's clean environment
            stdout=log,
            stderr=subprocess.STDOUT,
        )


@contextlib.contextmanager
def serving_app(
    data_dir: Path, *options: str, log_path: Path | None = None, env: dict[str, str] | None = None
) -> Iterator[str]:
    """`python app.py` on a free port for the length of a `with` block: yields its URL once it answers, and stops
    it afterwards."""
    port = free_port()
    process = start_app_process(data_dir, port, *options, log_path=log_path, env=env)
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_until_serving(url, process)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def wait_until_serving(url: str, process: subprocess.Popen, timeout_s: float = 180) -> None:
    """Return once `url` answers; fail if the process exits first or nothing answers within `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert process.poll() is None, "the app process exited while starting"
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"{url} did not come up in {timeout_s} s")


def find_chromium() -> Path | None:
    """The installed Chromium: a path named by one of CHROMIUM_PATH_VARIABLES, a Chromium on PATH, a usual
    install location, or the browser Playwright downloaded; None when there is none."""
    for name in CHROMIUM_PATH_VARIABLES:
        if os.environ.get(name):
            return Path(os.environ[name])  # named explicitly: used as given, a wrong path fails loudly at launch
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return Path(found)
    for path in CHROMIUM_PATHS:
        if Path(path).exists():
            return Path(path)
    try:
        from playwright.sync_api import sync_playwright

        with sync_playwright() as playwright:
            bundled = Path(playwright.chromium.executable_path)
        return bundled if bundled.exists() else None
    except Exception:  # Playwright missing or broken: no bundled browser to offer
        return None


def skip_unless_ci(reason: str) -> None:
    """Skip locally; under CI fail instead, so browser tests cannot disappear from a CI run."""
    if under_ci():
        pytest.fail(f"{reason} (CI is set: browser tests must run)", pytrace=False)
    pytest.skip(reason)


def playwright_api() -> Any:
    """playwright.sync_api, or a skip (a failure under CI) when Playwright is not installed."""
    try:
        import playwright.sync_api as sync_api
    except ImportError:
        skip_unless_ci("Playwright is not installed (pip install -r requirements-dev.txt)")
    return sync_api


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """The installed Chromium, headless, driven by Playwright for one test module (see `find_chromium`). Without
    either, skipped locally and failed under CI."""
    sync_api = playwright_api()
    executable = find_chromium()
    if executable is None:
        skip_unless_ci(
            "Chromium is not installed (apt-get install chromium, or name it in "
            f"{' / '.join(CHROMIUM_PATH_VARIABLES)})"
        )
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(executable), args=CHROMIUM_ARGS)
        yield browser
        browser.close()
