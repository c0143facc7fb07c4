"""End-to-end CFP on synthetic data with a strong planted signal, through Ray Train (2 workers,
DDP): the backbone's representation leaks the attribute, CFP's leaks markedly less, hit@10 stays
within the bound, and the outputs (results.json, prompt folder, checkpoints) are usable."""

from __future__ import annotations

import json

import pytest
import torch

from fairrec_ray.cfp import load_fair_model
from fairrec_ray.cfp.config import CFPConfig
from fairrec_ray.cfp.data import CFPData
from fairrec_ray.cfp.job import EpochRecord, choose_best, run_cfp
from fairrec_ray.config import build_config
from fairrec_ray.errors import ConfigError

# The embedded demo's data (300 users, planted signal 3); its backbone comes from the real pipeline
# (ensure_backbone -> train_p5, tiny preset, 4 epochs, ~1.5 min on 2 cores): the narrower in-process
# fixture backbone leaked only ~0.70-0.74 gender AUC, too close to the > 0.7 bar to test against.
# Every user in training, selection and report (heldout_share = valid_share = 0): these tests check
# the mechanism against thresholds, and 20 % of 300 users (60) is too few for a probe to measure the
# planted leak (the quick-start run with the protocol: backbone 0.61 [0.42, 0.75] on 60 held-out
# users vs 0.78 on all 300). The protocol itself is tested in test_cfp_protocol.py.
DATA = dict(synthetic_users=300, synthetic_items=100, synthetic_interactions=20, num_beams=10, eval_users=100,
            heldout_share=0.0, valid_share=0.0)  # fmt: skip
# The test's accuracy bound: CFP keeps >= 80 % of the backbone's test hit@10 (the product target is
# 95 %; on 300 users one hit is 0.3 % and the run is short).
HIT_BOUND = 0.80


@pytest.fixture(scope="module")
def backbone(tmp_path_factory):
    from fairrec_ray.cfp.backbone import ensure_backbone

    cache = tmp_path_factory.mktemp("cfp-backbones")
    return ensure_backbone(build_config(CFPConfig, {**DATA, "backbone_cache": str(cache)}))


@pytest.mark.slow
@pytest.mark.usefixtures("ray_session")
def test_cfp_end_to_end_on_ray_train(backbone, tmp_path):
    out = tmp_path / "out"
    config = build_config(
        CFPConfig,
        {**DATA, "backbone": str(backbone), "output": str(out), "num_workers": 2, "epochs": 3,
         "probe_folds": 3},
    )  # fmt: skip
    results = run_cfp(config)
    before, after = results["before"], results["after"]
    assert before["probe_auc"] > 0.7, before
    assert after["probe_auc"] < before["probe_auc"] - 0.1, (before, after)
    assert after["hit@10"] >= HIT_BOUND * before["hit@10"], (before, after)

    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk["best_epoch"] == results["best_epoch"] >= config.disc_warmup_epochs
    assert [e["epoch"] for e in on_disk["per_epoch"]] == list(range(config.epochs))
    assert all("valid_probe_auc" in e and "valid_hit@10" in e for e in on_disk["per_epoch"])
    # both ranks held identical prompts and an identical adversary (BatchNorm statistics included)
    assert all(e["rank_spread"] == 0.0 for e in on_disk["per_epoch"]), [e["rank_spread"] for e in on_disk["per_epoch"]]
    # the λ = 0 control ran on Ray Train too, beside CFP; it keeps the backbone's leak (no adversary)
    assert on_disk["control"]["after"]["probe_auc"] > after["probe_auc"], on_disk["control"]["after"]
    assert (out / "train_cfp.log").is_file()

    # the saved prompt restores the fair model: same representation as the job measured
    model, tokenizer = load_fair_model(backbone, out / "prompt")
    data = CFPData.build(config, tokenizer)
    batch = next(data.user_batches(8))
    with torch.no_grad():
        rep = model.encode_users(batch["input_ids"], batch["attention_mask"], batch["user_token_mask"])
    assert rep.shape == (8, model.backbone.config.d_model)
    assert not any(p.requires_grad for p in model.parameters())


@pytest.mark.slow
@pytest.mark.usefixtures("ray_session")
def test_local_mode_resumes_from_its_checkpoints(backbone, tmp_path):
    common = {**DATA, "backbone": str(backbone), "output": str(tmp_path / "out"), "num_workers": 0,
              "probe_folds": 2, "samples_per_user": 1, "prefix_length": 2, "eval_every_epoch": False,
              "control": False}  # fmt: skip
    first = run_cfp(build_config(CFPConfig, {**common, "epochs": 2}))
    assert [e["epoch"] for e in first["per_epoch"]] == [0, 1]
    second = run_cfp(build_config(CFPConfig, {**common, "epochs": 3}))
    # epochs 0-1 come from the first run's checkpoints (identical metrics), only epoch 2 is new
    assert [e["epoch"] for e in second["per_epoch"]] == [0, 1, 2]
    assert second["per_epoch"][1]["rec_loss"] == first["per_epoch"][1]["rec_loss"]
    # another setting in the same folder is not silently resumed
    with pytest.raises(ConfigError, match=r"holds a run with other settings: prefix_lr \(0.01 -> 0.5\)"):
        run_cfp(build_config(CFPConfig, {**common, "epochs": 3, "prefix_lr": 0.5}))


def test_best_epoch_rule():
    def rec(epoch, auc, hit):
        return EpochRecord(epoch, {"valid_probe_auc": auc, "valid_hit@10": hit}, None)

    records = [rec(0, 0.9, 0.50), rec(1, 0.60, 0.49), rec(2, 0.52, 0.30), rec(3, 0.58, 0.48)]
    assert choose_best(records, backbone_hit10=0.5, hit_bound=0.95, warmup=1).epoch == 3
    assert choose_best(records, backbone_hit10=0.5, hit_bound=0.5, warmup=1).epoch == 2
    assert choose_best(records, backbone_hit10=0.9, hit_bound=0.95, warmup=1).epoch == 1  # none qualifies


@pytest.mark.slow
@pytest.mark.usefixtures("ray_session")
def test_prompt_mixture_protects_a_subset_of_attributes_at_once(backbone, tmp_path):
    """Two attribute prompts (gender, age) from train_cfp, mixed by train_mixture: the gender+age
    mixture hides gender like the gender prompt does, keeps hit@10, and a one-attribute subset
    gives exactly that attribute's own prompt."""
    from fairrec_ray.cfp.mixture_job import train_mixture

    common = {**DATA, "backbone": str(backbone), "num_workers": 0, "probe_folds": 3, "eval_every_epoch": False,
              "control": False}  # fmt: skip
    single, dirs = {}, {}
    for attribute in ("gender", "age"):
        out = tmp_path / attribute
        single[attribute] = run_cfp(build_config(CFPConfig, {**common, "attribute": attribute, "output": str(out)}))
        dirs[attribute] = str(out / "prompt")
    results = train_mixture(build_config(CFPConfig, {**common, "epochs": 2}), dirs, tmp_path / "mix")

    assert set(results["subsets"]) == {"gender", "age", "gender+age"}
    backbone_gender = results["backbone"]["gender"]
    assert backbone_gender == pytest.approx(single["gender"]["before"]["probe_auc"])
    both = results["subsets"]["gender+age"]
    assert both["probe_auc"]["gender"] < backbone_gender - 0.1, (both, backbone_gender)
    assert both["ranking"]["hit@10"] >= HIT_BOUND * results["backbone"]["ranking"]["hit@10"], both
    for attribute in ("gender", "age"):  # a one-attribute subset is that attribute's prompt, exactly
        alone = results["subsets"][attribute]["probe_auc"][attribute]
        assert alone == pytest.approx(single[attribute]["after"]["probe_auc"], abs=1e-9)
    on_disk = json.loads((tmp_path / "mix" / "results.json").read_text())
    assert on_disk["subsets"]["gender+age"]["probe_auc"] == both["probe_auc"]
    assert (tmp_path / "mix" / "mixture" / "mixture.safetensors").is_file()
    # outcome fairness of the same rankings, per attribute: the group means bracket the overall hit@10
    for entry in (both, results["subsets"]["gender"], results["backbone"]):
        ranking = entry["ranking"]
        for attribute in ("gender", "age"):
            means = [v for k, v in ranking.items() if k.startswith(f"{attribute}/hit@10_group_")]
            assert len(means) >= 2 and min(means) - 1e-9 <= ranking["hit@10"] <= max(means) + 1e-9, ranking
            assert 0.0 <= ranking[f"{attribute}/gap_hit@10"] <= max(means) - min(means) + 1e-9
            assert ranking[f"{attribute}/df_epsilon"] >= 0.0 and ranking[f"{attribute}/yh_parity"] == 0.0
        assert 0.0 < ranking["popular_exposure_share"] <= 1.0 and 0.0 <= ranking["exposure_gini"] < 1.0
    single_test = single["gender"]["cfp"]["test"]
    assert {"gap_hit@10", "gap_ndcg@10", "yh_value", "df_epsilon", "exposure_gini", "aplt"} <= set(single_test)
    from fairrec_ray.serve.bundle import open_bundle  # the jobs' serving bundles open and fit together

    assert open_bundle(single["gender"]["bundle_dir"]).attributes == ["gender"]
    mixed = open_bundle(results["bundle_dir"])
    assert mixed.attributes == ["age", "gender"] and mixed.mixture_attributes == ["gender", "age"]
