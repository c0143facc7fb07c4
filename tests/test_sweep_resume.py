"""The shipped ML-100K CFP sweep file, and a CFP sweep resumed after a trial failed half-way:
the finished trial is not run again, the failed one is."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from fairrec_ray.sweeps import load_sweep

ROOT = Path(__file__).resolve().parents[1]


def test_ml100k_sweep_has_the_protocol_grid_and_absolute_paths(monkeypatch):
    monkeypatch.chdir(ROOT)
    sweep = load_sweep(ROOT / "tune_configs" / "cfp_ml100k.yaml")
    assert sweep.base["data_dir"] == str((ROOT / ".." / "shared" / "data" / "ml-100k").resolve())
    weights = sweep.search["discriminator_weight"]["values"]
    assert 0.0 in weights and len(weights) * len(sweep.search["prefix_length"]["values"]) >= 8
    assert sweep.base["dataset"] == "movielens-100k" and sweep.base["control"] is False


def test_a_finished_trial_returns_its_results_only_for_the_same_config(tmp_path):
    from fairrec_ray.sweeps.jobs import finished_results

    assert finished_results(tmp_path, {"a": 1}) is None  # nothing written yet
    (tmp_path / "results.json").write_text(json.dumps({"config": {"a": 1, "b": [1, 2]}, "final_test": {}}))
    assert finished_results(tmp_path, {"a": 1, "b": [1, 2]})["final_test"] == {}
    assert finished_results(tmp_path, {"a": 2, "b": [1, 2]}) is None  # other settings: run it
    # the output folder is not a setting: Tune stages each launch of a trial in another folder
    assert finished_results(tmp_path, {"a": 1, "b": [1, 2], "output": "elsewhere"}) is not None


def test_asha_is_refused_while_trials_report_once(monkeypatch):
    from fairrec_ray.errors import ConfigError

    monkeypatch.chdir(ROOT)
    with pytest.raises(ConfigError, match=r"scheduler: got 'asha'; expected 'fifo' \(CFP and FCPO trials report once"):
        load_sweep(ROOT / "tune_configs" / "cfp_ml100k.yaml", {"scheduler": "asha"})


@pytest.mark.slow
@pytest.mark.usefixtures("ray_session")
def test_cfp_sweep_resumes_without_rerunning_finished_trials(tmp_path):
    from cfp_fixtures import untrained_backbone

    from fairrec_ray.cfp.config import CFPConfig
    from fairrec_ray.sweeps.run import run_sweep

    tiny = dict(synthetic_users=60, synthetic_items=40, synthetic_interactions=10, epochs=1, disc_warmup_epochs=0,
                num_beams=5, probe_folds=2, samples_per_user=1, prefix_length=2, eval_users=20)  # fmt: skip
    good = untrained_backbone(CFPConfig(**tiny), tmp_path / "backbone")
    late = tmp_path / "late_backbone"  # absent in the first run: that trial fails half-way through the sweep
    overrides = {**{f"base.{k}": v for k, v in tiny.items()}, "base.num_workers": 0, "base.control": False,
                 "search.prefix_length": {"type": "grid", "values": [2]},
                 "search.backbone": {"type": "grid", "values": [str(good), str(late)]},
                 "search.discriminator_weight": {"type": "grid", "values": [1.0]}}  # fmt: skip
    sweep = load_sweep(ROOT / "tune_configs" / "cfp_grid.yaml", overrides)
    first = run_sweep(sweep, tmp_path / "sweep")
    assert first["trials"] == 1 and first["failed_trials"] == 1  # the front holds the finished trial only
    done = list((tmp_path / "sweep" / "sweep").glob("trial_*/cfp/results.json"))
    assert len(done) == 1
    written = done[0].read_text()  # a rerun would write other timings

    shutil.copytree(good, late)  # the missing input arrives; the sweep is resumed
    second = run_sweep(sweep, tmp_path / "sweep", resume=True)
    assert second["trials"] == 2 and second["failed_trials"] == 0
    results = sorted((tmp_path / "sweep" / "sweep").glob("trial_*/cfp/results.json"))
    assert len(results) == 2
    # the finished trial was not run again (Tune may re-launch it; it then returns its stored results)
    assert done[0].read_text() == written
    assert json.loads(done[0].read_text())["backbone_dir"].startswith(str(good))
    table = pd.read_csv(tmp_path / "sweep" / "trials.csv")
    assert table["valid_hit@10"].notna().all() and table["test_probe_auc"].notna().all()
