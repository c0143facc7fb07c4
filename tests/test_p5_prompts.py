"""P5 prompts, whole-word ids, tokenizer round-trips and model save/load (pure unit tests)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fairrec_ray.data import SyntheticConfig, generate_synthetic, leave_one_out
from fairrec_ray.errors import ConfigError
from fairrec_ray.p5 import (
    EVAL_TEMPLATE,
    TEMPLATES,
    ExampleConfig,
    P5Collator,
    build_p5,
    build_tokenizer,
    eval_examples,
    load_p5,
    save_p5,
    train_examples,
)
from fairrec_ray.p5.indexing import sequential_item_numbers
from fairrec_ray.p5.model import P5Model, preset_config
from fairrec_ray.p5.tokenizer import P5Tokenizer

TINY = dict(d_model=32, d_kv=8, d_ff=64, num_layers=1, num_decoder_layers=1, num_heads=2)


@pytest.fixture(scope="module")
def data():
    ds = generate_synthetic(SyntheticConfig(n_users=30, n_items=120, mean_interactions=20, min_interactions=5))
    split = leave_one_out(ds)
    return ds, split, build_tokenizer(ds.n_users, ds.n_items)


def test_template_ids_keep_the_papers_families():
    assert EVAL_TEMPLATE == "2-1"
    assert {t.family for tid, t in TEMPLATES.items() if tid.startswith("2-")} == {"sequential", "history"}
    assert {tid for tid, t in TEMPLATES.items() if t.family == "history"} == {"2-14", "2-17", "2-18"}
    assert {t.family for tid, t in TEMPLATES.items() if tid.startswith("5-")} == {"direct"}
    text = TEMPLATES["2-1"].render(user="user_23", history="1 , 5 , 8")
    assert text.startswith("Given the following interaction history of user_23 : 1 , 5 , 8")


def test_ids_are_split_into_subtokens(data):
    _, _, tok = data
    assert tok.tokens("user_23 1234 7") == ["user_", "##23", "12", "##34", "7"]
    assert tok.user_text(22) == "user_23" and tok.item_text(99) == "100"


def test_tokenizer_round_trip_and_save_load(data, tmp_path):
    ds, split, tok = data
    for ex in train_examples(split, tok, ExampleConfig(), seed=0)[:200]:
        assert tok.decode(tok.encode(ex.source)) == ex.source
        assert tok.decode(tok.encode(ex.target)) == ex.target
    lookup = tok.item_lookup()
    assert all(lookup[toks] == i for i, toks in enumerate(tok.item_token_ids()))
    tok.save(tmp_path)
    again = P5Tokenizer.load(tmp_path)
    text = eval_examples(split, tok, "test")[0].source
    assert again.encode(text) == tok.encode(text)
    np.testing.assert_array_equal(again.item_numbers, tok.item_numbers)


def test_sequential_indexing_numbers_items_by_first_appearance():
    numbers = sequential_item_numbers([np.array([4, 2]), np.array([2, 0])], n_items=5)
    assert numbers.tolist() == [3, 4, 2, 5, 1]  # 4->1, 2->2, 0->3, then unseen 1, 3


def test_whole_word_ids_group_subtokens_and_zero_specials(data):
    _, _, tok = data
    model = P5Model(preset_config("tiny", tok.vocab_size, **TINY))
    model.set_word_starts(tok.word_start_flags())
    ids = torch.tensor([tok.encode("of user_23 : 1234 , 5") + [tok.pad_id]])
    ww = model.encoder.embed_tokens.whole_word_ids(ids)[0].tolist()
    # of | user_ ##23 | : | 12 ##34 | , | 5 | </s> | <pad>
    assert ww == [1, 2, 2, 3, 4, 4, 5, 6, 0, 0]


def test_whole_word_embeddings_are_used_by_forward_generate_and_encoder(data):
    _, _, tok = data
    model = build_p5("tiny", tok, seed=0).eval()
    ids = torch.tensor([tok.encode("Given the following interaction history of user_3 : 12 , 7")])
    with torch.no_grad():
        before = model.get_encoder()(input_ids=ids).last_hidden_state
        model.encoder.embed_tokens.whole_word.weight.add_(1.0)
        after = model.get_encoder()(input_ids=ids).last_hidden_state
    assert not torch.allclose(before, after)


def test_collator_batch_contract(data):
    _, split, tok = data
    examples = train_examples(split, tok, ExampleConfig(), seed=1)[:16]
    batch = P5Collator(tok)(examples)
    assert set(batch) == {"input_ids", "attention_mask", "labels", "user_token_mask", "user_idx"}
    assert batch["user_token_mask"].dtype == torch.bool and batch["user_idx"].dtype == torch.int64
    for i, ex in enumerate(examples):
        user_ids = batch["input_ids"][i][batch["user_token_mask"][i]].tolist()
        assert tok.decode(user_ids) == tok.user_text(ex.user_idx)
        target = batch["labels"][i][batch["labels"][i] != -100].tolist()
        assert tok.decode(target) == ex.target and target[-1] == tok.eos_id
    assert (batch["labels"] == -100).any() or batch["labels"].shape[1] == max(
        len(tok.encode(e.target)) for e in examples
    )


def test_train_examples_mix_families_and_are_seeded(data):
    _, split, tok = data
    a = train_examples(split, tok, ExampleConfig(), seed=3, epoch=1)
    b = train_examples(split, tok, ExampleConfig(), seed=3, epoch=1)
    assert a == b
    families = {TEMPLATES[e.template].family for e in a}
    assert families == {"sequential", "direct"}
    n_seq = sum(len(s) - 1 for s in split.train)
    assert sum(TEMPLATES[e.template].family == "sequential" for e in a) == n_seq


def test_eval_examples_use_all_but_the_held_out_item(data):
    _, split, tok = data
    ex = eval_examples(split, tok, "test")[0]
    expected = tok.items_text(split.test_history(0)[-20:])
    assert ex.template == "2-1" and expected in ex.source and ex.target == tok.item_text(split.test[0])
    with pytest.raises(ConfigError, match="stage"):
        eval_examples(split, tok, "train")


def test_save_load_round_trip_keeps_tied_weights_and_outputs(data, tmp_path):
    _, split, tok = data
    model = build_p5("tiny", tok, seed=0).eval()
    batch = P5Collator(tok)(eval_examples(split, tok, "test")[:4])
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "labels")}
    with torch.no_grad():
        ref = model(**inputs).logits
    save_p5(model, tok, tmp_path / "m")
    loaded, tok2 = load_p5(tmp_path / "m")
    assert loaded.shared.weight is loaded.lm_head.weight
    assert loaded.encoder.embed_tokens.weight is loaded.shared.weight is loaded.decoder.embed_tokens.weight
    with torch.no_grad():
        torch.testing.assert_close(loaded(**inputs).logits, ref)
    assert torch.equal(loaded.encoder.embed_tokens.word_start, model.encoder.embed_tokens.word_start)
    with pytest.raises(ConfigError, match="config.json"):
        load_p5(tmp_path / "missing")
