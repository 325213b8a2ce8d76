"""The demo task: short company news, each to be classed as negative, neutral or positive for the company.

Generated deterministically (no download): a sentence joins a company, a business measure and a
movement; the movement decides the label. Words that sound good or bad but carry no signal ("despite
analyst worries", "amid strong competition") are mixed in, so surface cues mislead and the embedded model
starts weak. The options are shown in a fixed order, as in Financial PhraseBank.
"""

from __future__ import annotations

import random

from .types import Example, Split, Task

COMPANIES = [
    "Norvik",
    "Aldera",
    "Quenta",
    "Balsam Oy",
    "Trivex",
    "Helmora",
    "Castell",
    "Oruna",
    "Petrik",
    "Valmeri",
    "Sundra",
    "Korpi Group",
    "Lintu",
    "Ekon",
    "Mirel",
    "Ranta Steel",
    "Vasko",
    "Ilmari",
]
MEASURES = [
    "net sales",
    "operating profit",
    "order intake",
    "market share",
    "gross margin",
    "export volume",
    "earnings per share",
    "customer base",
]
PERIODS = [
    "in the first quarter",
    "in 2009",
    "in the third quarter",
    "last year",
    "in the half-year",
    "in January-June",
    "in the fourth quarter",
]
MOVES = {
    "positive": ["rose by {n}%", "grew {n}%", "climbed to a record, up {n}%", "improved by {n}%", "jumped {n}%"],
    "negative": ["fell by {n}%", "dropped {n}%", "declined by {n}%", "slumped {n}%", "shrank by {n}%"],
    "neutral": [
        "stayed at the level of a year earlier",
        "was unchanged",
        "remained flat",
        "will be reported next month",
        "was restated under the new accounting standard",
    ],
}
DISTRACTORS = [
    "",
    "",
    " despite analyst worries",
    " amid strong competition",
    " as the CEO resigned",
    " after a record-breaking campaign",
    " while rivals struggled",
    " in a weak market",
]
LABELS = ["negative", "neutral", "positive"]


def _sentence(rng: random.Random, label: str) -> str:
    move = rng.choice(MOVES[label]).format(n=rng.randint(2, 48))
    return f"{rng.choice(COMPANIES)}'s {rng.choice(MEASURES)} {move} {rng.choice(PERIODS)}{rng.choice(DISTRACTORS)}."


def _examples(rng: random.Random, n: int, split: str, seen: set[str]) -> list[Example]:
    out: list[Example] = []
    while len(out) < n:
        label = rng.choices(LABELS, weights=[3, 4, 3])[0]
        text = _sentence(rng, label)
        if text in seen:
            continue
        seen.add(text)
        q = f"What is the sentiment of this news for the company?\n{text}"
        out.append(
            Example(
                id=f"{split}-{len(out) + 1}",
                question=q,
                options=list(LABELS),
                answer="ABC"[LABELS.index(label)],
                row=len(out) + 2,
            )
        )
    return out


def make_demo_task(seed: int = 0, labeled: int = 48, unlabeled: int = 96, test: int = 120) -> Task:
    rng = random.Random(1234 + seed)
    seen: set[str] = set()
    return Task(
        name="demo",
        kind="choice",
        labeled=Split("labeled", "demo:labeled", _examples(rng, labeled, "labeled", seen)),
        unlabeled=Split("unlabeled", "demo:unlabeled", _examples(rng, unlabeled, "unlabeled", seen)),
        test=Split("test", "demo:test", _examples(rng, test, "test", seen)),
    )
