"""The HTML report of a run directory: one self-contained ``report.html`` with its plots embedded.

Sections (each an element with an ``id``): test accuracy of base, warm and evolved models with 95% intervals;
the confidence score histogram split by pseudo-label correctness; pseudo-label accuracy against coverage with
the chosen threshold marked; vote agreement; predicted and selected counts per class; the training loss
curves; the labeled rows ``semievol audit`` flagged; the run's config; the stage timings. A missing piece (no
gold answers, a stage not run yet) gives a short note in its section instead of a plot. Plots are drawn with
matplotlib's Agg renderer into PNG bytes and inlined as base64, so the file opens anywhere with no network and
no script. Later rounds (``select_r2``, ``evolve_r2``, ...) are read where present: the pseudo-label sections
show the last round, the loss section every round.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from .config import other_engines_settings
from .jsonio import atomic_write_text, read_jsonl
from .report_sections import (
    esc,
    html_note,
    html_plot,
    html_table,
    pct,
    section_agreement,
    section_classes,
    section_confidence,
    section_coverage,
)
from .rundir import last_finished, load_pseudo_labels, need_run_dir, stage_dirs

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


def _json(path: Path) -> Any:
    return json.loads(path.read_text()) if path.exists() else None


# ---------------------------------------------------------------- plots and HTML pieces


# ---------------------------------------------------------------- sections


def section_verdict(metrics: dict[str, Any] | None) -> str:
    said = (metrics or {}).get("verdict")
    if not said:
        return html_note(
            "No verdict: it needs the evolved model and the warm model or the compute-matched SFT "
            "evaluated on the test split (evaluate.models)."
        )
    return "".join(f"<p><strong>{esc(line)}</strong></p>" for line in said["lines"])


def section_accuracy(metrics: dict[str, Any] | None) -> str:
    if not metrics or not metrics.get("models"):
        return html_note(
            "No test accuracy yet: the evaluate stage has not finished (evaluate/metrics.json is missing)."
        )
    models = metrics["models"]
    balanced = all("balanced_accuracy" in r for r in models.values())  # runs before it was recorded have none
    rows = [
        [name, pct(r["accuracy"]), f"{pct(r['ci95'][0])} - {pct(r['ci95'][1])}"]
        + ([pct(r["balanced_accuracy"])] if balanced else [])
        + [r["correct"], r["n"]]
        for name, r in models.items()
    ]

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

    header = ["model", "accuracy", "95% interval"] + (["balanced accuracy"] if balanced else []) + ["correct", "n"]
    return html_plot(draw, 5.5, 3.2) + html_table(header, rows) + unanswered_classes(models)


def unanswered_classes(models: dict[str, Any]) -> str:
    """A note naming the classes the test split holds that a model never answered (the collapse onto a few
    classes that few labels and few steps bring), or nothing."""
    said = []
    for name, r in models.items():
        gold, answered = r.get("gold_counts") or {}, r.get("prediction_counts") or {}
        never = [f"{c} ({n} test rows)" for c, n in gold.items() if n and not answered.get(c)]
        if never:
            said.append(f"{name} never answered {', '.join(never)}")
    if not said:
        return ""
    return html_note(
        "; ".join(said) + ": accuracy does not show a class left out; the balanced accuracy (each class's recall "
        "averaged) does."
    )


def section_training(run_dir: Path) -> str:
    logs = [d for d in stage_dirs(run_dir, "sft") + stage_dirs(run_dir, "evolve") if (d / "train_log.jsonl").exists()]
    if not logs:
        return html_note("No training logs yet (sft/train_log.jsonl, evolve/train_log.jsonl).")
    history = {d.name: read_jsonl(d / "train_log.jsonl") for d in logs}

    def draw(ax: Any) -> None:
        for name, hist in history.items():
            ax.plot(
                [h["step"] for h in hist], [h["loss"] for h in hist], marker="o" if len(hist) < 30 else None, label=name
            )
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("loss (response tokens)")
        ax.legend()

    rows = []
    for d in logs:
        s = _json(d / "train_summary.json") or {}
        rows.append(
            [
                d.name,
                s.get("steps", len(history[d.name])),
                s.get("examples", "-"),
                s.get("lr", "-"),
                f"{s['final_loss']:.4f}" if isinstance(s.get("final_loss"), float) else "-",
                f"{s['seconds']:.0f}s" if "seconds" in s else "-",
            ]
        )
    out = html_plot(draw) + html_table(["adapter", "steps", "examples", "lr", "final loss", "time"], rows)
    if cv := _json(run_dir / "sft" / "cv.json"):  # sft.cv_epochs: how the warm model's epochs were chosen
        said = (
            f"The warm model trained {cv['chosen_epochs']:g} epochs, chosen by {cv['folds']}-fold cross-validation "
            "on the labeled rows; mean held-out accuracy by epochs: "
            + ", ".join(f"{e}: {100 * a:.1f}%" for e, a in cv["mean"].items())
            + "."
        )
        out += f"<p>{esc(said)}</p>"
    return out


AUDIT_ROWS = 20  # flagged labeled rows shown in the audit section


def section_audit(run_dir: Path) -> str:
    """The labeled rows `semievol audit` flagged, most doubtful first (``audit/audit.jsonl``)."""
    summary = _json(run_dir / "audit" / "audit.json")
    if not summary or not (run_dir / "audit" / "audit.jsonl").exists():
        return html_note(
            "No label audit yet: `semievol audit RUN_DIR` ranks the labeled rows whose given answer an "
            "out-of-fold model doubts."
        )
    rows = [r for r in read_jsonl(run_dir / "audit" / "audit.jsonl") if r.get("flagged")]
    intro = (
        f"<p>{summary['flagged']} of {summary['rows']} labeled rows flagged: an out-of-fold model "
        f"({summary['folds']} folds, embedder {esc(summary['embedder'])}, out-of-fold accuracy "
        f"{pct(summary.get('out_of_fold_accuracy'))}"
        + (f", also trained on {summary['pseudo_labels']} kept pseudo-labels" if summary.get("pseudo_labels") else "")
        + ") is confident in another answer. Per-class thresholds: "
        + esc(", ".join(f"{k} {v:.2f}" for k, v in summary["thresholds"].items()))
        + ".</p>"
    )
    table = html_table(
        ["rank", "id", "question", "given", "doubted for", "p(given)", "p(other)"],
        [
            [
                r["rank"],
                r["id"],
                r["question"][:120],
                r["given_text"],
                r["confident_text"],
                f"{r['p_given']:.2f}",
                f"{r['p_confident']:.2f}",
            ]
            for r in rows[:AUDIT_ROWS]
        ],
    )
    more = (
        html_note(f"{len(rows) - AUDIT_ROWS} more flagged rows in audit/audit.jsonl.") if len(rows) > AUDIT_ROWS else ""
    )
    return intro + (table if rows else html_note("No labeled row is flagged.")) + more


def section_config(run_dir: Path, saved: dict[str, Any]) -> str:
    model = saved.get("model") or {}
    hidden = other_engines_settings(str(model.get("engine")))  # each engine's settings shown only for it
    cfg = {**saved, "model": {k: v for k, v in model.items() if k not in hidden}}
    out = [f"<pre>{esc(yaml.safe_dump(cfg, sort_keys=False))}</pre>"]
    for name in ("templates.json", "versions.json"):
        data = _json(run_dir / name)
        if data:
            out.append(f"<h3>{esc(name)}</h3>" + html_table(["name", "value"], [[k, v] for k, v in data.items()]))
    return "".join(out)


def section_timings(run_dir: Path) -> str:
    t = _json(run_dir / "timings.json")
    if not t:
        return html_note("No stage timings yet (timings.json is written when a stage finishes).")
    rows = [[k, f"{v:.1f}s"] for k, v in t.items()]
    rows.append(["total", f"{sum(t.values()):.1f}s"])
    return html_table(["stage", "time"], rows)


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
    saved = yaml.safe_load((run_dir / "config.yaml").read_text()) or {}
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
        "config": section_config(run_dir, saved),
        "timings": section_timings(run_dir),
    }
    task = (metrics or {}).get("task") or saved.get("task", {}).get("task") or ""
    recipe = f", recipe <code>{esc(saved['recipe'])}</code>" if saved.get("recipe") else ""  # none before recipes
    nav = "".join(f'<a href="#{k}">{esc(t)}</a>' for k, t in SECTIONS.items())
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>semievol report {esc(task)} {esc(run_dir.name)}</title><style>{CSS}</style></head><body>",
        f"<h1>semievol report: {esc(task or run_dir.name)}</h1>",
        f"<p>Run directory <code>{esc(run_dir.resolve())}</code>{recipe}</p><nav>{nav}</nav>",
    ]
    for key, title in SECTIONS.items():
        suffix = where if key in ("confidence", "coverage", "agreement", "classes") else ""
        parts.append(f'<section id="{key}"><h2>{esc(title + suffix)}</h2>{body[key]}</section>')
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
