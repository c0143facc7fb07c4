"""The serving core, shared by ``fairrec_ray.recommend`` and the Ray Serve app: a bundle loaded
once, requests resolved against its catalogue, and a batch of requests answered by the
evaluation's trie-constrained batched beam search (``p5/generate.py``), one beam search per
fairness subset in the batch.

One backbone serves every subset: the bundle's attribute prompts sit under a ``MixturePrefix``
whose subset is switched per group (a one-attribute subset is exactly that attribute's prompt; a
larger one needs the bundle's trained mixture), and the empty subset runs the bare backbone.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fairrec_ray.serve.bundle import Bundle, BundleError, open_bundle
from fairrec_ray.serve.requests import BadRequest, Limits, RecRequest, check_fair_on


@dataclass(frozen=True)
class ServeOptions:
    num_beams: int = 20  # beams per user; also the largest k
    max_history: int = 20  # history items in a prompt (most recent), as in evaluation
    max_batch: int = 64  # users per beam search
    torch_threads: int = 0  # 0: leave torch's default
    device: str = "auto"  # "auto": cuda when available
    verify: bool = True  # hash every bundle part at load
    limits: Limits = field(default_factory=Limits)

    def __post_init__(self) -> None:
        if self.num_beams < 1 or self.max_history < 1 or self.max_batch < 1:
            raise BundleError("num_beams/max_history/max_batch: must be >= 1")
        if self.limits.max_k > self.num_beams:
            raise BundleError(f"max_k {self.limits.max_k} > num_beams {self.num_beams}: a beam search ranks num_beams")


@dataclass(frozen=True)
class Query:
    """A request resolved against the bundle (ids -> indices)."""

    request: RecRequest
    served_by: str
    user_text: str
    history: tuple[int, ...]  # item_idx, oldest first (everything consumed)
    candidates: np.ndarray  # [n_items] bool


def _select_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


class Recommender:
    """Load with ``Recommender(bundle_dir, options)``; ``recommend(requests)`` answers a batch."""

    def __init__(self, bundle: str | Path | Bundle, options: ServeOptions | None = None) -> None:
        from fairrec_ray.p5 import load_p5
        from fairrec_ray.p5.trie import ItemTrie

        self.options = options or ServeOptions()
        self.bundle = bundle if isinstance(bundle, Bundle) else open_bundle(bundle, verify=self.options.verify)
        if self.options.torch_threads:
            torch.set_num_threads(self.options.torch_threads)
        cat = self.bundle.catalogue
        backbone, self.tokenizer = load_p5(self.bundle.backbone_dir)
        if self.tokenizer.n_items != cat.n_items:
            raise BundleError(
                f"{self.bundle.root}: backbone numbers {self.tokenizer.n_items} items, catalogue {cat.n_items}"
            )
        self.attributes = self.bundle.attributes
        self.mixture_attributes = self.bundle.mixture_attributes
        self.model, self._mixture = self._build_model(backbone)
        self.device = _select_device(self.options.device)
        self.model.to(self.device).eval()
        self.trie = ItemTrie(self.tokenizer.item_token_ids(), self.tokenizer.eos_id, self.tokenizer.vocab_size)
        self.lookup = self.tokenizer.item_lookup()
        self.user_index = {u: i for i, u in enumerate(cat.user_ids)}
        self.item_index = {it: i for i, it in enumerate(cat.item_ids)}
        numbers = self.tokenizer.user_numbers
        next_number = (int(numbers.max()) if numbers is not None and len(numbers) else cat.n_users) + 1
        self._new_user_text = f"user_{next_number}"  # an id no known user has (for history-only users)
        self._lock = threading.Lock()  # the prompt subset is model state: one beam search at a time

    def _build_model(self, backbone: torch.nn.Module) -> tuple[torch.nn.Module, Any]:
        if not self.attributes:
            return backbone, None
        from fairrec_ray.cfp.mixture import MixtureModel, MixturePrefix
        from fairrec_ray.cfp.model import load_prompts
        from fairrec_ray.errors import ConfigError

        prompts = [load_prompts(self.bundle.prompt_dir(a)) for a in self.attributes]
        try:
            encoder = MixturePrefix([p[0] for p in prompts])
            decoder = MixturePrefix([p[1] for p in prompts])
        except ConfigError as exc:
            raise BundleError(f"{self.bundle.root}: the prompts cannot be served together ({exc})") from None
        model = MixtureModel(backbone, encoder, decoder, self.attributes)
        if self.bundle.mixture_dir is not None:
            from safetensors.torch import load_file

            from fairrec_ray.cfp.mixture import MIXER_WEIGHTS

            model.load_mixer_state(load_file(str(self.bundle.mixture_dir / MIXER_WEIGHTS)))
        model.requires_grad_(False)
        return model, model

    # ------------------------------------------------------------------ requests -> queries

    def describe(self) -> dict[str, Any]:
        """What a client can choose (``GET /attributes``)."""
        return {
            "attributes": self.attributes,
            "mixture": self.mixture_attributes,
            "subsets": [[], *[[a] for a in self.attributes], *self._mixture_subsets()],
            "max_k": self.options.limits.max_k,
            "n_users": self.bundle.catalogue.n_users,
            "n_items": self.bundle.catalogue.n_items,
        }

    def _mixture_subsets(self) -> list[list[str]]:
        import itertools

        attrs = sorted(self.mixture_attributes)
        return [list(c) for r in range(2, len(attrs) + 1) for c in itertools.combinations(attrs, r)]

    def resolve(self, request: RecRequest) -> Query:
        """Check ids and the fairness subset against the bundle (``BadRequest`` when they do not fit)."""
        served_by = check_fair_on(request.fair_on, self.attributes, self.mixture_attributes)
        cat = self.bundle.catalogue
        user_idx = self.user_index.get(request.user)
        if user_idx is None and request.history is None:
            raise BadRequest(404, f"user {request.user!r} is unknown; send a 'history' to recommend for a new user")
        if request.history is not None:
            history = tuple(self._items(request.history, "history"))
        else:
            history = cat.consumed[user_idx] if user_idx is not None else ()
        if request.candidates is not None:
            candidates = np.zeros(cat.n_items, dtype=bool)
            candidates[self._items(request.candidates, "candidates")] = True
        else:
            candidates = np.ones(cat.n_items, dtype=bool)
            candidates[list(history)] = False
            if user_idx is not None:
                candidates[list(cat.consumed[user_idx])] = False
        user_text = self.tokenizer.user_text(user_idx) if user_idx is not None else self._new_user_text
        return Query(request, served_by, user_text, history, candidates)

    def _items(self, ids: Sequence[str], what: str) -> list[int]:
        out = []
        for raw in ids:
            idx = self.item_index.get(raw)
            if idx is None:
                raise BadRequest(400, f"{what}: unknown item {raw!r}")
            out.append(idx)
        return out

    # ------------------------------------------------------------------ the batched beam search

    @contextlib.contextmanager
    def _subset(self, fair_on: tuple[str, ...]) -> Iterator[torch.nn.Module]:
        if self._mixture is None:
            yield self.model
        elif not fair_on:
            with self._mixture.disabled():
                yield self.model
        else:
            self._mixture.set_subset(list(fair_on))
            yield self.model

    def recommend(self, queries: Sequence[Query]) -> list[dict[str, Any]]:
        """Answers in the order of ``queries``: groups them by fairness subset, one batched beam
        search per group (chunks of ``max_batch``)."""
        groups: dict[tuple[str, ...], list[int]] = {}
        for i, q in enumerate(queries):
            groups.setdefault(q.request.fair_on, []).append(i)
        answers: list[dict[str, Any]] = [{} for _ in queries]
        with self._lock:
            for fair_on, members in groups.items():
                with self._subset(fair_on) as model:
                    for start in range(0, len(members), self.options.max_batch):
                        chunk = members[start : start + self.options.max_batch]
                        for i, answer in zip(chunk, self._rank(model, [queries[i] for i in chunk])):
                            answers[i] = answer
        return answers

    @torch.no_grad()
    def _rank(self, model: torch.nn.Module, queries: list[Query]) -> list[dict[str, Any]]:
        from fairrec_ray.p5.examples import P5Collator, PromptExample
        from fairrec_ray.p5.generate import scored_beam_items
        from fairrec_ray.p5.templates import EVAL_TEMPLATE, TEMPLATES

        cat, tok, opts = self.bundle.catalogue, self.tokenizer, self.options
        live = [q for q in queries if q.candidates.any()]
        ranked: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        if live:
            examples = [
                PromptExample(
                    TEMPLATES[EVAL_TEMPLATE].render(
                        user=q.user_text, history=tok.items_text(q.history[-opts.max_history :])
                    ),
                    "",
                    0,
                    0,
                    EVAL_TEMPLATE,
                )
                for q in live
            ]
            batch = P5Collator(tok)(examples)
            mask = np.stack([q.candidates for q in live])
            items, scores = scored_beam_items(
                model,
                tok,
                batch["input_ids"].to(self.device),
                batch["attention_mask"].to(self.device),
                mask,
                self.trie,
                opts.num_beams,
                self.lookup,
            )
            for j, q in enumerate(live):
                ranked[id(q)] = (items[j], scores[j])
        out = []
        for q in queries:
            items_q, scores_q = ranked.get(id(q), (np.empty(0, np.int64), np.empty(0)))
            top = [
                {"item": cat.item_ids[i], "title": cat.item_titles[i], "score": float(s)}
                for i, s in zip(items_q.tolist(), scores_q.tolist())
                if i >= 0
            ][: q.request.k]
            out.append(
                {"user": q.request.user, "fair_on": list(q.request.fair_on), "served_by": q.served_by, "items": top}
            )
        return out
