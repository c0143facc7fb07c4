"""Offline P5 tokenizer: a HF ``tokenizers`` WordPiece model built from the templates and the id
ranges of the data, saved beside the model. Nothing is downloaded.

Ids are written as numbers (``user_23``, ``1234``) and split into sub-tokens of at most two digits
(``user_`` ``##23``; ``12`` ``##34``), as SentencePiece splits numbers in P5. Whole-word
embeddings then tell the model which sub-tokens form one id: ``word_start_flags()`` marks tokens
that begin a word (no ``##`` continuation prefix; for a wrapped SentencePiece/T5 ``tokenizer.json``
the ``▁`` marker). Items are printed with a number from ``item_numbers`` (``item_idx`` -> number,
default ``item_idx + 1``); ``indexing.py`` computes P5's sequential and a collaborative numbering.

*Independent* user ids (``user_tokens=True``) print user ``u`` as ``<user_{u+1}>`` and add each of
them to the vocabulary as one whole word, so every user has an embedding row of their own (to
memorise the user's taste into) instead of sharing digit pieces with other users.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors

from fairrec_ray.errors import ConfigError
from fairrec_ray.p5.templates import TEMPLATES, Template, template_words

PAD, EOS, UNK = "<pad>", "</s>", "<unk>"
CONT = "##"  # WordPiece continuation prefix
META = "\u2581"  # SentencePiece word-start marker
TOKENIZER_FILE = "tokenizer.json"
P5_FILE = "p5_tokenizer.json"


class P5Tokenizer:
    """Wraps a ``tokenizers.Tokenizer`` (pad=0, eos=1 as in T5) with P5's id rendering."""

    def __init__(
        self,
        tokenizer: Tokenizer,
        item_numbers: np.ndarray,
        style: str = "wordpiece",
        user_numbers: np.ndarray | None = None,
        user_tokens: bool = False,
    ):
        if style not in ("wordpiece", "metaspace"):
            raise ConfigError(f"tokenizer style: got {style!r}; expected 'wordpiece' or 'metaspace'")
        self.tokenizer = tokenizer
        self.item_numbers = np.asarray(item_numbers, dtype=np.int64)
        # None: ``user_idx + 1`` (P5); else the number of each user_idx (collaborative user ids)
        self.user_numbers = None if user_numbers is None else np.asarray(user_numbers, dtype=np.int64)
        self.user_tokens = user_tokens  # True: independent ids, one ``<user_N>`` token per user
        self.style = style
        self.pad_id = self._require(PAD)
        self.eos_id = self._require(EOS)
        self._item_tokens: list[tuple[int, ...]] | None = None

    def _require(self, token: str) -> int:
        idx = self.tokenizer.token_to_id(token)
        if idx is None:
            raise ConfigError(f"tokenizer: special token {token!r} missing from the vocabulary")
        return idx

    # ------------------------------------------------------------------ ids as text
    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size()

    @property
    def n_items(self) -> int:
        return len(self.item_numbers)

    def user_text(self, user_idx: int) -> str:
        number = int(user_idx) + 1 if self.user_numbers is None else int(self.user_numbers[user_idx])
        return user_token(number) if self.user_tokens else f"user_{number}"

    def item_text(self, item_idx: int) -> str:
        return str(int(self.item_numbers[item_idx]))

    def items_text(self, items: Iterable[int]) -> str:
        return " , ".join(self.item_text(i) for i in items)

    # ------------------------------------------------------------------ encode / decode
    def encode_batch(self, texts: Sequence[str], add_eos: bool = True) -> list[list[int]]:
        encs = self.tokenizer.encode_batch(list(texts), add_special_tokens=add_eos)
        return [e.ids for e in encs]

    def encode(self, text: str, add_eos: bool = True) -> list[int]:
        return self.encode_batch([text], add_eos)[0]

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        return self.tokenizer.decode([int(i) for i in ids], skip_special_tokens=skip_special_tokens)

    def tokens(self, text: str) -> list[str]:
        return self.tokenizer.encode(text, add_special_tokens=False).tokens

    def word_start_flags(self) -> np.ndarray:
        """``flags[t]`` is True when token ``t`` begins a word (specials are not words)."""
        flags = np.zeros(self.vocab_size, dtype=bool)
        for token, idx in self.tokenizer.get_vocab().items():
            if token in (PAD, EOS):
                continue
            flags[idx] = not token.startswith(CONT) if self.style == "wordpiece" else token.startswith(META)
        return flags

    # ------------------------------------------------------------------ item <-> tokens (the trie)
    def item_token_ids(self) -> list[tuple[int, ...]]:
        """Token ids of every item's id (no eos), indexed by ``item_idx``; cached."""
        if self._item_tokens is None:
            texts = [self.item_text(i) for i in range(self.n_items)]
            self._item_tokens = [tuple(ids) for ids in self.encode_batch(texts, add_eos=False)]
        return self._item_tokens

    def item_lookup(self) -> dict[tuple[int, ...], int]:
        """Token-id sequence (without eos) -> ``item_idx``."""
        return {toks: i for i, toks in enumerate(self.item_token_ids())}

    # ------------------------------------------------------------------ persistence
    def save(self, directory: str | Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.tokenizer.save(str(directory / TOKENIZER_FILE))
        meta = {"style": self.style, "item_numbers": self.item_numbers.tolist()}
        if self.user_numbers is not None:
            meta["user_numbers"] = self.user_numbers.tolist()
        if self.user_tokens:
            meta["user_tokens"] = True
        (directory / P5_FILE).write_text(json.dumps(meta))

    @classmethod
    def load(cls, directory: str | Path, n_items: int | None = None) -> P5Tokenizer:
        """Load a saved P5 tokenizer, or wrap a plain HF T5 ``tokenizer.json`` (SentencePiece
        style, items numbered ``item_idx + 1``; then ``n_items`` is required)."""
        directory = Path(directory)
        path = directory / TOKENIZER_FILE
        if not path.is_file():
            raise ConfigError(f"{directory}: no {TOKENIZER_FILE} (a P5/T5 checkpoint folder needs one)")
        tokenizer = Tokenizer.from_file(str(path))
        meta_path = directory / P5_FILE
        if meta_path.is_file():
            meta = json.loads(meta_path.read_text())
            users = meta.get("user_numbers")
            users = None if users is None else np.asarray(users)
            return cls(
                tokenizer, np.asarray(meta["item_numbers"]), meta["style"], users, meta.get("user_tokens", False)
            )
        if n_items is None:
            raise ConfigError(f"{directory}: plain T5 tokenizer (no {P5_FILE}); the item count is needed")
        return cls(tokenizer, np.arange(1, n_items + 1), "metaspace")

    def with_items(self, item_numbers: np.ndarray) -> P5Tokenizer:
        return P5Tokenizer(self.tokenizer, item_numbers, self.style, self.user_numbers, self.user_tokens)


def user_token(number: int) -> str:
    """The whole-word vocabulary entry of an independent user id."""
    return f"<user_{number}>"


def _digit_pieces(max_number: int) -> list[str]:
    pieces = [str(d) for d in range(10)] + [f"{d:02d}" for d in range(10, 100)]
    cont = [CONT + str(d) for d in range(10)] + [CONT + f"{d:02d}" for d in range(100)]
    del max_number  # every number is covered by 1-2 digit pieces
    return pieces + cont


def build_tokenizer(
    n_users: int,
    n_items: int,
    templates: dict[str, Template] | None = None,
    item_numbers: np.ndarray | None = None,
    user_numbers: np.ndarray | None = None,
    user_tokens: bool = False,
) -> P5Tokenizer:
    """Vocabulary = specials, template words, ``user_``/``item_`` and 1-2 digit pieces (word-initial
    and ``##`` continuations); with ``user_tokens`` (independent user ids) also one whole-word
    ``<user_N>`` per user. ``item_numbers`` defaults to ``item_idx + 1``."""
    if n_users < 1 or n_items < 1:
        raise ConfigError(f"build_tokenizer: need n_users >= 1 and n_items >= 1, got {n_users}, {n_items}")
    words = [w for w in template_words(templates or TEMPLATES) if w not in (PAD, EOS, UNK)]
    vocab_list = [PAD, EOS, UNK] + words
    seen = set(vocab_list)
    vocab_list += [p for p in _digit_pieces(max(n_users, n_items)) if p not in seen]
    if user_tokens:
        if user_numbers is not None:
            raise ConfigError("build_tokenizer: independent user tokens number users user_idx + 1; drop user_numbers")
        vocab_list += [user_token(u + 1) for u in range(n_users)]
    vocab = {tok: i for i, tok in enumerate(vocab_list)}
    tok = Tokenizer(models.WordPiece(vocab, unk_token=UNK, continuing_subword_prefix=CONT, max_input_chars_per_word=64))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.post_processor = processors.TemplateProcessing(single=f"$A {EOS}", special_tokens=[(EOS, vocab[EOS])])
    tok.decoder = decoders.WordPiece(prefix=CONT, cleanup=False)
    tok.add_special_tokens([PAD, EOS, UNK])
    numbers = np.arange(1, n_items + 1) if item_numbers is None else np.asarray(item_numbers)
    if len(numbers) != n_items:
        raise ConfigError(f"build_tokenizer: item_numbers has {len(numbers)} entries, expected {n_items}")
    if user_numbers is not None and len(user_numbers) != n_users:
        raise ConfigError(f"build_tokenizer: user_numbers has {len(user_numbers)} entries, expected {n_users}")
    return P5Tokenizer(tok, numbers, "wordpiece", user_numbers, user_tokens)
