"""Fair recommendations from a serving bundle, in Python or on the command line — the same code path
as the Ray Serve app (``fairrec_ray/serve/``): requests validated by ``serve.requests``, resolved and
ranked in one batch by ``serve.recommender.Recommender``.

    python -m fairrec_ray.recommend --model BUNDLE --users 1,2,3 --fair-on gender,age --k 10

prints a JSON list, one entry per user: the items (raw id, title, beam score) and which prompt
served them (``backbone``, ``prompt:gender`` or ``mixture:age+gender``). ``--fair-on`` empty (the
default) = the plain backbone. Candidates: every item the user has not consumed, or
``--candidates ID,ID,...``.

In Python: ``fairrec_ray.recommend("BUNDLE", ["1", "2"], fair_on=["gender"], k=10)`` (the module
itself is callable, so ``fairrec_ray.recommend`` works both as a module and as the function).
"""

from __future__ import annotations

import json
import sys
import types
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fairrec_ray.cli import ArgumentParser, run_main, write_json_atomic

if TYPE_CHECKING:
    from fairrec_ray.serve.recommender import Recommender, ServeOptions


@lru_cache(maxsize=2)
def _load(bundle: str, options: ServeOptions | None) -> Recommender:
    from fairrec_ray.serve.recommender import Recommender

    return Recommender(bundle, options)


def recommend(
    model: str | Path,
    users: Sequence[str | int],
    *,
    fair_on: Sequence[str] = (),
    k: int = 10,
    candidates: Sequence[str | int] | None = None,
    history: Sequence[str | int] | None = None,
    options: ServeOptions | None = None,
) -> list[dict[str, Any]]:
    """Top-``k`` items for each of ``users`` from the bundle ``model``, fair on ``fair_on``.
    Bad input raises ``FairrecError`` (``serve.requests.BadRequest``) with a one-line message."""
    from fairrec_ray.serve.requests import parse_request

    core = _load(str(Path(model).resolve()), options)
    queries = []
    for user in users:
        payload: dict[str, Any] = {"user": user, "k": k, "fair_on": list(fair_on)}
        if candidates is not None:
            payload["candidates"] = list(candidates)
        if history is not None:
            payload["history"] = list(history)
        queries.append(core.resolve(parse_request(payload, core.options.limits)))
    return core.recommend(queries)


def _csv(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def main(argv: Sequence[str]) -> int:
    parser = ArgumentParser(prog="python -m fairrec_ray.recommend", description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="serving bundle folder (OUTPUT/bundle of train_cfp[_mixture])")
    parser.add_argument("--users", required=True, help="comma-separated raw user ids")
    parser.add_argument("--fair-on", default="", help="comma-separated attributes (empty: the plain backbone)")
    parser.add_argument("--k", type=int, default=10, help="items per user")
    parser.add_argument("--candidates", default=None, help="comma-separated raw item ids (default: all unconsumed)")
    parser.add_argument("--num-beams", type=int, default=20, help="beams per user (the largest k)")
    parser.add_argument("--output", default=None, help="also write the JSON to this file")
    args = parser.parse_args(argv)
    from fairrec_ray.serve.recommender import ServeOptions
    from fairrec_ray.serve.requests import Limits

    users = _csv(args.users)
    if not users:
        parser.error("--users: give at least one user id")
    if args.num_beams < 1:
        parser.error(f"--num-beams: got {args.num_beams}; expected >= 1")
    options = ServeOptions(num_beams=args.num_beams, limits=Limits(max_k=args.num_beams, default_k=1))
    result = recommend(
        args.model,
        users,
        fair_on=_csv(args.fair_on),
        k=args.k,
        candidates=None if args.candidates is None else _csv(args.candidates),
        options=options,
    )
    if args.output:
        write_json_atomic(args.output, result)
    print(json.dumps(result, indent=2))
    return 0


class _CallableModule(types.ModuleType):
    """``fairrec_ray.recommend(...)`` calls ``recommend`` even once this module is imported (the
    package attribute is then the module, not the function)."""

    def __call__(self, *args: Any, **kwargs: Any) -> list[dict[str, Any]]:
        return recommend(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule

if __name__ == "__main__":
    run_main(main)
