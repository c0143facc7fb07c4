"""Serving on a small bundle (untrained small P5, two random prompts, a mixture): the core against
independent rankings (the bare backbone; ``load_fair_model`` with one prompt), bundles whose parts
do not belong together, the CLI, the Serve config, and a real Ray Serve app over HTTP in the
session's Ray (answers, batching, concurrency, every bad request's 4xx)."""

from __future__ import annotations

import json
import shutil
import socket
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import yaml
from serve_fixtures import ATTRIBUTES, CONFIG, make_bundle

import fairrec_ray
from fairrec_ray.cfp.config import CFPConfig
from fairrec_ray.cfp.data import load_cfp_split
from fairrec_ray.cfp.model import load_fair_model
from fairrec_ray.cli import run_main
from fairrec_ray.data.options import data_spec
from fairrec_ray.p5 import load_p5
from fairrec_ray.p5.generate import scored_beam_items
from fairrec_ray.p5.trie import ItemTrie
from fairrec_ray.serve.bundle import BundleError, Catalogue, add_prompt, init_bundle, open_bundle, write_bundle
from fairrec_ray.serve.recommender import Recommender
from fairrec_ray.serve.requests import BadRequest, RecRequest

CLUSTER = Path(__file__).resolve().parents[1] / "cluster"
USERS = ["1", "2", "5"]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return make_bundle(tmp_path_factory.mktemp("serve"))


@pytest.fixture(scope="module")
def core(built):
    return Recommender(built[0])


def reference_ranking(model, tok, catalogue, user: str, k: int) -> list[str]:
    """The evaluation's beam search on a separately loaded model: unconsumed items, prompt 2-1."""
    from fairrec_ray.p5 import P5Collator, PromptExample
    from fairrec_ray.p5.templates import EVAL_TEMPLATE, TEMPLATES

    idx = catalogue.user_ids.index(user)
    history = catalogue.consumed[idx]
    source = TEMPLATES[EVAL_TEMPLATE].render(user=tok.user_text(idx), history=tok.items_text(history[-20:]))
    batch = P5Collator(tok)([PromptExample(source, "", idx, 0, EVAL_TEMPLATE)])
    mask = np.ones((1, catalogue.n_items), dtype=bool)
    mask[0, list(history)] = False
    trie = ItemTrie(tok.item_token_ids(), tok.eos_id, tok.vocab_size)
    items, _ = scored_beam_items(model.eval(), tok, batch["input_ids"], batch["attention_mask"], mask, trie, 20)
    return [catalogue.item_ids[i] for i in items[0][:k] if i >= 0]


def _items(answer) -> list[str]:
    return [entry["item"] for entry in answer["items"]]


# ---------------------------------------------------------------- the core


def test_prompts_change_the_prefix_and_nothing_else(built, core):
    bundle, parts = built
    cat = core.bundle.catalogue
    plain = fairrec_ray.recommend(bundle, USERS, k=10)
    backbone, tok = load_p5(parts["backbone"])
    for user, answer in zip(USERS, plain):
        assert answer["served_by"] == "backbone"
        assert _items(answer) == reference_ranking(backbone, tok, cat, user, 10)
        consumed = {cat.item_ids[i] for i in cat.consumed[cat.user_ids.index(user)]}
        assert len(_items(answer)) == 10 and not consumed & set(_items(answer))
        scores = [e["score"] for e in answer["items"]]
        assert scores == sorted(scores, reverse=True)
    changed = 0
    for attribute in ATTRIBUTES:  # a one-attribute subset = that prompt alone, loaded on its own
        single, tok = load_fair_model(parts["backbone"], parts[attribute])
        fair = fairrec_ray.recommend(bundle, USERS, k=10, fair_on=[attribute])
        for user, answer, before in zip(USERS, fair, plain):
            assert answer["served_by"] == f"prompt:{attribute}"
            assert _items(answer) == reference_ranking(single, tok, cat, user, 10)
            changed += _items(answer) != _items(before)
    assert changed >= len(USERS)  # the prompts do act
    both = fairrec_ray.recommend(bundle, USERS, k=10, fair_on=["gender", "age"])
    assert {a["served_by"] for a in both} == {"mixture:age+gender"}


def test_a_mixed_batch_equals_each_request_alone_and_repeats_exactly(core):
    requests = [RecRequest(user=u, k=5, fair_on=fair) for u in USERS for fair in ((), ("gender",), ("age", "gender"))]
    batched = core.recommend([core.resolve(r) for r in requests])
    alone = [core.recommend([core.resolve(r)])[0] for r in requests]
    for b, a in zip(batched, alone):
        assert _items(b) == _items(a)
        np.testing.assert_allclose([e["score"] for e in b["items"]], [e["score"] for e in a["items"]], rtol=1e-4)
    assert core.recommend([core.resolve(r) for r in requests]) == batched


def test_candidates_history_and_unknown_users(core):
    cat = core.bundle.catalogue
    some = list(cat.item_ids[:7])
    answer = core.recommend([core.resolve(RecRequest(user="1", k=20, candidates=tuple(some)))])[0]
    assert sorted(_items(answer)) == sorted(some)  # every candidate, consumed or not, ranked once
    new = core.recommend([core.resolve(RecRequest(user="new-user", k=5, history=("1", "2", "3")))])[0]
    assert len(new["items"]) == 5 and not {"1", "2", "3"} & set(_items(new))
    with pytest.raises(BadRequest, match="user 'new-user' is unknown") as info:
        core.resolve(RecRequest(user="new-user"))
    assert info.value.status == 404
    with pytest.raises(BadRequest, match="candidates: unknown item '99999'"):
        core.resolve(RecRequest(user="1", candidates=("99999",)))
    assert core.describe()["subsets"] == [[], ["age"], ["gender"], ["age", "gender"]]


# ---------------------------------------------------------------- bundles whose parts do not fit


def _copy(bundle: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(bundle, tmp_path / "copy"))


def test_bundle_refuses_parts_that_do_not_belong_together(built, tmp_path):
    bundle, parts = built
    swapped = _copy(bundle, tmp_path)
    for f in (swapped / "prompts" / "gender").iterdir():
        shutil.copy(swapped / "prompts" / "age" / f.name, f)
    with pytest.raises(BundleError, match="prompt 'gender' differs from the one the manifest records"):
        open_bundle(swapped)
    shutil.rmtree(swapped)

    other = tmp_path / "other-backbone"
    shutil.copytree(parts["backbone"], other)
    (other / "config.json").write_text((other / "config.json").read_text().replace("}", ', "note": 1}', 1))
    with pytest.raises(BundleError, match="trained on another backbone"):
        add_prompt(_copy(bundle, tmp_path), "gender", parts["gender"], other)
    with pytest.raises(BundleError, match="holds another backbone"):
        init_bundle(bundle, other, open_bundle(bundle).catalogue)
    shutil.copytree(other, tmp_path / "copy" / "backbone", dirs_exist_ok=True)
    with pytest.raises(BundleError, match="backbone/ differs from the backbone the manifest records"):
        open_bundle(tmp_path / "copy")
    shutil.rmtree(tmp_path / "copy")

    bigger = CFPConfig(**dict(CONFIG, synthetic_items=70))
    dataset, _ = load_cfp_split(bigger)
    with pytest.raises(BundleError, match="the backbone numbers 60 items, the catalogue has 70"):
        write_bundle(tmp_path / "b2", parts["backbone"], Catalogue.from_dataset(dataset, data_spec(bigger)))
        open_bundle(tmp_path / "b2")
    reseeded = CFPConfig(**dict(CONFIG, seed=1))
    dataset, _ = load_cfp_split(reseeded)
    write_bundle(tmp_path / "b3", parts["backbone"], Catalogue.from_dataset(dataset, data_spec(reseeded)))
    with pytest.raises(BundleError, match="differs from the backbone's data_spec.json in seed"):
        open_bundle(tmp_path / "b3")
    with pytest.raises(BundleError, match="not a serving bundle"):
        open_bundle(tmp_path)


def test_replacing_a_mixed_prompt_drops_the_mixture(built, tmp_path):
    bundle, parts = built
    copy = _copy(bundle, tmp_path)
    add_prompt(copy, "age", parts["gender"], parts["backbone"])
    core = Recommender(copy)
    assert core.mixture_attributes == []
    with pytest.raises(BadRequest, match="no Prompt Mixture covering"):
        core.resolve(RecRequest(user="1", fair_on=("age", "gender")))
    assert core.recommend([core.resolve(RecRequest(user="1", fair_on=("age",)))])[0]["served_by"] == "prompt:age"


# ---------------------------------------------------------------- the CLI and the Serve config


def test_recommend_cli_prints_the_api_answer_and_one_line_errors(built, capsys):
    bundle, _ = built
    with pytest.raises(SystemExit) as exit_info:
        run_main(
            fairrec_ray.recommend.main,
            ["--model", str(bundle), "--users", "1,2", "--fair-on", "gender", "--k", "4"],
        )
    assert exit_info.value.code == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == fairrec_ray.recommend(bundle, ["1", "2"], fair_on=["gender"], k=4)
    for argv, words in [
        (["--users", "1", "--fair-on", "race"], "unknown attribute(s) ['race']; valid: age, gender"),
        (["--users", "nobody"], "user 'nobody' is unknown"),
        (["--users", "1", "--k", "0"], "k: got 0; expected 1..20"),
    ]:
        with pytest.raises(SystemExit) as exit_info:
            run_main(fairrec_ray.recommend.main, ["--model", str(bundle), *argv])
        assert exit_info.value.code == 2
        err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
        assert len(err) == 1 and words in err[0], err


def test_serve_cli_refuses_a_mismatched_bundle_in_one_line(built, tmp_path, capsys):
    from fairrec_ray.serve.__main__ import main as serve_main

    swapped = _copy(built[0], tmp_path)
    (swapped / "catalogue.json").write_text((swapped / "catalogue.json").read_text().replace('"1"', '"one"', 1))
    with pytest.raises(SystemExit) as exit_info:
        run_main(serve_main, ["--model", str(swapped), "--port", "1"])
    assert exit_info.value.code == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and "catalogue.json differs from the one the manifest records" in err[0], err


@pytest.mark.parametrize("name", ["serve.yaml", "serve-gpu.yaml"])
def test_serve_configs_reach_the_builder(built, name):
    import importlib

    from fairrec_ray.serve.app import DEPLOYMENT, AppArgs

    config = yaml.safe_load((CLUSTER / name).read_text())
    (app,) = config["applications"]
    module, attr = app["import_path"].split(":")
    builder = getattr(importlib.import_module(module), attr)
    parsed = AppArgs.from_dict(app["args"])
    assert parsed.max_batch_size >= 1 and parsed.num_beams >= 10
    (deployment,) = app["deployments"]
    assert deployment["name"] == DEPLOYMENT
    scaling = deployment["autoscaling_config"]
    assert 1 <= scaling["min_replicas"] <= scaling["max_replicas"]
    assert deployment["ray_actor_options"]["num_gpus"] == (1 if "gpu" in name else 0)
    assert (parsed.device == "cuda") == ("gpu" in name)
    bound = builder(dict(app["args"], bundle=str(built[0])))  # the args reach the deployment
    assert bound._bound_deployment.name == DEPLOYMENT
    assert bound._bound_deployment.init_args[0] == AppArgs.from_dict(dict(app["args"], bundle=str(built[0])))
    with pytest.raises(BundleError, match="not a serving bundle"):
        builder(dict(app["args"]))  # the placeholder path: refused in one line


# ---------------------------------------------------------------- the Serve app over HTTP


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(ray_session, built):
    from ray import serve

    from fairrec_ray.serve.app import build_app

    port = _free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    app = build_app(
        {"bundle": str(built[0]), "max_batch_size": 16, "batch_wait_timeout_s": 0.05, "num_cpus": 1, "torch_threads": 1}
    )
    serve.run(app, name="fairrec-test", route_prefix="/fair", blocking=False)
    yield f"http://127.0.0.1:{port}/fair"
    serve.delete("fairrec-test")
    serve.shutdown()


def _post(url: str, payload=None, data: bytes | None = None):
    import requests

    response = requests.post(url + "/recommend", json=payload, data=data, timeout=120)
    return response.status_code, response.json()


@pytest.mark.ray
def test_served_answers_equal_the_python_api(built, server):
    import requests

    assert requests.get(server + "/healthz", timeout=30).json()["status"] == "ok"
    described = requests.get(server + "/attributes", timeout=30).json()
    assert described["attributes"] == ["age", "gender"] and described["mixture"] == ["age", "gender"]
    for fair_on in ([], ["gender"], ["gender", "age"]):
        status, answer = _post(server, {"user": "2", "k": 6, "fair_on": fair_on})
        assert status == 200
        expected = fairrec_ray.recommend(built[0], ["2"], fair_on=fair_on, k=6)[0]
        assert _items(answer) == _items(expected) and answer["served_by"] == expected["served_by"]
    again = _post(server, {"user": "2", "k": 6, "fair_on": ["gender"]})
    assert again == _post(server, {"user": "2", "k": 6, "fair_on": ["gender"]})


@pytest.mark.ray
def test_concurrent_requests_all_succeed_in_shared_batches(server):
    import requests

    payloads = [{"user": u, "k": 5, "fair_on": f} for u in USERS * 2 for f in ([], ["age"], ["age", "gender"])]
    singles = {json.dumps(p, sort_keys=True): _post(server, p) for p in payloads[:6]}
    before = requests.get(server + "/healthz", timeout=30).json()
    with ThreadPoolExecutor(max_workers=len(payloads)) as pool:
        results = list(pool.map(lambda p: _post(server, p), payloads))
    assert all(status == 200 for status, _ in results)
    for p, (_, answer) in zip(payloads, results):
        assert answer["user"] == p["user"] and len(answer["items"]) == 5
        single = singles.get(json.dumps(p, sort_keys=True))
        if single is not None:
            assert _items(answer) == _items(single[1])
    after = requests.get(server + "/healthz", timeout=30).json()
    assert after["requests"] - before["requests"] == len(payloads)
    assert after["batches"] - before["batches"] < len(payloads)  # some requests shared a beam search
    assert after["largest_batch"] > 1


@pytest.mark.ray
@pytest.mark.parametrize(
    ("payload", "data", "status", "words"),
    [
        ({"user": "1", "fair_on": ["race"]}, None, 400, "unknown attribute(s) ['race']; valid: age, gender"),
        ({"user": "nobody"}, None, 404, "user 'nobody' is unknown"),
        ({"user": "../../etc/passwd"}, None, 404, "is unknown"),
        ({"user": "1", "k": 0}, None, 400, "k: got 0"),
        ({"user": "1", "k": 21}, None, 400, "k: got 21"),
        (None, b'{"user": "1", "k": ', 400, "not valid JSON"),
        ({"user": "1", "history": ["1"] * 501}, None, 413, "history: 501 ids"),
        (None, b" " * (300 * 1024), 413, "at most 262144"),
        ({"user": "1", "bundle": "/etc"}, None, 400, "unknown field(s) ['bundle']"),
        ({"user": "1", "history": ["/etc/passwd"]}, None, 400, "history: unknown item '/etc/passwd'"),
    ],
)
def test_bad_requests_get_a_4xx_json_message(server, payload, data, status, words):
    got, body = _post(server, payload, data)
    assert got == status and body["status"] == status
    assert words in body["error"] and "Traceback" not in body["error"]
