"""The openai engine, against a real OpenAI-compatible server: llama-cpp-python's, on the embedded GGUF.

A session fixture starts ``python -m llama_cpp.server`` on a free port and stops it at the end. Fault
tests put a small HTTP proxy, written here, between the engine and that server: it counts requests in
flight and answers chosen requests with 500, 429, a dropped connection or a reply too slow for the
engine's timeout. These tests carry the ``server`` marker and are skipped where llama-cpp-python's server
is not installed. The letter parsing and the bookkeeping of failed rows in propagate and select need no
server and run everywhere.
"""

from __future__ import annotations

import http.client
import json
import secrets
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import tiny_config_dict, write_choice_task

from semievol.cli import main
from semievol.config import ConfigError, build_config
from semievol.engines import CallsFailed, EngineError, make_engine
from semievol.engines.fake import FakeEngine
from semievol.engines.openai_wire import letter_distribution
from semievol.pipeline import make_context, run
from semievol.prompts import answer_prompt
from semievol.stages.propagate import read_votes
from semievol.stages.select import SelectionError
from semievol.tasks import Example

# ---------------------------------------------------------------- no server


def test_letter_distribution_pools_tokens_floors_missing_letters_and_reports_coverage():
    top = {" A": np.log(0.5), "A": np.log(0.1), " B": np.log(0.2), " the": np.log(0.05), "\n": np.log(0.01)}
    dist, covered, missing = letter_distribution(top, 3)
    # C is not listed: floor = min(smallest listed 0.01, unlisted mass 0.14 / 1 letter) = 0.01
    expected = np.array([0.6, 0.2, 0.01]) / 0.81
    assert np.allclose(dist, expected) and abs(dist.sum() - 1) < 1e-12
    assert covered == pytest.approx(0.8) and missing == 1


def test_letter_distribution_splits_the_unlisted_mass_among_missing_letters():
    top = {" A": np.log(0.9), " x": np.log(0.06)}  # 0.04 unlisted, shared by B, C, D
    dist, covered, missing = letter_distribution(top, 4)
    assert np.allclose(dist, np.array([0.9, 0.04 / 3, 0.04 / 3, 0.04 / 3]) / (0.9 + 0.04))
    assert covered == pytest.approx(0.9) and missing == 3
    only_other = letter_distribution({" no": 0.0}, 2)  # nothing listed is a letter: uniform, nothing covered
    assert np.allclose(only_other[0], [0.5, 0.5]) and only_other[1] == 0 and only_other[2] == 2
    assert letter_distribution({" E": np.log(0.5), " A": np.log(0.5)}, 2)[1] == pytest.approx(
        0.5
    )  # E is not an option of 2


def test_a_key_put_in_the_config_is_refused_without_being_echoed():
    for values in ({"api_key_env": "sk-live-987654"}, {"api_base": "https://me:sk-live-987654@host/v1"}):
        with pytest.raises(ConfigError) as err:
            build_config({"model": values})
        assert "sk-live-987654" not in str(err.value)


def test_missing_httpx_is_one_line_naming_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "httpx", None)  # what an environment without httpx looks like to import
    with pytest.raises(EngineError, match=r"pip install 'semievol\[openai\]'"):
        make_engine("openai", api="chat")


class FlakyEngine(FakeEngine):
    """The fake engine, except that prompts mentioning ``poison`` fail for good, as after exhausted retries."""

    def __init__(self, poison: str | None) -> None:
        super().__init__()
        self.poison = poison
        self.scored: list[str] = []

    def score_options(self, prompts, n_options, adapter):
        self.scored += [p.key() for p in prompts]
        results = super().score_options(prompts, n_options, adapter)
        errors = {
            i: "HTTP 500: boom (after 2 retries)"
            for i, p in enumerate(prompts)
            if self.poison and self.poison in p.key()
        }
        if errors:
            raise CallsFailed([None if i in errors else r for i, r in enumerate(results)], errors)
        return results


def test_failed_rows_are_marked_counted_refused_by_select_and_retried_alone(tiny_model, choice_task, tmp_path):
    d = tiny_config_dict(tiny_model, choice_task, tmp_path / "run")
    d["propagate"]["configs"] = ["base:0:0", "base:2:0.7"]
    d["select"] = {"justify": "none"}
    cfg = build_config(d)
    ref_dir = tmp_path / "ref"
    ref = run(
        make_context(build_config(d | {"run_dir": str(ref_dir)}), quiet=True, engine=FlakyEngine(None)),
        ("sft", "propagate"),
    )
    assert ref == {}

    flaky = FlakyEngine("unlabeled 7:")
    with pytest.raises(
        EngineError, match=r"propagate: 1 of 24 rows failed after retries .* unlabeled-7: base:0:0: HTTP 500"
    ):
        run(make_context(cfg, quiet=True, engine=flaky), ("sft", "propagate"))
    votes = tmp_path / "run" / "propagate" / "votes.jsonl"
    latest = read_votes(votes)
    assert latest["unlabeled-7"] | {"row": None} == {
        "id": "unlabeled-7",
        "row": None,
        "failed": True,
        "error": "base:0:0: HTTP 500: boom (after 2 retries)",
    }
    assert all(len(r["votes"]) == 2 for i, r in latest.items() if i != "unlabeled-7")
    assert not (tmp_path / "run" / "propagate" / "manifest.json").exists()
    # select never takes the failed row for a voted one, whether asked through the pipeline or directly
    from semievol.stages.select import run_select

    with pytest.raises(SelectionError, match="1 rows failed in propagate"):
        run_select(make_context(cfg, quiet=True, engine=flaky), votes, tmp_path / "sel", tmp_path / "run" / "sft")

    healed = FlakyEngine(None)
    run(make_context(cfg, quiet=True, engine=healed), ("sft", "propagate", "select"))
    assert len(healed.scored) == 2 and all("unlabeled 7:" in k for k in healed.scored)  # that row only, 2 configs
    # the retried row was appended, then the file rewritten once in the split's order (select streams it):
    # byte for byte what a run that never failed wrote
    assert votes.read_bytes() == (ref_dir / "propagate" / "votes.jsonl").read_bytes()
    pl = [json.loads(line) for line in (tmp_path / "run" / "select" / "pseudo_labels.jsonl").open()]
    assert [r["id"] for r in pl] == [f"unlabeled-{i}" for i in range(24)]
    assert all(len(r["votes"]) == 2 for r in pl)


# ---------------------------------------------------------------- a real server, and a proxy that breaks it


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LlamaServer:
    """llama-cpp-python's OpenAI-compatible server on the embedded GGUF, in a subprocess on a fixed port."""

    def __init__(self, gguf: Path, log: Path) -> None:
        self.gguf, self.log, self.port = gguf, log, _free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 120) -> None:
        cmd = [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(self.gguf),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--n_ctx",
            "512",
            "--n_threads",
            "1",
            "--model_alias",
            "smollm2",
        ]
        with open(self.log, "a") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        end = time.time() + timeout
        while time.time() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"llama server exited with {self.proc.returncode}: {self.log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/models", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"llama server not ready after {timeout}s: {self.log.read_text()[-2000:]}")

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture(scope="session")
def llama(tmp_path_factory):
    pytest.importorskip("llama_cpp.server.app", reason="llama-cpp-python[server] is not installed")
    from semievol.models import embedded_gguf

    server = LlamaServer(embedded_gguf(), tmp_path_factory.mktemp("llama") / "server.log")
    server.start()
    yield server
    server.kill()


class Proxy(ThreadingHTTPServer):
    """Forwards to the llama server; counts requests in flight; ``fault(n, body)`` may break request n.

    A fault is None (forward), ("status", code, headers) (answer that status; the body echoes the
    Authorization header, as a careless server might), ("drop",) (close the connection unanswered) or
    ("hang", seconds) (wait, then close unanswered). ``poison``: answer 500 to every request whose body has it.
    """

    daemon_threads = True

    def __init__(self, upstream: str, key: str | None = None) -> None:
        super().__init__(("127.0.0.1", 0), _ProxyHandler)
        self.upstream = upstream.split("//")[1].split("/")[0]
        self.key = key
        self.url = f"http://127.0.0.1:{self.server_address[1]}/v1"
        self.fault: Callable[[int, bytes], tuple | None] = lambda n, body: None
        self.poison: str | None = None
        self.delay = 0.0
        self.lock = threading.Lock()
        self.seen: list[tuple[float, str, bytes]] = []  # (time, method, body) of every request
        self.in_flight = self.max_in_flight = 0
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def posts(self) -> list[tuple[float, bytes]]:
        return [(t, b) for t, m, b in self.seen if m == "POST"]


class _ProxyHandler(BaseHTTPRequestHandler):
    server: Proxy
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    def _answer(self, code: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(code)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _handle(self, method: str) -> None:
        p = self.server
        body = self.rfile.read(int(self.headers.get("Content-Length", 0) or 0))
        with p.lock:
            p.seen.append((time.time(), method, body))
            n = len(p.seen)
            p.in_flight += 1
            p.max_in_flight = max(p.max_in_flight, p.in_flight)
        try:
            auth = self.headers.get("Authorization", "")
            if p.key is not None and auth != f"Bearer {p.key}":
                return self._answer(401, b'{"error": "bad key"}', {"Content-Type": "application/json"})
            fault = p.fault(n, body) if method == "POST" else None
            if p.poison and p.poison.encode() in body:
                fault = ("status", 500, {})
            time.sleep(p.delay)
            if fault and fault[0] == "status":
                return self._answer(fault[1], f"injected failure (request had {auth})".encode(), fault[2])
            if fault and fault[0] in ("drop", "hang"):
                time.sleep(fault[1] if fault[0] == "hang" else 0)
                self.close_connection = True
                return
            conn = http.client.HTTPConnection(p.upstream, timeout=60)
            try:
                conn.request(method, self.path, body=body or None, headers={"Content-Type": "application/json"})
                r = conn.getresponse()
                data = r.read()
            except OSError:  # the server is down: what a gateway in front of it would say
                return self._answer(502, b"bad gateway", {})
            finally:
                conn.close()
            return self._answer(r.status, data, {"Content-Type": "application/json"})
        finally:
            with p.lock:
                p.in_flight -= 1

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")


@pytest.fixture
def proxy(llama):
    p = Proxy(llama.url)
    yield p
    p.shutdown()
    p.server_close()


def _prompts(n: int) -> tuple[list, list[int]]:
    topics = [
        "the boiling point of water at sea level",
        "the largest planet of the solar system",
        "the chemical symbol of gold",
        "the author of Hamlet",
        "the capital of France",
        "the number of legs of a spider",
        "the colour of a clear daytime sky",
        "the freezing point of water",
        "the fastest land animal",
        "the square root of 81",
        "the language spoken in Brazil",
        "the planet nearest the sun",
    ]
    answers = [
        ["100 C", "50 C", "0 C"],
        ["Mars", "Jupiter", "Venus", "Earth"],
        ["Ag", "Au", "Fe"],
        ["Shakespeare", "Dickens", "Austen"],
        ["Rome", "Madrid", "Paris", "Berlin"],
        ["6", "8", "10"],
        ["green", "red", "blue"],
        ["0 C", "10 C", "-10 C"],
        ["cheetah", "cow", "sloth"],
        ["7", "8", "9", "10"],
        ["Spanish", "Portuguese", "French"],
        ["Venus", "Mercury", "Mars"],
    ]
    exs = [
        Example(id=f"q{i}", question=f"What is {topics[i % 12]}?", options=answers[i % 12], answer=None)
        for i in range(n)
    ]
    return [answer_prompt(e, "choice") for e in exs], [len(e.options) for e in exs]


def _engine(url: str, **kw):
    settings = {
        "api_base": url,
        "served_model": "smollm2",
        "concurrency": 2,
        "timeout": 30.0,
        "max_retries": 4,
        "backoff": 0.05,
    } | kw
    return make_engine("openai", model="embedded", **settings)


@pytest.fixture(scope="session")
def reference(llama):
    """Option distributions for 6 prompts straight from the server, no proxy, one request at a time."""
    prompts, n = _prompts(6)
    return _engine(llama.url, concurrency=1).score_options(prompts, n, None)


@pytest.mark.server
def test_option_scores_match_the_hf_engine_on_the_same_weights(llama, reference):
    prompts, n = _prompts(6)
    for d, k in zip(reference, n, strict=True):
        assert d.shape == (k,) and abs(d.sum() - 1) < 1e-9 and (d > 0).all()
    engine = _engine(llama.url)
    again = engine.score_options(prompts, n, None)
    assert all(
        np.allclose(a, b, atol=1e-6) for a, b in zip(again, reference, strict=True)
    )  # concurrency changes nothing
    info = engine.describe()
    assert info["api"] == "completions" and "Answer:" in info["logprob_mode"] and info["prompts_scored"] == 6
    assert 0 < info["min_covered_mass"] <= info["mean_covered_mass"] <= 1
    hf_engine = make_engine("hf", model="embedded", dtype="fp32", batch_size=4, quiet=True)
    hf = hf_engine.score_options(prompts, n, None)
    agree = sum(int(np.argmax(a) == np.argmax(b)) for a, b in zip(reference, hf, strict=True))
    assert agree >= 5, (agree, reference, hf)
    with pytest.raises(EngineError, match="cannot serve the adapter 'warm-1'.*only 'base' configurations"):
        engine.add_adapter("warm-1", "/nonexistent")  # llama.cpp cannot load LoRA adapters at runtime


@pytest.mark.server
def test_chat_mode_reads_the_letter_the_model_writes(llama):
    prompts, n = _prompts(3)
    engine = _engine(llama.url, api="chat")
    dists = engine.score_options(prompts, n, None)
    assert all(abs(d.sum() - 1) < 1e-9 and d.shape == (k,) for d, k in zip(dists, n, strict=True))
    assert "chat/completions" in engine.describe()["logprob_mode"]


@pytest.mark.server
def test_sampling_returns_token_logprobs_and_a_seed_repeats_a_sample(llama):
    prompts, _ = _prompts(2)
    engine = _engine(llama.url)
    a = engine.generate(prompts, 2, 1.0, seed=7, max_new_tokens=12, adapter=None)
    b = engine.generate(prompts, 2, 1.0, seed=7, max_new_tokens=12, adapter=None)
    assert [[s.text for s in row] for row in a] == [[s.text for s in row] for row in b]
    assert all(len(row) == 2 and s.text and s.logprobs and all(x <= 0 for x in s.logprobs) for row in a for s in row)
    greedy = engine.generate(prompts, 3, 0.0, seed=0, max_new_tokens=12, adapter=None)
    assert all(len({s.text for s in row}) == 1 and len(row) == 3 for row in greedy)
    assert np.isfinite(greedy[0][0].mean_nll)


@pytest.mark.server
@pytest.mark.parametrize("limit", [1, 3])
def test_no_more_requests_in_flight_than_the_concurrency(proxy, reference, limit):
    proxy.delay = 0.3
    prompts, n = _prompts(6)
    out = _engine(proxy.url, concurrency=limit).score_options(prompts, n, None)
    assert proxy.max_in_flight == limit
    assert all(np.allclose(a, b, atol=1e-6) for a, b in zip(out, reference, strict=True))


@pytest.mark.server
def test_500_429_dropped_and_slow_requests_are_retried_with_backoff(proxy, reference):
    faults = {
        1: ("status", 500, {}),
        2: ("status", 429, {"Retry-After": "1"}),
        3: ("drop",),
        4: ("hang", 10.0),
        5: ("status", 503, {}),
    }
    proxy.fault = lambda k, body: faults.get(k)
    prompts, n = _prompts(6)
    # one at a time, so no request waits behind another at the server: only the hang outlasts the timeout
    engine = _engine(proxy.url, timeout=8.0, concurrency=1, max_retries=6)  # all five may hit one prompt
    out = engine.score_options(prompts, n, None)
    assert all(np.allclose(a, b, atol=1e-6) for a, b in zip(out, reference, strict=True))
    posts = proxy.posts()
    assert len(posts) - 6 == engine.retries >= 5  # (more only if the loaded machine made a reply outlast 8 s)
    assert all(any(b == posts[k - 1][1] for _, b in posts[k:]) for k in faults)  # each broken request was sent again
    t429, body429 = posts[1]
    retried = next(t for t, b in posts[2:] if b == body429)
    assert retried - t429 >= 1.0  # Retry-After was honoured


@pytest.mark.server
def test_a_request_that_keeps_failing_is_reported_alone_and_a_refused_key_stops_at_once(proxy, reference):
    prompts, n = _prompts(4)
    proxy.poison = "the chemical symbol of gold"
    engine = _engine(proxy.url, max_retries=2)
    with pytest.raises(CallsFailed) as err:
        engine.score_options(prompts, n, None)
    assert (
        set(err.value.errors) == {2} and "HTTP 500" in err.value.errors[2] and "after 2 retries" in err.value.errors[2]
    )
    assert [r is None for r in err.value.results] == [False, False, True, False]
    assert np.allclose(err.value.results[3], reference[3])
    assert sum(b"gold" in b for _, b in proxy.posts()) == 3  # one try and two retries, no more
    proxy.poison, proxy.key = None, "right-key"
    before = len(proxy.posts())
    with pytest.raises(EngineError, match="HTTP 401 .* the API key was refused"):
        _engine(proxy.url, api_key_env="").score_options(prompts, n, None)
    assert len(proxy.posts()) - before <= 2  # at most one per worker: a refused key is not retried


@pytest.mark.server
def test_a_server_killed_and_restarted_mid_call_is_ridden_out(llama, reference):
    prompts, n = _prompts(6)
    engine = _engine(llama.url, concurrency=2, max_retries=10, backoff=0.25)
    box: dict = {}
    worker = threading.Thread(target=lambda: box.setdefault("out", engine.score_options(prompts * 2, n * 2, None)))
    worker.start()
    while engine.requests < 3:
        time.sleep(0.01)
    llama.kill()
    at_kill = engine.requests
    time.sleep(1.0)
    llama.start()
    worker.join(timeout=120)
    assert not worker.is_alive() and "out" in box
    assert at_kill < 12 and engine.retries > 0
    assert all(np.allclose(a, b, atol=1e-6) for a, b in zip(box["out"], reference * 2, strict=True))


@pytest.mark.server
@pytest.mark.slow
def test_the_command_line_marks_a_failing_row_exits_2_with_the_count_retries_it_alone_and_never_writes_the_key(
    llama, tmp_path, monkeypatch, capsys
):
    key = "sk-test-" + secrets.token_hex(16)
    monkeypatch.setenv("SEMIEVOL_TEST_KEY", key)
    proxy = Proxy(llama.url, key=key)  # refuses any request without the key: the engine must send it
    task = write_choice_task(tmp_path / "task", n_labeled=4, n_unlabeled=6, n_test=2)

    def config(run_dir: Path) -> str:
        cfg = {
            "run_dir": str(run_dir),
            "seed": 0,
            "recipe": "paper",  # one short training, not recipe few_labels' six
            "model": {
                "model": "embedded",
                "engine": "openai",
                "api_base": proxy.url,
                "api_key_env": "SEMIEVOL_TEST_KEY",
                "served_model": "smollm2",
                "embedder": "hash",
                "dtype": "fp32",
                "concurrency": 2,
                "max_retries": 1,
                "backoff": 0.05,
            },
            "task": {s: str(task / f"{s}.csv") for s in ("labeled", "unlabeled", "test")},
            "sft": {"max_steps": 1, "batch_size": 2, "micro_batch_size": 2, "max_length": 128},
            "propagate": {"k": 1, "configs": ["base:0:0", "base:1:0.7"], "chunk_size": 4},
            "select": {"justify": "none"},
        }
        path = tmp_path / f"{run_dir.name}.yaml"
        path.write_text(yaml.safe_dump(cfg))
        return str(path)

    run_dir, clean_dir = tmp_path / "run", tmp_path / "clean"
    try:
        assert main(["--quiet", "sft", config(run_dir)]) == 0
        shutil.copytree(run_dir, clean_dir)
        capsys.readouterr()

        proxy.poison = "unlabeled 2:"
        assert main(["--quiet", "propagate", config(run_dir)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "propagate: 1 of 6 rows failed after retries" in err, err
        latest = read_votes(run_dir / "propagate" / "votes.jsonl")
        assert latest["unlabeled-2"]["failed"] and "HTTP 500" in latest["unlabeled-2"]["error"]
        assert "Bearer ***" in latest["unlabeled-2"]["error"]  # the proxy echoed the key; it was cut out
        assert all(len(r["votes"]) == 2 for i, r in latest.items() if i != "unlabeled-2")
        assert main(["--quiet", "select", config(run_dir)]) == 2  # propagate is not finished
        assert "propagate" in capsys.readouterr().err

        proxy.poison = None
        before = len(proxy.posts())
        assert main(["--quiet", "propagate", config(run_dir)]) == 0
        retried = proxy.posts()[before:]
        assert len(retried) == 2 and all(b"unlabeled 2:" in b for _, b in retried)  # that row, both configs
        assert main(["--quiet", "select", config(run_dir)]) == 0
        engine_record = json.loads((run_dir / "propagate" / "configs.json").read_text())["engine"]
        assert engine_record["engine"] == "openai" and "top_logprobs" in engine_record["logprob_mode"]

        assert main(["--quiet", "propagate", config(clean_dir)]) == 0  # never failed: the same votes
        assert read_votes(run_dir / "propagate" / "votes.jsonl") == read_votes(clean_dir / "propagate" / "votes.jsonl")
    finally:
        proxy.shutdown()
        proxy.server_close()
    out = capsys.readouterr()
    files = [f for f in tmp_path.rglob("*") if f.is_file()]
    assert len(files) > 20 and any(f.name == "votes.jsonl" for f in files)
    leaked = [str(f) for f in files if key.encode() in f.read_bytes()]
    assert leaked == [] and key not in out.out + out.err


@pytest.mark.parametrize("key", ['sk-ab"cd\\ef-' + "x" * 24, "plain-key-123456"])
def test_the_scrubber_cuts_a_key_echoed_inside_json(key):
    """A key holding " or \\ comes back escaped in a server's JSON reply; that form must be cut out too."""
    from semievol.secret_values import scrub

    reply = json.dumps({"error": {"message": f"invalid key {key}", "header": f"Bearer {key}"}})
    assert key not in scrub(reply, [key]) and json.dumps(key)[1:-1] not in scrub(reply, [key])
    assert scrub(reply, [key]).count("***") == 2
