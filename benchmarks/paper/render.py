"""The table's markdown, rendered from the results ``collect`` gathers, and the one-paragraph text of
``--diagnose``."""

from __future__ import annotations

from typing import Any

from .settings import MODEL_NAMES, VARIANTS
from .stats import fmt, fmt_delta


def counts_text(c: dict[str, int] | None) -> str:
    return " ".join(f"{k}:{v}" for k, v in c.items()) if c else "-"


def alternatives_text(d: dict[str, Any]) -> str:
    return "; ".join(f"{k} {pct(v)}" for k, v in d.get("alternatives", {}).items())


def pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.0f}%"


def num(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def markdown(res: dict[str, Any], machine: str, command: str) -> str:
    """The whole table as markdown: the main comparison, then each section the results hold."""
    sections = [
        _main_table(res, machine, command),
        _target_table(res),
        _class_lines(res),
        _diagnostics_section(res),
        _variants_table(res),
        _scarcity_table(res),
    ]
    return "\n".join(line for section in sections for line in section) + "\n"


def _main_table(res: dict[str, Any], machine: str, command: str) -> list[str]:
    """The main comparison: one row per task."""
    L = [
        f"{res.get('model', 'Embedded SmolLM2-135M-Instruct')}; {machine}; profile `{res['profile']}`; command: `{command}`.",
        "",
        "Rows per split (seeded subsample, seed 12345, the same for every run seed): "
        + "; ".join(f"{t}: " + ", ".join(f"{k} {v or 'all'}" for k, v in s.items()) for t, s in res["sizes"].items())
        + ".",
        "Cells: test accuracy in %, mean ± standard deviation over seeds [lowest, highest seed]; with one seed, "
        "the accuracy [95% Wilson interval over the test rows].",
        "",
        "Paired columns: SemiEvol minus the other model on the same seed, in points: the mean, then each seed.",
        "",
        "| task | seeds | base | SFT | SFT, compute-matched | SemiEvol | SemiEvol − SFT | SemiEvol − matched SFT | "
        "pseudo-labels all | selected | votes unanimous | lr, epochs (validation) | wall time / seed |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for task, r in res["tasks"].items():
        m = r["main"]
        lr = f"{r['tuning']['lr']:g}, {r['tuning'].get('epochs', 2)} ep" if r["tuning"] else "-"
        L.append(
            f"| {task} | {m['evolved'].get('n', 0)} | {fmt(m['base'])} | {fmt(m['warm'])} | {fmt(m['sft_matched'])} | "
            f"{fmt(m['evolved'])} | {fmt_delta(m['minus_sft'])} | {fmt_delta(m['minus_matched'])} | {fmt(m['pseudo_all'])} | {fmt(m['pseudo_selected'])} | {fmt(m['agreement'])} | "
            f"{lr} | {m['wall_minutes'].get('mean', 0):.0f} min |"
        )
    return L


def _target_table(res: dict[str, Any]) -> list[str]:
    """The issue's target and the row-paired bootstrap, per task and control."""
    L: list[str] = []
    L += [
        "",
        "The issue's target (SemiEvol at least 1 point above SFT and compute-matched SFT, its lowest seed above "
        "both controls' highest), and whether a difference is larger than the noise: a paired bootstrap over the "
        "test rows for each seed, and pooled over seeds with a two-level bootstrap (seeds, then test rows). "
        "'only A / only B': test rows that only SemiEvol / only the other model answered right.",
        "",
        "| task | target met | lowest SemiEvol seed − highest SFT / matched SFT seed | vs | pooled difference [95%] | "
        "share of draws above 0 | per seed: difference [95% over test rows], only A / only B |",
        "|---|---|---|---|---|---|---|",
    ]
    for task, r in res["tasks"].items():
        m = r["main"]
        tg = m.get("target", {})
        met = {True: "yes", False: "no", None: "-"}[tg.get("met")]
        gaps = (
            f"{100 * tg['lowest_over_highest_sft']:+.1f} / {100 * tg['lowest_over_highest_matched']:+.1f}"
            if tg.get("met") is not None
            else "-"
        )
        for name, label in (("vs_sft", "SFT"), ("vs_matched", "matched SFT")):
            rp = m.get("row_paired", {}).get(name, {})
            if not rp.get("n_seeds"):
                continue
            per = "; ".join(
                f"s{s}: {100 * x['diff']:+.1f} [{100 * x['ci95'][0]:+.1f}, {100 * x['ci95'][1]:+.1f}], "
                f"{x['only_a']}/{x['only_b']}"
                for s, x in rp["per_seed"].items()
            )
            L.append(
                f"| {task} | {met} | {gaps} | {label} | {100 * rp['mean']:+.1f} [{100 * rp['ci95'][0]:+.1f}, "
                f"{100 * rp['ci95'][1]:+.1f}] over {rp['n_seeds']} seeds x {rp['rows']} rows | "
                f"{100 * rp['p_above_zero']:.0f}% | {per} |"
            )
    return L


def _class_lines(res: dict[str, Any]) -> list[str]:
    """What each model gets right and answers, per class."""
    L: list[str] = []
    for task, r in res["tasks"].items():
        if on := r["main"].get("on_session_rows"):
            L += [
                "",
                f"{task}, the same runs on the 200 test rows of the `session` profile (to compare with runs of "
                "that profile): "
                + "; ".join(
                    f"{MODEL_NAMES[m]} " + ", ".join(f"s{s} {100 * a:.1f}" for s, a in per.items())
                    for m, per in on.items()
                    if per
                ),
            ]
    if any(r["main"].get("class_right") for r in res["tasks"].values()):
        L += [
            "",
            "Test rows answered right per gold answer (right/rows), per seed: which classes each model has learnt.",
            "",
        ]
        for task, r in res["tasks"].items():
            for seed, per in r["main"].get("class_right", {}).items():
                L.append(
                    f"- {task} seed {seed}: "
                    + "; ".join(
                        f"{MODEL_NAMES[m]} " + " ".join(f"{g} {a}/{n}" for g, (a, n) in c.items())
                        for m, c in per.items()
                        if c
                    )
                )
    L += [
        "",
        "What each model answers on the test split, and the class balance of the kept pseudo-labels "
        "(first seed; A/B/C on FPB = negative/neutral/positive):",
        "",
    ]
    for task, r in res["tasks"].items():
        m = r["main"]
        first = {k: (v or [None])[0] for k, v in m.get("answers", {}).items()}
        L.append(
            f"- {task}: SFT {counts_text(first.get('warm'))}; compute-matched SFT "
            f"{counts_text(first.get('sft_matched'))}; SemiEvol {counts_text(first.get('evolved'))}; "
            f"selected pseudo-labels {counts_text((m.get('selected_labels') or [None])[0])}"
        )
    return L


def _diagnostics_section(res: dict[str, Any]) -> list[str]:
    """Why selection helps or hurts, and the labels other rules would have given."""
    L: list[str] = []
    if any(r["main"].get("diagnostics") for r in res["tasks"].values()):
        L += [
            "",
            "Why selection helps or hurts (SemiEvol's pseudo-labels on the unlabeled split, per seed). AUROC (0.5 = no better than chance): "
            "the chance that the confidence score (lower entropy) ranks a right pseudo-label above a wrong one; "
            "'within answer' averages it inside each answer class (weighted by rows), so it shows whether the "
            "score ranks well once the class is fixed. Per answer: rows, accuracy, median score, rows selected.",
            "",
            "| task | seed | AUROC | AUROC within answer | per answer: rows, right, median score, selected | gold classes | "
            "unanimous: rows, right | disagreeing: rows, right |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for task, r in res["tasks"].items():
            for seed, d in r["main"].get("diagnostics", {}).items():
                per = "; ".join(
                    f"{a}: {x['n']}, {pct(x['accuracy'])}, {x['median_score']:.2f}, {x['selected']}"
                    for a, x in d["by_answer"].items()
                )
                L.append(
                    f"| {task} | {seed} | {num(d['auroc'])} | {num(d['auroc_within_answer'])} | {per} | "
                    f"{counts_text(d['gold'])} | {d['unanimous']['n']}, {pct(d['unanimous']['accuracy'])} | "
                    f"{d['disagreeing']['n']}, {pct(d['disagreeing']['accuracy'])} |"
                )
        L += [
            "",
            "The same rows labelled by other rules (accuracy of the labels, from the stored votes and the "
            "justification's option distribution; nothing re-run):",
            "",
        ]
        for task, r in res["tasks"].items():
            for seed, d in r["main"].get("diagnostics", {}).items():
                L.append(f"- {task} seed {seed}: {alternatives_text(d)}")
    return L


def _variants_table(res: dict[str, Any]) -> list[str]:
    """The ablations, baselines and rounds."""
    L: list[str] = []
    if any(r["variants"] for r in res["tasks"].values()):
        L += [
            "",
            "Ablations, baselines and rounds (SemiEvol's final model; each from a copy of the same seed's run):",
            "",
            "| task | variant | what | seeds | accuracy | − SemiEvol (same seeds) | − matched SFT (same seeds) | "
            "selected pseudo-label accuracy | coverage | evolve steps | "
            "selected labels (first seed) | evolved model's answers (first seed) |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for task, r in res["tasks"].items():
            if r["variants"]:
                m = r["main"]
                L.append(
                    f"| {task} | semievol | the method | {m['evolved'].get('n', 0)} | {fmt(m['evolved'])} | | "
                    f"{fmt_delta(m['minus_matched'])} | {fmt(m['pseudo_selected'])} | | | {counts_text((m.get('selected_labels') or [None])[0])} | "
                    f"{counts_text((m.get('answers', {}).get('evolved') or [None])[0])} |"
                )
            for v, x in r["variants"].items():
                L.append(
                    f"| {task} | {v} | {VARIANTS[v][0]} | {x['evolved'].get('n', 0)} | {fmt(x['evolved'])} | "
                    f"{fmt_delta(x['minus_semievol'])} | {fmt_delta(x['minus_matched'])} | {fmt(x['pseudo_selected'])} | {fmt(x['coverage'])} | {x['steps']} | "
                    f"{counts_text((x.get('selected_labels') or [None])[0])} | {counts_text((x.get('answers') or [None])[0])} |"
                )
    return L


def _scarcity_table(res: dict[str, Any]) -> list[str]:
    """Label scarcity."""
    L: list[str] = []
    if any(r["scarcity"] for r in res["tasks"].values()):
        L += [
            "",
            "Label scarcity (same unlabeled pool; labeled rows drawn with the run seed):",
            "",
            "| task | labeled | SFT | SFT, compute-matched | SemiEvol | SemiEvol − SFT | SemiEvol − matched SFT | "
            "SFT time | SemiEvol time (SFT to evolve) | overhead |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for task, r in res["tasks"].items():
            for n, x in r["scarcity"].items():
                t_sft, t_all = x["sft_minutes"].get("mean", 0), x["semievol_minutes"].get("mean", 0)
                L.append(
                    f"| {task} | {n} | {fmt(x['sft'])} | {fmt(x['sft_matched'])} | {fmt(x['semievol'])} | "
                    f"{fmt_delta(x.get('minus_sft', {}))} | {fmt_delta(x.get('minus_matched', {}))} | "
                    f"{t_sft:.1f} min | {t_all:.1f} min | {f'{t_all / t_sft:.1f}x' if t_sft else '-'} |"
                )
    return L


def diagnose_text(run_dir: str, x: dict[str, Any]) -> str:
    """One run folder's diagnostics (``diagnostics.diagnose``) as a markdown list item."""
    per = "; ".join(
        f"{a}: {v['n']} rows, {pct(v['accuracy'])} right, median score {v['median_score']:.2f}, {v['selected']} kept"
        for a, v in x["by_answer"].items()
    )
    return (
        f"- `{run_dir}`: AUROC {num(x['auroc'])}, within answer {num(x['auroc_within_answer'])}; gold "
        f"{counts_text(x['gold'])}; {per}; unanimous {x['unanimous']['n']} rows "
        f"{pct(x['unanimous']['accuracy'])} right, split {x['disagreeing']['n']} rows "
        f"{pct(x['disagreeing']['accuracy'])} right.\n  Other rules: {alternatives_text(x)}"
    )
