"""CFP: counterfactually-fair prefix prompts for a frozen P5 (UP5, arXiv 2305.12090).

The model-side names load lazily, so importing ``fairrec_ray.cfp.config`` (a CLI's ``--help``, a
sweep's validation) does not import torch, transformers or peft.
"""

from __future__ import annotations

import importlib
from typing import Any

from fairrec_ray.deps import check

check(("transformers", "peft"))  # hooked here (attention interface, prefix FFN): refuse untested releases

_LAZY = {
    "CFPModel": "fairrec_ray.cfp.model",
    "attach_prompt": "fairrec_ray.cfp.model",
    "build_cfp_model": "fairrec_ray.cfp.model",
    "load_fair_model": "fairrec_ray.cfp.model",
    "PromptConfig": "fairrec_ray.cfp.config",
}
__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'fairrec_ray.cfp' has no attribute {name!r}")
    return getattr(importlib.import_module(_LAZY[name]), name)
