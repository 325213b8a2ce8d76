"""The pseudo-label sections of the report (confidence, coverage, agreement, classes) and the small HTML
pieces every section is built from: inline PNG plots, notes, tables."""

from __future__ import annotations

import base64
import html
import io
import math
from collections import Counter
from collections.abc import Callable
from typing import Any

from .answers import LETTERS, answers_match, canonical_vote
from .stages.scoring import majority

MAX_CLASSES = 20  # free-form tasks can have hundreds of distinct answers; the plot shows the most frequent


def esc(x: Any) -> str:
    return html.escape(str(x))


def html_plot(draw: Callable[[Any], None], w: float = 6.4, h: float = 3.6) -> str:
    """``draw(ax)`` on a fresh figure, returned as an inline PNG ``<img>``."""
    from matplotlib.figure import Figure  # no pyplot: no global state; savefig uses the Agg canvas

    fig = Figure(figsize=(w, h))
    draw(fig.subplots())
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return f'<img alt="plot" src="data:image/png;base64,{data}">'


def html_note(text: str) -> str:
    return f'<p class="note">{esc(text)}</p>'


def html_table(header: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def pct(x: float | None) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.1f}%"


def section_confidence(rows: list[dict[str, Any]] | None, selection: dict[str, Any]) -> str:
    if rows is None:
        return html_note("No pseudo-labels yet: the select stage has not finished.")
    scores = [r["score"] for r in rows if r["score"] is not None and math.isfinite(r["score"])]
    if not scores:
        return html_note("No finite confidence scores among the pseudo-labels.")
    with_gold = [r for r in rows if "correct" in r and math.isfinite(r["score"])]
    tau = selection.get("tau")

    def draw(ax: Any) -> None:
        lo, hi = min(scores), max(scores)
        edges = [lo + (hi - lo) * i / 20 for i in range(21)] if hi > lo else 20
        if with_gold:
            ax.hist(
                [[r["score"] for r in with_gold if r["correct"]], [r["score"] for r in with_gold if not r["correct"]]],
                bins=edges,
                stacked=True,
                color=["#31a354", "#de2d26"],
                label=["correct", "wrong"],
            )
            ax.legend()
        else:
            ax.hist(scores, bins=edges, color="#6baed6")
        if isinstance(tau, int | float) and math.isfinite(tau):
            ax.axvline(tau, color="k", linestyle="--")
            ax.text(tau, ax.get_ylim()[1] * 0.95, f" threshold {tau:.3g}", va="top")
        ax.set_xlabel(f"score: {selection.get('confidence_note', 'confidence score')} (lower = more confident)")
        ax.set_ylabel("pseudo-labels")

    out = html_plot(draw)
    if not with_gold:
        out += html_note("The unlabeled split has no gold answers, so correctness cannot be shown.")
    if len(rows) > len(scores):
        out += html_note(f"{len(rows) - len(scores)} row(s) without an answer (infinite score) are not shown.")
    return out


def accuracy_coverage_curve(rows: list[dict[str, Any]]) -> list[tuple[float, float]]:
    """(coverage, accuracy of the most confident share) for every prefix of the rows with gold, by score."""
    gold = sorted((r for r in rows if "correct" in r), key=lambda r: r["score"])
    out, k = [], 0
    for i, r in enumerate(gold, 1):
        k += bool(r["correct"])
        out.append((i / len(gold), k / i))
    return out


def section_coverage(rows: list[dict[str, Any]] | None, selection: dict[str, Any]) -> str:
    if rows is None:
        return html_note("No pseudo-labels yet: the select stage has not finished.")
    gold = [r for r in rows if "correct" in r]
    if not gold:
        return html_note("The unlabeled split has no gold answers, so pseudo-label accuracy cannot be measured.")
    curve = accuracy_coverage_curve(gold)
    sel = [r for r in gold if r["selected"]]
    cov = len(sel) / len(gold)
    sel_acc = sum(r["correct"] for r in sel) / len(sel) if sel else None
    all_acc = sum(r["correct"] for r in gold) / len(gold)
    rule = selection.get("rule", "?")
    tau = selection.get("tau")

    def draw(ax: Any) -> None:
        ax.plot([c for c, _ in curve], [a for _, a in curve], color="#2171b5", label="most confident share")
        ax.axhline(all_acc, color="#9e9e9e", linestyle=":", label=f"all pseudo-labels ({pct(all_acc)})")
        label = f"selected ({rule}" + (f", tau {tau:.3g}" if isinstance(tau, int | float) else "") + ")"
        ax.axvline(cov, color="k", linestyle="--")
        if sel_acc is not None:
            ax.plot([cov], [sel_acc], "o", color="#de2d26", label=f"{label}: {pct(sel_acc)} at {pct(cov)}")
        ax.set_xlim(0, 1.02)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("coverage (share of pseudo-labels kept, most confident first)")
        ax.set_ylabel("pseudo-label accuracy")
        ax.legend(loc="best", fontsize="small")

    table = html_table(
        ["pseudo-labels", "accuracy", "n"], [["all", pct(all_acc), len(gold)], ["selected", pct(sel_acc), len(sel)]]
    )
    out = html_plot(draw) + table
    if rule not in ("percentile", "fixed", "all"):
        out += html_note(
            f"The '{rule}' rule does not keep one score prefix, so the selected point may lie off the curve."
        )
    return out


def section_agreement(rows: list[dict[str, Any]] | None, metrics: dict[str, Any] | None) -> str:
    if rows is None:
        return html_note("No pseudo-labels yet: the select stage has not finished.")
    n = len(rows)
    if not n:
        return html_note("The pseudo-label file is empty.")
    unanimous = sum(bool(r["unanimous"]) for r in rows)
    shares: Counter = Counter()
    changed = 0
    for r in rows:
        kind = "choice" if r.get("options") else "free"
        votes = [v["answer"] for v in r["votes"]]
        shares[(sum(answers_match(v, r["answer"], kind) for v in votes), len(votes))] += 1
        top = majority(canonical_vote(votes, kind))
        if top is not None and r["answer"] is not None and not answers_match(top, r["answer"], kind):
            changed += 1
    out = [
        f"<p><b>Vote agreement rate: {pct(unanimous / n)}</b> ({unanimous} of {n} questions had all votes "
        f"agree). The final answer differs from the most common vote in {changed} question(s).</p>"
    ]

    def draw(ax: Any) -> None:
        keys = sorted(shares)
        ax.bar([f"{a}/{m}" for a, m in keys], [shares[k] for k in keys], color="#6baed6")
        ax.set_xlabel("votes agreeing with the final answer")
        ax.set_ylabel("questions")

    out.append(html_plot(draw, 5.5, 3.0))
    gold = [r for r in rows if "correct" in r]
    if gold:
        una = [r for r in gold if r["unanimous"]]
        dis = [r for r in gold if not r["unanimous"]]
        acc = [
            ["unanimous votes", pct(sum(r["correct"] for r in una) / len(una)) if una else "-", len(una)],
            ["disagreeing votes", pct(sum(r["correct"] for r in dis) / len(dis)) if dis else "-", len(dis)],
        ]
        pl = (metrics or {}).get("pseudo_labels") or {}
        for c, rec in (pl.get("per_config") or {}).items():
            acc.append([f"configuration {c} alone", pct(rec["accuracy"]), rec["n"]])
        out.append(html_table(["pseudo-labels", "accuracy", "n"], acc))
    else:
        out.append(html_note("No gold answers: accuracy by agreement cannot be shown."))
    return "".join(out)


def option_names(rows: list[dict[str, Any]]) -> dict[str, str]:
    """'A' -> 'A negative' where every row has the same options (a closed label set such as FPB's), else {}."""
    opts = {tuple(r["options"]) for r in rows if r.get("options")}
    if len(opts) != 1 or any(not r.get("options") for r in rows):
        return {}
    return {LETTERS[i]: f"{LETTERS[i]} {o}" for i, o in enumerate(next(iter(opts)))}


def section_classes(rows: list[dict[str, Any]] | None, selection: dict[str, Any]) -> str:
    if rows is None:
        return html_note("No pseudo-labels yet: the select stage has not finished.")
    labels = option_names(rows)
    predicted = Counter(str(r["answer"]) for r in rows)
    selected = Counter(str(r["answer"]) for r in rows if r["selected"])
    gold = Counter(str(r["gold"]) for r in rows if "gold" in r)
    names = [c for c, _ in predicted.most_common(MAX_CLASSES)]
    if all(len(c) <= 2 for c in names):
        names.sort()
    ticks = [labels.get(c, c) for c in names]

    def draw(ax: Any) -> None:
        bars = [("predicted", predicted, "#9ecae1"), ("selected", selected, "#2171b5")]
        if gold:
            bars.append(("gold", gold, "#fdae6b"))
        w = 0.8 / len(bars)
        for j, (label, counts, color) in enumerate(bars):
            ax.bar(
                [x + (j - (len(bars) - 1) / 2) * w for x in range(len(names))],
                [counts[c] for c in names],
                w,
                label=label,
                color=color,
            )
        slanted = max(map(len, ticks), default=0) > 3
        ax.set_xticks(range(len(names)), ticks, rotation=30 if slanted else 0, ha="right" if slanted else "center")
        ax.set_ylabel("questions")
        ax.legend()

    header = ["class", "predicted", "selected", "kept"] + (["gold"] if gold else [])
    table = [
        [labels.get(c, c), predicted[c], selected[c], pct(selected[c] / predicted[c])] + ([gold[c]] if gold else [])
        for c in names
    ]
    out = html_plot(draw, max(5.0, 0.5 * len(names) + 2), 3.4) + html_table(header, table)
    if len(predicted) > len(names):
        out += html_note(f"{len(predicted) - len(names)} less frequent answer(s) are not shown.")
    lean = selection.get("lean")  # the select stage's own reading of the justifier
    if lean:
        a = labels.get(lean["answer"], lean["answer"])
        out += html_note(
            f"The justification answered {a} for {lean['share']:.0%} of the {lean['rows']} rows it "
            f"justified, where the configurations voted {a} {lean['vote_share']:.0%} of the time: a "
            "lean to one option rather than a reading of the questions is likely. "
            "--select.calibrate true --select.candidates_only true (if not set already) is the fix to try."
        )
    new = selection.get("new_to_warm")  # kept labels against the warm model's own answers (warm:0:0)
    if new:
        out += html_note(
            f"{new['new']} of the {new['kept']} kept pseudo-labels differ from the warm model's own answer "
            + (
                f"({new['share']:.0%}): what evolve can learn that the warm model does not already say."
                if new["new"]
                else "(none: the evolved model, trained from the base model, learns the warm model's answers "
                "through the unlabeled rows; any gain over the warm model is that transfer, not corrected labels)."
                if new.get("student")
                else "(none: evolve was shown only answers the warm model already gives, so it can repeat them but "
                "not correct them)."
            )
        )
    split = selection.get("members_split")  # the warm models' answers compared with one another (sft.members)
    if split:
        out += html_note(
            f"The warm models gave different answers on {split['split']} of the {split['rows']} unlabeled rows "
            f"({split['share']:.0%}): the rows where their mean can teach a student what one of them does not "
            "know. In the few-labels benchmark the evolved model gained 1-4 points over the warm models on FPB, "
            "whose warm models split on a fifth to a quarter of the test rows, and 3-10 on SST-2 and emotion, a "
            "third or more: a guide to the task, not to one draw of its labeled rows."
        )
    return out
