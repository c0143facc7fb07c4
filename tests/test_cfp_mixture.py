"""Prompt Mixture on a tiny, untrained P5 (no Ray): a one-attribute subset reproduces that prompt
exactly, the mixer is a proper attention over the subset, and only the mixers train."""

from __future__ import annotations

import pytest
import torch
from test_cfp_prefix import batch, tiny_p5

from fairrec_ray.cfp import attach_prompt, build_cfp_model
from fairrec_ray.cfp.config import PromptConfig
from fairrec_ray.cfp.mixture import PromptMixer, build_mixture_model
from fairrec_ray.errors import ConfigError

ATTRS = ("gender", "age")


def test_mixer_weights_live_on_the_subset_and_a_single_prompt_passes_through():
    torch.manual_seed(0)
    mixer = PromptMixer(dim=6, hidden=4)
    torch.nn.init.normal_(mixer.score.weight)
    prompts = torch.randn(3, 5, 6)
    mixed, weights = mixer(prompts, torch.tensor([True, False, True]))
    torch.testing.assert_close(weights.sum(-1), torch.ones(5))
    assert torch.all(weights[:, 1] == 0)
    torch.testing.assert_close(mixed, torch.einsum("pk,kpd->pd", weights, prompts))
    alone, _ = mixer(prompts, torch.tensor([False, True, False]))
    assert torch.equal(alone, prompts[1])
    fresh = PromptMixer(dim=6, hidden=4)  # zero score: the plain average of the subset
    torch.testing.assert_close(fresh(prompts, torch.tensor([True, True, False]))[0], prompts[:2].mean(0))
    with pytest.raises(ConfigError, match="subset is empty"):
        mixer(prompts, torch.zeros(3, dtype=torch.bool))


@pytest.fixture(scope="module")
def saved_prompts(tmp_path_factory):
    """Two differently initialised attribute prompts on the same frozen backbone, saved."""
    root = tmp_path_factory.mktemp("prompts")
    model, tok = tiny_p5()
    frozen = {k: v.clone() for k, v in model.state_dict().items()}
    dirs = {}
    for seed, attribute in enumerate(ATTRS):
        backbone, _ = tiny_p5()
        backbone.load_state_dict(frozen)
        torch.manual_seed(100 + seed)
        cfp = build_cfp_model(backbone, PromptConfig(prefix_length=3, ffn_hidden=16))
        cfp.save_prompt(root / attribute, {"attribute": attribute})
        dirs[attribute] = root / attribute
    return frozen, tok, dirs


def _fresh_backbone(frozen):
    model, _ = tiny_p5()
    model.load_state_dict(frozen)
    return model


def test_one_attribute_subset_reproduces_that_prompt_on_both_sides(saved_prompts):
    frozen, tok, dirs = saved_prompts
    b = batch(tok)
    args = (b["input_ids"], b["attention_mask"], b["labels"], b["user_token_mask"])
    mixture = build_mixture_model(_fresh_backbone(frozen), dirs).eval()
    outputs = {}
    with torch.no_grad():
        for attribute in ATTRS:
            mixture.set_subset([attribute])
            single = attach_prompt(_fresh_backbone(frozen), dirs[attribute])
            (l_mix, r_mix), (l_one, r_one) = mixture(*args), single(*args)
            torch.testing.assert_close(r_mix, r_one)  # encoder side (the user representation)
            torch.testing.assert_close(l_mix, l_one)  # decoder side too (the loss reads both)
            outputs[attribute] = r_mix
        mixture.set_subset(list(ATTRS))
        both = mixture(*args)[1]
    assert not torch.allclose(outputs["gender"], outputs["age"])
    assert not torch.allclose(both, outputs["gender"]) and not torch.allclose(both, outputs["age"])
    with pytest.raises(ConfigError, match="expected a non-empty subset"):
        mixture.set_subset(["occupation"])


def test_only_the_mixers_train(saved_prompts):
    frozen, tok, dirs = saved_prompts
    b = batch(tok)
    mixture = build_mixture_model(_fresh_backbone(frozen), dirs)
    trainable = {n for n, p in mixture.named_parameters() if p.requires_grad}
    assert trainable and all(".mixer." in n for n in trainable), sorted(trainable)
    before = {n: p.detach().clone() for n, p in mixture.named_parameters()}
    opt = torch.optim.SGD(mixture.prompt_parameters(), lr=0.5)
    mixture.set_subset(list(ATTRS))
    loss, rep = mixture(b["input_ids"], b["attention_mask"], b["labels"], b["user_token_mask"])
    (loss + rep.pow(2).mean()).backward()
    opt.step()
    changed = {n for n, p in mixture.named_parameters() if not torch.equal(p, before[n])}
    assert changed and changed <= trainable
    assert any(n.startswith("encoder_prefix.mixer") for n in changed)
    assert any(n.startswith("decoder_prefix.mixer") for n in changed)  # the decoder mixer got a gradient too
