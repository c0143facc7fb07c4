"""Request validation as pure functions: a request body becomes a ``RecRequest`` or a
``BadRequest`` carrying the HTTP status and a one-line message (never a traceback).

A request names users, items and attributes only by id; ids are looked up in in-memory tables
(``recommender.py``), so nothing a request sends reaches the file system.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from fairrec_ray.errors import FairrecError

FIELDS = ("user", "history", "k", "fair_on", "candidates")


class BadRequest(FairrecError):
    """A request the server refuses: ``status`` (4xx) and a one-line ``message``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message

    def payload(self) -> dict[str, Any]:
        return {"error": self.message, "status": self.status}


@dataclass(frozen=True)
class Limits:
    """What one request may ask for. ``max_k`` is the beam count (a beam search ranks that many)."""

    max_k: int = 20
    max_history: int = 500
    max_candidates: int = 20000
    max_body_bytes: int = 256 * 1024
    default_k: int = 10

    def __post_init__(self) -> None:
        if not 1 <= self.default_k <= self.max_k:
            raise ValueError(f"default_k: got {self.default_k}; expected 1..max_k ({self.max_k})")


@dataclass(frozen=True)
class RecRequest:
    user: str
    k: int = 10
    fair_on: tuple[str, ...] = ()  # sorted, distinct
    history: tuple[str, ...] | None = None  # raw item ids, oldest first; replaces the stored history
    candidates: tuple[str, ...] | None = None  # raw item ids; None: every item the user has not consumed

    @property
    def subset_key(self) -> str:
        return "+".join(self.fair_on)


def _id(value: Any, what: str) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise BadRequest(400, f"{what}: got {type(value).__name__}; expected a string or integer id")
    text = str(value)
    if not text or len(text) > 128:
        raise BadRequest(400, f"{what}: ids are 1..128 characters")
    return text


def _id_list(value: Any, what: str, limit: int) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise BadRequest(400, f"{what}: got {type(value).__name__}; expected a list of ids")
    if len(value) > limit:
        raise BadRequest(413, f"{what}: {len(value)} ids; at most {limit}")
    return tuple(_id(v, f"{what}[{i}]") for i, v in enumerate(value))


def parse_request(payload: Any, limits: Limits) -> RecRequest:
    """A decoded JSON body -> ``RecRequest`` (shape and ranges only; ids are checked later)."""
    if not isinstance(payload, dict):
        raise BadRequest(400, f"body: got a JSON {type(payload).__name__}; expected an object")
    unknown = sorted(set(payload) - set(FIELDS))
    if unknown:
        raise BadRequest(400, f"unknown field(s) {unknown}; expected some of {list(FIELDS)}")
    if "user" not in payload:
        raise BadRequest(400, "user: missing (the user to recommend for)")
    user = _id(payload["user"], "user")
    k = payload.get("k", limits.default_k)
    if isinstance(k, bool) or not isinstance(k, int):
        raise BadRequest(400, f"k: got {type(k).__name__}; expected an integer in 1..{limits.max_k}")
    if not 1 <= k <= limits.max_k:
        raise BadRequest(400, f"k: got {k}; expected 1..{limits.max_k}")
    fair_on = payload.get("fair_on", [])
    if not isinstance(fair_on, list) or not all(isinstance(a, str) for a in fair_on):
        raise BadRequest(400, "fair_on: expected a list of attribute names")
    if len(set(fair_on)) != len(fair_on):
        raise BadRequest(400, f"fair_on: {fair_on} names an attribute twice")
    history = payload.get("history")
    candidates = payload.get("candidates")
    return RecRequest(
        user=user,
        k=k,
        fair_on=tuple(sorted(fair_on)),
        history=None if history is None else _id_list(history, "history", limits.max_history),
        candidates=None if candidates is None else _id_list(candidates, "candidates", limits.max_candidates),
    )


def parse_body(body: bytes, limits: Limits) -> RecRequest:
    """Raw HTTP body -> ``RecRequest``: 413 when too large, 400 when not JSON or malformed."""
    if len(body) > limits.max_body_bytes:
        raise BadRequest(413, f"body: {len(body)} bytes; at most {limits.max_body_bytes}")
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(400, f"body: not valid JSON ({type(exc).__name__} at {getattr(exc, 'pos', '?')})") from None
    return parse_request(payload, limits)


def check_fair_on(fair_on: tuple[str, ...], attributes: list[str], mixture: list[str]) -> str:
    """Which prompt serves ``fair_on``: ``backbone``, ``prompt:A`` or ``mixture:A+B`` (400 if none)."""
    unknown = [a for a in fair_on if a not in attributes]
    if unknown:
        valid = ", ".join(attributes) or "none (this bundle has no fair prompts)"
        raise BadRequest(400, f"fair_on: unknown attribute(s) {unknown}; valid: {valid}")
    if not fair_on:
        return "backbone"
    if len(fair_on) == 1:
        return f"prompt:{fair_on[0]}"
    if not set(fair_on) <= set(mixture):
        covered = "+".join(mixture) if mixture else "none"
        raise BadRequest(
            400, f"fair_on: no Prompt Mixture covering {list(fair_on)} was trained (the bundle's mixture: {covered})"
        )
    return "mixture:" + "+".join(fair_on)
