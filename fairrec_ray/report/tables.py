"""Sections of the report (figures + tables) built from collected runs. Matplotlib (Agg) renders
each figure to PNG bytes; nothing here writes files."""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fairrec_ray.metrics import pareto_front
from fairrec_ray.report.collect import Run

USER_COLUMNS = (
    "probe_auc", "hit@10", "ndcg@10", "gap_hit@10", "gap_ndcg@10", "yh_value", "yh_absolute", "yh_under", "yh_over",
    "yh_parity", "df_epsilon",
)  # fmt: skip
EXPOSURE_COLUMNS = (
    "exposure_gini", "popular_exposure_share", "popular_exposure_ratio", "arp", "aplt", "item_coverage",
)  # fmt: skip
FCPO_COLUMNS = ("recall@10", "ndcg@10", "popularity_rate", "gini", *EXPOSURE_COLUMNS)


@dataclass
class Table:
    caption: str
    columns: list[str]
    rows: list[list[Any]]  # first cell: the row label


@dataclass
class Figure:
    name: str  # file stem (markdown) and anchor
    title: str
    png: bytes


@dataclass
class Section:
    title: str
    text: str = ""
    figures: list[Figure] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)


def fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        v = float(value)
        if math.isnan(v):
            return "–"
        if math.isinf(v):
            return "∞" if v > 0 else "-∞"
        return f"{v:.4f}" if abs(v) < 1000 else f"{v:.1f}"
    return str(value)


# ---------------------------------------------------------------- rows of each kind of run


def user_rows(run: Run) -> list[tuple[str, str, dict[str, Any]]]:
    """(attribute, method label, metrics) rows of a CFP / adversarial-MF / mixture run."""
    p = run.payload
    if run.kind == "cfp":
        attr = p["attribute"]
        lam = (p.get("config") or {}).get("discriminator_weight")
        label = "CFP" if lam is None else f"CFP λ={lam:g}"
        return [(attr, "backbone", p["backbone"].get("test", {})), (attr, label, p["cfp"].get("test", {}))]
    if run.kind == "adversarial_mf":
        attr = p["attribute"]
        w = p["filtered"].get("adv_weight", "?")
        return [(attr, "MF λ=0", p["plain"].get("test", {})), (attr, f"adv-MF λ={w:g}", p["filtered"].get("test", {}))]
    if run.kind == "mixture":
        rows = []
        entries = [("backbone", p["backbone"], None)] + [
            (name, e, e.get("probe_auc", {})) for name, e in p["subsets"].items()
        ]
        attrs = [a for a in p["backbone"] if a != "ranking"]
        for name, entry, aucs in entries:
            ranking = entry.get("ranking", {})
            for attr in attrs:
                auc = entry.get(attr) if aucs is None else aucs.get(attr)
                if auc is None:
                    continue  # this subset does not protect attr: no probe ran
                m = {k.split("/", 1)[1]: v for k, v in ranking.items() if k.startswith(f"{attr}/")}
                m.update({k: v for k, v in ranking.items() if "/" not in k})
                m["probe_auc"] = auc
                rows.append((attr, f"mixture {name}" if aucs is not None else "backbone", m))
        return rows
    return []


def fcpo_rows(run: Run) -> list[tuple[str, dict[str, Any]]]:
    """(label, test metrics) rows of an FCPO run or a bench_fcpo file."""
    p = run.payload
    if run.kind == "fcpo":
        alpha = (p.get("config") or {}).get("alpha")
        return [(f"FCPO α={alpha}" if alpha is not None else "FCPO unconstrained", p.get("final_test", {}))]
    if run.kind == "fcpo_bench":
        rows = [(name, m) for name, m in (p.get("baselines") or {}).get("test", {}).items()]
        rows += [(f"FCPO {name}", q["final_test"]) for name, q in (p.get("quality") or {}).items() if "final_test" in q]
        return rows
    return []


# ---------------------------------------------------------------- figures


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return buf.getvalue()


def _scatter(
    ax: Any,
    xs: list[float],
    ys: list[float],
    labels: list[str],
    maximize: tuple[bool, bool],
    color: str = "tab:blue",
    front_label: str = "Pareto front",
) -> None:
    pts = np.array([xs, ys], dtype=np.float64).T
    ax.scatter(pts[:, 0], pts[:, 1], s=28, color=color, zorder=3)
    for (x, y), label in zip(pts, labels, strict=True):
        ax.annotate(label, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
    front = pareto_front(pts, maximize)
    if front.any():
        order = np.argsort(pts[front, 0])
        ax.plot(pts[front][order, 0], pts[front][order, 1], "-", color=color, lw=1, zorder=2, label=front_label)
        ax.legend(fontsize=7, loc="best")
    ax.grid(alpha=0.3)


def _leak(metrics: dict[str, Any]) -> float:
    """max(AUC, 1 - AUC): a probe that is reliably wrong leaks as much as one that is right."""
    auc = float(metrics["probe_auc"])
    return float(metrics.get("probe_leak", max(auc, 1.0 - auc)))


def cfp_front(runs: list[Run]) -> Figure | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_attribute: dict[str, list[tuple[float, float, str]]] = {}
    for run in runs:
        for attr, label, m in user_rows(run):
            if "probe_auc" in m and "hit@10" in m:
                by_attribute.setdefault(attr, []).append((_leak(m), float(m["hit@10"]), f"{attr}: {label}"))
    if not by_attribute:
        return None
    fig, ax = plt.subplots(figsize=(7, 4.5))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for k, (attr, points) in enumerate(sorted(by_attribute.items())):
        xs, ys, labels = [p[0] for p in points], [p[1] for p in points], [p[2] for p in points]
        _scatter(ax, xs, ys, labels, (False, True), colors[k % len(colors)], f"{attr}: Pareto front")
    ax.set_xlabel("probe leak = max(AUC, 1 - AUC) (0.5 = none)")
    ax.set_ylabel("hit@10 (test)")
    ax.set_title("User side: attribute leakage vs accuracy (one front per attribute)")
    return Figure("cfp_front", "CFP front: probe leak vs hit@10, per attribute", _png(fig))


def fcpo_front(runs: list[Run]) -> Figure | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [(label, m) for run in runs for label, m in fcpo_rows(run) if "recall@10" in m]
    if not rows:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    labels = [label for label, _ in rows]
    recall = [float(m["recall@10"]) for _, m in rows]
    for ax, key, title in (
        (axes[0], "popular_exposure_share", "popular group's share of exposure"),
        (axes[1], "exposure_gini", "Gini of item exposure"),
    ):
        fallback = "popularity_rate" if key == "popular_exposure_share" else "gini"
        ys = [float(m.get(key, m.get(fallback, float("nan")))) for _, m in rows]
        _scatter(ax, recall, ys, labels, (True, False))
        ax.set_xlabel("recall@10 (test)")
        ax.set_ylabel(title)
    fig.suptitle("Item side: exposure vs recall (FCPO, baselines)")
    return Figure("fcpo_front", "FCPO front: exposure vs recall@10", _png(fig))


def sweep_figure(run: Run) -> Figure | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    objectives = list(run.payload.get("objectives", {}))
    if len(objectives) != 2 or not run.trials:
        return None
    acc, fair = objectives
    cols = [f"test_{acc}", f"test_{fair}"]
    if not all(c in run.trials[0] for c in cols):
        cols = [f"valid_{acc}", f"valid_{fair}"]
    rows = [t for t in run.trials if all(isinstance(t.get(c), (int, float)) and not math.isnan(t[c]) for c in cols)]
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(7, 4.5))
    modes = run.payload["objectives"]
    labels = [str(t.get("trial_id", i)) for i, t in enumerate(rows)]
    _scatter(ax, [t[cols[0]] for t in rows], [t[cols[1]] for t in rows], labels,
             (modes[acc] == "max", modes[fair] == "max"))  # fmt: skip
    ax.set_xlabel(cols[0])
    ax.set_ylabel(cols[1])
    ax.set_title(f"sweep {run.name}: {cols[0]} vs {cols[1]}")
    return Figure(f"sweep_{run.name}", f"Sweep {run.name}", _png(fig))


# ---------------------------------------------------------------- sections


def build_sections(runs: list[Run]) -> list[Section]:
    sections = []
    user_runs = [r for r in runs if r.kind in ("cfp", "adversarial_mf", "mixture")]
    item_runs = [r for r in runs if r.kind in ("fcpo", "fcpo_bench")]
    overview = Section(
        "Runs",
        "Every folder this page was built from, with the command that produced it.",
        tables=[Table("runs", ["run", "kind", "folder"], [[r.name, r.kind, str(r.folder)] for r in runs])],
        commands=[f"# {r.name}\n{r.command}" for r in runs if r.command],
    )
    sections.append(overview)
    if user_runs:
        s = Section(
            "User side: leakage, accuracy and outcome gaps",
            "Probe AUC: a fresh classifier recovering the attribute from user representations (0.5 = no leak). "
            "gap_*: mean absolute difference of the metric over all pairs of user groups. yh_*: Yao & Huang "
            "unfairness of the top-10 indicator vs the held-out item (yh_parity is 0 by construction: every user "
            "gets exactly 10 items). df_epsilon: differential fairness ε of being recommended each item. "
            "Item exposure of the same top-10 lists below.",
        )
        fig = cfp_front(user_runs)
        if fig:
            s.figures.append(fig)
        for run in user_runs:
            rows = user_rows(run)
            s.tables.append(
                Table(
                    f"{run.name} ({run.kind}): user-side metrics (test)",
                    ["attribute / method", *USER_COLUMNS],
                    [[f"{a}: {label}", *[m.get(c) for c in USER_COLUMNS]] for a, label, m in rows],
                )
            )
            s.tables.append(
                Table(
                    f"{run.name} ({run.kind}): exposure of the top-10 lists (test)",
                    ["attribute / method", *EXPOSURE_COLUMNS],
                    [[f"{a}: {label}", *[m.get(c) for c in EXPOSURE_COLUMNS]] for a, label, m in rows],
                )
            )
            s.commands.append(f"# {run.name}\n{run.command}")
        sections.append(s)
    if item_runs:
        s = Section(
            "Item side: exposure vs recall",
            "Rank-weighted exposure (1/log2(1+rank) within each K-item slate), amortised over the whole FCPO "
            "episode; exposure_gini over all items (never-shown items count); popular_exposure_share / _ratio: "
            "the popular group's share of exposure and its per-item exposure over the long tail's; arp: average "
            "training popularity of shown items; aplt: average long-tail share of a list.",
        )
        fig = fcpo_front(item_runs)
        if fig:
            s.figures.append(fig)
        for run in item_runs:
            s.tables.append(
                Table(
                    f"{run.name} ({run.kind}): test metrics",
                    ["method", *FCPO_COLUMNS],
                    [[label, *[m.get(c) for c in FCPO_COLUMNS]] for label, m in fcpo_rows(run)],
                )
            )
            if run.command:
                s.commands.append(f"# {run.name}\n{run.command}")
        sections.append(s)
    for run in (r for r in runs if r.kind == "sweep"):
        s = Section(f"Sweep {run.name} ({run.payload.get('job', '?')})", str(run.payload.get("selected_on", "")))
        fig = sweep_figure(run)
        if fig:
            s.figures.append(fig)
        columns = list(run.trials[0]) if run.trials else []
        s.tables.append(Table(f"{run.name}: trials", columns, [[t.get(c) for c in columns] for t in run.trials]))
        sections.append(s)
    return sections
