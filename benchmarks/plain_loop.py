"""The reference loop: PyYAML's C loader and a compiled jsonschema_rs validator over every
listing.yaml, on a few processes. It checks the schema only, nothing else formarket checks; it
shows what reading and schema-checking the files costs when nothing else is done.

    python benchmarks/plain_loop.py REPO [--jobs N]      exit 0 when every listing is valid
"""

from __future__ import annotations

import argparse
import json
import sys
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import jsonschema_rs
import yaml

__all__ = ["listing_files", "main"]

KINDS = {"models": "model", "agents": "agent"}


def listing_files(repo: Path) -> dict[str, list[Path]]:
    """Every listing.yaml of a registry, by document kind."""
    return {
        kind: sorted((repo / "registry" / folder).glob("*/*/listing.yaml"))
        for folder, kind in KINDS.items()
    }


def _check(job: tuple[Path, str, list[Path]]) -> int:
    repo, kind, paths = job
    schema = json.loads((repo / "schemas" / f"{kind}.schema.json").read_bytes())
    validator = jsonschema_rs.validator_for(schema)
    invalid = 0
    for path in paths:
        data = yaml.load(path.read_bytes(), Loader=yaml.CSafeLoader)
        if not validator.is_valid(data):
            invalid += 1
    return invalid


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.plain_loop")
    parser.add_argument("repo", type=Path)
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args(argv)
    jobs: list[tuple[Path, str, list[Path]]] = []
    for kind, paths in listing_files(args.repo).items():
        size = max(1, -(-len(paths) // args.jobs))
        jobs.extend((args.repo, kind, paths[i : i + size]) for i in range(0, len(paths), size))
    with ProcessPoolExecutor(args.jobs, mp_context=get_context("fork")) as pool:
        invalid = sum(pool.map(_check, jobs))
    total = sum(len(job[2]) for job in jobs)
    print(f"{total} listings, {invalid} invalid")
    return 1 if invalid else 0


if __name__ == "__main__":
    sys.exit(main())
