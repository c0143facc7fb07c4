"""Data-layer benchmark: cold parse vs cached Parquet vs a bare pandas read, plus the generator.

    python bench/bench_data.py [--data-dir ../shared/data/ml-100k] [--repeats 5]

Prints one JSON object. The baseline is ``pandas.read_csv`` of ``u.data`` alone (no validation, no
users/items, no re-indexing): the floor any loader pays to touch the ratings.
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

import pandas as pd

from fairrec_ray.data import SyntheticConfig, generate_synthetic, leave_one_out, load_dataset


def best_of(repeats: int, fn) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data-dir", default=str(Path(__file__).resolve().parents[2] / "shared/data/ml-100k"))
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    out: dict = {"repeats": args.repeats}

    data_dir = Path(args.data_dir)
    if (data_dir / "u.data").is_file():
        with tempfile.TemporaryDirectory() as cache:
            cold = best_of(args.repeats, lambda: load_dataset("movielens-100k", data_dir, use_cache=False))
            load_dataset("movielens-100k", data_dir, cache_dir=cache)
            warm = best_of(args.repeats, lambda: load_dataset("movielens-100k", data_dir, cache_dir=cache))
        baseline = best_of(args.repeats, lambda: pd.read_csv(data_dir / "u.data", sep="\t", header=None))
        ds = load_dataset("movielens-100k", data_dir, use_cache=False)
        split_s = best_of(args.repeats, lambda: leave_one_out(ds))
        out["movielens-100k"] = {
            "interactions": ds.n_interactions,
            "parse_s": round(cold, 4),
            "cached_s": round(warm, 4),
            "baseline_pandas_read_u_data_s": round(baseline, 4),
            "interactions_per_s_parse": round(ds.n_interactions / cold),
            "interactions_per_s_cached": round(ds.n_interactions / warm),
            "leave_one_out_s": round(split_s, 4),
        }
    gen = best_of(args.repeats, lambda: generate_synthetic(SyntheticConfig()))
    out["synthetic_ml100k_size"] = {"generate_s": round(gen, 4)}
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
