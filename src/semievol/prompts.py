"""Every prompt semievol shows a model, as named, versioned templates.

A prompt is a list of chat messages plus an assistant prefix; the engine renders it with the model's chat
template and appends the prefix (``Answer:`` for option scoring). Retrieved demos go into the system message
as worked examples, not as earlier chat turns, which a small model copies the answers of; each is written
without the instruction lines and options it shares with the question asked (demos-compact-v2: about half
the tokens of demos-system-v1, which repeated them in every example).
Artifacts record ``TEMPLATE_IDS`` so a change of wording is visible in a run directory.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .answers import LETTERS
from .tasks import Example

TEMPLATE_IDS = {
    "choice": "choice-v1",
    "free": "free-v1",
    "demos": "demos-compact-v2",
    "justify_choice": "justify-choice-v2",
    "justify_free": "justify-free-v2",
    "phrasing_1": "phrasing-1-v1",
    "phrasing_2": "phrasing-2-v1",
}

SYSTEM = "You are a careful expert. Read the question and reply with the final answer in the form 'Answer: X'."

# PET-style phrasings of the question prompt, for answering configurations ('warm:0:0:p1'): other words for the
# instruction and another layout of the options, each read by the same letters after 'Answer:'. Phrasing 0 is
# the prompt training uses; the others let several configurations of one model err differently.
PHRASING_SYSTEM = {
    0: SYSTEM,
    1: "Choose the option that fits the text best. Reply with its letter as 'Answer: X'.",
    2: "You label texts. Pick exactly one of the listed options and answer in the form 'Answer: X'.",
}


@dataclass(frozen=True)
class Prompt:
    messages: tuple[tuple[str, str], ...]
    prefix: str = ""
    shared_system: bool = False
    """The system message is the same for every question (no demos, no candidates): an engine may compute
    it once and reuse it. Only the prompt's builder knows this; an engine must not infer it from which
    prompts happen to share a call, or a row's scores would depend on its chunk."""
    shared_chars: int = 0
    """The system message's first ``shared_chars`` characters are the same for every prompt of this builder
    (the instructions before the demos or the candidates): an engine may compute them once."""

    def key(self) -> str:
        return "\x1e".join(f"{r}\x1f{c}" for r, c in self.messages) + "\x1d" + self.prefix


def render(tokenizer: Any, prompt: Prompt) -> str:
    """The prompt as the model sees it: its chat template with the generation prompt, then the prefix."""
    msgs = [{"role": r, "content": c} for r, c in prompt.messages]
    return tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True) + prompt.prefix


def format_question(ex: Example, phrasing: int = 0) -> str:
    """The user turn: the question and its options (phrasing 1: options in parentheses on one line; 2: the
    options before the question)."""
    if not ex.options:
        return ex.question
    if phrasing == 1:
        return f"{ex.question}\n\n" + " ".join(f"({LETTERS[i]}) {o}" for i, o in enumerate(ex.options))
    if phrasing == 2:
        listed = "; ".join(f"{LETTERS[i]} = {o}" for i, o in enumerate(ex.options))
        return f"Possible answers: {listed}.\n\nText: {ex.question}"
    opts = "\n".join(f"{LETTERS[i]}. {o}" for i, o in enumerate(ex.options))
    return f"{ex.question}\n\nOptions:\n{opts}"


def target_text(ex: Example, answer: str, use_rationale: bool) -> str:
    """What the model learns to reply: an optional rationale, then 'Answer: X'."""
    if use_rationale and ex.rationale and not ex.options:
        return f"{ex.rationale}\nAnswer: {answer}"
    return f"Answer: {answer}"


DEMOS_HEADER = "Solved examples of similar questions (instruction and options as in the question below unless shown):"


def _demo_text(d: Example, ex: Example, kind: str) -> str:
    """A worked example, written compactly: the leading lines it shares with the question asked (an instruction
    every question repeats) and its options, when they are the question's, are left out."""
    lines, asked = d.question.split("\n"), ex.question.split("\n")
    n = 0
    while n < min(len(lines), len(asked)) - 1 and lines[n] == asked[n]:
        n += 1
    text = "\n".join(lines[n:]).strip()
    if d.options and list(d.options) != list(ex.options or []):
        text += "\nOptions: " + "; ".join(f"{LETTERS[i]}. {o}" for i, o in enumerate(d.options))
    return f"{text}\n{target_text(d, d.answer or '', use_rationale=kind == 'free')}"


def demos_opening(phrasing: int = 0) -> str:
    """How every prompt with demos begins its system message."""
    return f"{PHRASING_SYSTEM[phrasing]}\n\n{DEMOS_HEADER}\n"


DEMOS_OPENING = demos_opening(0)


def _system(ex: Example, demos: list[Example], kind: str, phrasing: int) -> str:
    if not demos:
        return PHRASING_SYSTEM[phrasing]
    return demos_opening(phrasing) + "\n".join(f"{i}. {_demo_text(d, ex, kind)}" for i, d in enumerate(demos, 1))


def answer_prompt(ex: Example, kind: str, demos: list[Example] | None = None, phrasing: int = 0) -> Prompt:
    """The question prompt. For choice tasks the prefix 'Answer:' is where option letters are scored.
    ``phrasing`` (multiple choice): one of ``PHRASING_SYSTEM``'s wordings, 0 the one training uses."""
    demos = demos or []
    msgs = (("system", _system(ex, demos, kind, phrasing)), ("user", format_question(ex, phrasing)))
    shared = len(demos_opening(phrasing)) if demos else 0
    return Prompt(msgs, "Answer:" if kind == "choice" else "", shared_system=not demos, shared_chars=shared)


def justify_prompt(ex: Example, kind: str, candidates: list[str], reasons: list[str] | None = None) -> Prompt:
    """Self-justification: the question with the n candidate answers, asking for the final one."""
    # the user turn stays exactly as the warm model saw it in training; the candidates go in the system
    # message (appended to the question, they changed the prompt enough to cost the small model accuracy)
    lines = []
    for i, c in enumerate(candidates, 1):
        r = reasons[i - 1].strip() if reasons and reasons[i - 1] else ""
        if r and kind == "free":
            lines.append(f"Attempt {i}: {r}\n(final: {c})")
        else:
            lines.append(f"Attempt {i}: {c}")
    opening = f"{SYSTEM}\n\nEarlier attempts at the next question answered:\n"
    system = opening + "\n".join(lines) + "\nThey may be wrong. Weigh them and give the correct answer."
    msgs = (("system", system), ("user", format_question(ex)))
    return Prompt(msgs, "Answer:" if kind == "choice" else "", shared_chars=len(opening))


def training_pair(ex: Example, answer: str, kind: str, use_rationale: bool) -> tuple[Prompt, str]:
    """(prompt, response) for fine-tuning: the zero-demo question prompt and the target text."""
    p = answer_prompt(ex, kind)
    if kind == "choice":
        # the prompt's 'Answer:' prefix belongs to the response when training
        return Prompt(p.messages, ""), f"Answer: {answer}"
    return p, target_text(ex, answer, use_rationale)
