"""The Ray Serve application: ``POST /recommend``, ``GET /attributes``, ``GET /healthz``.

Each request is validated on arrival (``requests.py``, ``Recommender.resolve``: a 4xx with a JSON
``{"error": ..., "status": ...}``, never a traceback); valid ones go through ``@serve.batch``, so
requests that arrive together, for any users, are answered by one call of
``Recommender.recommend`` (one beam search per fairness subset in the batch). The beam search runs
in a worker thread, so the replica keeps accepting and queueing requests meanwhile.

``build_app(args)`` is the application builder of ``serve deploy`` (``cluster/serve.yaml``) and of
``python -m fairrec_ray.serve``.
"""

import asyncio
import logging
from dataclasses import dataclass, fields
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from ray import serve

from fairrec_ray.errors import ConfigError
from fairrec_ray.serve.bundle import open_bundle
from fairrec_ray.serve.recommender import Query, Recommender, ServeOptions
from fairrec_ray.serve.requests import BadRequest, Limits, parse_body

log = logging.getLogger(__name__)
DEPLOYMENT = "FairRecommender"

api = FastAPI(title="fairrec_ray", docs_url=None, redoc_url=None, openapi_url=None)


@dataclass(frozen=True)
class AppArgs:
    """What the application builder takes (``args:`` in the Serve config)."""

    bundle: str
    max_batch_size: int = 32
    batch_wait_timeout_s: float = 0.005
    num_beams: int = 20
    max_history: int = 20
    torch_threads: int = 0
    device: str = "auto"
    verify: bool = True
    num_replicas: int | None = None  # None: the config's (autoscaling) or 1
    num_cpus: float | None = None
    num_gpus: float | None = None

    def __post_init__(self) -> None:
        if self.max_batch_size < 1:
            raise ConfigError(f"max_batch_size: got {self.max_batch_size}; expected >= 1")
        if self.batch_wait_timeout_s < 0:
            raise ConfigError(f"batch_wait_timeout_s: got {self.batch_wait_timeout_s}; expected >= 0")

    @classmethod
    def from_dict(cls, args: dict[str, Any]) -> "AppArgs":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(args) - known)
        if unknown:
            raise ConfigError(f"serve args: unknown {unknown}; expected some of {sorted(known)}")
        if "bundle" not in args:
            raise ConfigError("serve args: 'bundle' (the bundle folder) is required")
        return cls(**args)

    def options(self) -> ServeOptions:
        return ServeOptions(
            num_beams=self.num_beams,
            max_history=self.max_history,
            max_batch=max(self.max_batch_size, 1),
            torch_threads=self.torch_threads,
            device=self.device,
            verify=self.verify,
            limits=Limits(max_k=self.num_beams, default_k=min(10, self.num_beams)),
        )


def _error(exc: BadRequest) -> JSONResponse:
    return JSONResponse(exc.payload(), status_code=exc.status)


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, refused (413) as soon as it passes ``limit`` bytes (declared or streamed)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BadRequest(413, f"body: {declared} bytes; at most {limit}")
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > limit:
            raise BadRequest(413, f"body: more than {limit} bytes")
    return bytes(body)


@serve.deployment(name=DEPLOYMENT, max_ongoing_requests=128)
@serve.ingress(api)
class FairRecommender:
    def __init__(self, args: AppArgs) -> None:
        self.args = args
        self.core = Recommender(args.bundle, args.options())
        self.limits = self.core.options.limits
        self._batched.set_max_batch_size(args.max_batch_size)
        self._batched.set_batch_wait_timeout_s(args.batch_wait_timeout_s)
        self.stats = {"requests": 0, "batches": 0, "largest_batch": 0}  # this replica's, since it started

    @api.get("/healthz")
    async def healthz(self) -> dict[str, Any]:
        import resource

        return {
            "status": "ok",
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),  # Linux: KiB
            "device": str(self.core.device),
            "max_batch_size": self.args.max_batch_size,
            **self.stats,
        }

    @api.get("/attributes")
    async def attributes(self) -> dict[str, Any]:
        return self.core.describe()

    @api.post("/recommend")
    async def recommend(self, request: Request) -> JSONResponse:
        try:
            body = await _read_body(request, self.limits.max_body_bytes)
            query = self.core.resolve(parse_body(body, self.limits))
        except BadRequest as exc:
            return _error(exc)
        try:
            answer = await self._batched(query)
        except Exception:  # a bug, not the client's fault: logged here, one line to the client
            log.exception("recommend failed")
            return JSONResponse({"error": "internal error (see the replica's log)", "status": 500}, status_code=500)
        return JSONResponse(answer)

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.005)
    async def _batched(self, queries: list[Query]) -> list[dict[str, Any]]:
        self.stats["requests"] += len(queries)
        self.stats["batches"] += 1
        self.stats["largest_batch"] = max(self.stats["largest_batch"], len(queries))
        return await asyncio.to_thread(self.core.recommend, queries)


def build_app(args: dict[str, Any]) -> Any:
    """Application builder: ``args`` = ``AppArgs`` fields (``bundle`` required)."""
    parsed = AppArgs.from_dict(dict(args))
    open_bundle(parsed.bundle, verify=False)  # a wrong folder fails here, in one line, not in a replica
    options: dict[str, Any] = {}
    if parsed.num_replicas is not None:
        options["num_replicas"] = parsed.num_replicas
    actor: dict[str, Any] = {}
    if parsed.num_cpus is not None:
        actor["num_cpus"] = parsed.num_cpus
    if parsed.num_gpus is not None:
        actor["num_gpus"] = parsed.num_gpus
    if actor:
        options["ray_actor_options"] = actor
    deployment: Any = FairRecommender  # a serve Deployment (Ray's types are skipped by mypy)
    if options:
        deployment = deployment.options(**options)
    return deployment.bind(parsed)
