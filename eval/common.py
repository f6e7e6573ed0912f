"""What every quality experiment shares: the host set up for in-process use, and the JSON report it writes."""

from __future__ import annotations

import json
import logging
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
if os.path.join(REPO, "dev") not in sys.path:
    sys.path.insert(0, os.path.join(REPO, "dev"))

log = logging.getLogger("eval")


def start_eval(out: str) -> None:
    """Set up the host (and the pack as ``stepwise``) and logging; make the report's folder."""
    from stepwise_dev import host

    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    host.setup()
    logging.basicConfig(level=logging.INFO, format="eval: %(message)s", force=True)


def write_report(path: str, report: dict) -> None:
    with open(path, "w") as f:
        json.dump(report, f, indent=2)
        f.write("\n")
    log.info("wrote %s", path)
