"""``ray job submit`` of train_cfp with 2 Ray Train workers to a real two-node, token-authenticated
Ray cluster on this machine.

The cluster: a head (``ray start --head --block``) and a second node (``ray start --address
HEAD_GCS --block``), 1 CPU each (so the two workers must land on different nodes), each with its
own ``--temp-dir`` and working directory, each a child in its own process group that the test
terminates afterwards (never the Ray CLI's ``stop`` command: it kills every Ray process on the machine). The token
lives in ``HOME/.ray/auth_token`` of a throw-away HOME, with ``RAY_AUTH_MODE=token``.

Multi-node storage, made visible on one machine: the second node runs in its own mount namespace
where the driver's folder (backbone, dataset, dataset cache, output) is covered by an empty tmpfs,
as if it were another machine; only the Ray Train ``storage_path`` (and the code, Python and token)
is reachable from both nodes. The job succeeds only if the workers get the backbone and the data
from the driver (Ray's object store), as the README's "On a Ray cluster" says.

Checks: a client without the token gets the dashboard's exact refusal and creates no job; with the
token the job succeeds; ``results.json`` records this cluster's GCS address, a driver on the head
and one worker on each of the cluster's two nodes; checkpoints are in the shared storage path.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from cfp_fixtures import untrained_backbone
from data_fixtures import write_ml100k

from fairrec_ray.cfp.config import CFPConfig

REPO = Path(__file__).resolve().parents[1]
RAY = str(Path(sys.executable).with_name("ray"))
# The dashboard's answer to a request without a token (401; ray/_private/authentication/
# http_token_authentication.py), and the line `ray job submit` (Ray 2.60) prints for it: the
# client's format_authentication_http_error wraps it in an AuthenticationError (after a traceback),
# followed by a blank line and NO_TOKEN_DETAIL (the rest of that line is help text).
MISSING_TOKEN = "Unauthorized: Missing authentication token"
REFUSAL_LINE = f"ray.exceptions.AuthenticationError: Authentication required: {MISSING_TOKEN}"
NO_TOKEN_DETAIL = "Token authentication is enabled but no authentication token was found."


def free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def base_env(home: Path) -> dict[str, str]:
    """This environment minus any Ray settings, with its own HOME (so no one's real token)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env["HOME"] = str(home)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # the job's `python`
    return env


def tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as exc:
        return f"({exc})"


@dataclass
class Cluster:
    gcs: str  # host:port of the head's GCS
    dashboard: str  # http://host:port
    token: str
    home: Path  # HOME whose .ray/auth_token holds the token
    hidden: Path  # the driver's folder: invisible to the second node
    shared: Path  # visible to both nodes
    nodes: list[subprocess.Popen] = field(default_factory=list)  # head first
    node_dirs: list[Path] = field(default_factory=list)  # each node's working directory and logs

    def request(self, endpoint: str, token: str | None) -> tuple[int, str]:
        """(HTTP status, body) of a GET to the dashboard, with ``token`` as bearer token if any."""
        request = urllib.request.Request(self.dashboard + endpoint)
        if token is not None:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def get(self, endpoint: str) -> object:
        status, body = self.request(endpoint, self.token)
        if status != 200:
            raise OSError(f"GET {endpoint}: HTTP {status}: {body[:500]}")
        return json.loads(body)

    def alive_nodes(self) -> list[dict]:
        """The Ray state API's view of this cluster's live nodes."""
        answer = self.get("/api/v0/nodes?limit=100&detail=1")
        return [n for n in answer["data"]["result"]["result"] if n["state"] == "ALIVE"]

    def jobs(self) -> list[dict]:
        return self.get("/api/jobs/")

    def logs_tail(self) -> str:
        """``ray start``'s output and the newest Ray logs of each node (for failure messages)."""
        parts = []
        for name, folder in zip(("head", "node 2"), self.node_dirs):
            parts.append(f"--- {name}: ray start\n{tail(folder / 'ray-start.log')}")
            logs = folder / "ray" / "session_latest" / "logs"
            patterns = ("raylet.out", "gcs_server.out", "job-driver-*.log", "worker-*.err")
            files = sorted((p for pat in patterns for p in logs.glob(pat) if p.stat().st_size), key=os.path.getmtime)
            parts += [f"--- {name}: {p.name}\n{tail(p)}" for p in files[-6:]]
        return "\n".join(parts)[-20000:]


def mount_namespace_command() -> list[str]:
    """``unshare`` flags for a private mount namespace in which tmpfs may be mounted (root: a mount
    namespace; others: a user namespace too), or skip the test where neither is allowed."""
    flags = ["--mount"] if os.geteuid() == 0 else ["--user", "--map-root-user", "--mount"]
    with tempfile.TemporaryDirectory() as probe:
        ok = shutil.which("unshare") and (
            subprocess.run(
                ["unshare", *flags, "sh", "-c", 'mount -t tmpfs none "$0"', probe], capture_output=True
            ).returncode
            == 0
        )
    if not ok:
        pytest.skip("needs mount namespaces (unshare) to hide the driver's files from the second node")
    return ["unshare", *flags]


def start_node(command: list[str], folder: Path, env: dict[str, str]) -> subprocess.Popen:
    """A ``ray start --block`` child in its own process group, run from its own working directory."""
    folder.mkdir(parents=True, exist_ok=True)
    env = {**env, "RAY_TMPDIR": str(folder / "ray")}
    with open(folder / "ray-start.log", "wb") as out:
        return subprocess.Popen(
            command, cwd=folder, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def _terminate_group(proc: subprocess.Popen) -> None:
    """SIGTERM the node's process group (only ours), give Ray a few seconds, then SIGKILL leftovers
    (``ray start --block`` took > 30 s to wind down on SIGTERM; nothing of it needs to survive)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)
    deadline = time.time() + 3
    while time.time() < deadline:
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


def kill_leftovers(temp_root: Path, grace: float = 10) -> None:
    """Ray starts its workers in process groups of their own; they exit once their node's raylet
    is gone. Any process still running from this cluster's temp dir after ``grace`` seconds is
    killed by pid (only ours: the path is unique to this test)."""
    deadline = time.time() + grace
    while True:
        pids = []
        for proc in Path("/proc").glob("[0-9]*"):
            with contextlib.suppress(OSError):
                if str(temp_root).encode() in (proc / "cmdline").read_bytes():
                    pids.append(int(proc.name))
        if not pids or time.time() > deadline:
            break
        time.sleep(1)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def wait_for(cluster: Cluster, ready, what: str, timeout: float = 150) -> None:
    deadline = time.time() + timeout
    error = None
    while time.time() < deadline:
        if any(node.poll() is not None for node in cluster.nodes):
            break
        try:
            if ready():
                return
        except (OSError, ValueError) as exc:  # not listening yet, or an error page while starting
            error = exc
        time.sleep(2)
    pytest.fail(f"{what} (last error: {error})\n{cluster.logs_tail()}")


@pytest.fixture
def two_node_cluster(tmp_path, tmp_path_factory):
    unshare = mount_namespace_command()
    home, hidden, shared = tmp_path / "home", tmp_path / "driver", tmp_path / "shared"
    for folder in (home / ".ray", hidden, shared):
        folder.mkdir(parents=True)
    token = secrets.token_hex(16)
    fd = os.open(home / ".ray" / "auth_token", os.O_WRONLY | os.O_CREAT, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(token)

    env = base_env(home)
    env.update(
        RAY_AUTH_MODE="token",
        RAY_DATA_DISABLE_PROGRESS_BARS="1",
        FAIRREC_CACHE=str(hidden / "cache"),  # the driver's dataset cache: hidden from node 2 too
        GLOO_SOCKET_IFNAME="lo",  # both nodes are on this machine: torch.distributed over loopback
    )
    # Ray's unix sockets live under --temp-dir and their paths must stay under 107 bytes: pytest's
    # base temp (tmp_path itself is too long) when it is short enough, else a fresh folder in /tmp.
    temp_root = tmp_path_factory.mktemp("r")
    own_root = len(str(temp_root)) > 40
    if own_root:
        temp_root = Path(tempfile.mkdtemp(prefix="rayjob", dir="/tmp"))
    gcs, dash, client, *ports = free_ports(15)
    common = ["--block", "--disable-usage-stats", "--num-cpus=1", "--object-store-memory=200000000"]

    def node_ports(p: list[int]) -> list[str]:
        return [
            f"--dashboard-agent-listen-port={p[0]}", f"--dashboard-agent-grpc-port={p[1]}",
            f"--metrics-export-port={p[2]}", f"--runtime-env-agent-port={p[3]}",
            f"--node-manager-port={p[4]}", f"--object-manager-port={p[5]}",
        ]  # fmt: skip

    cluster = Cluster("", f"http://127.0.0.1:{dash}", token, home, hidden, shared)
    try:
        head_dir, node_dir = temp_root / "h", temp_root / "w"
        cluster.node_dirs = [head_dir, node_dir]
        head = [RAY, "start", "--head", *common, f"--port={gcs}", f"--dashboard-port={dash}",
                "--dashboard-host=127.0.0.1", "--include-dashboard=true", f"--ray-client-server-port={client}",
                *node_ports(ports[:6]), f"--temp-dir={head_dir / 'ray'}"]  # fmt: skip
        cluster.nodes.append(start_node(head, head_dir, env))
        # `ray start` writes the cluster's address file once the head runs (named by the machine's IP).
        address_file = head_dir / "ray" / "ray_current_cluster"
        up = lambda: address_file.is_file() and isinstance(cluster.jobs(), list)  # noqa: E731
        wait_for(cluster, up, "the head did not come up")
        cluster.gcs = address_file.read_text().strip()
        assert cluster.gcs.endswith(f":{gcs}"), cluster.gcs

        # The second node: the driver's folder covered by an empty tmpfs in its own mount namespace.
        hide = ["sh", "-c", 'mount -t tmpfs -o size=1m cfp-hidden "$0" && exec "$@"', str(hidden)]
        second = [*unshare, *hide, RAY, "start", f"--address={cluster.gcs}", *common, *node_ports(ports[6:12]),
                  f"--temp-dir={node_dir / 'ray'}"]  # fmt: skip
        cluster.nodes.append(start_node(second, node_dir, env))
        wait_for(cluster, lambda: len(cluster.alive_nodes()) == 2, "the second node did not join")
        yield cluster
    finally:
        for node in reversed(cluster.nodes):
            _terminate_group(node)
        kill_leftovers(temp_root)
        if own_root:
            shutil.rmtree(temp_root, ignore_errors=True)


def seen_by(proc: subprocess.Popen, path: Path) -> bool:
    """Whether ``path`` exists in ``proc``'s mount namespace."""
    return Path(f"/proc/{proc.pid}/root{path}").exists()


def write_small_movielens(folder: Path, n_users: int = 40, n_items: int = 30, per_user: int = 10) -> Path:
    """MovieLens-100K files of random tastes (the job reads them with --data-dir, like real data)."""
    rng = np.random.default_rng(0)
    ratings = [
        (u, int(i), int(rng.integers(1, 6)), 1000 * u + k)
        for u in range(1, n_users + 1)
        for k, i in enumerate(rng.choice(np.arange(1, n_items + 1), per_user, replace=False))
    ]
    return write_ml100k(folder, ratings, n_items=n_items)


@pytest.mark.slow
def test_job_submit_runs_train_cfp_on_two_nodes(two_node_cluster, tmp_path):
    cluster = two_node_cluster
    try:
        _check_job_submit(cluster)
    except BaseException:
        print(cluster.logs_tail())  # shown by pytest with the failure
        raise


def _check_job_submit(cluster: Cluster) -> None:
    hidden, storage = cluster.hidden, cluster.shared / "storage"
    data_dir = write_small_movielens(hidden / "data")
    data = dict(dataset="movielens-100k", data_dir=str(data_dir))
    backbone = untrained_backbone(CFPConfig(**data), hidden / "backbone")
    output = hidden / "out"
    node2 = cluster.nodes[1]
    # the set-up really hides the driver's files from node 2, and only them
    assert (backbone / "config.json").is_file() and not seen_by(node2, backbone / "config.json")
    assert not seen_by(node2, data_dir / "u.data") and seen_by(node2, cluster.shared)

    entry = [
        "python", "-m", "fairrec_ray.train_cfp", "--dataset", "movielens-100k", "--data-dir", str(data_dir),
        "--backbone", str(backbone), "--output", str(output), "--storage-path", str(storage),
        "--num-workers", "2", "--prefix-length", "2", "epochs=2", "num_beams=10", "probe_folds=2",
        "samples_per_user=1", "eval_every_epoch=false", "ffn_hidden=16",
    ]  # fmt: skip
    submit = [RAY, "job", "submit", "--address", cluster.dashboard, "--working-dir", str(REPO), "--"]

    # The dashboard refuses requests without the right token, in so many words ...
    assert cluster.request("/api/jobs/", None) == (401, MISSING_TOKEN)
    assert cluster.request("/api/jobs/", secrets.token_hex(16)) == (403, "Forbidden: Invalid authentication token")
    # ... and so `ray job submit` from a client without it (a HOME without .ray/auth_token, no RAY_*
    # settings, so RAY_AUTH_MODE is 'disabled' there) fails with that answer and creates no job.
    (cluster.home.parent / "stranger").mkdir()
    stranger = base_env(cluster.home.parent / "stranger")
    refused = subprocess.run([*submit, *entry], env=stranger, capture_output=True, text=True, timeout=120)
    answer = refused.stdout + refused.stderr
    assert refused.returncode != 0, answer
    assert REFUSAL_LINE in answer.splitlines(), answer
    assert f"{REFUSAL_LINE}\n\n{NO_TOKEN_DETAIL}" in answer, answer
    assert cluster.jobs() == [], "a refused submission created a job"

    with_token = {**base_env(cluster.home), "RAY_AUTH_MODE": "token"}
    done = subprocess.run([*submit, *entry], env=with_token, capture_output=True, text=True, timeout=400)
    log = done.stdout[-6000:] + done.stderr[-4000:]
    assert cluster.token not in done.stdout + done.stderr
    assert done.returncode == 0, log
    assert "succeeded" in log, log
    (job,) = cluster.jobs()
    assert job["status"] == "SUCCEEDED" and "fairrec_ray.train_cfp" in job["entrypoint"], job

    results = json.loads((output / "results.json").read_text())
    assert results["attribute"] == "gender" and len(results["per_epoch"]) == 2
    assert (output / "prompt" / "encoder_prefix.safetensors").is_file()
    assert (output / "prompt" / "decoder_prefix.safetensors").is_file()

    # It ran on *this* cluster: its GCS, its head as driver, one worker on each of its two nodes.
    nodes = {n["node_id"]: n for n in cluster.alive_nodes()}
    head_id = next(i for i, n in nodes.items() if n["is_head_node"])
    ray_info = results["ray"]
    assert ray_info["address"] == cluster.gcs, ray_info
    assert ray_info["num_workers"] == 2 and ray_info["driver_node_id"] == head_id, (ray_info, nodes)
    workers = ray_info["workers"]
    assert sorted(w["rank"] for w in workers) == [0, 1], workers
    assert len({w["node_id"] for w in workers}) == 2, f"both workers on one node: {workers}"
    assert {w["node_id"] for w in workers} == set(nodes), (workers, nodes)
    assert all(w["node_ip"] == nodes[w["node_id"]]["node_ip"] for w in workers), (workers, nodes)

    # Only storage_path was shared: the checkpoints (one per epoch) are there, for whichever node
    # holds rank 0 to write and the driver to read back.
    assert len(list(storage.glob("cfp/*/cfp_state.pt"))) == 2, sorted(storage.rglob("*"))
