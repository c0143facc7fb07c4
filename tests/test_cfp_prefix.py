"""CFP prompt mechanics on a tiny, untrained P5 (no Ray): both prefixes reach their stack in
``forward`` and ``generate``, under eager and sdpa attention alike, switch off exactly, only prompt
parameters train, the saved prompt round-trips, the loss pieces are right."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from peft import PrefixTuningConfig, TaskType, get_peft_model
from torch.nn import functional as F

from fairrec_ray.cfp import attach_prompt, build_cfp_model
from fairrec_ray.cfp.config import PromptConfig
from fairrec_ray.cfp.discriminator import Discriminator, discriminator_loss
from fairrec_ray.cfp.model import user_mean
from fairrec_ray.cfp.reweighter import PromptTokenReweighter
from fairrec_ray.cfp.schedule import Phase, phase_for
from fairrec_ray.p5 import P5Collator, PromptExample, build_tokenizer
from fairrec_ray.p5.model import P5Model, preset_config

N_USERS, N_ITEMS = 30, 40


def tiny_p5(seed: int = 0, decoder_layers: int = 3, attn: str | None = None) -> tuple[P5Model, object]:
    """Encoder depth 2, decoder depth 3 by default (prefixes must size each side by its own depth).
    Tests that call ``generate`` use equal depths: transformers (5.23-5.24) sizes T5's generation
    cache by the encoder's depth, so plain T5 generation fails with a deeper decoder."""
    tok = build_tokenizer(N_USERS, N_ITEMS)
    torch.manual_seed(seed)
    config = preset_config("tiny", tok.vocab_size, d_model=32, d_kv=8, num_heads=4, d_ff=64, num_layers=2,
                           num_decoder_layers=decoder_layers)  # fmt: skip
    if attn is not None:
        config._attn_implementation = attn
    model = P5Model(config)
    model.set_word_starts(tok.word_start_flags())
    return model.eval(), tok


def perturb(cfp) -> None:
    """Random prompt weights, so a prefix that fails to arrive cannot go unnoticed."""
    torch.manual_seed(123)
    with torch.no_grad():
        for p in cfp.prompt_parameters():
            p.add_(0.3 * torch.randn_like(p))


def batch(tok) -> dict[str, torch.Tensor]:
    examples = [
        PromptExample(f"Given the interaction history of user_{u + 1} : {tok.items_text([u, u + 3][: 1 + u % 2])}"
                      " predict next possible item ?", tok.item_text(u + 7), u, u, "2-1")
        for u in (0, 4, 11, 25)
    ]  # fmt: skip
    return P5Collator(tok)(examples)


def encode(model, b):
    with torch.no_grad():
        return model.get_encoder()(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).last_hidden_state


def test_peft_prefix_alone_leaves_encoder_unchanged_which_is_why_we_add_one():
    model, tok = tiny_p5()
    b = batch(tok)
    before = encode(model, b)
    cfg = PrefixTuningConfig(task_type=TaskType.SEQ_2_SEQ_LM, num_virtual_tokens=4, num_layers=3, token_dim=32,
                             num_attention_heads=4)  # fmt: skip
    peft = get_peft_model(model, cfg)
    out = peft(input_ids=b["input_ids"], attention_mask=b["attention_mask"], labels=b["labels"])
    assert torch.equal(out.encoder_last_hidden_state, before)


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_encoder_states_follow_the_prefix_and_switch_off_exactly(attn):
    model, tok = tiny_p5(attn=attn)
    b = batch(tok)
    before = encode(model, b)
    args = dict(input_ids=b["input_ids"], attention_mask=b["attention_mask"], labels=b["labels"])
    with torch.no_grad():
        logits_before = model(**args).logits
    cfp = build_cfp_model(model, PromptConfig(prefix_length=4, ffn_hidden=16))
    assert model.config._attn_implementation == f"fairrec_prefix_{attn}"
    with_prefix = encode(model, b)
    assert (with_prefix - before).abs().max() > 1e-3
    with torch.no_grad():
        cfp.encoder_prefix.ffn.transform[2].bias.add_(0.5)  # a different prefix -> different states
    assert (encode(model, b) - with_prefix).abs().max() > 1e-3
    with cfp.disabled(), torch.no_grad():  # switched off: the bare backbone, bit for bit
        assert torch.equal(encode(model, b), before)
        assert torch.equal(model(**args).logits, logits_before)
    # the representation used by the discriminator is those encoder states, pooled over user tokens
    rep = cfp.encode_users(b["input_ids"], b["attention_mask"], b["user_token_mask"])
    assert torch.allclose(rep, user_mean(encode(model, b), b["user_token_mask"]))


def test_prefix_is_active_in_generate():
    model, tok = tiny_p5(decoder_layers=2)
    b = batch(tok)
    cfp = build_cfp_model(model, PromptConfig(prefix_length=4, ffn_hidden=16)).eval()
    seen = []
    handle = model.get_encoder().register_forward_hook(lambda m, a, o: seen.append(o.last_hidden_state.clone()))
    with torch.no_grad():
        cfp.generate(input_ids=b["input_ids"], attention_mask=b["attention_mask"], max_new_tokens=2, num_beams=2)
    handle.remove()
    with cfp.disabled():
        plain = encode(model, b)
    assert (seen[0] - plain).abs().max() > 1e-3


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_decoder_prefix_reaches_every_generate_step(attn):
    """Greedy generate (prefill, then one query at a time over the KV cache) must score exactly
    what a teacher-forced forward with both prefixes scores, and differ from the bare backbone."""
    model, tok = tiny_p5(decoder_layers=2, attn=attn)
    b = batch(tok)
    cfp = build_cfp_model(model, PromptConfig(prefix_length=4, ffn_hidden=16)).eval()
    perturb(cfp)
    gen = dict(input_ids=b["input_ids"], attention_mask=b["attention_mask"], max_new_tokens=3, num_beams=1,
               do_sample=False, output_scores=True, return_dict_in_generate=True)  # fmt: skip
    with torch.no_grad():
        out = cfp.generate(**gen)
        steps = out.sequences[:, :-1]  # decoder start token + the first generated tokens
        forced = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"], decoder_input_ids=steps).logits
        with cfp.disabled():
            plain = model.generate(**gen).scores
    for t, scores in enumerate(out.scores):
        torch.testing.assert_close(scores, forced[:, t], atol=1e-5, rtol=1e-5)
    assert (out.scores[0] - plain[0]).abs().max() > 1e-3
    with torch.no_grad():  # the decoder prefix alone moves the first-step scores too
        cfp.encoder_prefix.requires_grad_(False)
        with cfp.injectors[0].disabled():
            dec_only = cfp.generate(**gen).scores[0]
            with cfp.injectors[1].disabled():
                neither = cfp.generate(**gen).scores[0]
    assert (dec_only - neither).abs().max() > 1e-3


def test_eager_and_sdpa_give_the_same_prefixed_model():
    eager, tok = tiny_p5(decoder_layers=2, attn="eager")
    sdpa, _ = tiny_p5(decoder_layers=2, attn="sdpa")
    sdpa.load_state_dict(eager.state_dict())
    b = batch(tok)
    models = []
    for backbone in (eager, sdpa):
        torch.manual_seed(7)
        cfp = build_cfp_model(backbone, PromptConfig(prefix_length=5, ffn_hidden=16)).eval()
        perturb(cfp)
        models.append(cfp)
    args = (b["input_ids"], b["attention_mask"], b["labels"], b["user_token_mask"])
    gen = dict(input_ids=b["input_ids"], attention_mask=b["attention_mask"], max_new_tokens=3, num_beams=4,
               num_return_sequences=4, output_scores=True, return_dict_in_generate=True)  # fmt: skip
    with torch.no_grad():
        (l1, r1), (l2, r2) = models[0](*args), models[1](*args)
        g1, g2 = models[0].generate(**gen), models[1].generate(**gen)
    torch.testing.assert_close(l1, l2, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(r1, r2, atol=1e-5, rtol=1e-5)
    assert torch.equal(g1.sequences, g2.sequences)
    torch.testing.assert_close(g1.sequences_scores, g2.sequences_scores, atol=1e-5, rtol=1e-5)


def test_a_second_prompt_on_the_same_backbone_replaces_the_first():
    model, tok = tiny_p5()
    b = batch(tok)
    first = build_cfp_model(model, PromptConfig(prefix_length=4, ffn_hidden=16)).eval()
    perturb(first)
    torch.manual_seed(5)
    second = build_cfp_model(model, PromptConfig(prefix_length=4, ffn_hidden=16)).eval()
    alone = build_cfp_model(tiny_p5()[0], PromptConfig(prefix_length=4, ffn_hidden=16)).eval()
    alone.load_state_dict(second.state_dict())
    args = (b["input_ids"], b["attention_mask"], b["labels"], b["user_token_mask"])
    with torch.no_grad():
        torch.testing.assert_close(second(*args)[0], alone(*args)[0])


def test_only_prompt_parameters_train_backbone_never_changes():
    model, tok = tiny_p5()
    b = batch(tok)
    frozen = {k: v.clone() for k, v in model.state_dict().items()}
    cfp = build_cfp_model(model, PromptConfig(prefix_length=4, ffn_hidden=16))
    trainable = {n for n, p in cfp.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith(("encoder_prefix.", "decoder_prefix.")) for n in trainable)
    start = {n: p.detach().clone() for n, p in cfp.named_parameters() if p.requires_grad}
    disc = Discriminator(32, 2, hidden=16)
    opt = torch.optim.AdamW(cfp.prompt_parameters(), lr=1e-2)
    cfp.train()
    for _ in range(3):
        loss, rep = cfp(b["input_ids"], b["attention_mask"], b["labels"], b["user_token_mask"])
        (loss - 1.0 * discriminator_loss(disc(rep), torch.tensor([0, 1, 0, 1]))).backward()
        opt.step()
        opt.zero_grad()
    changed = {n for n, p in cfp.named_parameters() if p.requires_grad and not torch.equal(p, start[n])}
    assert any(n.startswith("encoder_prefix.ffn") for n in changed)
    assert any(n.startswith("decoder_prefix.ffn") for n in changed)
    for key, value in model.state_dict().items():
        assert torch.equal(value, frozen[key]), key


def test_saved_prompt_round_trips_with_identical_outputs(tmp_path):
    model, tok = tiny_p5(decoder_layers=2)
    b = batch(tok)
    frozen = {k: v.clone() for k, v in model.state_dict().items()}
    cfp = build_cfp_model(model, PromptConfig(prefix_length=3, ffn_hidden=16))
    with torch.no_grad():  # make the reweighters do something so baking them is tested
        cfp.encoder_prefix.reweighter.gamma.fill_(0.7)
        cfp.decoder_prefix.reweighter.gamma.fill_(-0.4)
    cfp.eval()
    cfp.save_prompt(tmp_path / "prompt", {"attribute": "gender"})
    names = {p.name for p in (tmp_path / "prompt").iterdir()}
    assert {"decoder_prefix_config.json", "decoder_prefix.safetensors", "encoder_prefix.safetensors",
            "encoder_prefix_config.json", "cfp_prompt.json"} <= names  # fmt: skip
    fresh, _ = tiny_p5(decoder_layers=2)
    fresh.load_state_dict(frozen)
    loaded = attach_prompt(fresh, tmp_path / "prompt")
    args = (b["input_ids"], b["attention_mask"], b["labels"], b["user_token_mask"])
    with torch.no_grad():
        (l1, r1), (l2, r2) = cfp(*args), loaded(*args)
        gen = dict(input_ids=b["input_ids"], attention_mask=b["attention_mask"], max_new_tokens=3, num_beams=3)
        g1, g2 = cfp.generate(**gen), loaded.generate(**gen)
    torch.testing.assert_close(l1, l2)
    torch.testing.assert_close(r1, r2)
    assert torch.equal(g1, g2)
    (tmp_path / "prompt" / "decoder_prefix.safetensors").unlink()
    from fairrec_ray.errors import ConfigError

    with pytest.raises(ConfigError, match="decoder_prefix.safetensors missing"):
        attach_prompt(tiny_p5(decoder_layers=2)[0], tmp_path / "prompt")


def test_reweighter_starts_as_identity_and_can_be_ablated():
    rw = PromptTokenReweighter(12, attn_dim=4)
    x = torch.randn(2, 5, 12)
    assert torch.equal(rw(x), x)
    model, _ = tiny_p5()
    cfp = build_cfp_model(model, PromptConfig(prefix_length=2, ffn_hidden=8, reweighter=False))
    assert cfp.decoder_prefix.reweighter is None and cfp.encoder_prefix.reweighter is None


def test_discriminator_losses_binary_and_multiclass():
    logits = torch.tensor([0.3, -1.2, 2.0])
    y = torch.tensor([1, 0, 0])
    manual = -(torch.log(torch.sigmoid(logits)) * y + torch.log(1 - torch.sigmoid(logits)) * (1 - y)).mean()
    torch.testing.assert_close(discriminator_loss(logits, y), manual)
    multi = torch.randn(4, 3)
    y3 = torch.tensor([0, 2, 1, 2])
    torch.testing.assert_close(discriminator_loss(multi, y3), F.nll_loss(F.log_softmax(multi, -1), y3))
    assert Discriminator(8, 2)(torch.randn(5, 8)).shape == (5,)
    assert Discriminator(8, 7)(torch.randn(5, 8)).shape == (5, 7)


def test_schedule_cycles():
    phases = [phase_for(1, s, 1, rec_steps=2, together_steps=1, disc_steps=1) for s in range(8)]
    assert phases == [Phase.REC, Phase.REC, Phase.TOGETHER, Phase.DISC] * 2
    assert phase_for(0, 5, 1, 1, 0, 1) is Phase.WARMUP
    assert Phase.TOGETHER.updates_prompt and Phase.TOGETHER.updates_discriminator
    assert not Phase.DISC.updates_prompt and not Phase.REC.updates_discriminator


def test_user_mean_ignores_other_tokens():
    hidden = torch.arange(24, dtype=torch.float32).view(2, 3, 4)
    mask = torch.tensor([[True, False, True], [False, True, False]])
    expected = np.stack([(hidden[0, 0] + hidden[0, 2]).numpy() / 2, hidden[1, 1].numpy()])
    np.testing.assert_allclose(user_mean(hidden, mask).numpy(), expected)


@pytest.mark.parametrize("bad", [0, -1])
def test_prefix_length_must_be_positive(bad):
    from fairrec_ray.errors import ConfigError

    model, _ = tiny_p5()
    with pytest.raises(ConfigError, match="prefix_length"):
        build_cfp_model(model, PromptConfig(prefix_length=bad))
