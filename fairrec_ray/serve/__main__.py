"""``python -m fairrec_ray.serve --model BUNDLE [--port 8000] [--replicas 1] [--max-batch-size 32] …``

Runs the fair-recommendation Ray Serve app (``fairrec_ray/serve/app.py``) on a local Ray (or the
cluster at ``--address`` / ``RAY_ADDRESS``) until interrupted: ``POST /recommend``,
``GET /attributes``, ``GET /healthz``. For a cluster, ``serve deploy cluster/serve.yaml`` runs the
same application from a config.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from fairrec_ray.cli import ArgumentParser, run_main


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="python -m fairrec_ray.serve", description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="serving bundle folder")
    parser.add_argument("--host", default="127.0.0.1", help="HTTP host (0.0.0.0: every interface)")
    parser.add_argument("--port", type=int, default=8000, help="HTTP port")
    parser.add_argument("--route-prefix", default="/", help="URL prefix of the app")
    parser.add_argument("--replicas", type=int, default=1, help="replicas of the recommender")
    parser.add_argument("--max-batch-size", type=int, default=32, help="requests per @serve.batch call")
    parser.add_argument("--batch-wait-ms", type=float, default=5.0, help="how long a batch waits to fill")
    parser.add_argument("--num-beams", type=int, default=20, help="beams per user (the largest k)")
    parser.add_argument("--num-cpus", type=float, default=1.0, help="CPUs per replica")
    parser.add_argument("--num-gpus", type=float, default=0.0, help="GPUs per replica (the model then runs on cuda)")
    parser.add_argument("--torch-threads", type=int, default=0, help="torch threads per replica (0: torch's default)")
    parser.add_argument("--address", default=None, help="Ray address (default: RAY_ADDRESS or a local Ray)")
    parser.add_argument("--name", default="fairrec", help="Serve application name")
    return parser


def main(argv: Sequence[str]) -> int:
    args = build_parser().parse_args(argv)
    from fairrec_ray.errors import ConfigError
    from fairrec_ray.serve.bundle import open_bundle

    if args.replicas < 1 or args.num_beams < 1 or args.max_batch_size < 1:
        raise ConfigError("--replicas/--num-beams/--max-batch-size: must be >= 1")
    bundle = open_bundle(args.model)  # one line, before Ray starts, when the parts do not fit
    from ray import serve

    from fairrec_ray.cli import init_ray
    from fairrec_ray.serve.app import build_app

    init_ray(args.address)
    serve.start(http_options={"host": args.host, "port": args.port})
    app = build_app(
        {
            "bundle": str(bundle.root),
            "max_batch_size": args.max_batch_size,
            "batch_wait_timeout_s": args.batch_wait_ms / 1000,
            "num_beams": args.num_beams,
            "torch_threads": args.torch_threads,
            "device": "cuda" if args.num_gpus > 0 else "cpu",
            "num_replicas": args.replicas,
            "num_cpus": args.num_cpus,
            "num_gpus": args.num_gpus,
        }
    )
    serve.run(app, name=args.name, route_prefix=args.route_prefix, blocking=False)
    base = f"http://{args.host}:{args.port}{args.route_prefix.rstrip('/')}"
    print(
        f"serving {bundle.root} at {base}/recommend (attributes: {', '.join(bundle.attributes) or 'none'})", flush=True
    )
    try:
        while True:
            time.sleep(3600)
    finally:
        serve.delete(args.name)
    return 0


if __name__ == "__main__":
    run_main(main)
