"""The evaluate CLI: baselines in-process, P5 ranking sharded over Ray tasks equals in-process, and a
model folder is evaluated on the data its ``data_spec.json`` records."""

from __future__ import annotations

import json

import pytest

from fairrec_ray.data import SyntheticConfig, generate_synthetic
from fairrec_ray.data.options import write_data_spec
from fairrec_ray.errors import ConfigError
from fairrec_ray.evaluate import main
from fairrec_ray.p5 import build_p5, build_tokenizer, save_p5
from fairrec_ray.p5.evaluate import EvaluateConfig, run_evaluate

SYN = ["synthetic_users=40", "synthetic_items=120", "synthetic_interactions=15"]


def test_cli_prints_baseline_json(capsys):
    assert main(["--baseline", "mostpop", "--dataset", "synthetic", "--protocol", "sampled-100", *SYN]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["model"] == "mostpop" and out["protocol"] == "sampled-100" and out["users"] == 40
    assert 0 <= out["hit@1"] <= out["hit@10"] <= 1


def test_cli_rejects_model_and_baseline_together():
    with pytest.raises(ConfigError, match="exactly one"):
        EvaluateConfig(model="x", baseline="bpr")


@pytest.mark.slow
@pytest.mark.usefixtures("ray_session")
def test_ray_sharded_evaluation_matches_in_process(tmp_path):
    ds = generate_synthetic(SyntheticConfig(n_users=40, n_items=120, mean_interactions=15, min_interactions=15))
    tok = build_tokenizer(ds.n_users, ds.n_items)
    save_p5(build_p5("tiny", tok, seed=0), tok, tmp_path / "m")
    common = dict(
        model=str(tmp_path / "m"), dataset="synthetic", synthetic_users=40, synthetic_items=120,
        synthetic_interactions=15, protocol="sampled-100", batch_size=8, num_beams=10,
    )  # fmt: skip
    local = run_evaluate(EvaluateConfig(**common, num_workers=0))
    sharded = run_evaluate(EvaluateConfig(**common, num_workers=2))
    for key in ("hit@1", "hit@5", "hit@10", "ndcg@10", "users"):
        assert sharded[key] == pytest.approx(local[key])


def test_a_model_folder_is_evaluated_on_its_recorded_data(tmp_path, capsys):
    """The spec says 30 users with signal 2; flags the user did not give cannot change that, and a
    flag that contradicts it is refused instead of silently evaluating on other data."""
    spec = EvaluateConfig(baseline="mostpop", synthetic_users=30, synthetic_items=120, synthetic_interactions=15,
                          synthetic_signal=2.0, seed=3)  # fmt: skip
    ds, _ = spec.load_split()
    tok = build_tokenizer(ds.n_users, ds.n_items)
    model_dir = save_p5(build_p5("tiny", tok, seed=0), tok, tmp_path / "m")
    write_data_spec(spec, model_dir)
    assert main(["--model", str(model_dir), "--protocol", "sampled-100", "--num-beams", "5", "max_users=6"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["users"] == 6 and out["dataset"] == ds.name
    with pytest.raises(ConfigError, match="synthetic_users: got 40 but the model .* was trained with 30"):
        main(["--model", str(model_dir), "synthetic_users=40"])
