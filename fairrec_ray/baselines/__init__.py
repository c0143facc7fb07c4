"""Classic (non-foundation-model) fairness baselines evaluated with CFP's protocol."""
