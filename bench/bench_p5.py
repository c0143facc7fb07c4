"""P5 benchmark: Ray Train vs a bare PyTorch loop (training samples/s), evaluation users/s for both
protocols, and quality (hit@k, NDCG@k) of a P5 model vs MostPop vs BPR-MF on the same split.

    python bench/bench_p5.py [--quality-model runs/p5_ml100k/model --data-dir /path/ml-100k]

Prints one JSON object. Training throughput compares the *same* model, batch, thread count and
examples: the bare loop calls ``train_epoch`` (the function the Ray Train loop runs) in this process;
the Ray numbers are the loop's own train-phase samples/s (epoch 2, after warm-up), plus the whole
``fit()`` wall time. Peak RSS is sampled over this process and all its descendants (the local Ray
cluster and its workers). On a shared CPU the numbers are noisy: compare within one run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fairrec_ray.p5.baselines import bpr_scores, most_pop_scores  # noqa: E402
from fairrec_ray.p5.config import P5TrainConfig  # noqa: E402
from fairrec_ray.p5.evaluate import evaluate_model, evaluate_scores  # noqa: E402
from fairrec_ray.p5.examples import P5Collator, train_examples  # noqa: E402
from fairrec_ray.p5.loop import make_optimizer, shard, steps_per_epoch, train_epoch  # noqa: E402
from fairrec_ray.p5.model import build_p5, load_p5  # noqa: E402
from fairrec_ray.p5.train import make_tokenizer, train_p5  # noqa: E402


class PeakRSS:
    """Samples the summed RSS of this process tree every 0.5 s."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        me = psutil.Process()
        while not self._stop.is_set():
            total = 0
            for p in [me, *me.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):
                    total += p.memory_info().rss
            self.peak = max(self.peak, total)
            time.sleep(0.5)

    def __enter__(self) -> PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def bench_training(cfg: P5TrainConfig, out_root: Path) -> dict:
    dataset, split = cfg.load_split()
    tok, _ = make_tokenizer(cfg, dataset, split)
    # bare loop: same epochs/examples as the Ray loop, one process, same threads; measured before
    # *and* after the Ray runs so drift in the (shared) machine's load shows up in the numbers
    torch.set_num_threads(cfg.torch_threads)
    n = len(train_examples(split, tok, cfg.example_config(), cfg.seed, 0))

    def bare_run() -> float:
        model = build_p5(cfg.preset, tok, seed=cfg.seed)
        opt, sched = make_optimizer(model, cfg, cfg.epochs * steps_per_epoch(n, 1, cfg.batch_size))
        speeds = []
        for epoch in range(1, cfg.epochs + 1):
            examples = shard(train_examples(split, tok, cfg.example_config(), cfg.seed, epoch), cfg.seed, epoch, 0, 1)
            stats = train_epoch(model, opt, sched, examples, P5Collator(tok), cfg.batch_size, cfg.grad_clip, "cpu")
            speeds.append(stats.samples_per_s)
        return speeds[-1]

    bare_before = bare_run()
    out: dict = {"examples_per_epoch": n, "bare_samples_per_s_before": bare_before}
    for workers in (1, 2):
        run_cfg = P5TrainConfig(**{**cfg.__dict__, "num_workers": workers, "output": str(out_root / f"w{workers}")})
        start = time.perf_counter()
        train_p5(run_cfg)
        wall = time.perf_counter() - start
        history = json.loads((out_root / f"w{workers}" / "results.json").read_text())["history"]
        out[f"ray_{workers}w_samples_per_s"] = history[-1]["samples_per_s"]
        out[f"ray_{workers}w_fit_wall_s"] = wall
    bare_after = bare_run()
    bare = (bare_before + bare_after) / 2
    out["bare_samples_per_s_after"] = bare_after
    for workers in (1, 2):
        out[f"ray_{workers}w_vs_bare"] = out[f"ray_{workers}w_samples_per_s"] / bare
    return out


def bench_eval(model_dir: Path, cfg: P5TrainConfig, max_users: int) -> dict:
    _, split = cfg.load_split()
    model, tok = load_p5(model_dir)
    rows = list(range(min(max_users, len(split))))
    out = {}
    for protocol in ("full", "sampled-100"):
        start = time.perf_counter()
        evaluate_model(model, tok, split, protocol=protocol, batch_size=32, num_beams=20, rows=rows)
        out[f"eval_{protocol}_users_per_s"] = len(rows) / (time.perf_counter() - start)
    out["eval_users"] = len(rows)
    return out


def bench_quality(model_dir: Path, cfg: P5TrainConfig) -> dict:
    dataset, split = cfg.load_split()
    model, tok = load_p5(model_dir)
    table = {}
    for protocol in ("full", "sampled-100"):
        table[f"P5 ({protocol})"] = evaluate_model(model, tok, split, protocol=protocol, batch_size=32)
        table[f"MostPop ({protocol})"] = evaluate_scores(
            most_pop_scores(split, dataset.n_items), split, protocol=protocol
        )
        table[f"BPR-MF ({protocol})"] = evaluate_scores(bpr_scores(split, dataset.n_items), split, protocol=protocol)
    return {name: {k: round(v, 4) for k, v in m.items() if k.startswith(("hit", "ndcg"))} for name, m in table.items()}


def main() -> None:
    os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quality-model", help="trained P5 folder on ML-100K (e.g. runs/p5_ml100k/model)")
    parser.add_argument("--data-dir", default=str(Path(__file__).resolve().parents[2] / "shared/data/ml-100k"))
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--users", type=int, default=300, help="synthetic users of the throughput runs")
    parser.add_argument("--eval-users", type=int, default=200)
    parser.add_argument("--skip-throughput", action="store_true", help="only the --quality-model part")
    args = parser.parse_args()
    torch.set_num_threads(1)  # as the Ray workers; more threads only thrash on a shared CPU
    cfg = P5TrainConfig(
        dataset="synthetic", synthetic_users=args.users, synthetic_items=1000, synthetic_interactions=40,
        max_seq_per_user=6, epochs=args.epochs, batch_size=32, val_users=32, torch_threads=1,
    )  # fmt: skip
    if not args.skip_throughput:
        import ray

        # our own local cluster: a bare ray.init() may join another Ray instance on a shared machine
        ray.init(address="local", num_cpus=4, include_dashboard=False, log_to_driver=True)
    result: dict = {"config": {"preset": cfg.preset, "batch_size": cfg.batch_size, "torch_threads": 1}}
    start = time.perf_counter()
    if not args.skip_throughput:
        with tempfile.TemporaryDirectory() as tmp, PeakRSS() as rss:
            result["training"] = bench_training(cfg, Path(tmp))
            result["eval"] = bench_eval(Path(tmp) / "w1" / "model", cfg, args.eval_users)
        result["throughput_peak_rss_mb_sum"] = rss.peak / 2**20  # summed RSS: shared pages count twice
        result["throughput_wall_s"] = time.perf_counter() - start
    if args.quality_model:
        ml = P5TrainConfig(dataset="movielens-100k", data_dir=args.data_dir)
        result["eval_ml100k"] = bench_eval(Path(args.quality_model), ml, args.eval_users)
        result["quality_ml100k_test"] = bench_quality(Path(args.quality_model), ml)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
