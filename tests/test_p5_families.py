"""UP5's task families in P5 pre-training, independent user ids and length bucketing (unit tests:
tiny models, synthetic data, no Ray)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch

from fairrec_ray.data import SyntheticConfig, generate_synthetic, leave_one_out
from fairrec_ray.data.splits import NO_ITEM
from fairrec_ray.errors import ConfigError
from fairrec_ray.p5 import TEMPLATES, ExampleConfig, P5Collator, build_tokenizer, train_examples
from fairrec_ray.p5.batching import bucket_batches, padding_share, plain_batches
from fairrec_ray.p5.config import P5TrainConfig
from fairrec_ray.p5.examples import FAMILIES, family_counts
from fairrec_ray.p5.indexing import user_numbers
from fairrec_ray.p5.loop import epoch_batches
from fairrec_ray.p5.model import P5Model, preset_config
from fairrec_ray.p5.templates import NO, TRAIN_CHOICE, TRAIN_HISTORY, TRAIN_SEQUENTIAL, TRAIN_YES_NO, YES
from fairrec_ray.p5.tokenizer import P5Tokenizer

TINY = dict(d_model=32, d_kv=8, d_ff=64, num_layers=1, num_decoder_layers=1, num_heads=2)
MIX = (1.0, 1.0, 1.0, 0.5)


@pytest.fixture(scope="module")
def data():
    ds = generate_synthetic(SyntheticConfig(n_users=30, n_items=120, mean_interactions=20, min_interactions=5))
    split = leave_one_out(ds)
    return ds, split, build_tokenizer(ds.n_users, ds.n_items, user_tokens=True)


def family_of(template: str) -> str:
    for name, templates in zip(FAMILIES, (TRAIN_SEQUENTIAL, TRAIN_HISTORY, TRAIN_YES_NO, TRAIN_CHOICE)):
        if template in templates:
            return name
    raise AssertionError(template)


def items_in(text: str, lookup: dict[str, int]) -> list[int]:
    """Item ids written in a prompt or target (``1234`` or ``item_1234``)."""
    return [lookup[w.removeprefix("item_")] for w in text.split() if w.removeprefix("item_") in lookup]


# ---------------------------------------------------------------------------- the mix
def test_family_counts_split_the_total_by_largest_remainder():
    # 10 * (1, 1, 1, .5) / 3.5 = 2.86, 2.86, 2.86, 1.43: floors 2, 2, 2, 1 and 3 left for the
    # largest remainders (.86 x 3, ties to the earlier family)
    assert family_counts(10, (1, 1, 1, 0.5)) == [3, 3, 3, 1]
    assert family_counts(3, (1, 1, 1, 1)) == [1, 1, 1, 0]
    assert family_counts(5, (0, 2, 0, 0)) == [0, 5, 0, 0]
    assert family_counts(7, (1, 0, 0, 1)) == [4, 0, 0, 3]
    assert family_counts(0, MIX) == [0, 0, 0, 0]


@pytest.mark.parametrize(
    "bad, message",
    [
        (dict(mix_history=-1.0), "mix: weight of history is -1.0; weights must be >= 0"),
        (dict(mix_sequential=0.0, mix_history=0.0, mix_yes_no=0.0, mix_choice=0.0), "mix: all weights are 0"),
        (dict(mix_choice=float("nan")), "mix: weight of choice is nan"),
        (dict(prompts_per_user=-3), "prompts_per_user: got -3; must be >= 0"),
        (dict(history_items=0), "history_items: got 0; must be >= 1"),
        (dict(user_indexing="digits"), "user_indexing: got 'digits'"),
    ],
)
def test_bad_mix_and_indexing_are_one_line_config_errors(bad, message):
    with pytest.raises(ConfigError, match="^" + message.replace("(", r"\(").replace(")", r"\)")) as info:
        P5TrainConfig(**bad)
    assert "\n" not in str(info.value)


def test_example_config_checks_the_number_of_weights():
    with pytest.raises(ConfigError, match="mix: got 2 weights; expected 4"):
        ExampleConfig(mix=(1.0, 1.0))


def test_every_user_gets_the_family_counts_of_the_mix(data):
    _, split, tok = data
    cfg = ExampleConfig(prompts_per_user=10, mix=MIX, max_history=5)
    examples = train_examples(split, tok, cfg, seed=1, epoch=2)
    assert examples == train_examples(split, tok, cfg, seed=1, epoch=2)  # seeded
    assert examples != train_examples(split, tok, cfg, seed=1, epoch=3)  # re-drawn every epoch
    per_user: dict[int, Counter] = {}
    for e in examples:
        per_user.setdefault(e.row, Counter())[family_of(e.template)] += 1
    assert set(per_user) == set(range(len(split)))
    for row, counts in per_user.items():
        seq_expected = 3 if len(split.train[row]) > 1 else 0  # a 1-item sequence has no next item
        assert counts == Counter({"sequential": seq_expected, "history": 3, "yes_no": 3, "choice": 1}), row


def test_user_only_prompts_name_the_user_and_nothing_else_about_them(data):
    """History and yes/no prompts carry the user id and at most one (asked-about) item: to answer
    them the model must know the user from the id."""
    _, split, tok = data
    lookup = {tok.item_text(i): i for i in range(tok.n_items)}
    examples = train_examples(split, tok, ExampleConfig(prompts_per_user=12, mix=(0, 1, 1, 0)), seed=0, epoch=1)
    assert {family_of(e.template) for e in examples} == {"history", "yes_no"}
    for e in examples:
        assert tok.user_text(e.user_idx) in e.source.split()
        assert len(items_in(e.source, lookup)) == (0 if family_of(e.template) == "history" else 1)


@pytest.mark.parametrize("mode", ["mix", "paper"])
def test_targets_and_positives_are_training_items_and_held_out_items_never_appear(data, mode):
    _, split, tok = data
    lookup = {tok.item_text(i): i for i in range(tok.n_items)}
    cfg = ExampleConfig(prompts_per_user=20, mix=MIX, history_items=4, max_history=5, n_candidates=8)
    if mode == "paper":
        cfg = ExampleConfig(direct_per_user=6, max_history=5, n_candidates=8)
    seen_no = seen_yes = 0
    for e in train_examples(split, tok, cfg, seed=0, epoch=1):
        train = split.train[e.row].tolist()
        held_out = {int(split.valid[e.row]), int(split.test[e.row])} - {NO_ITEM} - set(train)
        mentioned = items_in(e.source, lookup) + items_in(e.target, lookup)
        assert not held_out & set(mentioned), (e, held_out)
        family = family_of(e.template)
        if family == "history":
            window = items_in(e.target, lookup)
            assert len(window) == min(4, len(train))
            starts = [i for i in range(len(train)) if train[i : i + len(window)] == window]
            assert starts, (e, train)  # a contiguous window of the training sequence
        elif e.target in (YES, NO):
            (item,) = items_in(e.source, lookup)
            assert (item in train) == (e.target == YES), e  # negatives are never positives
            seen_yes += e.target == YES
            seen_no += e.target == NO
        else:
            assert e.gold in train and lookup[e.target] == e.gold
            if TEMPLATES[e.template].needs == ("candidates",):  # the only items in the prompt
                cands = items_in(e.source, lookup)
                assert e.gold in cands and not (set(cands) - {e.gold}) & set(train), e
    assert seen_yes > 10 and seen_no > 10


def test_a_user_owning_every_item_gets_positive_yes_no_prompts():
    ds = generate_synthetic(SyntheticConfig(n_users=4, n_items=10, mean_interactions=10, min_interactions=10))
    split = leave_one_out(ds)
    tok = build_tokenizer(ds.n_users, ds.n_items)
    examples = train_examples(split, tok, ExampleConfig(prompts_per_user=8, mix=(0, 0, 1, 1), n_candidates=3), 0, 1)
    assert len(examples) == 8 * len(split)
    assert all(e.target == YES for e in examples if e.target in (YES, NO))


# ---------------------------------------------------------------------------- independent user ids
def test_independent_user_ids_are_one_whole_word_token_each_and_round_trip(data, tmp_path):
    ds, split, tok = data
    assert tok.user_text(16) == "<user_17>"
    assert user_numbers("independent", split.users, split.train, ds.n_users, ds.n_items) is None
    ids = {tok.tokenizer.token_to_id(tok.user_text(u)) for u in range(ds.n_users)}
    assert None not in ids and len(ids) == ds.n_users  # a row of its own for every user
    starts = tok.word_start_flags()
    for u in (0, 16, ds.n_users - 1):
        assert tok.tokens(f"Which items has {tok.user_text(u)} interacted with before ?")[3] == tok.user_text(u)
        assert starts[tok.tokenizer.token_to_id(tok.user_text(u))]  # whole word: its own word id
    tok.save(tmp_path)
    back = P5Tokenizer.load(tmp_path)
    assert back.user_tokens and back.user_text(5) == "<user_6>"
    text = "What is the interaction history of <user_6> ?"
    assert back.encode(text) == tok.encode(text)
    assert back.decode(back.encode(text)) == text
    with pytest.raises(ConfigError, match="independent user tokens"):
        build_tokenizer(ds.n_users, ds.n_items, user_numbers=np.arange(ds.n_users), user_tokens=True)


def test_user_span_of_an_independent_id_is_its_one_token(data):
    """CFP's ``encode_users`` averages the encoder states under ``user_token_mask``: for an
    independent id that is exactly the ``<user_N>`` token, in sequential and user-only prompts."""
    _, split, tok = data
    examples = train_examples(split, tok, ExampleConfig(prompts_per_user=4, mix=MIX), seed=0, epoch=1)[:12]
    batch = P5Collator(tok)(examples)
    for i, e in enumerate(examples):
        (pos,) = torch.nonzero(batch["user_token_mask"][i]).flatten().tolist()
        assert batch["input_ids"][i, pos] == tok.tokenizer.token_to_id(tok.user_text(e.user_idx))
    assert not P5Collator(tok, user_mask=False)(examples)["user_token_mask"].any()


def test_user_only_gradients_reach_exactly_the_users_own_token_row(data):
    """The mechanism of memorisation: a history/yes-no loss for user u lands on u's own embedding
    row (with digit-piece ids it would land on pieces that many users share). The other user rows
    get only the tied output layer's small push-down (every vocabulary row gets that)."""
    ds, split, tok = data
    torch.manual_seed(0)
    model = P5Model(preset_config("tiny", tok.vocab_size, **TINY))
    model.set_word_starts(tok.word_start_flags())
    examples = train_examples(split, tok, ExampleConfig(prompts_per_user=6, mix=(0, 1, 1, 0)), 0, 1)
    chosen = [e for e in examples if e.row == 3]
    batch = P5Collator(tok)(chosen)
    loss = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"]).loss
    loss.backward()
    grad = model.shared.weight.grad
    user_rows = np.array([tok.tokenizer.token_to_id(tok.user_text(u)) for u in range(ds.n_users)])
    norms = grad[user_rows].norm(dim=1)
    own = int(split.users[3])
    others = torch.cat([norms[:own], norms[own + 1 :]])
    assert norms[own] > 5 * others.max()


# ---------------------------------------------------------------------------- length bucketing
def test_bucketing_keeps_every_example_exactly_once_and_cuts_padding():
    rng = np.random.default_rng(0)
    n, batch_size = 1003, 32
    src = np.where(rng.random(n) < 0.5, rng.integers(8, 14, n), rng.integers(40, 70, n))
    tgt = rng.integers(2, 12, n)
    batches = bucket_batches(src, tgt, batch_size, np.random.default_rng(1), chunk_batches=8)
    flat = np.concatenate(batches)
    assert np.array_equal(np.sort(flat), np.arange(n))  # each example exactly once
    assert len(batches) == len(plain_batches(n, batch_size)) == -(-n // batch_size)  # same schedule length
    assert sum(len(b) < batch_size for b in batches) == 1  # only the very last cut is short
    plain = plain_batches(n, batch_size)
    assert padding_share(batches, src) < 0.2 < padding_share(plain, src)
    again = bucket_batches(src, tgt, batch_size, np.random.default_rng(1), chunk_batches=8)
    assert all(np.array_equal(a, b) for a, b in zip(batches, again))  # seeded
    other = bucket_batches(src, tgt, batch_size, np.random.default_rng(2), chunk_batches=8)
    assert not all(np.array_equal(a, b) for a, b in zip(batches, other))


def test_padding_share_hand_computed():
    # lengths 2, 4 in one batch (pad to 4: 8 positions, 6 used), 3 alone: 11 positions, 9 used
    assert padding_share([np.array([0, 1]), np.array([2])], [2, 4, 3]) == pytest.approx(2 / 11)


def test_epoch_batches_cover_the_shard_once_with_similar_lengths(data):
    _, split, tok = data
    examples = train_examples(split, tok, ExampleConfig(prompts_per_user=10, mix=MIX), seed=0, epoch=1)
    for bucketing in (True, False):
        batches = epoch_batches(examples, tok, 16, bucketing, seed=0, epoch=1)
        flat = [id(e) for b in batches for e in b]
        assert sorted(flat) == sorted(id(e) for e in examples)
    lens = {id(e): len(ids) for e, ids in zip(examples, tok.encode_batch([e.source for e in examples]))}
    bucketed = epoch_batches(examples, tok, 16, True, seed=0, epoch=1)
    spread = np.mean([max(lens[id(e)] for e in b) - min(lens[id(e)] for e in b) for b in bucketed])
    plain = epoch_batches(examples, tok, 16, False, seed=0, epoch=1)
    assert spread < 0.5 * np.mean([max(lens[id(e)] for e in b) - min(lens[id(e)] for e in b) for b in plain])


# ---------------------------------------------------------------------------- memorisation (opt-in)
def _pair_accuracy(model, tok, split, k: int = 5) -> float:
    """Share of user pairs (u, v), u != v, for which the model finds u's own first ``k`` training
    items a likelier answer to "What is the interaction history of <user_u> ?" than v's. A model
    that ignores the user id scores exactly 0.5 (each pair and its mirror split one win)."""
    from fairrec_ray.p5.examples import PromptExample

    n = len(split)
    sources = [f"What is the interaction history of {tok.user_text(int(u))} ?" for u in split.users]
    targets = [tok.items_text(split.train[r][:k]) for r in range(n)]
    pairs = [PromptExample(sources[u], targets[v], int(split.users[u]), u, "2-14") for u in range(n) for v in range(n)]
    collate, nll = P5Collator(tok, user_mask=False), []
    model.eval()
    with torch.no_grad():
        for lo in range(0, len(pairs), 256):
            b = collate(pairs[lo : lo + 256])
            logits = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"], labels=b["labels"]).logits
            loss = torch.nn.functional.cross_entropy(logits.transpose(1, 2), b["labels"], reduction="none")
            nll += loss.sum(1).tolist()
    m = np.asarray(nll).reshape(n, n)
    off = ~np.eye(n, dtype=bool)
    return float((np.diag(m)[:, None] < m)[off].mean())


@pytest.mark.learning
def test_user_only_families_make_the_user_token_memorise_the_users_items():
    """Memorisation (opt-in, ~2-4 min on a busy 2-core machine; no < 60 s version learns enough).

    Planted synthetic data (taste depends on gender/age/occupation), independent ``<user_N>`` ids,
    a tiny backbone trained with the same prompt budget (800 per user) either on the user-only
    history family (the prompt's only clue about the user is the id) or on the sequential family
    only. (Memorisation sets in late: with history + yes/no sharing the same budget, i.e. 500
    history prompts per user, the score was still 0.51 — measured once, 2026-12-02.)
    Representation: what the id alone tells the model, measured by ``_pair_accuracy`` on a
    user-only prompt — meaningful for both models, since the user's items must then come from the
    id's embedding row (a sequential prompt would reveal the items through its history). The
    cheap CI checks of the same mechanism are the gradient and held-out tests above."""
    from fairrec_ray.p5.loop import make_optimizer, train_epoch

    ds = generate_synthetic(
        SyntheticConfig(n_users=12, n_items=60, n_genres=3, mean_interactions=15, min_interactions=8, signal=3.0)
    )
    split = leave_one_out(ds)
    tok = build_tokenizer(ds.n_users, ds.n_items, user_tokens=True)
    torch.set_num_threads(1)
    scores = {}
    for name, mix in (("user_only", (0.0, 1.0, 0.0, 0.0)), ("sequential", (1.0, 0.0, 0.0, 0.0))):
        torch.manual_seed(0)
        model = P5Model(preset_config("tiny", tok.vocab_size, **TINY))
        model.set_word_starts(tok.word_start_flags())
        cfg = P5TrainConfig(
            dataset="synthetic", prompts_per_user=40, mix_sequential=mix[0], mix_history=mix[1],
            mix_yes_no=mix[2], mix_choice=mix[3], max_history=5, lr=1e-2, batch_size=16, warmup_ratio=0.0,
        )  # fmt: skip
        epochs = 20
        first = train_examples(split, tok, cfg.example_config(), 0, 1)
        optimizer, scheduler = make_optimizer(model, cfg, epochs * -(-len(first) // 16))
        for epoch in range(1, epochs + 1):
            examples = first if epoch == 1 else train_examples(split, tok, cfg.example_config(), 0, epoch)
            batches = epoch_batches(examples, tok, 16, True, 0, epoch)
            train_epoch(model, optimizer, scheduler, batches, P5Collator(tok, user_mask=False), 1.0, "cpu")
        scores[name] = _pair_accuracy(model, tok, split)
    assert scores["user_only"] > 0.75, scores
    assert scores["sequential"] < 0.65, scores
    assert scores["user_only"] > scores["sequential"] + 0.2, scores
