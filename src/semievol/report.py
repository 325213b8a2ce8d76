"""The HTML report of a run directory: one self-contained ``report.html`` with its plots embedded.

Sections (each an element with an ``id``): test accuracy of base, warm and evolved models with 95%
intervals; the confidence score histogram split by pseudo-label correctness; pseudo-label accuracy against
coverage with the chosen threshold marked; vote agreement; predicted and selected counts per class; the
training loss curves; the labeled rows ``semievol audit`` flagged; the run's config; the stage timings. A missing piece (no gold answers, a stage not
run yet) gives a short note in its section instead of a plot. Plots are drawn with matplotlib's Agg
renderer into PNG bytes and inlined as base64, so the file opens anywhere with no network and no script.
Later rounds (``select_r2``, ``evolve_r2``, ...) are read where present: the pseudo-label sections show the
last round, the loss section every round.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from .answers import LETTERS, answers_match, canonical_vote
from .config import other_engines_settings
from .jsonio import atomic_write_text, read_jsonl
from .rundir import last_finished, load_pseudo_labels, need_run_dir, stage_dirs
from .stages.scoring import majority

SECTIONS = {
    "verdict": "Verdict",
    "accuracy": "Test accuracy",
    "confidence": "Confidence of pseudo-labels",
    "coverage": "Pseudo-label accuracy against coverage",
    "agreement": "Vote agreement",
    "classes": "Classes: predicted and selected",
    "training": "Training loss",
    "audit": "Label audit",
    "config": "Config",
    "timings": "Stage timings",
}
MAX_CLASSES = 20  # free-form tasks can have hundreds of distinct answers; the plot shows the most frequent


def _json(path: Path) -> Any:
    return json.loads(path.read_text()) if path.exists() else None


# ---------------------------------------------------------------- plots and HTML pieces


def _esc(x: Any) -> str:
    return html.escape(str(x))


def _plot(draw: Callable[[Any], None], w: float = 6.4, h: float = 3.6) -> str:
    """``draw(ax)`` on a fresh figure, returned as an inline PNG ``<img>``."""
    from matplotlib.figure import Figure  # no pyplot: no global state; savefig uses the Agg canvas

    fig = Figure(figsize=(w, h))
    draw(fig.subplots())
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return f'<img alt="plot" src="data:image/png;base64,{data}">'


def _note(text: str) -> str:
    return f'<p class="note">{_esc(text)}</p>'


def _table(header: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{_esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_esc(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _pct(x: float | None) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.1f}%"


# ---------------------------------------------------------------- sections


def section_verdict(metrics: dict[str, Any] | None) -> str:
    said = (metrics or {}).get("verdict")
    if not said:
        return _note("No verdict: it needs the evolved model and the warm model or the compute-matched SFT "
                     "evaluated on the test split (evaluate.models).")
    return "".join(f"<p><strong>{_esc(line)}</strong></p>" for line in said["lines"])


def section_accuracy(metrics: dict[str, Any] | None) -> str:
    if not metrics or not metrics.get("models"):
        return _note("No test accuracy yet: the evaluate stage has not finished (evaluate/metrics.json is missing).")
    models = metrics["models"]
    rows = [[name, _pct(r["accuracy"]), f"{_pct(r['ci95'][0])} - {_pct(r['ci95'][1])}", r["correct"], r["n"]]
            for name, r in models.items()]

    def draw(ax: Any) -> None:
        names = list(models)
        acc = [models[n]["accuracy"] for n in names]
        # a Wilson bound can sit a rounding error inside the accuracy (120 of 120: upper 0.9999999999999999)
        lo = [max(0.0, models[n]["accuracy"] - models[n]["ci95"][0]) for n in names]
        hi = [max(0.0, models[n]["ci95"][1] - models[n]["accuracy"]) for n in names]
        ax.bar(names, acc, yerr=[lo, hi], capsize=6, color=["#9e9e9e", "#6baed6", "#2171b5", "#08306b"][: len(names)])
        ax.set_ylim(0, 1)
        ax.set_ylabel("accuracy")
        ax.set_title(f"{metrics.get('task', '')}: test accuracy, 95% Wilson interval")

    return _plot(draw, 5.5, 3.2) + _table(["model", "accuracy", "95% interval", "correct", "n"], rows)


def section_confidence(rows: list[dict[str, Any]] | None, selection: dict[str, Any]) -> str:
    if rows is None:
        return _note("No pseudo-labels yet: the select stage has not finished.")
    scores = [r["score"] for r in rows if r["score"] is not None and math.isfinite(r["score"])]
    if not scores:
        return _note("No finite confidence scores among the pseudo-labels.")
    with_gold = [r for r in rows if "correct" in r and math.isfinite(r["score"])]
    tau = selection.get("tau")

    def draw(ax: Any) -> None:
        lo, hi = min(scores), max(scores)
        edges = [lo + (hi - lo) * i / 20 for i in range(21)] if hi > lo else 20
        if with_gold:
            ax.hist([[r["score"] for r in with_gold if r["correct"]], [r["score"] for r in with_gold if not r["correct"]]],
                    bins=edges, stacked=True, color=["#31a354", "#de2d26"], label=["correct", "wrong"])
            ax.legend()
        else:
            ax.hist(scores, bins=edges, color="#6baed6")
        if isinstance(tau, int | float) and math.isfinite(tau):
            ax.axvline(tau, color="k", linestyle="--")
            ax.text(tau, ax.get_ylim()[1] * 0.95, f" threshold {tau:.3g}", va="top")
        ax.set_xlabel(f"score: {selection.get('confidence_note', 'confidence score')} (lower = more confident)")
        ax.set_ylabel("pseudo-labels")

    out = _plot(draw)
    if not with_gold:
        out += _note("The unlabeled split has no gold answers, so correctness cannot be shown.")
    if len(rows) > len(scores):
        out += _note(f"{len(rows) - len(scores)} row(s) without an answer (infinite score) are not shown.")
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
        return _note("No pseudo-labels yet: the select stage has not finished.")
    gold = [r for r in rows if "correct" in r]
    if not gold:
        return _note("The unlabeled split has no gold answers, so pseudo-label accuracy cannot be measured.")
    curve = accuracy_coverage_curve(gold)
    sel = [r for r in gold if r["selected"]]
    cov = len(sel) / len(gold)
    sel_acc = sum(r["correct"] for r in sel) / len(sel) if sel else None
    all_acc = sum(r["correct"] for r in gold) / len(gold)
    rule = selection.get("rule", "?")
    tau = selection.get("tau")

    def draw(ax: Any) -> None:
        ax.plot([c for c, _ in curve], [a for _, a in curve], color="#2171b5", label="most confident share")
        ax.axhline(all_acc, color="#9e9e9e", linestyle=":", label=f"all pseudo-labels ({_pct(all_acc)})")
        label = f"selected ({rule}" + (f", tau {tau:.3g}" if isinstance(tau, int | float) else "") + ")"
        ax.axvline(cov, color="k", linestyle="--")
        if sel_acc is not None:
            ax.plot([cov], [sel_acc], "o", color="#de2d26", label=f"{label}: {_pct(sel_acc)} at {_pct(cov)}")
        ax.set_xlim(0, 1.02)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("coverage (share of pseudo-labels kept, most confident first)")
        ax.set_ylabel("pseudo-label accuracy")
        ax.legend(loc="best", fontsize="small")

    table = _table(["pseudo-labels", "accuracy", "n"], [["all", _pct(all_acc), len(gold)],
                                                        ["selected", _pct(sel_acc), len(sel)]])
    out = _plot(draw) + table
    if rule not in ("percentile", "fixed", "all"):
        out += _note(f"The '{rule}' rule does not keep one score prefix, so the selected point may lie off the curve.")
    return out


def section_agreement(rows: list[dict[str, Any]] | None, metrics: dict[str, Any] | None) -> str:
    if rows is None:
        return _note("No pseudo-labels yet: the select stage has not finished.")
    n = len(rows)
    if not n:
        return _note("The pseudo-label file is empty.")
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
    out = [f"<p><b>Vote agreement rate: {_pct(unanimous / n)}</b> ({unanimous} of {n} questions had all votes "
           f"agree). The final answer differs from the most common vote in {changed} question(s).</p>"]

    def draw(ax: Any) -> None:
        keys = sorted(shares)
        ax.bar([f"{a}/{m}" for a, m in keys], [shares[k] for k in keys], color="#6baed6")
        ax.set_xlabel("votes agreeing with the final answer")
        ax.set_ylabel("questions")

    out.append(_plot(draw, 5.5, 3.0))
    gold = [r for r in rows if "correct" in r]
    if gold:
        una = [r for r in gold if r["unanimous"]]
        dis = [r for r in gold if not r["unanimous"]]
        acc = [["unanimous votes", _pct(sum(r["correct"] for r in una) / len(una)) if una else "-", len(una)],
               ["disagreeing votes", _pct(sum(r["correct"] for r in dis) / len(dis)) if dis else "-", len(dis)]]
        pl = (metrics or {}).get("pseudo_labels") or {}
        for c, rec in (pl.get("per_config") or {}).items():
            acc.append([f"configuration {c} alone", _pct(rec["accuracy"]), rec["n"]])
        out.append(_table(["pseudo-labels", "accuracy", "n"], acc))
    else:
        out.append(_note("No gold answers: accuracy by agreement cannot be shown."))
    return "".join(out)


def option_names(rows: list[dict[str, Any]]) -> dict[str, str]:
    """'A' -> 'A negative' where every row has the same options (a closed label set such as FPB's), else {}."""
    opts = {tuple(r["options"]) for r in rows if r.get("options")}
    if len(opts) != 1 or any(not r.get("options") for r in rows):
        return {}
    return {LETTERS[i]: f"{LETTERS[i]} {o}" for i, o in enumerate(next(iter(opts)))}


def section_classes(rows: list[dict[str, Any]] | None, selection: dict[str, Any]) -> str:
    if rows is None:
        return _note("No pseudo-labels yet: the select stage has not finished.")
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
            ax.bar([x + (j - (len(bars) - 1) / 2) * w for x in range(len(names))], [counts[c] for c in names], w,
                   label=label, color=color)
        slanted = max(map(len, ticks), default=0) > 3
        ax.set_xticks(range(len(names)), ticks, rotation=30 if slanted else 0, ha="right" if slanted else "center")
        ax.set_ylabel("questions")
        ax.legend()

    header = ["class", "predicted", "selected", "kept"] + (["gold"] if gold else [])
    table = [[labels.get(c, c), predicted[c], selected[c], _pct(selected[c] / predicted[c])] + ([gold[c]] if gold else [])
             for c in names]
    out = _plot(draw, max(5.0, 0.5 * len(names) + 2), 3.4) + _table(header, table)
    if len(predicted) > len(names):
        out += _note(f"{len(predicted) - len(names)} less frequent answer(s) are not shown.")
    lean = selection.get("lean")  # the select stage's own reading of the justifier
    if lean:
        a = labels.get(lean["answer"], lean["answer"])
        out += _note(f"The justification answered {a} for {lean['share']:.0%} of the {lean['rows']} rows it "
                     f"justified, where the configurations voted {a} {lean['vote_share']:.0%} of the time: a "
                     "lean to one option rather than a reading of the questions is likely. "
                     "--select.calibrate true --select.candidates_only true (if not set already) is the fix to try.")
    return out


def section_training(run_dir: Path) -> str:
    logs = [d for d in stage_dirs(run_dir, "sft") + stage_dirs(run_dir, "evolve") if (d / "train_log.jsonl").exists()]
    if not logs:
        return _note("No training logs yet (sft/train_log.jsonl, evolve/train_log.jsonl).")
    history = {d.name: read_jsonl(d / "train_log.jsonl") for d in logs}

    def draw(ax: Any) -> None:
        for name, hist in history.items():
            ax.plot([h["step"] for h in hist], [h["loss"] for h in hist], marker="o" if len(hist) < 30 else None,
                    label=name)
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("loss (response tokens)")
        ax.legend()

    rows = []
    for d in logs:
        s = _json(d / "train_summary.json") or {}
        rows.append([d.name, s.get("steps", len(history[d.name])), s.get("examples", "-"), s.get("lr", "-"),
                     f"{s['final_loss']:.4f}" if isinstance(s.get("final_loss"), float) else "-",
                     f"{s['seconds']:.0f}s" if "seconds" in s else "-"])
    return _plot(draw) + _table(["adapter", "steps", "examples", "lr", "final loss", "time"], rows)


AUDIT_ROWS = 20  # flagged labeled rows shown in the audit section


def section_audit(run_dir: Path) -> str:
    """The labeled rows `semievol audit` flagged, most doubtful first (``audit/audit.jsonl``)."""
    summary = _json(run_dir / "audit" / "audit.json")
    if not summary or not (run_dir / "audit" / "audit.jsonl").exists():
        return _note("No label audit yet: `semievol audit RUN_DIR` ranks the labeled rows whose given answer an "
                     "out-of-fold model doubts.")
    rows = [r for r in read_jsonl(run_dir / "audit" / "audit.jsonl") if r.get("flagged")]
    intro = (f"<p>{summary['flagged']} of {summary['rows']} labeled rows flagged: an out-of-fold model "
             f"({summary['folds']} folds, embedder {_esc(summary['embedder'])}, out-of-fold accuracy "
             f"{_pct(summary.get('out_of_fold_accuracy'))}) is confident in another answer. Per-class thresholds: "
             + _esc(", ".join(f"{k} {v:.2f}" for k, v in summary["thresholds"].items())) + ".</p>")
    table = _table(["rank", "id", "question", "given", "doubted for", "p(given)", "p(other)"],
                   [[r["rank"], r["id"], r["question"][:120], r["given_text"], r["confident_text"], f"{r['p_given']:.2f}",
                     f"{r['p_confident']:.2f}"] for r in rows[:AUDIT_ROWS]])
    more = _note(f"{len(rows) - AUDIT_ROWS} more flagged rows in audit/audit.jsonl.") if len(rows) > AUDIT_ROWS else ""
    return intro + (table if rows else _note("No labeled row is flagged.")) + more


def section_config(run_dir: Path) -> str:
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text()) or {}
    model = cfg.get("model") or {}
    hidden = other_engines_settings(str(model.get("engine")))  # each engine's settings shown only for it
    cfg["model"] = {k: v for k, v in model.items() if k not in hidden}
    out = [f"<pre>{_esc(yaml.safe_dump(cfg, sort_keys=False))}</pre>"]
    for name in ("templates.json", "versions.json"):
        data = _json(run_dir / name)
        if data:
            out.append(f"<h3>{_esc(name)}</h3>" + _table(["name", "value"], [[k, v] for k, v in data.items()]))
    return "".join(out)


def section_timings(run_dir: Path) -> str:
    t = _json(run_dir / "timings.json")
    if not t:
        return _note("No stage timings yet (timings.json is written when a stage finishes).")
    rows = [[k, f"{v:.1f}s"] for k, v in t.items()]
    rows.append(["total", f"{sum(t.values()):.1f}s"])
    return _table(["stage", "time"], rows)


# ---------------------------------------------------------------- the page

CSS = """
body { font: 15px/1.45 system-ui, sans-serif; max-width: 980px; margin: 2em auto; padding: 0 1em; color: #222; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ddd; padding-bottom: .2em; margin-top: 2em; }
table { border-collapse: collapse; margin: .8em 0; } td, th { border: 1px solid #ddd; padding: .25em .6em; }
th { background: #f4f4f4; text-align: left; } img { max-width: 100%; display: block; }
pre { background: #f7f7f7; padding: .8em; overflow-x: auto; font-size: 13px; }
.note { color: #8a6d3b; background: #fcf8e3; padding: .4em .8em; } nav a { margin-right: 1em; }
"""


def render(run_dir: Path) -> str:
    """The report page for ``run_dir`` as one HTML string."""
    need_run_dir(run_dir)
    v = last_finished(run_dir, "evaluate")
    metrics = _json(v / "metrics.json") if v else None
    rows, where = None, ""
    selection: dict[str, Any] = {}
    if last_finished(run_dir, "select") is not None:
        s_dir, rows, selection = load_pseudo_labels(run_dir)
        where = f" ({s_dir.name})" if s_dir.name != "select" else ""
    body = {
        "verdict": section_verdict(metrics),
        "accuracy": section_accuracy(metrics),
        "confidence": section_confidence(rows, selection),
        "coverage": section_coverage(rows, selection),
        "agreement": section_agreement(rows, metrics),
        "classes": section_classes(rows, selection),
        "training": section_training(run_dir),
        "audit": section_audit(run_dir),
        "config": section_config(run_dir),
        "timings": section_timings(run_dir),
    }
    task = (metrics or {}).get("task") or (yaml.safe_load((run_dir / "config.yaml").read_text()) or {}).get("task", {}).get("task") or ""
    nav = "".join(f'<a href="#{k}">{_esc(t)}</a>' for k, t in SECTIONS.items())
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>semievol report {_esc(task)} {_esc(run_dir.name)}</title><style>{CSS}</style></head><body>",
        f"<h1>semievol report: {_esc(task or run_dir.name)}</h1>",
        f"<p>Run directory <code>{_esc(run_dir.resolve())}</code></p><nav>{nav}</nav>",
    ]
    for key, title in SECTIONS.items():
        suffix = where if key in ("confidence", "coverage", "agreement", "classes") else ""
        parts.append(f'<section id="{key}"><h2>{_esc(title + suffix)}</h2>{body[key]}</section>')
    parts.append("</body></html>\n")
    return "\n".join(parts)


def write_report(run_dir: Path, out: Path | None = None) -> Path:
    """Write ``out`` (default ``RUN_DIR/report.html``) atomically and return its path; nothing else is written.

    A run folder that cannot be written in (read-only) is one line naming ``--out``."""
    from .rundir_guard import disk_errors

    run_dir = Path(run_dir)
    page = render(run_dir)
    out = Path(out) if out else run_dir / "report.html"
    with disk_errors("report", "or write the report elsewhere with --out FILE"):
        atomic_write_text(out, page)
    return out


def report_command(args: Any) -> int:
    """``semievol report RUN_DIR [--out FILE]``."""
    print(write_report(args.run_dir, args.out))
    return 0
