"""``ray job submit`` against a real, token-authenticated Ray cluster.

Starts ``ray start --head --block`` on free ports with its own ``--temp-dir`` as a child in its own
process group (``RAY_AUTH_MODE=token`` and a fresh ``RAY_AUTH_TOKEN``), submits the smallest
train_cfp job with the token and checks it succeeded and wrote its results, checks that a client
without the token is refused, then terminates that process group. It never stops Ray machine-wide: that would
kill every Ray process on the machine.
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
from pathlib import Path

import pytest
from cfp_fixtures import untrained_backbone

from fairrec_ray.cfp.config import CFPConfig

REPO = Path(__file__).resolve().parents[1]
RAY = str(Path(sys.executable).with_name("ray"))


def free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def client_env(token: str | None, home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env["HOME"] = str(home)  # no ~/.ray/auth_token to fall back on
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # the job's `python`
    if token is None:
        env["RAY_AUTH_MODE"] = "disabled"  # a client that sends no token
    else:
        env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=token)
    return env


@pytest.fixture
def token_cluster(tmp_path):
    token = secrets.token_hex(16)
    temp_dir = Path(tempfile.mkdtemp(prefix="rayjob", dir="/tmp"))  # short: unix socket paths are limited
    gcs, dash, client, agent, agent_grpc, metrics, runtime_env, node, objm = free_ports(9)
    env = client_env(token, tmp_path)
    env["RAY_DATA_DISABLE_PROGRESS_BARS"] = "1"
    head = subprocess.Popen(
        [
            RAY, "start", "--head", "--block", "--disable-usage-stats",
            f"--port={gcs}", f"--dashboard-port={dash}", "--dashboard-host=127.0.0.1",
            f"--ray-client-server-port={client}", f"--dashboard-agent-listen-port={agent}",
            f"--dashboard-agent-grpc-port={agent_grpc}", f"--metrics-export-port={metrics}",
            f"--runtime-env-agent-port={runtime_env}", f"--node-manager-port={node}",
            f"--object-manager-port={objm}", f"--temp-dir={temp_dir}",
            "--num-cpus=2", "--include-dashboard=true", "--object-store-memory=300000000",
        ],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    address = f"http://127.0.0.1:{dash}"
    try:
        deadline = time.time() + 150
        while True:
            probe = subprocess.run([RAY, "job", "list", "--address", address], env=env, capture_output=True)
            if probe.returncode == 0:
                break
            if head.poll() is not None or time.time() > deadline:
                output = head.stdout.read().decode(errors="replace") if head.poll() is not None else ""
                pytest.fail(f"ray head did not come up: {probe.stderr.decode()[-2000:]} {output[-2000:]}")
            time.sleep(2)
        yield address, token
    finally:
        _terminate_group(head)
        shutil.rmtree(temp_dir, ignore_errors=True)


def _terminate_group(head: subprocess.Popen) -> None:
    """SIGTERM the head's process group (only ours), give Ray a few seconds, then SIGKILL leftovers
    (``ray start --block`` took > 30 s to wind down on SIGTERM; nothing of it needs to survive)."""
    os.killpg(head.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        head.wait(timeout=5)
    deadline = time.time() + 3
    while time.time() < deadline:
        try:
            os.killpg(head.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(1)
    os.killpg(head.pid, signal.SIGKILL)
    head.wait(timeout=30)


@pytest.mark.slow
def test_job_submit_needs_the_token_and_runs_train_cfp(token_cluster, tmp_path):
    address, token = token_cluster
    data = dict(synthetic_users=40, synthetic_items=30, synthetic_interactions=20)
    backbone = untrained_backbone(CFPConfig(**data), tmp_path / "backbone")
    output = tmp_path / "out"
    entry = [
        "python", "-m", "fairrec_ray.train_cfp", "--backbone", str(backbone), "--output", str(output),
        "--num-workers", "0", "--prefix-length", "2", "epochs=2", "num_beams=10", "probe_folds=2",
        "samples_per_user=1", "eval_every_epoch=false", "ffn_hidden=16",
        *[f"{k}={v}" for k, v in data.items()],
    ]  # fmt: skip
    submit = [RAY, "job", "submit", "--address", address, "--working-dir", str(REPO), "--"]

    refused = subprocess.run(
        [*submit, "python", "-c", "print(1)"], env=client_env(None, tmp_path), capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert refused.returncode != 0
    assert "nauthorized" in refused.stdout + refused.stderr or "token" in (refused.stdout + refused.stderr).lower()

    done = subprocess.run(
        [*submit, *entry], env=client_env(token, tmp_path), capture_output=True, text=True, timeout=400
    )
    log = done.stdout[-4000:] + done.stderr[-4000:]
    assert done.returncode == 0, log
    assert "succeeded" in log, log
    assert token not in log
    results = json.loads((output / "results.json").read_text())
    assert results["attribute"] == "gender" and len(results["per_epoch"]) == 2
    assert (output / "prompt" / "adapter_model.safetensors").is_file()
