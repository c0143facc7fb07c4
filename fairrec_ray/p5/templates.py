"""P5 prompt templates, keeping the paper's ids (Geng et al. 2022, "Recommendation as Language
Processing"): the sequential family ``2-x`` and the direct family ``5-x``.

Wording follows the paper's templates with "purchase" replaced by "interaction" (the UP5 code does
the same for MovieLens). Placeholders: ``{user}`` (rendered ``user_23``, or ``<user_23>`` with
independent user ids), ``{history}`` (item ids joined by `` , ``), ``{item}`` (one item id),
``{candidates}`` (item ids joined by `` , ``). Targets are an item id, ``yes`` / ``no``, or (the
*history* family) a list of item ids joined by `` , ``.

Which templates are used where (see ``examples.py``):

- training (multitask): sequential ``TRAIN_SEQUENTIAL`` (next item given the history) and direct
  ``TRAIN_DIRECT`` (pick the positive from a candidate list; yes/no on a single item); with a
  family mix (``ExampleConfig.prompts_per_user``) also UP5's *user-only* families, whose only input
  about the user is the id: ``TRAIN_HISTORY`` (2-14/2-17/2-18: generate items of the user's
  training sequence), ``TRAIN_YES_NO`` (5-1…5-4) and ``TRAIN_CHOICE`` (5-5…5-8). UP5 (Hua et al.
  2023) trains its MovieLens backbone on these; answering them forces the user-id tokens to store
  the user's taste;
- evaluation (valid/test): ``EVAL_TEMPLATE`` = ``2-1``, history = every interaction before the
  held-out item (last 20), target = the held-out item.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Family = Literal["sequential", "history", "direct"]
Target = Literal["item", "yes_no", "items"]


@dataclass(frozen=True)
class Template:
    id: str
    family: Family
    source: str
    target: Target = "item"
    needs: tuple[str, ...] = ()  # extra placeholders beyond {user}

    def render(self, **fields: str) -> str:
        return self.source.format(**fields)


def _t(tid: str, family: Family, source: str, target: Target = "item") -> Template:
    needs = tuple(n for n in ("history", "item", "candidates") if "{" + n + "}" in source)
    return Template(tid, family, source, target, needs)


TEMPLATES: dict[str, Template] = {
    t.id: t
    for t in (
        # ---- sequential (2-x): next item from the interaction history
        _t("2-1", "sequential", "Given the following interaction history of {user} : {history} predict next possible item to be interacted by the user ?"),  # noqa: E501
        _t("2-2", "sequential", "I find the interaction history list of {user} : {history} I wonder what is the next item to recommend to the user . Can you help me decide ?"),  # noqa: E501
        _t("2-3", "sequential", "Here is the interaction history list of {user} : {history} try to recommend next item to the user"),  # noqa: E501
        _t("2-4", "sequential", "Given the following interaction history of {user} : {history} predict next possible item for the user"),  # noqa: E501
        _t("2-5", "sequential", "Based on the interaction history of {user} : {history} Can you decide the next item likely to be interacted by the user ?"),  # noqa: E501
        _t("2-6", "sequential", "Here is the interaction history of {user} : {history} What to recommend next for the user ?"),  # noqa: E501
        _t("2-7", "sequential", "Here is the interaction history of {user} : {history} Select the next possible item likely to be interacted by the user from the following candidates : {candidates}"),  # noqa: E501
        _t("2-8", "sequential", "Given the following interaction history of {user} : {history} What to recommend next for the user? Select one from the following items : {candidates}"),  # noqa: E501
        # ---- user-only history (UP5's 2-14/2-17/2-18): items of the user's training sequence
        _t("2-14", "history", "What is the interaction history of {user} ?", "items"),
        _t("2-17", "history", "List some items that {user} has interacted with .", "items"),
        _t("2-18", "history", "Which items has {user} interacted with before ?", "items"),
        _t("2-13", "sequential", "According to the interaction history of {user} : {history} Can you recommend the next possible item to the user ?"),  # noqa: E501
        # ---- direct (5-x): candidate selection and yes/no
        _t("5-1", "direct", "Will {user} likely to interact with item_{item} ?", "yes_no"),
        _t("5-2", "direct", "Shall we recommend item_{item} to {user} ?", "yes_no"),
        _t("5-3", "direct", "Do you think {user} will interact with item_{item} ?", "yes_no"),
        _t("5-4", "direct", "I would like to recommend some items for {user} . Is the following item a good choice ? {item}", "yes_no"),  # noqa: E501
        _t("5-5", "direct", "Which item of the following to recommend for {user} ? {candidates}"),
        _t("5-6", "direct", "Choose the best item from the candidates to recommend for {user} ? {candidates}"),
        _t("5-7", "direct", "Pick the most suitable item from the following list and recommend to {user} : {candidates}"),  # noqa: E501
        _t("5-8", "direct", "We want to make recommendation for {user} . Select the best item from these candidates : {candidates}"),  # noqa: E501
    )
}  # fmt: skip

# 2-13 is the paper's held-out (zero-shot) template: never trained on. 2-7/2-8 (history *and* a
# candidate list) are left out of the default mix: in a batch every prompt is padded to the longest,
# so on CPU they roughly double the cost of all sequential prompts (pass them explicitly if wanted).
TRAIN_SEQUENTIAL: tuple[str, ...] = ("2-1", "2-2", "2-3", "2-4", "2-5", "2-6")
TRAIN_DIRECT: tuple[str, ...] = ("5-1", "5-2", "5-4", "5-5", "5-6", "5-7", "5-8")
# The family mix (``ExampleConfig.prompts_per_user > 0``): one template tuple per family.
TRAIN_HISTORY: tuple[str, ...] = ("2-14", "2-17", "2-18")
TRAIN_YES_NO: tuple[str, ...] = ("5-1", "5-2", "5-3", "5-4")
TRAIN_CHOICE: tuple[str, ...] = ("5-5", "5-6", "5-7", "5-8")
EVAL_TEMPLATE = "2-1"
YES, NO = "yes", "no"


def template_words(templates: dict[str, Template] | None = None) -> list[str]:
    """Every literal word of the templates (placeholders removed), plus the target words; the
    tokenizer's word vocabulary."""
    words: set[str] = {YES, NO, ",", "user_", "item_"}
    for t in (templates or TEMPLATES).values():
        for word in t.source.split():
            if "{" in word:
                prefix = word.split("{", 1)[0]
                if prefix:
                    words.add(prefix)
            else:
                words.add(word)
    return sorted(words)
