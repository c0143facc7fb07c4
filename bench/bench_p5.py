"""P5 benchmark: Ray Train vs a bare PyTorch loop (training samples/s), evaluation users/s for both
protocols, and quality (hit@k, NDCG@k) of a P5 model vs MostPop vs BPR-MF on the same split.

    python bench/bench_p5.py [--quality-model runs/p5_ml100k/model --data-dir /path/ml-100k]
    python bench/bench_p5.py --mix-throughput [--out bench_p5_mix.json]   # prompts/s of the family mix
    python bench/bench_p5.py --probe-model runs/p5fam/model               # gender/age leak of its users

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
import math
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fairrec_ray.cli import write_json_atomic  # noqa: E402
from fairrec_ray.p5.baselines import bpr_scores, most_pop_scores  # noqa: E402
from fairrec_ray.p5.batching import padding_share  # noqa: E402
from fairrec_ray.p5.config import P5TrainConfig  # noqa: E402
from fairrec_ray.p5.evaluate import evaluate_model, evaluate_scores  # noqa: E402
from fairrec_ray.p5.examples import P5Collator, train_examples  # noqa: E402
from fairrec_ray.p5.loop import epoch_batches, make_optimizer, shard, steps_per_epoch, train_epoch  # noqa: E402
from fairrec_ray.p5.model import build_p5, load_p5  # noqa: E402
from fairrec_ray.p5.train import make_tokenizer, train_p5  # noqa: E402


class PeakRSS:
    """Samples the summed RSS of this process tree every 0.5 s."""

    def __init__(self, tree: bool = True) -> None:
        self.peak = 0
        self.tree = tree
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        me = psutil.Process()
        while not self._stop.is_set():
            total = 0
            for p in [me, *(me.children(recursive=True) if self.tree else [])]:
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
            batches = epoch_batches(examples, tok, cfg.batch_size, cfg.length_bucketing, cfg.seed, epoch)
            stats = train_epoch(model, opt, sched, batches, P5Collator(tok, user_mask=False), cfg.grad_clip, "cpu")
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


def bench_mix_throughput(data_dir: str, users: int, prompts_per_user: int, batch_sizes: list[int]) -> dict:
    """Prompts/s of the family mix (UP5: many short user-only prompts) on ML-100K (synthetic when
    absent), tiny preset, one thread: ``train_epoch`` with length bucketing vs without, vs a bare
    PyTorch loop over the same bucketed batches (collated beforehand: forward, backward, step only).
    Peak RSS of this process per mode; ``uptime`` because the machine is shared."""
    real = (Path(data_dir) / "u.data").is_file()
    data = {"dataset": "movielens-100k", "data_dir": data_dir} if real else {"dataset": "synthetic"}
    cfg = P5TrainConfig(
        **data, user_indexing="independent", prompts_per_user=prompts_per_user, epochs=1, torch_threads=1,
    )  # fmt: skip
    dataset, split = cfg.load_split()
    tok, _ = make_tokenizer(cfg, dataset, split)
    examples = train_examples(split, tok, cfg.example_config(), cfg.seed, 1)
    keep = {int(r) for r in np.random.default_rng(0).permutation(len(split))[:users]}
    examples = [e for e in examples if e.row in keep]
    examples = shard(examples, cfg.seed, 1, 0, 1)
    src_lens = [len(ids) for ids in tok.encode_batch([e.source for e in examples])]
    collate = P5Collator(tok, user_mask=False)
    out: dict = {
        "dataset": cfg.dataset, "users": len(keep), "prompts": len(examples), "prompts_per_user": prompts_per_user,
        "mix": dict(zip(("sequential", "history", "yes_no", "choice"), cfg.mix)), "preset": cfg.preset,
        "torch_threads": 1, "mean_source_tokens": float(np.mean(src_lens)), "uptime_before": _uptime(),
    }  # fmt: skip

    def ours(batch_size: int, bucketing: bool) -> dict:
        model = build_p5(cfg.preset, tok, seed=cfg.seed)
        opt, sched = make_optimizer(model, cfg, math.ceil(len(examples) / batch_size))
        batches = epoch_batches(examples, tok, batch_size, bucketing, cfg.seed, 1)
        idx = {id(e): i for i, e in enumerate(examples)}
        share = padding_share([np.array([idx[id(e)] for e in b]) for b in batches], src_lens)
        with PeakRSS(tree=False) as rss:
            stats = train_epoch(model, opt, sched, batches, collate, cfg.grad_clip, "cpu")
        return {"prompts_per_s": stats.samples_per_s, "source_padding_share": share, "peak_rss_mb": rss.peak / 2**20}

    def bare(batch_size: int) -> dict:
        model = build_p5(cfg.preset, tok, seed=cfg.seed)
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr)
        tensors = [collate(b) for b in epoch_batches(examples, tok, batch_size, True, cfg.seed, 1)]
        model.train()
        with PeakRSS(tree=False) as rss:
            start = time.perf_counter()
            for batch in tensors:
                loss = model(
                    input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"]
                ).loss
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            seconds = time.perf_counter() - start
        return {"prompts_per_s": len(examples) / seconds, "peak_rss_mb": rss.peak / 2**20}

    for bs in batch_sizes:
        row = {"bucketing": ours(bs, True), "no_bucketing": ours(bs, False), "bare_bucketed": bare(bs)}
        row["bucketing_vs_no_bucketing"] = row["bucketing"]["prompts_per_s"] / row["no_bucketing"]["prompts_per_s"]
        row["ours_vs_bare"] = row["bucketing"]["prompts_per_s"] / row["bare_bucketed"]["prompts_per_s"]
        out[f"batch_{bs}"] = row
    best = max(out[f"batch_{bs}"]["bucketing"]["prompts_per_s"] for bs in batch_sizes)
    n_users = len(split)
    out["ml100k_minutes_for_1000_prompts_per_user_at_best"] = 1000 * n_users / best / 60
    out["uptime_after"] = _uptime()
    return out


def bench_probe(model_dir: Path, data_dir: str, batch_size: int = 128) -> dict:
    """Held-out probe AUC (``fairrec_ray.cfp.probe``, 5-fold) of gender and age from a trained P5's
    user representations on ML-100K: the mean encoder state over the user-id span of the 2-1 test
    prompt (CFP's ``encode_users`` view), of the user-only prompt 2-14, and (independent ids) the
    user token's input embedding row."""
    from fairrec_ray.cfp.probe import probe_auc
    from fairrec_ray.p5.examples import PromptExample, eval_examples

    dataset, split = P5TrainConfig(dataset="movielens-100k", data_dir=data_dir).load_split()
    model, tok = load_p5(model_dir)
    torch.set_num_threads(1)
    collate = P5Collator(tok)
    users = split.users.tolist()
    views = {
        "seq_2-1_span": eval_examples(split, tok, "test"),
        "user_only_2-14_span": [
            PromptExample(f"What is the interaction history of {tok.user_text(u)} ?", "", u, r, "2-14")
            for r, u in enumerate(users)
        ],
    }
    feats: dict[str, np.ndarray] = {}
    with torch.no_grad():
        for name, examples in views.items():
            parts = []
            for lo in range(0, len(examples), batch_size):
                b = collate(examples[lo : lo + batch_size])
                hidden = model.get_encoder()(input_ids=b["input_ids"], attention_mask=b["attention_mask"])[0]
                mask = b["user_token_mask"].unsqueeze(-1).float()
                parts.append(((hidden * mask).sum(1) / mask.sum(1).clamp(min=1)).numpy())
            feats[name] = np.concatenate(parts)
        if tok.user_tokens:
            rows = [tok.tokenizer.token_to_id(tok.user_text(u)) for u in users]
            feats["user_token_embedding"] = model.shared.weight[rows].numpy()
    out: dict = {"model": str(model_dir), "users": len(users), "uptime": _uptime()}
    for attribute in ("gender", "age"):
        labels = dataset.attribute_labels(attribute)[split.users]
        for name, x in feats.items():
            out[f"{attribute}_auc_{name}"] = round(probe_auc(x, labels, probes=("logreg",)).auc, 4)
    return out


def _uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()


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
    parser.add_argument(
        "--mix-throughput", action="store_true", help="only the family-mix prompts/s rows (bucketing vs not vs bare)"
    )
    parser.add_argument("--mix-users", type=int, default=60, help="users of the --mix-throughput epoch")
    parser.add_argument("--mix-prompts-per-user", type=int, default=40)
    parser.add_argument("--mix-batch-sizes", default="64,256")
    parser.add_argument("--out", help="also write the JSON here (atomically)")
    parser.add_argument("--probe-model", help="only: gender/age probe AUC of this ML-100K P5's user representations")
    args = parser.parse_args()
    if args.probe_model:
        _emit({"probe": bench_probe(Path(args.probe_model), args.data_dir)}, args.out)
        return
    if args.mix_throughput:
        torch.set_num_threads(1)
        sizes = [int(b) for b in args.mix_batch_sizes.split(",") if b]
        result = {
            "mix_throughput": bench_mix_throughput(args.data_dir, args.mix_users, args.mix_prompts_per_user, sizes)
        }
        _emit(result, args.out)
        return
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
    _emit(result, args.out)


def _emit(result: dict, path: str | None) -> None:
    text = json.dumps(result, indent=2)
    print(text)
    if path:
        write_json_atomic(Path(path), result)


if __name__ == "__main__":
    main()
