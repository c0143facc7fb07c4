"""Cluster manifests: valid YAML, the pinned Ray version, entrypoints that exist, auth kept on."""

from __future__ import annotations

import importlib.util
import re
import shlex
from pathlib import Path

import ray
import yaml

CLUSTER = Path(__file__).resolve().parents[1] / "cluster"
RAY_MINOR = ".".join(ray.__version__.split(".")[:2])


def _entry_module(command: str) -> str:
    words = shlex.split(command)
    return words[words.index("-m") + 1]


def test_launcher_config_pins_ray_and_keeps_auth():
    config = yaml.safe_load((CLUSTER / "aws.yaml").read_text())
    assert config["head_node_type"] in config["available_node_types"]
    assert re.match(rf"rayproject/ray:{re.escape(RAY_MINOR)}\.\d+-py311", config["docker"]["image"])
    starts = config["head_start_ray_commands"] + config["worker_start_ray_commands"]
    assert all(cmd.startswith("RAY_AUTH_MODE=token ray start") for cmd in starts)  # only starts, no stops


def test_rayjob_manifest_is_consistent():
    job = yaml.safe_load((CLUSTER / "kuberay-rayjob.yaml").read_text())
    assert job["apiVersion"] == "ray.io/v1" and job["kind"] == "RayJob"
    spec = job["spec"]["rayClusterSpec"]
    assert spec["rayVersion"].startswith(RAY_MINOR)
    assert spec["authOptions"]["mode"] == "token"
    assert spec["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
    worker = spec["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]
    assert worker["resources"]["limits"]["nvidia.com/gpu"] == 1
    module = _entry_module(job["spec"]["entrypoint"])
    assert importlib.util.find_spec(module) is not None, f"entrypoint module {module} does not exist"


def test_dockerfile_base_matches_pinned_ray():
    base = (CLUSTER / "Dockerfile").read_text().split("FROM ", 1)[1].split()[0]
    assert base.startswith(f"rayproject/ray:{RAY_MINOR}.")
