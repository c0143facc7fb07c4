"""The fairness–accuracy front of a sweep: selected on validation metrics, reported on test.

``pareto_table`` marks the non-dominated trials on the *validation* objectives
(``valid_<accuracy>``, ``valid_<fairness>``; directions from the metric registry); the test values
of those trials are what a report quotes — they never influence which trials are chosen.
``plot_front`` draws both: every trial and the front on validation, and the chosen trials' test
values, each point labelled with its settings.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from fairrec_ray.errors import ConfigError
from fairrec_ray.metrics import metric_mode, pareto_front
from fairrec_ray.sweeps.jobs import TEST, VALID


def pareto_table(results: pd.DataFrame, accuracy: str, fairness: str) -> pd.DataFrame:
    """Trials with both validation objectives, sorted by validation accuracy, with a boolean
    ``pareto`` column marking the front on validation."""
    columns = [VALID + accuracy, VALID + fairness]
    missing = [c for c in columns if c not in results.columns]
    if missing:
        raise ConfigError(f"sweep results lack metric(s) {missing}; the trials reported: {', '.join(results.columns)}")
    table = results.dropna(subset=columns).copy()
    maximize = [metric_mode(accuracy) == "max", metric_mode(fairness) == "max"]
    points = table[columns].to_numpy(dtype=float)
    table["pareto"] = pareto_front(points, maximize) if len(table) else np.zeros(0, dtype=bool)
    return table.sort_values(columns[0], ascending=not maximize[0]).reset_index(drop=True)


def setting_label(row: pd.Series, keys: Sequence[str]) -> str:
    return ", ".join(f"{k}={_fmt(row[k])}" for k in keys if k in row)


def _fmt(value: object) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def plot_front(table: pd.DataFrame, accuracy: str, fairness: str, keys: Sequence[str], path: Path) -> None:
    """Two panels (PNG): validation (all trials, front highlighted) and test (the front's trials)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.4), dpi=120)
    front = table[table["pareto"]].sort_values(VALID + fairness)
    for ax, prefix, title in ((axes[0], VALID, "validation (selects the front)"), (axes[1], TEST, "test (reported)")):
        x, y = prefix + fairness, prefix + accuracy
        if prefix == VALID:
            ax.scatter(table[x], table[y], c="#9aa5b1", label="trial")
        if x in front and y in front:
            ax.plot(front[x], front[y], "o-", c="#c0392b", label="Pareto front (on validation)")
            for _, row in front.iterrows():
                ax.annotate(setting_label(row, keys), (row[x], row[y]), fontsize=7, xytext=(4, 4),
                            textcoords="offset points")  # fmt: skip
        ax.set_xlabel(f"{fairness} ({metric_mode(fairness)} is better)")
        ax.set_ylabel(f"{accuracy} ({metric_mode(accuracy)} is better)")
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(path)
