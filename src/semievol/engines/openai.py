"""The OpenAI-compatible engine: any server that speaks /v1/completions or /v1/chat/completions.

vLLM, llama.cpp's servers, SGLang and OpenAI itself all do. Two ways to send a prompt (``model.api``):

- ``completions`` (default): the chat template is rendered here, with the tokenizer of ``model.model``
  (the weights the server serves), and the exact text goes to /v1/completions. Option letters are then
  scored at the first token after ``Answer:``, as the hf engine scores them.
- ``chat``: the messages go to /v1/chat/completions and the server applies its own template. The prefix
  cannot be forced there, so option letters are read at the first generated token that is one.

Either way an option distribution comes from the ``top_logprobs`` of one position: tokens that strip to
the same letter are pooled, a letter missing from the top-k gets a floor, and the result is renormalised
over the letters. How much probability the letters found covered is kept and reported by ``describe()``.

Requests run ``concurrency`` at a time. A timeout, a dropped connection, HTTP 429 or 5xx is retried up to
``max_retries`` times with exponential backoff and jitter (a server's Retry-After first), so a server
restart is ridden out. A request that still fails is reported per prompt through ``CallsFailed``; 401,
403 and 404 end the call at once, since retrying cannot mend them. The API key is read from the
environment variable ``api_key_env`` names and is cut out of every message this engine produces.
"""

from __future__ import annotations

import math
import os
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from typing import Any, TypeVar

import numpy as np

from ..answers import LETTERS
from ..prompts import Prompt
from .base import CallsFailed, EngineError, Sample
from .openai_wire import BACKOFF_CAP, FATAL, Failed, letter_distribution, retry_after

T = TypeVar("T")
R = TypeVar("R")

CHAT_SCAN_TOKENS = 8  # chat mode: tokens generated while looking for the option letter


class OpenAIEngine:
    name = "openai"

    def __init__(
        self,
        model: str = "embedded",
        api_base: str = "http://127.0.0.1:8000/v1",
        api_key_env: str = "OPENAI_API_KEY",
        served_model: str = "",
        api: str = "completions",
        top_logprobs: int = 20,
        concurrency: int = 8,
        timeout: float = 120.0,
        max_retries: int = 6,
        backoff: float = 1.0,
        **_: Any,
    ) -> None:
        try:
            import httpx
        except ImportError:
            raise EngineError("model.engine openai needs httpx: pip install 'semievol[openai]'") from None
        if api not in ("completions", "chat"):
            raise EngineError(f"model.api: must be completions or chat, got {api!r}")
        self._httpx = httpx
        self.api = api
        self.top_logprobs = top_logprobs
        self.concurrency = concurrency
        self.max_retries = max_retries
        self.backoff = backoff
        key = os.environ.get(api_key_env, "") if api_key_env else ""
        self._secrets = [key] if key else []
        self._client = httpx.Client(
            base_url=api_base.rstrip("/") + "/",
            headers={"Authorization": f"Bearer {key}"} if key else {},
            timeout=timeout,
            limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
        )
        self._served = served_model or None
        self.model = model
        self.tokenizer = None
        if api == "completions":
            from ..models import load_tokenizer, resolve_model

            self.source = resolve_model(model)
            self.tokenizer = load_tokenizer(self.source)
        self.adapters: dict[str, str] = {}
        self._lock = threading.Lock()
        self._jitter = random.Random()
        self.requests = 0  # every request sent, retries included
        self.retries = 0
        self._covered: list[float] = []  # per scored prompt: probability mass of the letters in the top-k
        self._missing = 0  # scored prompts with at least one letter outside the top-k

    # ------------------------------------------------------------------ requests

    def _scrub(self, text: str) -> str:
        """One line, without the API key, short enough for a log."""
        from ..secret_values import scrub

        return " ".join(scrub(text, self._secrets).split())[:300]

    def _request(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        """One request with bounded retries; raises Failed (or EngineError for 401/403/404)."""
        httpx = self._httpx
        reason = ""
        for attempt in range(self.max_retries + 1):
            wait_s: float | None = None
            with self._lock:
                self.requests += 1
                self.retries += attempt > 0
            try:
                r = self._client.request(method, path, json=body)
            except httpx.TimeoutException as e:
                reason = f"timed out ({type(e).__name__})"
            except httpx.TransportError as e:
                reason = f"connection failed ({type(e).__name__})"
            else:
                if r.status_code == 200:
                    try:
                        return r.json()
                    except ValueError:
                        reason = "the reply was not JSON"
                elif r.status_code in FATAL:
                    raise EngineError(
                        self._scrub(
                            f"model.engine openai: HTTP {r.status_code} from {r.request.url.path}: "
                            f"{FATAL[r.status_code]}"
                        )
                    )
                elif r.status_code in (408, 429) or r.status_code >= 500:
                    reason = f"HTTP {r.status_code}: {r.text}"
                    wait_s = retry_after(r.headers)
                else:  # 400, 413, 422...: this request is wrong and will stay wrong
                    raise Failed(self._scrub(f"HTTP {r.status_code}: {r.text}"))
            if attempt == self.max_retries:
                break
            if wait_s is None:
                step = min(BACKOFF_CAP, self.backoff * 2**attempt)
                wait_s = step / 2 + self._jitter.uniform(0, step / 2)
            time.sleep(min(wait_s, BACKOFF_CAP))
        raise Failed(self._scrub(f"{reason} (after {self.max_retries} retries)"))

    def _map(self, fn: Callable[[T], R], items: list[T]) -> list[R]:
        """``fn`` over ``items`` with ``concurrency`` requests in flight; CallsFailed names the failures."""
        results: list[Any] = [None] * len(items)
        errors: dict[int, str] = {}
        stop = threading.Event()

        def one(i: int) -> None:
            if stop.is_set():
                return
            try:
                results[i] = fn(items[i])
            except Failed as e:
                errors[i] = str(e)
            except BaseException:
                stop.set()  # nothing more goes out: the workers skip what is left
                raise

        pool = ThreadPoolExecutor(max_workers=self.concurrency)
        try:
            futures = [pool.submit(one, i) for i in range(len(items))]
            done, _ = wait(futures, return_when=FIRST_EXCEPTION)
            for f in done:
                f.result()  # an EngineError (refused key, wrong URL) ends the whole call
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        if errors:
            raise CallsFailed(results, errors)
        return results

    def served_model(self) -> str:
        """The model name requests carry: model.served_model, or the first one the server lists."""
        if self._served is None:
            try:
                listed = [m["id"] for m in self._request("GET", "models").get("data", [])]
            except Failed as e:
                raise EngineError(f"model.engine openai: cannot list the server's models: {e}") from None
            if not listed:
                raise EngineError("model.engine openai: the server lists no models; set model.served_model")
            self._served = listed[0]
        return self._served

    def _model_for(self, adapter: str | None) -> str:
        if adapter is None:
            return self.served_model()
        if adapter not in self.adapters:
            raise EngineError(f"adapter '{adapter}' was not added")
        return adapter

    # ------------------------------------------------------------------ set-up

    def model_id(self) -> str:
        local = self.source.label if self.tokenizer is not None else self.model
        return f"openai:{self.served_model()}:{self.api}:{local}"

    def describe(self) -> dict[str, Any]:
        if self.api == "completions":
            mode = (
                "top_logprobs of the first token after the prompt, rendered here with the chat template of "
                f"'{self.model}' and ending in the 'Answer:' prefix (/v1/completions)"
            )
        else:
            mode = (
                "top_logprobs at the first generated token that is an option letter, the server applying "
                "its own chat template (/v1/chat/completions)"
            )
        cov = self._covered
        return {
            "engine": self.name,
            "api": self.api,
            "served_model": self._served,
            "logprob_mode": mode,
            "top_logprobs": self.top_logprobs,
            "floor": "a letter outside the top-k gets min(smallest listed probability, "
            "unlisted mass / letters missing)",
            "prompts_scored": len(cov),
            "mean_covered_mass": round(float(np.mean(cov)), 6) if cov else None,
            "min_covered_mass": round(float(np.min(cov)), 6) if cov else None,
            "prompts_with_a_letter_missing": self._missing,
            "requests": self.requests,
            "retries": self.retries,
        }

    def add_adapter(self, name: str, path: str) -> None:
        """Have the server serve a LoRA adapter: already listed by /v1/models, or loaded at runtime (vLLM)."""
        if name in self.adapters:
            return
        try:
            listed = {m["id"] for m in self._request("GET", "models").get("data", [])}
            if name not in listed:
                self._request("POST", "load_lora_adapter", {"lora_name": name, "lora_path": str(path)})
        except (Failed, EngineError) as e:
            raise EngineError(
                f"model.engine openai: the server cannot serve the adapter '{name}' ({e}); serve it with vLLM "
                "(--enable-lora and VLLM_ALLOW_RUNTIME_LORA_UPDATING=True, the run directory on the same disk), "
                "or use only 'base' configurations with this engine"
            ) from None
        self.adapters[name] = str(path)

    def render(self, prompt: Prompt) -> str:
        from ..prompts import render

        return render(self.tokenizer, prompt)

    def _messages(self, prompt: Prompt) -> list[dict[str, str]]:
        msgs = [{"role": r, "content": c} for r, c in prompt.messages]
        if prompt.prefix and self.api == "chat" and not prompt.prefix.startswith("Answer"):
            raise EngineError(f"model.api chat cannot force the assistant prefix {prompt.prefix!r}; use completions")
        return msgs

    def _stop(self) -> list[str]:
        """The end-of-turn tokens of the local tokenizer, as text."""
        tok = self.tokenizer
        if tok is None:
            return []
        return sorted({t for t in (tok.eos_token, "<|im_end|>") if t and t in tok.get_vocab()})

    def _no_stop_bias(self) -> dict[str, float]:
        """A logit bias that keeps the one scored token from ending the reply.

        A server returns no log-probabilities for a reply that ends at once (llama-cpp-python does not),
        and a small model often puts most of its mass on the end-of-turn token after 'Answer:'. Only the
        letters' ratios matter once renormalised, and servers report log-probabilities before the bias."""
        assert self.tokenizer is not None, "the completions api renders with the model's tokenizer"
        vocab = self.tokenizer.get_vocab()
        return {str(vocab[t]): -100.0 for t in self._stop()}

    # ------------------------------------------------------------------ the interface

    def score_options(self, prompts: list[Prompt], n_options: list[int], adapter: str | None) -> list[np.ndarray]:
        model = self._model_for(adapter)

        def one(item: tuple[Prompt, int]) -> np.ndarray:
            prompt, n = item
            if self.api == "completions":
                body = {
                    "model": model,
                    "prompt": self.render(prompt),
                    "max_tokens": 1,
                    "temperature": 0.0,
                    "logprobs": self.top_logprobs,
                    "logit_bias": self._no_stop_bias(),
                }
                top = self._first_top_completions(self._request("POST", "completions", body))
            else:
                body = {
                    "model": model,
                    "messages": self._messages(prompt),
                    "max_tokens": CHAT_SCAN_TOKENS,
                    "temperature": 0.0,
                    "logprobs": True,
                    "top_logprobs": self.top_logprobs,
                }
                top = self._letter_top_chat(self._request("POST", "chat/completions", body), n)
            dist, covered, missing = letter_distribution(top, n)
            with self._lock:
                self._covered.append(covered)
                self._missing += missing > 0
            return dist

        return self._map(one, list(zip(prompts, n_options, strict=True)))

    @staticmethod
    def _first_top_completions(reply: dict[str, Any]) -> dict[str, float]:
        try:
            tops = reply["choices"][0]["logprobs"]["top_logprobs"]
            if tops and isinstance(tops[0], dict):
                return tops[0]
        except (KeyError, IndexError, TypeError):
            pass
        raise Failed("the server returned no top_logprobs for /v1/completions (does it support logprobs?)")

    @staticmethod
    def _letter_top_chat(reply: dict[str, Any], n: int) -> dict[str, float]:
        try:
            content = reply["choices"][0]["logprobs"]["content"]
        except (KeyError, IndexError, TypeError):
            content = None
        if content is None:
            raise Failed("the server returned no logprobs for /v1/chat/completions (does it support top_logprobs?)")
        if not content:  # the reply ended at once: no letter, and the floor makes the distribution uniform
            return {}
        for pos in content:
            if pos.get("token", "").strip() in list(LETTERS[:n]):
                chosen = pos
                break
        else:
            chosen = content[0]  # no letter written: this position's list has none, and the floor is uniform
        return {t["token"]: t["logprob"] for t in chosen.get("top_logprobs") or []} or {
            chosen["token"]: chosen["logprob"]
        }

    def generate(
        self, prompts: list[Prompt], n: int, temperature: float, seed: int, max_new_tokens: int, adapter: str | None
    ) -> list[list[Sample]]:
        model = self._model_for(adapter)
        greedy = temperature <= 0
        draws = 1 if greedy else n
        items = [(i, j) for i in range(len(prompts)) for j in range(draws)]

        def one(item: tuple[int, int]) -> Sample:
            i, j = item
            body: dict[str, Any] = {
                "model": model,
                "max_tokens": max_new_tokens,
                "temperature": max(temperature, 0.0),
                "seed": seed + j,
            }
            if self.api == "completions":
                body |= {"prompt": self.render(prompts[i]), "logprobs": 1, "stop": self._stop()}
                choice = self._request("POST", "completions", body)["choices"][0]
                lps = (choice.get("logprobs") or {}).get("token_logprobs") or []
                text = choice.get("text", "")
            else:
                body |= {"messages": self._messages(prompts[i]), "logprobs": True}
                choice = self._request("POST", "chat/completions", body)["choices"][0]
                lps = [t.get("logprob") for t in ((choice.get("logprobs") or {}).get("content") or [])]
                text = (choice.get("message") or {}).get("content") or ""
            return Sample(text, [float(x) for x in lps if x is not None and math.isfinite(x)])

        try:
            flat = self._map(one, items)
        except CallsFailed as e:  # regroup per prompt: a prompt fails if any of its samples did
            errors = {items[k][0]: msg for k, msg in e.errors.items()}
            raise CallsFailed(self._group(e.results, prompts, draws, n, errors), errors) from None
        return self._group(flat, prompts, draws, n, {})

    @staticmethod
    def _group(flat: list[Any], prompts: list[Prompt], draws: int, n: int, failed: dict[int, str]) -> list[Any]:
        out: list[Any] = []
        for i in range(len(prompts)):
            own = flat[i * draws : (i + 1) * draws]
            out.append(None if i in failed else own * (n // draws))
        return out
