"""Sweep files: validation against the job's fields and reported metrics, Tune space translation, the
front selected on validation, and real Tune sweeps of both jobs (CFP in-process and on Ray Train)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fairrec_ray.config import build_config
from fairrec_ray.errors import ConfigError
from fairrec_ray.sweeps import JOBS, SweepConfig, SweepJob, load_sweep, pareto_table, plot_front, to_tune_space

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class FakeJobConfig:
    alpha: float = 1.0
    iterations: int = 3
    dataset: str = "synthetic"


@pytest.fixture
def fake_job(monkeypatch):
    import types

    module = types.ModuleType("fake_job_module")
    module.FakeJobConfig = FakeJobConfig
    module.run = lambda config, folder: {"valid_recall@10": 0.1, "valid_gini": 0.5}
    monkeypatch.setitem(__import__("sys").modules, "fake_job_module", module)
    fake = SweepJob("fcpo", "fake_job_module:FakeJobConfig", "fake_job_module:run", ("recall@10", "gini"))
    monkeypatch.setitem(JOBS, "fcpo", fake)


def write(tmp_path, text):
    path = tmp_path / "sweep.yaml"
    path.write_text(text)
    return path


GOOD = """
job: fcpo
accuracy: recall@10
fairness: gini
base: {dataset: synthetic, iterations: 2}
search:
  alpha: {type: grid, values: [0.1, 1.0]}
"""


def test_load_sweep_accepts_job_fields(tmp_path, fake_job):
    sweep = load_sweep(write(tmp_path, GOOD))
    assert sweep.search["alpha"]["values"] == [0.1, 1.0] and sweep.base["iterations"] == 2


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (("alpha:", "alpah:"), r"search\.alpah is not a field of FakeJobConfig"),
        (("iterations: 2", "iters: 2"), r"base\.iters is not a field of FakeJobConfig"),
        (("fairness: gini", "fairness: fairness_score"), "unknown metric 'fairness_score'"),
        (
            ("fairness: gini", "fairness: probe_auc"),
            "'probe_auc': job 'fcpo' does not report it; it reports recall@10, gini",
        ),
        (("type: grid", "type: normal"), r"search\.alpha: expected \{type: one of"),
        (("job: fcpo", "job: ppo"), r"job: got 'ppo'; expected one of \['fcpo', 'cfp'\]"),
    ],
)
def test_load_sweep_rejects_mistakes(tmp_path, fake_job, edit, message):
    with pytest.raises(ConfigError, match=message):
        load_sweep(write(tmp_path, GOOD.replace(*edit)))


def test_space_rules():
    base = {"job": "cfp", "accuracy": "hit@10", "fairness": "probe_auc"}
    with pytest.raises(ConfigError, match="needs numbers low < high"):
        build_config(SweepConfig, {**base, "search": {"lr": {"type": "uniform", "low": 2, "high": 1}}})
    with pytest.raises(ConfigError, match="loguniform needs low > 0"):
        build_config(SweepConfig, {**base, "search": {"lr": {"type": "loguniform", "low": 0, "high": 1}}})
    with pytest.raises(ConfigError, match="use searcher: optuna"):
        build_config(SweepConfig, {**base, "search": {"lr": {"type": "choice", "values": [1]}}})
    with pytest.raises(ConfigError, match="give at least one field"):
        build_config(SweepConfig, base)


def test_to_tune_space_translates_every_type():
    from ray.tune.search.sample import Categorical, Float, Integer

    space = to_tune_space(
        {
            "a": {"type": "grid", "values": [1, 2]},
            "b": {"type": "choice", "values": ["x", "y"]},
            "c": {"type": "uniform", "low": 0.0, "high": 1.0},
            "d": {"type": "loguniform", "low": 1e-4, "high": 1e-2},
            "e": {"type": "randint", "low": 5, "high": 30},
        }
    )
    assert space["a"] == {"grid_search": [1, 2]}
    assert isinstance(space["b"], Categorical) and space["b"].categories == ["x", "y"]
    assert isinstance(space["c"], Float) and (space["c"].lower, space["c"].upper) == (0.0, 1.0)
    assert isinstance(space["d"], Float) and "LogUniform" in type(space["d"].get_sampler()).__name__
    assert isinstance(space["e"], Integer) and (space["e"].lower, space["e"].upper) == (5, 30)


def test_pareto_table_selects_on_validation_never_on_test(tmp_path):
    results = pd.DataFrame(
        {
            "alpha": [0.1, 0.25, 0.5, 1.0, 2.0],
            "valid_recall@10": [0.10, 0.20, 0.18, 0.30, np.nan],
            "valid_gini": [0.40, 0.50, 0.60, 0.80, 0.1],
            # test values that would pick another front: they must not matter
            "test_recall@10": [0.9, 0.1, 0.95, 0.1, 0.99],
            "test_gini": [0.1, 0.9, 0.05, 0.9, 0.01],
        }
    )
    table = pareto_table(results, "recall@10", "gini")
    assert table["alpha"].tolist() == [1.0, 0.25, 0.5, 0.1]  # NaN trial dropped, sorted by accuracy
    assert dict(zip(table["alpha"], table["pareto"])) == {1.0: True, 0.25: True, 0.5: False, 0.1: True}
    plot_front(table, "recall@10", "gini", ["alpha"], tmp_path / "front.png")
    assert (tmp_path / "front.png").read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ConfigError, match=r"lack metric\(s\) \['valid_auc'\]"):
        pareto_table(results, "recall@10", "auc")


@pytest.mark.parametrize("path", sorted((ROOT / "tune_configs").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_sweep_files_match_the_job_configs(path):
    sweep = load_sweep(path)  # unknown fields or metrics would raise here
    assert sweep.search


def test_dotted_overrides_reach_into_base_and_search(tmp_path, fake_job):
    sweep = load_sweep(write(tmp_path, GOOD), {"base.iterations": 5, "search.alpha": {"type": "grid", "values": [2.0]}})
    assert sweep.base == {"dataset": "synthetic", "iterations": 5}
    assert sweep.search["alpha"]["values"] == [2.0]


@pytest.mark.slow
@pytest.mark.usefixtures("ray_session")
def test_real_tune_sweep_writes_front(tmp_path):
    """Two FCPO trials through real Tune + RLlib; the outputs are complete and consistent."""
    import json

    from fairrec_ray.sweeps.run import run_sweep

    sweep = load_sweep(
        ROOT / "tune_configs" / "fcpo_alpha.yaml",
        {
            "search.alpha": {"type": "grid", "values": [0.1, 1.0]},
            "base.iterations": 1,
            "base.synthetic_users": 60,
            "base.synthetic_items": 150,
        },
    )
    summary = run_sweep(sweep, tmp_path / "sweep")
    assert summary["trials"] == 2 and summary["failed_trials"] == 0
    table = pd.read_csv(tmp_path / "sweep" / "trials.csv")
    assert sorted(table["alpha"]) == [0.1, 1.0]
    for column in ("valid_recall@10", "test_recall@10", "valid_popularity_rate", "test_popularity_rate"):
        assert table[column].between(0, 1).all(), column
    expected = pareto_table(table.drop(columns="pareto"), "recall@10", "popularity_rate")["pareto"].sum()
    assert len(json.loads((tmp_path / "sweep" / "pareto.json").read_text())["pareto"]) == expected >= 1
    assert (tmp_path / "sweep" / "pareto.png").read_bytes()[:4] == b"\x89PNG"


CFP_TINY = {
    "base.synthetic_users": 60, "base.synthetic_items": 50, "base.epochs": 2, "base.num_beams": 5,
    "base.probe_folds": 2, "base.eval_users": 20, "base.samples_per_user": 1, "base.prefix_length": 2,
}  # fmt: skip


@pytest.fixture(scope="module")
def cfp_backbone(tmp_path_factory):
    from cfp_fixtures import untrained_backbone

    from fairrec_ray.cfp.config import CFPConfig

    data = {k.removeprefix("base."): v for k, v in CFP_TINY.items() if "synthetic" in k}
    return untrained_backbone(CFPConfig(**data), tmp_path_factory.mktemp("cfp-sweep") / "backbone")


@pytest.mark.slow
@pytest.mark.usefixtures("ray_session")
@pytest.mark.parametrize("workers", [0, 1])
def test_cfp_sweep_runs_in_process_and_on_ray_train(tmp_path, cfp_backbone, workers):
    """The shipped CFP grid, cut to 2 trials, in-process (num_workers=0) and with a Ray Train worker
    per trial (Train inside Tune): every trial finishes and the three outputs are written."""
    import json

    from fairrec_ray.sweeps.run import run_sweep

    overrides = {**CFP_TINY, "base.backbone": str(cfp_backbone), "base.num_workers": workers,
                 "search.prefix_length": {"type": "grid", "values": [2]},
                 "search.discriminator_weight": {"type": "grid", "values": [0.0, 1.0]}}  # fmt: skip
    summary = run_sweep(load_sweep(ROOT / "tune_configs" / "cfp_grid.yaml", overrides), tmp_path / "sweep")
    assert summary["trials"] == 2 and summary["failed_trials"] == 0
    table = pd.read_csv(tmp_path / "sweep" / "trials.csv")
    assert sorted(table["discriminator_weight"]) == [0.0, 1.0]
    assert table[["valid_probe_auc", "test_probe_auc", "valid_hit@10", "test_hit@10"]].notna().all().all()
    assert json.loads((tmp_path / "sweep" / "pareto.json").read_text())["pareto"]
    assert (tmp_path / "sweep" / "pareto.png").read_bytes()[:4] == b"\x89PNG"
    if workers:  # the trial really ran its loop on a Ray Train worker
        trial_dirs = list((tmp_path / "sweep" / "sweep").glob("trial_*"))
        results = [json.loads(p.read_text()) for d in trial_dirs for p in d.glob("cfp/results.json")]
        assert results and all(r["ray"]["workers"][0]["node_id"] for r in results)


@pytest.mark.slow
@pytest.mark.usefixtures("ray_session")
def test_sweep_whose_trials_all_fail_says_why(tmp_path):
    from fairrec_ray.errors import FairrecError
    from fairrec_ray.sweeps.run import run_sweep

    sweep = load_sweep(
        ROOT / "tune_configs" / "fcpo_alpha.yaml",
        {"search.alpha": {"type": "grid", "values": [0.5]}, "base.synthetic_items": 40, "base.iterations": 1},
    )
    with pytest.raises(FairrecError, match="all 1 sweep trials failed; the first said: .*exceeds the 40 items"):
        run_sweep(sweep, tmp_path / "sweep")
    assert not (tmp_path / "sweep" / "pareto.json").exists()
