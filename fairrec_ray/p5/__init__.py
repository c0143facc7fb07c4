"""P5 backbone: prompts, offline tokenizer, T5 + whole-word embeddings, Ray Train pre-training and
trie-constrained beam-search evaluation."""

from fairrec_ray.p5.evaluate import evaluate_model, evaluate_scores
from fairrec_ray.p5.examples import ExampleConfig, P5Collator, PromptExample, eval_examples, train_examples
from fairrec_ray.p5.model import PRESETS, P5Model, build_p5, load_p5, save_p5
from fairrec_ray.p5.templates import EVAL_TEMPLATE, TEMPLATES, TRAIN_DIRECT, TRAIN_SEQUENTIAL
from fairrec_ray.p5.tokenizer import P5Tokenizer, build_tokenizer

__all__ = [
    "EVAL_TEMPLATE",
    "PRESETS",
    "TEMPLATES",
    "TRAIN_DIRECT",
    "TRAIN_SEQUENTIAL",
    "ExampleConfig",
    "P5Collator",
    "P5Model",
    "P5Tokenizer",
    "PromptExample",
    "build_p5",
    "build_tokenizer",
    "eval_examples",
    "evaluate_model",
    "evaluate_scores",
    "load_p5",
    "save_p5",
    "train_examples",
]
