"""Serve the deployments of prefect.yaml from this one process: the alternative to a work pool + worker.

    PREFECT_API_URL=http://127.0.0.1:4200/api python deployments/serve.py [--tag sample|production]

Each flow run still gets its own process; same names, parameters, schedules and limits as prefect.yaml.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def runner_deployments(tag: str | None = None) -> list:
    """prefect.yaml's deployments (those with `tag`, or all) as `serve()` takes them."""
    from prefect.flows import load_flow_from_entrypoint
    from prefect.schedules import Cron

    spec = yaml.safe_load((ROOT / "prefect.yaml").read_text(encoding="utf-8"))
    deployments = []
    for entry in spec["deployments"]:
        if tag and tag not in entry.get("tags", []):
            continue
        schedules = [Cron(s["cron"], timezone=s.get("timezone"), active=s.get("active", True))
                     for s in entry.get("schedules") or []]
        flow = load_flow_from_entrypoint(str(ROOT / entry["entrypoint"]))
        flow.validate_parameters(entry.get("parameters") or {})  # a typo fails here, not at the first run
        deployments.append(flow.to_deployment(entry["name"], parameters=entry.get("parameters"), tags=entry.get("tags"),
                                              schedules=schedules, concurrency_limit=entry.get("concurrency_limit")))
    return deployments


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tag", help="only the deployments with this tag (sample or production)")
    args = parser.parse_args()
    os.chdir(ROOT)  # relative paths in the parameters are relative to the checkout, as with a worker
    sys.path.insert(0, str(ROOT))
    from prefect import serve

    serve(*runner_deployments(args.tag))


if __name__ == "__main__":
    main()
