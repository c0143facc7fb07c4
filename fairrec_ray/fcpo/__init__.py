"""FCPO: fairness-constrained policy optimisation (Ge et al., WSDM 2021) with CPO on Ray RLlib."""
