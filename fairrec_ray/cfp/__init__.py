"""CFP: counterfactually-fair prefix prompts for a frozen P5 (UP5, arXiv 2305.12090)."""

from fairrec_ray.cfp.model import CFPModel, PromptConfig, attach_prompt, build_cfp_model, load_fair_model

__all__ = ["CFPModel", "PromptConfig", "attach_prompt", "build_cfp_model", "load_fair_model"]
