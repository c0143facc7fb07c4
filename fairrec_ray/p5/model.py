"""P5 = a T5 encoder-decoder whose encoder input embedding adds P5's *whole-word embeddings*.

Whole-word ids are derived inside the model from ``input_ids``: a persistent buffer
``word_start[vocab]`` flags tokens that begin a word, ``whole_word_ids = cumsum(word_start[ids])``
over the sequence (capped at ``p5_max_words - 1``; pad and eos get 0, as in the P5 code). The
module is installed as the encoder's ``embed_tokens``, so ``model(input_ids=…)``,
``model.generate(input_ids=…)``, ``model.get_encoder()(input_ids=…)`` and PEFT wrappers all apply
them with no extra argument (the original P5 code forgot them at generation time). The decoder
is a plain T5 decoder. Token embeddings stay tied (``shared`` = encoder = decoder = lm_head).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import T5Config, T5ForConditionalGeneration

from fairrec_ray.errors import ConfigError
from fairrec_ray.p5.tokenizer import P5Tokenizer

PRESETS: dict[str, dict[str, Any]] = {
    # CPU: tests and the default run (~1.5M parameters with the ML-100K vocabulary; the encoder
    # reads ~60-token prompts, so its size sets the CPU throughput).
    "tiny": dict(d_model=128, d_kv=32, d_ff=512, num_layers=3, num_decoder_layers=3, num_heads=4),
    # t5-small dimensions (~35M parameters without the 32k T5 vocabulary), GPU.
    "small": dict(d_model=512, d_kv=64, d_ff=2048, num_layers=6, num_decoder_layers=6, num_heads=8),
}
DEFAULT_MAX_WORDS = 512  # the P5 code's whole-word embedding table size


class WholeWordEmbedding(nn.Module):
    """Token embedding (shared with the decoder) + whole-word embedding indexed by word position."""

    def __init__(self, token: nn.Embedding, max_words: int, pad_id: int, eos_id: int):
        super().__init__()
        # The token table is the *same Parameter* as ``shared.weight``; keeping the name ``weight``
        # keeps T5's tied-weight keys (``encoder.embed_tokens.weight``) valid for save/load.
        self.weight = token.weight
        self.whole_word = nn.Embedding(max_words, token.embedding_dim)
        self.register_buffer("word_start", torch.zeros(token.num_embeddings, dtype=torch.long), persistent=True)
        self.pad_id, self.eos_id = pad_id, eos_id

    @property
    def num_embeddings(self) -> int:
        return self.weight.shape[0]

    @property
    def embedding_dim(self) -> int:
        return self.weight.shape[1]

    def whole_word_ids(self, input_ids: torch.Tensor) -> torch.Tensor:
        starts = self.word_start[input_ids]
        ids = torch.cumsum(starts, dim=-1)
        special = (input_ids == self.pad_id) | (input_ids == self.eos_id)
        return ids.masked_fill(special, 0).clamp_(max=self.whole_word.num_embeddings - 1)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return nn.functional.embedding(input_ids, self.weight) + self.whole_word(self.whole_word_ids(input_ids))


class P5Model(T5ForConditionalGeneration):
    """T5ForConditionalGeneration with whole-word embeddings on the encoder input."""

    def __init__(self, config: T5Config):
        super().__init__(config)
        max_words = getattr(config, "p5_max_words", DEFAULT_MAX_WORDS)
        self.encoder.embed_tokens = WholeWordEmbedding(self.shared, max_words, config.pad_token_id, config.eos_token_id)
        nn.init.normal_(self.encoder.embed_tokens.whole_word.weight, std=config.initializer_factor)
        self.post_init()

    def set_input_embeddings(self, new_embeddings: nn.Embedding) -> None:
        self.shared = new_embeddings
        self.encoder.embed_tokens.weight = new_embeddings.weight
        self.decoder.set_input_embeddings(new_embeddings)

    def set_word_starts(self, flags: torch.Tensor | Any) -> None:
        flags = torch.as_tensor(flags, dtype=torch.long)
        buf = self.encoder.embed_tokens.word_start
        if flags.numel() > buf.numel():
            raise ConfigError(f"tokenizer has {flags.numel()} tokens but the model's vocabulary is {buf.numel()}")
        buf.zero_()
        buf[: flags.numel()] = flags.to(buf.device)


def preset_config(preset: str, vocab_size: int, **overrides: Any) -> T5Config:
    if preset not in PRESETS:
        raise ConfigError(f"preset: got {preset!r}; expected one of {sorted(PRESETS)}")
    kwargs = dict(PRESETS[preset], **overrides)
    return T5Config(
        vocab_size=vocab_size, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0,
        dropout_rate=0.1, feed_forward_proj="relu", p5_max_words=DEFAULT_MAX_WORDS, **kwargs,
    )  # fmt: skip


def build_p5(preset: str, tokenizer: P5Tokenizer, seed: int | None = None) -> P5Model:
    """A freshly initialised P5 of ``preset`` size for ``tokenizer``'s vocabulary."""
    if tokenizer.pad_id != 0 or tokenizer.eos_id != 1:
        raise ConfigError("build_p5: tokenizer must use pad=0 and eos=1 (T5 convention)")
    if seed is not None:
        torch.manual_seed(seed)
    model = P5Model(preset_config(preset, tokenizer.vocab_size))
    model.set_word_starts(tokenizer.word_start_flags())
    return model


def unwrap(model: nn.Module) -> nn.Module:
    return model.module if hasattr(model, "module") and isinstance(model.module, nn.Module) else model


def save_p5(model: nn.Module, tokenizer: P5Tokenizer, directory: str | Path) -> Path:
    """HF format (config.json + model.safetensors) plus the tokenizer files, in one folder."""
    directory = Path(directory)
    model = unwrap(model)
    model.config.architectures = ["P5Model"]
    model.save_pretrained(directory)
    tokenizer.save(directory)
    return directory


def load_p5(directory: str | Path, n_items: int | None = None) -> tuple[P5Model, P5Tokenizer]:
    """Load a saved P5 folder, or any local HF T5 checkpoint folder with a ``tokenizer.json``
    (its whole-word table starts untrained). Nothing is downloaded."""
    directory = Path(directory)
    if not (directory / "config.json").is_file():
        raise ConfigError(f"{directory}: not a model folder (no config.json)")
    tokenizer = P5Tokenizer.load(directory, n_items=n_items)
    model = P5Model.from_pretrained(directory, local_files_only=True)
    if tokenizer.vocab_size > model.config.vocab_size:
        model.resize_token_embeddings(tokenizer.vocab_size)
    model.set_word_starts(tokenizer.word_start_flags())  # the tokenizer is the source of truth
    model.eval()
    return model, tokenizer
