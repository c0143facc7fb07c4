"""P5 pre-training end to end: in-process kill-and-resume (fast) and a 2-worker Ray Train run that
is interrupted after epoch 1, resumes at epoch 2 and learns (slow)."""

from __future__ import annotations

import json

import pytest

from fairrec_ray.errors import ConfigError
from fairrec_ray.p5 import load_p5
from fairrec_ray.p5.baselines import most_pop_scores
from fairrec_ray.p5.config import P5TrainConfig
from fairrec_ray.p5.evaluate import evaluate_model, evaluate_scores
from fairrec_ray.p5.loop import InjectedCrash
from fairrec_ray.p5.train import train_p5

SMALL = dict(
    dataset="synthetic", synthetic_users=60, synthetic_items=100, synthetic_interactions=15,
    max_seq_per_user=4, direct_per_user=1, val_users=16, num_beams=5, eval_batch_size=16,
)  # fmt: skip


def test_config_errors_name_key_value_and_rule():
    with pytest.raises(ConfigError, match=r"epochs: got 0; must be >= 1"):
        P5TrainConfig(epochs=0)
    with pytest.raises(ConfigError, match=r"preset: got 'huge'"):
        P5TrainConfig(preset="huge")
    with pytest.raises(ConfigError, match=r"data_dir"):
        P5TrainConfig(dataset="movielens-100k")


def test_in_process_run_is_interrupted_after_epoch_1_and_resumes_at_epoch_2(tmp_path, caplog):
    cfg = P5TrainConfig(**SMALL, epochs=2, num_workers=0, output=str(tmp_path), crash_after_epoch=1)
    with pytest.raises(InjectedCrash):
        train_p5(cfg)
    assert not (tmp_path / "model").exists()
    caplog.clear()
    with caplog.at_level("INFO", logger="fairrec_ray"):
        model_dir = train_p5(P5TrainConfig(**SMALL, epochs=2, num_workers=0, output=str(tmp_path)))
    assert "resumed from the epoch 1 checkpoint; starting at epoch 2" in caplog.text
    results = json.loads((tmp_path / "results.json").read_text())
    assert [m["epoch"] for m in results["history"]] == [1, 2]
    model, tok = load_p5(model_dir)
    assert tok.n_items == 100 and model.config.d_model == 128


@pytest.mark.slow
@pytest.mark.usefixtures("ray_session")
def test_two_worker_run_is_interrupted_resumes_and_learns(tmp_path):
    """2 Ray Train workers (DDP over gloo): crash after epoch 1, re-run resumes at epoch 2, and the
    exported model beats MostPop on every validation user of a planted-signal dataset (4 genres
    consumed in binges: the next item's genre is the last item's) with collaborative item ids."""
    import ray.train

    base = dict(
        dataset="synthetic", synthetic_users=120, synthetic_items=200, synthetic_interactions=30, synthetic_genres=4,
        item_indexing="collaborative", max_seq_per_user=6, epochs=3, lr=3e-3, num_workers=2, num_beams=10,
        val_users=48, output=str(tmp_path),
    )  # fmt: skip
    with pytest.raises(ray.train.TrainingFailedError):
        train_p5(P5TrainConfig(**base, crash_after_epoch=1))
    assert not (tmp_path / "model").exists()
    model_dir = train_p5(P5TrainConfig(**base))
    results = json.loads((tmp_path / "results.json").read_text())
    assert [m["epoch"] for m in results["history"]] == [1, 2, 3]
    assert results["history"][-1]["loss"] < results["history"][0]["loss"]
    _, split = P5TrainConfig(**base).load_split()
    model, tok = load_p5(model_dir)
    assert tok.n_items == 200
    p5 = evaluate_model(model, tok, split, protocol="full", stage="valid", num_beams=10)
    pop = evaluate_scores(most_pop_scores(split, 200, "valid"), split, protocol="full", stage="valid")
    assert p5["users"] == pop["users"] == 120
    assert p5["hit@10"] > pop["hit@10"] + 0.05, (p5["hit@10"], pop["hit@10"])
