"""In-context propagation: embed labeled questions once, find the k nearest for each unlabeled question.

Search is exact cosine similarity in NumPy (normalised vectors, one matrix product per block) for small
labeled sets, and FAISS (inner-product index) when it is installed and the set is large or when asked.
Embeddings are cached in the run directory as ``.npy`` files, written atomically.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Literal

import numpy as np

FAISS_FROM = 20_000


def embed(texts: list[str], embedder: Any, batch_size: int = 64) -> np.ndarray:
    vecs = embedder.encode(
        texts, batch_size=batch_size, normalize_embeddings=True, show_progress_bar=False, convert_to_numpy=True
    )
    return np.asarray(vecs, dtype=np.float32)


def hash_embed(texts: list[str], dim: int = 64) -> np.ndarray:
    """A deterministic bag-of-words embedding (for the fake engine and tests: no model needed)."""
    out = np.zeros((len(texts), dim), dtype=np.float32)
    for i, t in enumerate(texts):
        for w in t.lower().split():
            h = int.from_bytes(hashlib.md5(w.encode()).digest()[:4], "little")
            out[i, h % dim] += 1.0 if (h >> 16) & 1 else -1.0
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return out / np.maximum(norms, 1e-12)


def text_embedder(name: str) -> Any:
    """``texts -> unit vectors`` for an embedder setting: 'hash' (``hash_embed``, no model) or a model that
    ``models.load_embedder`` loads ('embedded', a sentence-transformers id or folder)."""
    if name == "hash":
        return hash_embed
    from .models import load_embedder

    model = load_embedder(name)
    return lambda texts: embed(texts, model)


def have_faiss() -> bool:
    import importlib.util

    return importlib.util.find_spec("faiss") is not None


def nearest(
    keys: np.ndarray,
    queries: np.ndarray,
    k: int,
    index: Literal["auto", "numpy", "faiss"] = "auto",
    block: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(indices, similarities) of the k most similar keys per query, best first. Vectors are unit-normalised.

    NumPy search takes ``block`` queries at a time; by default as many as keep the similarity matrix near
    64 MB, so the temporaries stay bounded however many queries there are."""
    k = min(k, len(keys))
    if k == 0:
        return np.zeros((len(queries), 0), dtype=np.int64), np.zeros((len(queries), 0), dtype=np.float32)
    use_faiss = index == "faiss" or (index == "auto" and len(keys) >= FAISS_FROM and have_faiss())
    if use_faiss:
        try:
            import faiss
        except ImportError:
            raise RuntimeError(
                "propagate.index is 'faiss' but faiss is not installed: pip install 'semievol[faiss]'"
            ) from None
        ix = faiss.IndexFlatIP(keys.shape[1])
        ix.add(np.ascontiguousarray(keys, dtype=np.float32))
        sims, idx = ix.search(np.ascontiguousarray(queries, dtype=np.float32), k)
        return idx.astype(np.int64), sims
    block = block or max(1, (1 << 24) // max(len(keys), 1))
    idx_out = np.empty((len(queries), k), dtype=np.int64)
    sim_out = np.empty((len(queries), k), dtype=np.float32)
    for s in range(0, len(queries), block):
        sims = queries[s : s + block] @ keys.T
        part = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        psims = np.take_along_axis(sims, part, axis=1)
        order = np.argsort(-psims, axis=1, kind="stable")
        idx_out[s : s + block] = np.take_along_axis(part, order, axis=1)
        sim_out[s : s + block] = np.take_along_axis(psims, order, axis=1)
    return idx_out, sim_out


def embedding_file(path: Path, texts: list[str]) -> Path:
    """Where ``cached_embeddings(path, texts, ...)`` keeps the vectors: ``path`` with a hash of the texts."""
    digest = hashlib.sha256("\x00".join(texts).encode()).hexdigest()[:16]
    return path.with_name(f"{path.stem}-{digest}.npy")


def cached_embeddings(path: Path, texts: list[str], make: Any) -> np.ndarray:
    """Embeddings of ``texts`` from ``path`` if it holds them (checked by a hash of the texts), else computed.

    The ``.npy`` file is written under a hidden temporary name, fsynced and renamed; one that cannot be read,
    holds the wrong number of rows, values that are not finite, or a first row that is not the embedding of
    the first text (a file copied or damaged: its values do not match its name) is computed again.
    """
    f = embedding_file(path, texts)
    if f.exists():
        try:
            vecs = np.load(f, allow_pickle=False)
            if (
                vecs.ndim == 2
                and len(vecs) == len(texts)
                and np.isfinite(vecs).all()
                and (not texts or np.allclose(vecs[0], make(texts[:1])[0], atol=1e-3))
            ):
                return vecs
        except (OSError, ValueError, EOFError):
            pass
    vecs = make(texts)
    f.parent.mkdir(parents=True, exist_ok=True)
    tmp = f.with_name(f".{f.name}.{os.getpid()}.tmp")  # shard workers may compute the same file at once
    with open(tmp, "wb") as fh:  # a file object: np.save adds no extension
        np.save(fh, vecs)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, f)
    return vecs
