"""Serving fair recommendations: a bundle folder (``bundle.py``), request validation
(``requests.py``), the batched core shared by ``fairrec_ray.recommend`` and the server
(``recommender.py``) and the Ray Serve application (``app.py``; ``python -m fairrec_ray.serve``).

Importing this package imports neither Ray nor torch.
"""
