"""The adversarial-MF job: plain BPR-MF (λ = 0) and the adversarially filtered one on CFP's split,
evaluated with CFP's protocol — the same probe (``cfp.probe.probe_auc`` on the test-stage users'
representations, same folds and seed), the same ranking evaluation (``p5.evaluate.evaluate_scores``
over the same candidates) and the same outcome metrics (``outcomes.ranking_outcomes``) — written
as ``results.json`` with CFP's headline keys (``before`` = plain, ``after`` = filtered)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from fairrec_ray.baselines.adversarial_mf import AdvMFConfig, train_adversarial_mf
from fairrec_ray.cfp.data import HIDDEN
from fairrec_ray.data.options import DataOptions
from fairrec_ray.data.splits import partition_split_users, subset_split
from fairrec_ray.errors import ConfigError

log = logging.getLogger(__name__)
RESULTS_FILE = "results.json"
KIND = "adversarial_mf"
N_RANKED = 20  # items kept per user for the outcome metrics (as CFP's 20 beams)


def _help(text: str) -> dict[str, str]:
    return {"help": text}


@dataclass
class AdvMFJobConfig(DataOptions):
    attribute: str = field(default="gender", metadata=_help("sensitive attribute to filter out"))
    output: str | None = field(default=None, metadata=_help("output folder (results.json)"))
    protocol: Literal["sampled-100", "full"] = field(default="sampled-100", metadata=_help("candidates (as CFP)"))
    probe_folds: int = field(default=5, metadata=_help("probe cross-validation folds (as CFP)"))
    valid_share: float = field(default=0.2, metadata=_help("users kept out of the adversary (as CFP's valid part)"))
    heldout_share: float = field(
        default=0.2, metadata=_help("users the adversary never sees, on whom every number is reported (as CFP)")
    )
    dim: int = field(default=64, metadata=_help("embedding size"))
    hidden: int = field(default=128, metadata=_help("filter / discriminator hidden units"))
    epochs: int = field(default=40, metadata=_help("passes over the interactions"))
    lr: float = field(default=5e-3, metadata=_help("recommender + filter learning rate"))
    disc_lr: float = field(default=5e-3, metadata=_help("discriminator learning rate"))
    l2: float = field(default=1e-5, metadata=_help("L2 on the embeddings of a batch"))
    batch_size: int = field(default=2048, metadata=_help("BPR triples per step"))
    adv_weight: float = field(default=1.0, metadata=_help("λ of the adversarial term (the plain row uses 0)"))
    warmup_epochs: int = field(default=5, metadata=_help("plain BPR epochs before the adversary starts"))
    torch_threads: int = field(default=1, metadata=_help("torch threads"))

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.output:
            raise ConfigError("output: required (--output DIR)")
        if self.probe_folds < 1 or self.torch_threads < 1:
            raise ConfigError("probe_folds/torch_threads: must be >= 1")
        shares = (self.valid_share, self.heldout_share)
        if not (min(shares) >= 0 and sum(shares) < 1):
            raise ConfigError(f"valid_share/heldout_share: got {shares}; expected each >= 0 with a sum below 1")
        self.mf_config(self.adv_weight)  # validates the model keys

    def mf_config(self, adv_weight: float) -> AdvMFConfig:
        return AdvMFConfig(
            dim=self.dim, hidden=self.hidden, epochs=self.epochs, lr=self.lr, disc_lr=self.disc_lr, l2=self.l2,
            batch_size=self.batch_size, adv_weight=adv_weight, warmup_epochs=self.warmup_epochs, seed=self.seed,
        )  # fmt: skip


def ranked_items(scores: np.ndarray, mask: np.ndarray, n: int = N_RANKED) -> np.ndarray:
    """Top-``n`` candidate items per row by descending score (ties: lower item index first, as
    ``candidates.rank_of_gold``)."""
    masked = np.where(mask, scores, -np.inf)
    order = np.argsort(-masked, axis=1, kind="stable")[:, :n]
    return np.where(np.take_along_axis(mask, order, axis=1), order, -1)


def evaluate_mf(
    features: np.ndarray, scores: np.ndarray, split: Any, labels: np.ndarray, cfg: AdvMFJobConfig
) -> dict[str, float]:
    """Probe AUC + hit@k / NDCG@k + outcome metrics on the test stage (split rows = users; the
    caller passes the held-out users' rows only, as CFP's ``data.users("heldout")``)."""
    from fairrec_ray.cfp.probe import probe_auc
    from fairrec_ray.outcomes import ranking_outcomes
    from fairrec_ray.p5.baselines import most_pop_scores
    from fairrec_ray.p5.candidates import candidate_mask, gold_items
    from fairrec_ray.p5.evaluate import evaluate_scores
    from fairrec_ray.p5.examples import eval_rows

    rows = np.asarray(eval_rows(split, "test"))
    out: dict[str, float] = probe_auc(features[rows], labels[rows], folds=cfg.probe_folds, seed=cfg.seed).as_dict()
    ranking = evaluate_scores(scores, split, protocol=cfg.protocol, stage="test", seed=cfg.seed)
    out.update({k: float(v) for k, v in ranking.items() if isinstance(v, (int, float))})
    n_items = scores.shape[1]
    mask = candidate_mask(split, cfg.protocol, "test", rows.tolist(), n_items, cfg.seed)
    items = ranked_items(scores[rows], mask)
    popularity = most_pop_scores(split, n_items, "test")[0]
    out.update(ranking_outcomes(items, gold_items(split, "test", rows.tolist()), labels[rows], n_items, popularity))
    return out


def headline(metrics: dict[str, float]) -> dict[str, float]:
    from fairrec_ray.metrics import RANKING_KEYS

    return {k: metrics[k] for k in ("probe_auc", "probe_auc_ovr", *RANKING_KEYS) if k in metrics}


def run_adversarial_mf(cfg: AdvMFJobConfig) -> dict[str, Any]:
    """Train plain and filtered MF, evaluate both, write ``OUTPUT/results.json``; returns it."""
    from fairrec_ray.cli import write_json_atomic
    from fairrec_ray.config import claim_output, config_to_dict
    from fairrec_ray.p5.examples import eval_history

    started = time.perf_counter()
    output = Path(str(cfg.output)).resolve()
    claim_output(output, cfg)
    torch.set_num_threads(cfg.torch_threads)
    dataset, split = cfg.load_split()
    dataset.require_attribute(cfg.attribute)
    labels = dataset.attribute_labels(cfg.attribute)[split.users]  # one per split row
    # CFP's user partition (same shares, seed and joint stratification): the adversary reads the
    # train part's labels only; every reported number is on the held-out part.
    part = partition_split_users(dataset, split, cfg.valid_share, cfg.heldout_share, cfg.seed)
    heldout = part.heldout if len(part.heldout) else np.arange(len(split))
    adversary_labels = np.full_like(labels, HIDDEN)
    adversary_labels[part.train] = labels[part.train]
    n_items = dataset.n_items
    hists = [eval_history(split, r, "test") for r in range(len(split))]  # what the test stage reads
    users = np.repeat(np.arange(len(split)), [len(h) for h in hists])
    items = np.concatenate(hists)
    results: dict[str, Any] = {
        "kind": KIND,
        "config": config_to_dict(cfg),
        "attribute": cfg.attribute,
        "n_classes": len(dataset.attributes[cfg.attribute]),
        "protocol": cfg.protocol,
        "n_users": int(len(split)),
        "n_items": int(n_items),
        "n_interactions": int(len(items)),
        "users": {"train": len(part.train), "valid": len(part.valid), "heldout": len(heldout)},
    }
    timing: dict[str, float] = {}
    for name, weight in (("plain", 0.0), ("filtered", cfg.adv_weight)):
        fit = train_adversarial_mf(users, items, adversary_labels, n_items, cfg.mf_config(weight))
        with torch.no_grad():
            features = fit.model.users().numpy().astype(np.float64)
            scores = fit.model.scores().numpy().astype(np.float64)
        t_eval = time.perf_counter()
        metrics = evaluate_mf(features[heldout], scores[heldout], subset_split(split, heldout), labels[heldout], cfg)
        timing[f"{name}_train"] = fit.seconds
        timing[f"{name}_eval"] = time.perf_counter() - t_eval
        results[name] = {"test": metrics, "adv_weight": weight, "history": fit.history}
        log.info("adversarial_mf %s (λ=%s): %s", name, weight, headline(metrics))
    results["before"] = headline(results["plain"]["test"])
    results["after"] = headline(results["filtered"]["test"])
    timing["total"] = time.perf_counter() - started
    results["timing_s"] = timing
    write_json_atomic(output / RESULTS_FILE, results)
    return results


def format_table(results: dict[str, Any]) -> str:
    before, after = results["before"], results["after"]
    lines = [f"{'test (' + results['attribute'] + ')':<18}{'MF':>10}{'adv-MF':>10}"]
    for key in before:
        lines.append(f"{key:<18}{before[key]:>10.4f}{after.get(key, float('nan')):>10.4f}")
    return "\n".join(lines)
