"""Splits, popularity groups, cache, the synthetic generator, the describe CLI and FCPO on ownership data."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from cli_helpers import assert_one_line_error
from data_fixtures import ownership_rows, small_ml100k_ratings, write_insurance, write_ml100k
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import cross_val_predict

from fairrec_ray.data import (
    NO_ITEM,
    FCPONotApplicable,
    RecDataset,
    SyntheticConfig,
    fcpo_split,
    generate_synthetic,
    leave_one_out,
    load_dataset,
    popular_items,
)
from fairrec_ray.data import cache as cache_module
from fairrec_ray.errors import DataError


def make_dataset(sequences: dict[int, list[tuple[int, float]]], n_items: int = 12) -> RecDataset:
    """Users -> [(item, rating)] in time order (timestamps deliberately not in row order)."""
    rows = [(u, i, r, 100 - k) for u, seq in sequences.items() for k, (i, r) in enumerate(reversed(seq))]
    inter = pd.DataFrame(rows, columns=["user_idx", "item_idx", "rating", "timestamp"])
    users = pd.DataFrame({"user_idx": range(len(sequences)), "raw_id": [str(u) for u in sequences], "gender": 0})
    items = pd.DataFrame(
        {"item_idx": range(n_items), "raw_id": [str(i) for i in range(n_items)], "title": "", "genres": ""}
    )
    return RecDataset("toy", inter, users, items, {"gender": ("F", "M")}).validate()


def test_leave_one_out_uses_time_order_and_drops_short_users():
    ds = make_dataset({0: [(3, 5), (1, 5), (4, 5), (2, 5)], 1: [(5, 4), (6, 4)], 2: [(7, 1)]})
    split = leave_one_out(ds, min_interactions=2)
    assert split.users.tolist() == [0, 1] and split.n_dropped == 1
    assert split.train[0].tolist() == [3, 1] and split.valid[0] == 4 and split.test[0] == 2
    assert split.train[1].tolist() == [5] and split.valid[1] == NO_ITEM and split.test[1] == 6
    assert split.test_history(0).tolist() == [3, 1, 4] and split.test_history(1).tolist() == [5]
    with pytest.raises(DataError, match="min_interactions must be >= 2"):
        leave_one_out(ds, min_interactions=1)


def test_leave_one_out_empty_is_an_error():
    ds = make_dataset({0: [(1, 5)], 1: [(2, 5)]})
    with pytest.raises(DataError, match="no user has >= 3 interactions"):
        leave_one_out(ds)


def test_fcpo_split_protocol():
    seq = [(i, 5.0 if i % 4 else 2.0) for i in range(1, 12)]  # items 4 and 8 are negatives
    ds = make_dataset({0: seq, 1: [(1, 5), (2, 5)]}, n_items=12)
    split = fcpo_split(ds, positive_threshold=4, n_start=5, train_share=0.8)
    positives = [1, 2, 3, 5, 6, 7, 9, 10, 11]
    assert split.users.tolist() == [0] and split.n_dropped == 1
    assert split.train_start[0].tolist() == positives[:5]
    assert split.train_positives[0].tolist() == [7, 9, 10]  # round(0.8 * 4) = 3
    assert split.test_positives[0].tolist() == [11]
    assert split.test_start[0].tolist() == [5, 6, 7, 9, 10]  # last 5 of start + train
    assert split.train_item_counts(12)[[1, 7, 11]].tolist() == [1, 1, 0]


def test_fcpo_split_refuses_ownership_data_with_its_reason(tmp_path):
    from fairrec_ray.fcpo.env_data import build_env_data

    ds = load_dataset("insurance", write_insurance(tmp_path, ownership_rows()), use_cache=False)
    with pytest.raises(FCPONotApplicable, match=r"'insurance': FCPO does not apply: no user has >= 7 positives") as exc:
        fcpo_split(ds)
    assert exc.value.max_positives == 0
    assert exc.value.reason.endswith("(max interactions per user: 3; every rating is 1, as in ownership data)")
    with pytest.raises(FCPONotApplicable, match=r"max positives per user is 3 \(") as every_owned:
        fcpo_split(ds, positive_threshold=1.0)  # every owned product a positive: still too few
    assert every_owned.value.max_positives == 3
    with pytest.raises(FCPONotApplicable) as library:  # the FCPO job's entry point says the same
        build_env_data(ds)
    assert str(library.value) == str(exc.value)


def test_popular_items_size_and_ties():
    counts = np.array([5, 9, 9, 0, 1, 2, 9, 3, 4, 1])
    mask = popular_items(counts, 0.2)
    assert mask.sum() == 2 and mask[[1, 2]].all()  # three-way tie at 9 broken by lower index
    with pytest.raises(DataError, match=r"top_share must be in \(0, 1\)"):
        popular_items(counts, 1.5)


def test_real_ml100k_popular_group(ml100k_dir):
    ds = load_dataset("movielens-100k", ml100k_dir)
    split = leave_one_out(ds)
    counts = split.train_item_counts(ds.n_items)
    mask = popular_items(counts)
    assert mask.sum() == 336
    assert 0.6 < counts[mask].sum() / counts.sum() < 0.7


def test_synthetic_is_seeded_and_sized():
    cfg = SyntheticConfig(n_users=50, n_items=80, mean_interactions=20, min_interactions=5, seed=7)
    a, b = generate_synthetic(cfg), generate_synthetic(cfg)
    pd.testing.assert_frame_equal(a.interactions, b.interactions)
    c = generate_synthetic(SyntheticConfig(n_users=50, n_items=80, mean_interactions=20, min_interactions=5, seed=8))
    assert not a.interactions.equals(c.interactions)
    assert a.n_users == 50 and a.n_items == 80
    assert a.interactions.groupby("user_idx").size().min() >= 5
    assert not a.interactions.duplicated(["user_idx", "item_idx"]).any()


def test_synthetic_default_is_movielens_sized():
    ds = generate_synthetic()
    assert (ds.n_users, ds.n_items) == (943, 1682)
    assert 90_000 < ds.n_interactions < 110_000


def _bag_of_items_auc(ds: RecDataset) -> float:
    bag = np.zeros((ds.n_users, ds.n_items))
    bag[ds.interactions["user_idx"], ds.interactions["item_idx"]] = 1.0
    y = ds.attribute_labels("gender")
    scores = cross_val_predict(LogisticRegression(C=0.1, max_iter=500), bag, y, cv=5, method="predict_proba")[:, 1]
    return roc_auc_score(y, scores)


def test_synthetic_planted_signal_controls_leakage():
    base = dict(n_users=400, n_items=300, mean_interactions=40, min_interactions=10, seed=0)
    assert _bag_of_items_auc(generate_synthetic(SyntheticConfig(signal=2.0, **base))) > 0.75
    assert _bag_of_items_auc(generate_synthetic(SyntheticConfig(signal=0.0, **base))) < 0.6


def test_synthetic_rejects_bad_parameters():
    with pytest.raises(DataError, match="signal must be >= 0"):
        SyntheticConfig(signal=-1)


def test_cache_hits_and_rebuilds_corruption(tmp_path, monkeypatch):
    folder = write_ml100k(tmp_path / "raw", small_ml100k_ratings())
    builds = []
    original = cache_module.cached

    def counting(name, sources, build, cache_dir, extra=""):
        return original(name, sources, lambda: builds.append(1) or build(), cache_dir, extra)

    monkeypatch.setattr("fairrec_ray.data.registry.cached", counting)
    first = load_dataset("movielens-100k", folder, cache_dir=tmp_path / "cache")
    second = load_dataset("movielens-100k", folder, cache_dir=tmp_path / "cache")
    assert len(builds) == 1
    pd.testing.assert_frame_equal(first.interactions, second.interactions)
    assert second.attributes == first.attributes

    (entry,) = (tmp_path / "cache").iterdir()
    (entry / "interactions.parquet").write_bytes(b"garbage")
    third = load_dataset("movielens-100k", folder, cache_dir=tmp_path / "cache")
    assert len(builds) == 2
    pd.testing.assert_frame_equal(first.interactions, third.interactions)

    # a changed source file is a different cache entry
    with open(folder / "u.data", "a") as handle:
        handle.write("1\t6\t5\t99999\n")
    assert load_dataset("movielens-100k", folder, cache_dir=tmp_path / "cache").n_interactions == 21
    assert len(builds) == 3


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "fairrec_ray.data", *args], capture_output=True, text=True, timeout=120
    )


def test_describe_cli_synthetic_json():
    out = run_cli("describe", "--dataset", "synthetic", "--seed", "3")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    ds = generate_synthetic(SyntheticConfig(seed=3))
    assert report["users"] == ds.n_users and report["interactions"] == ds.n_interactions
    assert sum(report["attributes"]["gender"].values()) == ds.n_users
    assert report["splits"]["leave_one_out"]["test"] == ds.n_users
    assert report["popular_group"]["items"] == round(0.2 * ds.n_items)
    fcpo_keys = {"users", "dropped_users", "positive_threshold", "train_positives", "test_positives"}
    assert set(report["splits"]["fcpo"]) == fcpo_keys  # shape unchanged where the split applies


def test_describe_cli_real_ml100k(ml100k_dir):
    report = json.loads(run_cli("describe", "--dataset", "movielens-100k", "--data-dir", str(ml100k_dir)).stdout)
    assert (report["users"], report["items"], report["interactions"]) == (943, 1682, 100_000)
    assert report["attributes"]["gender"] == {"F": 273, "M": 670}
    assert report["splits"]["leave_one_out"]["train_interactions"] == 100_000 - 2 * 943


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["describe", "--dataset", "movielens-1m", "--data-dir", "/nonexistent"], "data directory not found"),
        (["describe", "--dataset", "nope"], "invalid choice: 'nope'"),
        (["describe", "--dataset", "movielens-100k"], "needs --data-dir"),
    ],
)
def test_describe_cli_errors_are_one_line_exit_2(args, message):
    out = run_cli(*args)
    assert out.returncode == 2
    assert out.stdout == ""
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0]
    assert "Traceback" not in out.stderr


def test_describe_cli_debug_shows_traceback():
    out = run_cli("describe", "--dataset", "movielens-100k", "--debug")
    assert out.returncode != 0 and "Traceback" in out.stderr


def test_describe_cli_ownership_data_reports_fcpo_not_applicable(tmp_path):
    folder = write_insurance(tmp_path, ownership_rows(36))
    out = run_cli("describe", "--dataset", "insurance", "--data-dir", str(folder))
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert (report["users"], report["items"], report["interactions"]) == (36, 21, 84)  # 36 * 2 + 12 third products
    assert report["attributes"]["marital"] == {"U": 12, "S": 12, "M": 12}  # "s" -> S, "W" -> U
    assert sum(report["attributes"]["sex"].values()) == 36  # "f" kept
    assert report["splits"]["leave_one_out"]["test"] == 12  # only 3-product owners have >= 3 interactions
    assert report["popular_group"]["items"] == round(0.2 * 21)
    fcpo = report["splits"]["fcpo"]
    assert fcpo["applicable"] is False and fcpo["max_positives_per_user"] == 0
    assert fcpo["reason"].startswith("no user has >= 7 positives (rating >= 4.0) for a 5-item start state")
    assert "every rating is 1, as in ownership data" in fcpo["reason"]


def test_train_fcpo_cli_refuses_ownership_data_before_writing(tmp_path):
    folder = write_insurance(tmp_path / "data", ownership_rows())
    out = tmp_path / "run"
    assert_one_line_error(
        ["fairrec_ray.train_fcpo", "--dataset", "insurance", "--data-dir", str(folder), "--output", str(out)],
        "dataset 'insurance': FCPO does not apply: no user has >= 7 positives (rating >= 4.0)",
    )
    assert not out.exists()
