"""A second view of the unlabeled rows: the embedder's, whose errors differ from the LLM's.

Two answering configurations need no language model at all. ``knn:K:T`` takes the labels of a row's K
nearest labeled rows in the embedder's space, each weighted by its cosine similarity (sharpened by
``KNN_SHARPNESS``); ``probe:0:T`` fits a multinomial logistic regression on the labeled rows' vectors once
and reads its class probabilities. Both give a distribution over the option letters like a model's vote,
so the vote, the selection and the soft targets treat them alike. They apply to closed label sets whose
rows all share one option list (classification tasks): a letter of a neighbour must mean the same class.
"""

from __future__ import annotations

import numpy as np

from .answers import LETTERS
from .config import ConfigError
from .tasks import Example

KNN_SHARPNESS = 10.0  # weight of a neighbour: exp(KNN_SHARPNESS * cosine similarity)
SMOOTHING = 1e-3  # every option keeps this much mass before renormalising, so no vote has a zero


class ViewError(ConfigError):
    """The embedder's view cannot label this task (rows with different option lists, or no labels)."""


def shared_options(pool: list[Example]) -> list[str]:
    """The one option list every labeled row carries; a ViewError otherwise."""
    options = [tuple(e.options or ()) for e in pool if e.answer is not None]
    if not options or not options[0]:
        raise ViewError("propagate.configs: the knn and probe configurations need labeled multiple-choice rows")
    if any(o != options[0] for o in options):
        raise ViewError(
            "propagate.configs: the knn and probe configurations need every row to share one option list (a "
            "classification task); this task's rows have different options"
        )
    return list(options[0])


def label_indices(pool: list[Example], n_options: int) -> np.ndarray:
    return np.asarray(
        [LETTERS.index(e.answer) for e in pool if e.answer is not None and e.answer in LETTERS[:n_options]],
        dtype=np.int64,
    )


def _smooth(p: np.ndarray) -> np.ndarray:
    p = p + SMOOTHING
    return p / p.sum(axis=-1, keepdims=True)


def knn_distributions(keys: np.ndarray, labels: np.ndarray, queries: np.ndarray, k: int, n_options: int) -> np.ndarray:
    """[rows, options]: similarity-weighted labels of each query's ``k`` nearest keys (unit vectors)."""
    sims = queries @ keys.T
    k = min(k, keys.shape[0])
    top = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    out = np.zeros((queries.shape[0], n_options))
    for r in range(queries.shape[0]):
        s = sims[r, top[r]]
        w = np.exp(KNN_SHARPNESS * (s - s.max()))
        np.add.at(out[r], labels[top[r]], w)
    return _smooth(out / out.sum(axis=1, keepdims=True))


class Probe:
    """Multinomial logistic regression on unit vectors, fitted by full-batch L-BFGS (scikit-learn)."""

    def __init__(self, keys: np.ndarray, labels: np.ndarray, n_options: int, c: float = 1.0) -> None:
        self.n_options = n_options
        self.classes = np.unique(labels)
        self.model = None
        if len(self.classes) > 1:
            from sklearn.linear_model import LogisticRegression

            self.model = LogisticRegression(C=c, max_iter=1000).fit(keys, labels)

    def distributions(self, queries: np.ndarray) -> np.ndarray:
        out = np.zeros((queries.shape[0], self.n_options))
        if self.model is None:  # one class among the labels: the probe can only say that class
            out[:, self.classes] = 1.0
        else:
            out[:, self.model.classes_] = self.model.predict_proba(queries)
        return _smooth(out)
