"""Serving's pure pieces, on hand-made cases: request validation (status + one-line message),
which prompt serves a fairness subset, bundle hashes and data-spec comparison. No Ray, no torch."""

from __future__ import annotations

import json

import pytest

from fairrec_ray.serve.bundle import data_spec_differences, folder_sha256
from fairrec_ray.serve.requests import BadRequest, Limits, RecRequest, check_fair_on, parse_body, parse_request

LIMITS = Limits(max_k=20, max_history=5, max_candidates=4, max_body_bytes=400, default_k=10)


def _status(payload, limits=LIMITS) -> tuple[int, str]:
    with pytest.raises(BadRequest) as info:
        parse_request(payload, limits)
    return info.value.status, info.value.message


def test_a_valid_request_is_normalised():
    req = parse_request({"user": 7, "fair_on": ["gender", "age"], "history": ["3", 4], "candidates": [1]}, LIMITS)
    assert req == RecRequest(user="7", k=10, fair_on=("age", "gender"), history=("3", "4"), candidates=("1",))
    assert req.subset_key == "age+gender"
    assert parse_request({"user": "u"}, LIMITS) == RecRequest(user="u", k=10)


@pytest.mark.parametrize(
    ("payload", "status", "words"),
    [
        ([1, 2], 400, "expected an object"),
        ({"k": 3}, 400, "user: missing"),
        ({"user": "1", "path": "/etc/passwd"}, 400, "unknown field(s) ['path']"),
        ({"user": True}, 400, "expected a string or integer id"),
        ({"user": ""}, 400, "1..128 characters"),
        ({"user": "1", "k": 0}, 400, "k: got 0; expected 1..20"),
        ({"user": "1", "k": 21}, 400, "k: got 21; expected 1..20"),
        ({"user": "1", "k": "5"}, 400, "expected an integer"),
        ({"user": "1", "k": 2.0}, 400, "expected an integer"),
        ({"user": "1", "fair_on": "gender"}, 400, "list of attribute names"),
        ({"user": "1", "fair_on": ["age", "age"]}, 400, "names an attribute twice"),
        ({"user": "1", "history": [1, 2, 3, 4, 5, 6]}, 413, "history: 6 ids; at most 5"),
        ({"user": "1", "history": "1,2"}, 400, "expected a list of ids"),
        ({"user": "1", "history": [1, None]}, 400, "history[1]"),
        ({"user": "1", "candidates": [1, 2, 3, 4, 5]}, 413, "candidates: 5 ids; at most 4"),
    ],
)
def test_bad_requests_get_their_status_and_one_line(payload, status, words):
    got_status, message = _status(payload)
    assert got_status == status
    assert words in message and "\n" not in message


def test_body_limits_and_malformed_json():
    ok = json.dumps({"user": "1", "k": 3}).encode()
    assert parse_body(ok, LIMITS).k == 3
    for body, status, words in [
        (b"{not json", 400, "not valid JSON"),
        (b"\xff\xfe", 400, "not valid JSON"),
        (b"", 400, "not valid JSON"),
        (b" " * 401, 413, "401 bytes; at most 400"),
    ]:
        with pytest.raises(BadRequest) as info:
            parse_body(body, LIMITS)
        assert info.value.status == status and words in info.value.message
        assert info.value.payload() == {"error": info.value.message, "status": status}


def test_which_prompt_serves_a_subset():
    attrs, mixture = ["age", "gender", "occupation"], ["age", "gender"]
    assert check_fair_on((), attrs, mixture) == "backbone"
    assert check_fair_on(("occupation",), attrs, mixture) == "prompt:occupation"
    assert check_fair_on(("age", "gender"), attrs, mixture) == "mixture:age+gender"
    with pytest.raises(BadRequest, match=r"unknown attribute\(s\) \['race'\]; valid: age, gender, occupation"):
        check_fair_on(("race",), attrs, mixture)
    with pytest.raises(BadRequest, match="no Prompt Mixture covering") as info:
        check_fair_on(("age", "occupation"), attrs, mixture)
    assert info.value.status == 400
    with pytest.raises(BadRequest, match="valid: none"):
        check_fair_on(("age",), [], [])


def test_folder_hash_sees_content_and_names(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.bin").write_bytes(b"123")
    first = folder_sha256(tmp_path / "a")
    assert folder_sha256(tmp_path / "a") == first
    (tmp_path / "a" / "x.bin").write_bytes(b"124")
    assert folder_sha256(tmp_path / "a") != first
    (tmp_path / "a" / "x.bin").write_bytes(b"123")
    (tmp_path / "a" / "x.bin").rename(tmp_path / "a" / "y.bin")
    assert folder_sha256(tmp_path / "a") != first


def test_data_spec_differences():
    synth = {"dataset": "synthetic", "seed": 0, "synthetic_users": 40, "min_interactions": 3, "data_dir": None}
    assert data_spec_differences(synth, dict(synth, data_dir="/x", min_interactions=5)) == []
    assert data_spec_differences(synth, dict(synth, seed=1, synthetic_users=50)) == ["seed", "synthetic_users"]
    real = {"dataset": "ml-100k", "seed": 0, "synthetic_users": 943}
    assert data_spec_differences(real, dict(real, seed=3, synthetic_users=300)) == []
    assert data_spec_differences(real, dict(real, dataset="synthetic")) == ["dataset"]
