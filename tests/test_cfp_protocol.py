"""The fairness protocol end to end on a tiny in-process CFP run: training (prompt steps and every
discriminator batch) sees only the train users, the best epoch is chosen on the validation users,
every reported number is over the held-out users, and the λ = 0 control sits beside CFP."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from cfp_fixtures import untrained_backbone

from fairrec_ray.cfp.config import CFPConfig
from fairrec_ray.cfp.data import HIDDEN, CFPData
from fairrec_ray.cfp.evaluate import fairness_metrics
from fairrec_ray.config import build_config
from fairrec_ray.errors import ConfigError

TINY = dict(synthetic_users=100, synthetic_items=40, synthetic_interactions=10, num_beams=5, probe_folds=2,
            samples_per_user=1, prefix_length=2, epochs=2, num_workers=0, batch_size=16)  # fmt: skip


@pytest.fixture(scope="module")
def backbone(tmp_path_factory):
    return untrained_backbone(CFPConfig(**TINY), tmp_path_factory.mktemp("cfp-protocol") / "backbone")


def tiny_data(backbone) -> CFPData:
    from fairrec_ray.p5 import load_p5

    _, tokenizer = load_p5(str(backbone))
    return CFPData.build(CFPConfig(**TINY), tokenizer)


def test_training_view_cannot_hold_heldout_users(backbone):
    data = tiny_data(backbone)
    part = data.partition
    heldout = set(data.split.users[part.heldout].tolist())
    train = set(data.split.users[part.train].tolist())
    assert heldout and train and not heldout & train
    view = data.for_training()
    assert not heldout & set(view.split.users.tolist())  # absent from the split the loop holds
    assert (view.labels[list(heldout)] == HIDDEN).all() and (view.labels[list(train)] >= 0).all()
    seen = {int(u) for epoch in range(3) for b in view.train_batches(epoch, 0, 16) for u in b["user_idx"]}
    assert seen <= train and len(seen) > 0.9 * len(train)
    # the validation view of the training data is exactly the valid users, labels intact
    assert set(view.users("valid").split.users.tolist()) == set(data.split.users[part.valid].tolist())
    # even pointed at the held-out users' prompts, a probe cannot read their labels from this view
    held_with_hidden_labels = dataclasses.replace(view, split=data.users("heldout").split, partition=None)
    with pytest.raises(ValueError, match="labels are hidden"):
        fairness_metrics(None, held_with_hidden_labels, 2, 0)  # type: ignore[arg-type]


def test_protocol_shares_are_validated():
    with pytest.raises(ConfigError, match=r"valid_share: got 0.0; expected > 0 with heldout_share > 0"):
        CFPConfig(valid_share=0.0)
    with pytest.raises(ConfigError, match=r"valid_share: got 0.5; expected < 1 - heldout_share"):
        CFPConfig(valid_share=0.5, heldout_share=0.5)


@pytest.mark.usefixtures("ray_session")
def test_cfp_run_trains_on_train_users_selects_on_valid_reports_heldout(backbone, tmp_path, monkeypatch):
    from fairrec_ray.cfp import loop
    from fairrec_ray.cfp.job import run_cfp

    seen: list[np.ndarray] = []  # user ids and labels of every batch the discriminator trained on
    original = loop.discriminator_loss

    def recording(logits, attr):
        seen.append(attr.numpy().copy())
        return original(logits, attr)

    batches: list[np.ndarray] = []
    original_batches = CFPData.train_batches

    def recording_batches(self, *args, **kwargs):
        for batch in original_batches(self, *args, **kwargs):
            batches.append(batch["user_idx"].numpy().copy())
            yield batch

    monkeypatch.setattr(loop, "discriminator_loss", recording)
    monkeypatch.setattr(CFPData, "train_batches", recording_batches)
    out = tmp_path / "out"
    results = run_cfp(build_config(CFPConfig, {**TINY, "backbone": str(backbone), "output": str(out)}))

    users = results["users"]
    train, valid, heldout = (set(users[k]) for k in ("train_users", "valid_users", "heldout_users"))
    assert not train & valid and not train & heldout and not valid & heldout
    assert users["sizes"] == {"train": 60, "valid": 20, "heldout": 20}
    # every training batch (CFP and control runs) holds train users only; labels never hidden
    assert batches and set(np.concatenate(batches).tolist()) <= train
    assert seen and all((labels >= 0).all() for labels in seen)
    # best epoch: chosen on metrics over the validation users only
    for epoch in results["per_epoch"]:
        assert epoch["valid_probe_n_users"] == len(valid), epoch
    # reported numbers (backbone, CFP, control) and their intervals: over the held-out users only
    for block in (results["backbone"]["test"], results["cfp"]["test"], results["control"]["test"]):
        assert block["probe_n_users"] == len(heldout) and block["encoder_probe_n_users"] == len(heldout)
        assert block["probe_auc_ci_low"] <= block["probe_auc_ci_high"]
        assert block["probe_leak"] == pytest.approx(max(block["probe_auc"], 1 - block["probe_auc"]))
    on_disk = json.loads((out / "results.json").read_text())
    control = on_disk["control"]
    assert control["discriminator_weight"] == 0.0 and not control["same_as_run"]
    assert [e["epoch"] for e in control["per_epoch"]] == [0, 1]
    assert control["per_epoch"][1]["rec_loss"] != on_disk["per_epoch"][1]["rec_loss"]  # really another run
    assert (out / "ray" / "cfp_control").is_dir()


@pytest.mark.usefixtures("ray_session")
def test_without_per_epoch_evaluation_the_chosen_epoch_is_still_measured_on_validation_users(backbone, tmp_path):
    """What a sweep selects on (``final_valid``) exists, and is over the validation users only."""
    from fairrec_ray.cfp.job import run_cfp

    config = {**TINY, "backbone": str(backbone), "output": str(tmp_path / "out"), "eval_every_epoch": False,
              "control": False}  # fmt: skip
    results = run_cfp(build_config(CFPConfig, config))
    assert results["best_epoch"] == 1 and "valid_probe_auc" not in results["per_epoch"][-1]
    assert results["final_valid"]["probe_n_users"] == len(results["users"]["valid_users"])
    assert 0.0 <= results["final_valid"]["hit@10"] <= 1.0 and results["control"] is None
