"""Opt-in learning checks (``python -m pytest -m learning``; minutes each, not in CI): the shipped
defaults reach the results the README quotes for them."""

from __future__ import annotations

import pytest

from fairrec_ray.cfp.config import CFPConfig
from fairrec_ray.config import build_config

pytestmark = [pytest.mark.learning, pytest.mark.usefixtures("ray_session")]


def test_quick_start_default_removes_the_planted_leak(tmp_path):
    """``python -m fairrec_ray.train_cfp`` with no arguments: the backbone leaks the planted gender
    signal (AUC > 0.75), CFP brings it under 0.6 and keeps >= 90 % of hit@10."""
    from fairrec_ray.cfp.job import run_cfp

    # on every user (heldout_share = valid_share = 0): 60 held-out users are too few for these
    # thresholds (see test_cfp_train.DATA); the protocol's numbers are in the README instead
    config = build_config(
        CFPConfig,
        {"output": str(tmp_path / "out"), "backbone_cache": str(tmp_path / "cache"), "heldout_share": 0.0,
         "valid_share": 0.0},
    )  # fmt: skip
    results = run_cfp(config)
    before, after = results["before"], results["after"]
    assert before["probe_auc"] > 0.75, before
    assert after["probe_auc"] < 0.6, after
    assert after["hit@10"] >= 0.9 * before["hit@10"], (before, after)
