"""One page answering "what did fairness cost, on both sides?" for a set of run folders:
``python -m fairrec_ray.report RUN_OR_SWEEP_DIR... --output DIR`` (``collect.py`` reads the runs,
``tables.py`` builds the figures and tables, ``page.py`` writes HTML + markdown)."""
