"""``python -m fairrec_ray.report``: the page built from tiny runs holds every section, renders in
a real headless Chromium (skipped where absent unless FAIRREC_REQUIRE_CHROMIUM=1), and a bad
folder is one line naming it and what is missing."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from fcpo_fixtures import planted_env_data

from fairrec_ray.cli import run_main
from fairrec_ray.errors import FairrecError
from fairrec_ray.report.__main__ import main as report_main
from fairrec_ray.report.collect import read_run


def _ranking_metrics(rng: np.random.Generator, probe_auc: float) -> dict[str, float]:
    """Real outcome metrics (outcomes.ranking_outcomes) of random top-20 lists of 40 users."""
    from fairrec_ray.outcomes import ranking_outcomes

    items = np.stack([rng.permutation(30)[:20] for _ in range(40)])
    golds = rng.integers(0, 30, 40)
    out = ranking_outcomes(items, golds, rng.integers(0, 2, 40), 30, rng.integers(0, 50, 30).astype(float))
    return {**out, "probe_auc": probe_auc, "hit@10": float((items[:, :10] == golds[:, None]).any(1).mean()),
            "ndcg@10": 0.1}  # fmt: skip


@pytest.fixture(scope="module")
def run_dirs(tmp_path_factory) -> list[Path]:
    """An adversarial-MF and a CFP run folder (their results.json shape, metrics from the real
    metric code on random rankings), a bench_fcpo file of real MostPop / MF re-rank rollouts, and
    a two-trial sweep folder."""
    from fairrec_ray.fcpo.evaluation import fixed_score_rollout, rollout_metrics

    root = tmp_path_factory.mktemp("runs")
    rng = np.random.default_rng(0)
    adv = {
        "kind": "adversarial_mf", "attribute": "gender",
        "config": {"output": str(root / "advmf"), "epochs": 3, "warmup_epochs": 1},
        "plain": {"test": _ranking_metrics(rng, 0.8), "adv_weight": 0.0},
        "filtered": {"test": _ranking_metrics(rng, 0.6), "adv_weight": 1.0},
    }  # fmt: skip
    (root / "advmf").mkdir()
    (root / "advmf" / "results.json").write_text(json.dumps(adv))
    cfp = root / "cfp"
    cfp.mkdir()
    (cfp / "command.txt").write_text("python -m fairrec_ray.train_cfp --attribute gender --epochs 2\n")
    payload = {
        "attribute": "gender", "config": {"discriminator_weight": 10.0}, "best_epoch": 1,
        "backbone": {"test": adv["plain"]["test"]}, "cfp": {"test": adv["filtered"]["test"]},
    }  # fmt: skip
    (cfp / "results.json").write_text(json.dumps(payload))

    data = planted_env_data(n_users=8)
    popularity = data.train_item_counts().astype(np.float64)
    scores = np.tile(popularity, (data.n_users, 1))
    bench = {"test": {}}
    for name, share in (("MostPop", None), ("MF-rerank alpha=0.5", 1 / 3)):
        roll = fixed_score_rollout(data, scores, top_k=2, horizon=2, popular_share=share)
        bench["test"][name] = rollout_metrics(roll, data, 1.0, (4,), top_k=2)
        bench["test"][name]["recall@10"] = bench["test"][name]["recall@4"]
    fcpo = root / "fcpo_bench"
    fcpo.mkdir()
    (fcpo / "bench_fcpo.json").write_text(json.dumps({"baselines": bench}))

    sweep = root / "sweep"
    sweep.mkdir()
    (sweep / "pareto.json").write_text(json.dumps({"job": "fcpo", "objectives": {"recall@10": "max", "gini": "min"}}))
    (sweep / "trials.csv").write_text(
        "alpha,valid_recall@10,test_recall@10,valid_gini,test_gini,pareto,trial_id\n"
        "0.5,0.10,0.11,0.80,0.81,True,a\n1.0,0.12,0.12,0.90,0.91,True,b\n"
    )
    return [root / "advmf", cfp, fcpo, sweep]


@pytest.fixture(scope="module")
def report(run_dirs, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report")
    assert report_main([*map(str, run_dirs), "--output", str(out)]) == 0
    return out


def test_report_holds_every_section_table_and_figure(report, run_dirs) -> None:
    page = (report / "report.html").read_text()
    markdown = (report / "report.md").read_text()
    for title in ("Runs", "User side: leakage, accuracy and outcome gaps", "Item side: exposure vs recall",
                  "Sweep sweep (fcpo)"):  # fmt: skip
        assert f"<h2>{title}</h2>" in page and f"## {title}" in markdown
    captions = re.findall(r"<caption>([^<]*)</caption>", page)
    for run in ("advmf (adversarial_mf)", "cfp (cfp)"):
        assert f"{run}: user-side metrics (test)" in captions
        assert f"{run}: exposure of the top-10 lists (test)" in captions
    assert "fcpo_bench (fcpo_bench): test metrics" in captions and "sweep: trials" in captions
    assert len(re.findall(r'<img src="data:image/png;base64,', page)) == 3  # CFP front, FCPO front, sweep
    for name in ("cfp_front", "fcpo_front", "sweep_sweep"):
        assert (report / f"{name}.png").stat().st_size > 1000 and f"]({name}.png)" in markdown
    assert "gender: adv-MF λ=1" in page and "gender: CFP λ=10" in page and "MF-rerank alpha=0.5" in page
    # the commands: the folder's own command.txt, else rebuilt from the recorded config
    assert "python -m fairrec_ray.train_cfp --attribute gender --epochs 2" in page
    assert "python -m fairrec_ray.train_adversarial_mf" in page and "--warmup-epochs 1" in page
    assert 'src="http' not in page and "<script" not in page  # self-contained


def test_bad_folders_are_one_line(tmp_path, run_dirs, capsys) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FairrecError, match=r"empty: no run found; expected results.json"):
        read_run(empty)
    odd = tmp_path / "odd"
    odd.mkdir()
    (odd / "results.json").write_text('{"epochs": 3}')
    with pytest.raises(FairrecError, match=r"odd/results.json: not a recognised run \(has epochs"):
        read_run(odd)
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "results.json").write_text('{"best_epoch": 1, "attribute": "age"}')
    with pytest.raises(FairrecError, match=r"partial/results.json: looks like a CFP run but lacks backbone, cfp"):
        read_run(partial)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "results.json").write_text("{not json")
    with pytest.raises(FairrecError, match=r"broken/results.json: unreadable JSON"):
        read_run(broken)
    half = tmp_path / "half_sweep"
    half.mkdir()
    (half / "pareto.json").write_text("{}")
    with pytest.raises(FairrecError, match=r"half_sweep: a sweep folder without trials.csv"):
        read_run(half)
    with pytest.raises(SystemExit) as exit_info:  # through the CLI: one line on stderr, status 2
        run_main(report_main, [str(run_dirs[0]), str(tmp_path / "nowhere"), "--output", str(tmp_path / "r")])
    assert exit_info.value.code == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "nowhere: not a folder" in lines[0], lines
    assert not (tmp_path / "r").exists()  # nothing written


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
CHECK = """<script>
window.__errs = [];
window.addEventListener('error', e => window.__errs.push(String(e.message || (e.target && e.target.src) || e)), true);
const _err = console.error;
console.error = (...a) => { window.__errs.push(a.join(' ')); _err(...a); };
window.addEventListener('load', () => {
  const imgs = Array.from(document.images);
  document.body.setAttribute('data-check', JSON.stringify({
    images: imgs.length, loaded: imgs.filter(i => i.complete && i.naturalWidth > 0).length,
    tables: Array.from(document.querySelectorAll('table')).map(t => t.rows.length), errors: window.__errs}));
  console.log('fairrec-check-marker');
});
</script>"""


def _chromium(*args: str) -> subprocess.CompletedProcess:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--virtual-time-budget=5000"]
    return subprocess.run([str(CHROMIUM), *flags, *args], capture_output=True, text=True, timeout=180)


def test_report_renders_in_headless_chromium(report, tmp_path) -> None:
    if CHROMIUM is None:
        if os.environ.get("FAIRREC_REQUIRE_CHROMIUM") == "1":
            pytest.fail("FAIRREC_REQUIRE_CHROMIUM=1 but no chromium on PATH")
        pytest.skip("no chromium on PATH (apt-get install chromium)")
    from PIL import Image

    page = (report / "report.html").read_text()
    checked = tmp_path / "checked.html"  # the check runs first in <head>, before anything else loads
    checked.write_text(page.replace("<head>", "<head>" + CHECK, 1))
    dom = _chromium("--enable-logging=stderr", "--v=0", "--dump-dom", checked.as_uri())
    found = re.search(r'data-check="([^"]*)"', dom.stdout)
    assert found, dom.stderr[-2000:]
    check = json.loads(found.group(1).replace("&quot;", '"'))
    assert check["images"] == 3 and check["loaded"] == 3, check
    assert len(check["tables"]) == page.count("<table>") and min(check["tables"]) >= 2, check  # header + a row
    assert check["errors"] == [], check
    console = [line for line in dom.stderr.splitlines() if ":CONSOLE" in line]
    assert console and all("fairrec-check-marker" in line for line in console), console  # nothing else logged

    shot = tmp_path / "shot.png"
    _chromium(f"--screenshot={shot}", "--window-size=1280,1600", (report / "report.html").as_uri())
    image = np.asarray(Image.open(shot).convert("L"), dtype=np.float64)
    assert image.shape == (1600, 1280) and image.std() > 10, image.std()  # not a blank page
    assert (image < 128).mean() > 0.01  # text, lines and plot marks are drawn
