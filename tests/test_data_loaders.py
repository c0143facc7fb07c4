"""Loaders: real counts, attribute encodings, dirty values, bad input, parser properties."""

from __future__ import annotations

import numpy as np
import pytest
from data_fixtures import insurance_row, small_ml100k_ratings, write_insurance, write_ml1m, write_ml100k
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fairrec_ray.data import load_dataset
from fairrec_ray.data.movielens import age_group, load_movielens_100k
from fairrec_ray.errors import DataError


def test_real_ml100k_counts(ml100k_dir):
    ds = load_dataset("movielens-100k", ml100k_dir, use_cache=False)
    assert (ds.n_users, ds.n_items, ds.n_interactions) == (943, 1682, 100_000)
    assert np.bincount(ds.attribute_labels("gender")).tolist() == [273, 670]
    assert len(ds.attributes["occupation"]) == 21 and len(ds.attributes["age"]) == 7
    assert ds.items.loc[0, "title"] == "Toy Story (1995)"
    assert ds.items.loc[0, "genres"] == "Animation|Children's|Comedy"


def test_age_groups_follow_ml1m_bounds():
    ages = np.array([7, 17, 18, 24, 25, 34, 35, 44, 45, 49, 50, 55, 56, 73])
    assert age_group(ages).tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6]


def test_ml100k_fixture_reindexes_contiguously(tmp_path):
    folder = write_ml100k(tmp_path, [(10, 5, 4, 1), (10, 2, 3, 2), (30, 5, 5, 3)])
    ds = load_movielens_100k(folder)
    assert ds.n_users == 2 and ds.n_items == 2  # items without ratings are dropped
    assert ds.users["raw_id"].tolist() == ["10", "30"]
    assert ds.items["raw_id"].tolist() == ["2", "5"]
    assert ds.interactions["item_idx"].tolist() == [1, 0, 1]


def test_ml1m_parses_double_colon_and_latin1(tmp_path):
    ds = load_dataset("movielens-1m", write_ml1m(tmp_path), use_cache=False)
    assert (ds.n_users, ds.n_items, ds.n_interactions) == (3, 4, 12)
    assert ds.items.loc[0, "title"] == "Amélie (2001)"
    assert ds.attribute_labels("age").tolist() == [0, 6, 2]
    assert ds.attributes["occupation"][ds.attribute_labels("occupation")[0]] == "K-12 student"


def test_insurance_normalises_dirty_values(tmp_path):
    ds = load_dataset("insurance", write_insurance(tmp_path), use_cache=False, seed=3)
    assert ds.n_users == 5  # blank sex dropped
    assert ds.attributes["marital"] == ("U", "S", "M")
    by_id = ds.users.set_index("raw_id")
    assert by_id.loc["U2", "marital"] == 1  # "s" -> S
    assert by_id.loc["U3", "marital"] == 0  # rare "D" -> U
    assert by_id["age"].tolist() == [0, 1, 2, 3, 4]
    assert ds.attributes["occupation"][by_id.loc["U5", "occupation"]] == "other"
    assert ds.n_interactions == 13


def test_insurance_order_is_seeded(tmp_path):
    folder = write_insurance(tmp_path)
    a = load_dataset("insurance", folder, seed=1, use_cache=False).user_sequences()
    b = load_dataset("insurance", folder, seed=1, use_cache=False).user_sequences()
    assert all(np.array_equal(x, y) for x, y in zip(a, b))


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: (d / "u.data").unlink(), r"u\.data: file not found"),
        (lambda d: (d / "u.data").write_text("1,2,3,4\n"), r"u\.data:1: expected 4 fields separated by '\\t'"),
        (lambda d: (d / "u.data").write_text("1\t2\tfive\t4\n"), r"u\.data: line 1: field 'rating' must be a number"),
        (lambda d: (d / "u.data").write_text(""), r"u\.data: file is empty"),
        (lambda d: (d / "u.user").write_text("1|20|X|student|0\n"), r"field 'gender' has unknown value 'X'"),
        (lambda d: (d / "u.user").write_text("1|20|M|astronaut|0\n"), r"field 'occupation' has unknown value"),
        (lambda d: (d / "u.data").write_text("99\t1\t3\t4\n"), r"no interactions after filtering"),
    ],
)
def test_ml100k_bad_input_names_file_and_rule(tmp_path, mutate, message):
    folder = write_ml100k(tmp_path, small_ml100k_ratings())
    mutate(folder)
    with pytest.raises(DataError, match=message):
        load_dataset("movielens-100k", folder, use_cache=False)


@pytest.mark.parametrize(
    ("rows", "header", "message"),
    [
        (None, "ID,sex\n", r"missing column\(s\)"),
        ([insurance_row("U1", "M", "M", "1950", "A", (0,)).replace(",1,", ",7,", 1)], None, r"must be 0 or 1, got 7"),
        ([insurance_row("U1", "M", "M", "1950", "A", (0,)).rsplit(",", 1)[0] + ",x"], None, r"must be a number"),
        ([insurance_row("U1", "", "M", "", "A", (0,))], None, r"no row has a valid sex and birth_year"),
    ],
)
def test_insurance_bad_input(tmp_path, rows, header, message):
    folder = write_insurance(tmp_path, rows)
    if header:
        (folder / "Train.csv").write_text(header + "U1,M\n")
    with pytest.raises(DataError, match=message):
        load_dataset("insurance", folder, use_cache=False)


def test_unknown_dataset_and_attribute(tmp_path):
    with pytest.raises(DataError, match="unknown dataset 'ml-20m'"):
        load_dataset("ml-20m")
    ds = load_dataset("movielens-100k", write_ml100k(tmp_path, small_ml100k_ratings()), use_cache=False)
    with pytest.raises(DataError, match="unknown attribute 'marital'.*expected one of: age, gender, occupation"):
        ds.attribute_labels("marital")


def test_real_dataset_needs_data_dir(tmp_path):
    with pytest.raises(DataError, match="needs --data-dir"):
        load_dataset("movielens-1m")
    with pytest.raises(DataError, match="data directory not found"):
        load_dataset("movielens-1m", tmp_path / "nope")


rating_rows = st.lists(
    st.tuples(st.integers(1, 30), st.integers(1, 6), st.integers(1, 5), st.integers(0, 2**40)), min_size=1, max_size=60
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=rating_rows)
def test_ml100k_parser_keeps_every_valid_row(tmp_path_factory, rows):
    folder = write_ml100k(tmp_path_factory.mktemp("prop"), rows)
    ds = load_movielens_100k(folder)
    assert ds.n_interactions == len(rows)
    assert ds.n_users == len({r[0] for r in rows}) and ds.n_items == len({r[1] for r in rows})
    raw_items = ds.items["raw_id"].astype(int).to_numpy()[ds.interactions["item_idx"]]
    assert sorted(zip(raw_items, ds.interactions["rating"].astype(int))) == sorted((i, r) for _, i, r, _ in rows)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=rating_rows, bad_row=st.integers(0, 59), bad_field=st.sampled_from(["rating", "timestamp", "raw_user"]))
def test_ml100k_parser_reports_the_corrupted_line(tmp_path_factory, rows, bad_row, bad_field):
    bad_row %= len(rows)
    folder = write_ml100k(tmp_path_factory.mktemp("prop"), rows)
    lines = (folder / "u.data").read_text().splitlines()
    fields = lines[bad_row].split("\t")
    fields[["raw_user", "raw_item", "rating", "timestamp"].index(bad_field)] = "n/a"
    lines[bad_row] = "\t".join(fields)
    (folder / "u.data").write_text("\n".join(lines) + "\n")
    first_bad = bad_row + 1
    with pytest.raises(DataError, match=rf"line {first_bad}: field '{bad_field}'"):
        load_movielens_100k(folder)
