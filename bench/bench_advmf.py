"""Adversarial-MF benchmark on real MovieLens-100K: plain vs filtered BPR-MF vs the bare PyTorch
BPR loop of ``p5/baselines.py`` (the same triples, no filter, no adversary).

    python bench/bench_advmf.py --data-dir ../shared/data/ml-100k [--attribute gender] [--epochs 20] [--out F.json]

Prints one JSON object: per variant the training wall time, triples/s, the process's peak RSS so
far, probe AUC and hit@10 / NDCG@10 on the test stage (sampled-100, CFP's protocol; the bare loop
has no probe of its own and reports ranking only), and the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

from fairrec_ray.baselines.adversarial_mf import train_adversarial_mf
from fairrec_ray.baselines.adversarial_mf_job import AdvMFJobConfig, evaluate_mf
from fairrec_ray.p5.baselines import BPRConfig, bpr_scores
from fairrec_ray.p5.evaluate import evaluate_scores
from fairrec_ray.p5.examples import eval_history


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "ml-100k"))
    parser.add_argument("--attribute", default="gender")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--adv-weight", type=float, default=1.0)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    cfg = AdvMFJobConfig(
        dataset="movielens-100k", data_dir=args.data_dir, attribute=args.attribute, epochs=args.epochs,
        adv_weight=args.adv_weight, output="unused",
    )  # fmt: skip
    dataset, split = cfg.load_split()
    labels = dataset.attribute_labels(cfg.attribute)[split.users]
    hists = [eval_history(split, r, "test") for r in range(len(split))]
    users = np.repeat(np.arange(len(split)), [len(h) for h in hists])
    items = np.concatenate(hists)
    report: dict = {"dataset": "ml-100k", "attribute": cfg.attribute, "epochs": cfg.epochs, "variants": {}}
    for name, weight in (("plain MF (λ=0)", 0.0), (f"adv-MF (λ={cfg.adv_weight:g})", cfg.adv_weight)):
        fit = train_adversarial_mf(users, items, labels, dataset.n_items, cfg.mf_config(weight))
        with torch.no_grad():
            features = fit.model.users().numpy().astype(np.float64)
            scores = fit.model.scores().numpy().astype(np.float64)
        m = evaluate_mf(features, scores, split, labels, cfg)
        report["variants"][name] = {
            "train_s": fit.seconds, "triples_per_s": fit.triples / fit.seconds, "peak_rss_mb": peak_rss_mb(),
            "probe_auc": m["probe_auc"], "hit@10": m["hit@10"], "ndcg@10": m["ndcg@10"],
            "gap_hit@10": m["gap_hit@10"], "load": os.getloadavg()[0],
        }  # fmt: skip
        print(f"[bench] {name}: {report['variants'][name]}", file=sys.stderr, flush=True)
    start = time.perf_counter()
    bare = bpr_scores(split, dataset.n_items, "test", BPRConfig(epochs=cfg.epochs, seed=cfg.seed))
    seconds = time.perf_counter() - start
    m = evaluate_scores(bare, split, protocol=cfg.protocol, stage="test", seed=cfg.seed)
    report["variants"]["bare PyTorch BPR loop"] = {
        "train_s": seconds, "triples_per_s": cfg.epochs * len(items) / seconds, "peak_rss_mb": peak_rss_mb(),
        "hit@10": m["hit@10"], "ndcg@10": m["ndcg@10"], "load": os.getloadavg()[0],
    }  # fmt: skip
    text = json.dumps(report, indent=2)
    if args.out:
        Path(args.out).write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
