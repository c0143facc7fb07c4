"""Serving benchmark: the Ray Serve app (``fairrec_ray/serve``) under a closed-loop HTTP load on
localhost; prints one JSON document.

    python bench/bench_serve.py [--bundle DIR] [--data-dir /work/shared/data/ml-100k]
                                [--requests 200] [--max-seconds 20] [--concurrency 1,8,32]

Without ``--bundle``, a bundle of the ``tiny`` preset is built (untrained weights: serving cost
does not depend on training) on ML-100K when present, else on synthetic data of its size, with
two attribute prompts (gender, age; default prompt shape) and their mixture.

For batching (``max_batch_size`` = ``--batch-size``) and without (``max_batch_size=1``), in the
same run, for ``fair_on`` of 0, 1 and 2 attributes and each concurrency: C clients each send a
request, wait for the answer, send the next (users drawn at random), until ``--requests`` answers
or ``--max-seconds``. Reported per cell: p50/p95/p99 latency, requests/s, errors (non-200 or
failed connections); the replica's peak RSS; ``uptime``'s load average before and after.

Target (issue #13, tiny preset, 2 CPU cores): >= 50 requests/s at concurrency 32 with p99 <= 1 s,
and batching >= 3x the unbatched throughput; the JSON states whether each was met.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "ml-100k"
FAIR_ON = ([], ["gender"], ["gender", "age"])


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))  # ceil(n q / 100), at least the first
    return ordered[int(rank) - 1]


def build_bundle(folder: Path, data_dir: Path | None) -> Path:
    import torch

    from fairrec_ray.cfp.config import PromptConfig
    from fairrec_ray.cfp.mixture import build_mixture_model
    from fairrec_ray.cfp.model import build_cfp_model
    from fairrec_ray.data.options import DataOptions, data_spec, write_data_spec
    from fairrec_ray.p5 import build_p5, build_tokenizer, load_p5, save_p5
    from fairrec_ray.serve.bundle import Catalogue, write_bundle

    if data_dir is not None and (data_dir / "u.data").is_file():
        options = DataOptions(dataset="movielens-100k", data_dir=str(data_dir))
    else:
        options = DataOptions()  # synthetic, ML-100K's size
    dataset, _ = options.load_split()
    tok = build_tokenizer(dataset.n_users, dataset.n_items)
    backbone = save_p5(build_p5("tiny", tok, seed=0).eval(), tok, folder / "backbone")
    write_data_spec(options, backbone)
    prompts = {}
    for i, attribute in enumerate(("gender", "age")):
        torch.manual_seed(i)
        model = build_cfp_model(load_p5(backbone)[0], PromptConfig())
        prompts[attribute] = model.save_prompt(folder / "prompts" / attribute, {"attribute": attribute})
    mixture = build_mixture_model(load_p5(backbone)[0], dict(prompts)).save_mixers(folder / "mixture")
    catalogue = Catalogue.from_dataset(dataset, data_spec(options))
    return write_bundle(folder / "bundle", backbone, catalogue, dict(prompts), mixture)


async def closed_loop(url: str, payloads: list[dict], concurrency: int, n: int, max_s: float) -> dict[str, Any]:
    import aiohttp

    latencies: list[float] = []
    errors = 0
    sent = 0
    started = time.perf_counter()
    deadline = started + max_s

    async def client(session: aiohttp.ClientSession) -> None:
        nonlocal errors, sent
        while sent < n and time.perf_counter() < deadline:
            payload = payloads[sent % len(payloads)]
            sent += 1
            t0 = time.perf_counter()
            try:
                async with session.post(url, json=payload) as response:
                    await response.read()
                    ok = response.status == 200
            except (TimeoutError, aiohttp.ClientError):
                ok = False
            if ok:
                latencies.append(time.perf_counter() - t0)
            else:
                errors += 1

    timeout = aiohttp.ClientTimeout(total=max(30.0, max_s))
    async with aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=concurrency)) as session:
        await asyncio.gather(*(client(session) for _ in range(concurrency)))
    wall = time.perf_counter() - started
    out: dict[str, Any] = {"requests": len(latencies), "errors": errors, "seconds": round(wall, 3)}
    if latencies:
        out.update(
            rps=round(len(latencies) / wall, 2),
            p50_ms=round(1000 * percentile(latencies, 50), 1),
            p95_ms=round(1000 * percentile(latencies, 95), 1),
            p99_ms=round(1000 * percentile(latencies, 99), 1),
        )
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(args: argparse.Namespace) -> dict[str, Any]:
    import ray
    import requests
    from ray import serve

    from fairrec_ray.serve.app import build_app
    from fairrec_ray.serve.bundle import open_bundle

    load_before = os.getloadavg()
    tmp = tempfile.TemporaryDirectory(prefix="bench-serve-")
    bundle = Path(args.bundle) if args.bundle else build_bundle(Path(tmp.name), Path(args.data_dir))
    users = list(open_bundle(bundle, verify=False).catalogue.user_ids)
    rng = random.Random(0)
    concurrencies = [int(c) for c in args.concurrency.split(",")]
    ray.init(address="local", num_cpus=args.num_cpus, include_dashboard=False, log_to_driver=False)
    port = _free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    base = f"http://127.0.0.1:{port}/bench"
    cells = []
    peak = {}
    try:
        for batch_size in (args.batch_size, 1):
            app = build_app(
                {
                    "bundle": str(bundle),
                    "max_batch_size": batch_size,
                    "batch_wait_timeout_s": args.batch_wait_ms / 1000,
                    "torch_threads": args.torch_threads,
                    "device": "cpu",
                    "num_cpus": 1,
                }
            )
            serve.run(app, name="bench", route_prefix="/bench", blocking=False)
            for fair_on in FAIR_ON:
                payloads = [{"user": rng.choice(users), "k": args.k, "fair_on": fair_on} for _ in range(512)]
                asyncio.run(closed_loop(base + "/recommend", payloads, 4, 8, 30.0))  # warm-up
                for c in concurrencies:
                    cell = asyncio.run(closed_loop(base + "/recommend", payloads, c, args.requests, args.max_seconds))
                    cell.update(max_batch_size=batch_size, fair_on=fair_on, concurrency=c)
                    cells.append(cell)
                    print(json.dumps(cell), file=sys.stderr, flush=True)
            health = requests.get(base + "/healthz", timeout=30).json()
            peak[f"max_batch_size={batch_size}"] = health
            serve.delete("bench")
    finally:
        serve.shutdown()
        ray.shutdown()
        tmp.cleanup()
    return summarise(cells, args, peak, load_before)


def summarise(cells: list[dict], args: argparse.Namespace, peak: dict, load_before: tuple) -> dict[str, Any]:
    top = max(int(c) for c in args.concurrency.split(","))

    def find(batch: int, fair_on: list[str]) -> dict:
        same = (c for c in cells if c["max_batch_size"] == batch and c["fair_on"] == fair_on)
        return next(c for c in same if c["concurrency"] == top)

    targets = {}
    for fair_on in FAIR_ON:
        batched, single = find(args.batch_size, fair_on), find(1, fair_on)
        speedup = batched.get("rps", 0) / single["rps"] if single.get("rps") else None
        targets["+".join(fair_on) or "backbone"] = {
            "rps": batched.get("rps"),
            "p99_ms": batched.get("p99_ms"),
            "unbatched_rps": single.get("rps"),
            "speedup": None if speedup is None else round(speedup, 2),
            "met": bool(batched.get("rps", 0) >= 50 and batched.get("p99_ms", 1e9) <= 1000 and (speedup or 0) >= 3),
        }
    return {
        "machine": {"cpus": os.cpu_count(), "load_avg_before": load_before, "load_avg_after": os.getloadavg()},
        "settings": {k: v for k, v in vars(args).items()},
        "cells": cells,
        "errors": sum(c["errors"] for c in cells),
        "replica": peak,
        f"target_at_concurrency_{top}": targets,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", default=None, help="a serving bundle (default: build a tiny one)")
    parser.add_argument("--data-dir", default=str(DEFAULT_DATA), help="ML-100K for the built bundle")
    parser.add_argument("--requests", type=int, default=200, help="answers per cell (at most)")
    parser.add_argument("--max-seconds", type=float, default=20.0, help="seconds per cell (at most)")
    parser.add_argument("--concurrency", default="1,8,32", help="closed-loop clients per cell")
    parser.add_argument("--batch-size", type=int, default=32, help="max_batch_size of the batched runs")
    parser.add_argument("--batch-wait-ms", type=float, default=5.0, help="batch_wait_timeout_s, in ms")
    parser.add_argument("--k", type=int, default=10, help="items per request")
    parser.add_argument("--torch-threads", type=int, default=2, help="torch threads in the replica")
    parser.add_argument("--num-cpus", type=int, default=4, help="CPUs of the local Ray")
    parser.add_argument("--output", default=None, help="also write the JSON here")
    args = parser.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    result = run(args)
    text = json.dumps(result, indent=2)
    if args.output:
        from fairrec_ray.cli import write_json_atomic

        write_json_atomic(args.output, result)
    print(text)


if __name__ == "__main__":
    main()
