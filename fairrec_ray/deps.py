"""The dependency versions fairrec_ray was tested with, checked before anything hooks into them.

We inject prompts through transformers' attention interface, build prefix FFNs from PEFT and
subclass RLlib's algorithm, learner and env runner: a release we never ran can change what those
hooks see (transformers 5.24 did, and the first sign was a shape error deep inside attention).
So an installed version outside ``TESTED`` stops a job with one line naming the package, the
version and the tested range. ``FAIRREC_ALLOW_UNTESTED=1`` turns the stop into a warning (the
canary in ``.ci/canary`` runs the hooked tests on the newest releases that way).

``pyproject.toml`` carries the same ranges (a test keeps them in step).
"""

from __future__ import annotations

import os
import warnings
from importlib import metadata

from packaging.specifiers import SpecifierSet
from packaging.version import Version

from fairrec_ray.errors import FairrecError

TESTED: dict[str, str] = {
    "transformers": ">=5.23,<5.25",
    "peft": ">=0.21,<0.22",
    "ray": ">=2.60,<2.61",
}
ALLOW_ENV = "FAIRREC_ALLOW_UNTESTED"


class UntestedDependencyError(FairrecError):
    """An installed library is outside the range this release was tested with."""


def untested(packages: tuple[str, ...] = tuple(TESTED)) -> list[str]:
    """One message per installed package outside its tested range (missing ones are pip's job)."""
    problems = []
    for name in packages:
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
        tested = TESTED[name]
        if not SpecifierSet(tested).contains(Version(installed), prereleases=True):
            problems.append(
                f"{name} {installed} is outside the range fairrec_ray was tested with ({tested}); "
                f"install a tested one (pip install '{name}{tested}') or set {ALLOW_ENV}=1 to try it anyway"
            )
    return problems


def check(packages: tuple[str, ...] = tuple(TESTED)) -> None:
    """Raise ``UntestedDependencyError`` (or warn, with ``FAIRREC_ALLOW_UNTESTED=1``)."""
    problems = untested(packages)
    if not problems:
        return
    if os.environ.get(ALLOW_ENV, "").lower() in ("1", "true", "yes"):
        for problem in problems:
            warnings.warn(problem, stacklevel=2)
        return
    raise UntestedDependencyError(problems[0])
