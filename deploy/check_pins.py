"""Check that an environment holds the project at requirements.lock's pins (the Dockerfile and deploy/rootfs run it).

    python deploy/check_pins.py requirements.lock [--project rlportfolio]

Walks the installed project's runtime requirements (markers evaluated, extras followed) and checks every
distribution it reaches: one the lock names must be installed at the lock's version (a local label such as
``+cpu`` aside, as pip's ``==`` matches it); one the lock does not name must be pinned exactly by the package that
requires it (torch's CUDA build pins its ``nvidia-*`` wheels that way). pip, setuptools and wheel, which ``pip freeze``
leaves out of a lock, are the installer's and not checked; nor is anything else installed that the project does not
require (a base image's own packages). Prints one line per problem and exits 1, or a summary and 0.
"""

from __future__ import annotations

import argparse
import sys
from importlib import metadata
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

INSTALLER = {"pip", "setuptools", "wheel", "distribute"}  # what `pip freeze` leaves out of a lock


def read_lock(path: Path) -> dict[str, Version]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name, sep, version = line.partition("==")
        if not sep:
            raise SystemExit(f"error: {path}: '{line}' is not name==version")
        pins[canonicalize_name(Requirement(name).name)] = Version(version)
    return pins


def public(version: str) -> Version:
    return Version(Version(version).public)


def exact_pin(requirement: Requirement) -> Version | None:
    specs = list(requirement.specifier)
    if len(specs) == 1 and specs[0].operator in ("==", "===") and "*" not in specs[0].version:
        return public(specs[0].version)
    return None


def check(project: str, pins: dict[str, Version]) -> tuple[list[str], int]:
    """The problems, and how many distributions the project's requirements reach."""
    problems: list[str] = []
    seen: set[tuple[str, frozenset[str]]] = set()
    reached: set[str] = set()
    todo: list[tuple[str, frozenset[str], Requirement | None, str]] = [(project, frozenset(), None, "")]
    while todo:
        name, extras, requirement, parent = todo.pop()
        key = canonicalize_name(name)
        if (key, extras) in seen:
            continue
        seen.add((key, extras))
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            problems.append(f"{name}: required by {parent or 'the command line'} but not installed")
            continue
        installed = public(dist.version)
        if key not in reached and key != canonicalize_name(project) and key not in INSTALLER:
            reached.add(key)
            if key in pins:
                if installed != pins[key]:
                    problems.append(f"{name}: {dist.version} installed, the lock pins {pins[key]}")
            elif requirement is None or exact_pin(requirement) != installed:
                problems.append(f"{name}=={dist.version}: required by {parent} as '{requirement}', not in the lock")
        for text in dist.requires or []:
            child = Requirement(text)
            environments = [{**default_environment(), "extra": extra} for extra in (extras or {""})]
            if child.marker is not None and not any(child.marker.evaluate(env) for env in environments):
                continue
            todo.append((child.name, frozenset(child.extras), child, dist.metadata["Name"]))
    return problems, len(reached)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("lock", type=Path)
    parser.add_argument("--project", default="rlportfolio")
    args = parser.parse_args(argv)
    problems, reached = check(args.project, read_lock(args.lock))
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    if problems:
        return 1
    print(f"{args.project}: {reached} distributions required, each at {args.lock.name}'s pin (or its parent's)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
