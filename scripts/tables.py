"""``make tables``: rebuild the README's measured tables from ``eval/results/*.json`` (``dev/stepwise_dev/tables.py``).

Run it after an experiment writes new results; ``--check`` only says whether the README is up to date (exit 1 when
a table differs from its JSON).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "dev"))

from stepwise_dev import tables  # noqa: E402

log = logging.getLogger("tables")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 when a table is out of date")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="tables: %(message)s")
    with open(tables.README) as f:
        text = f.read()
    new = tables.update(text)
    if new == text:
        log.info("README tables match eval/results (%s)", ", ".join(tables.TABLES))
        return 0
    if args.check:
        log.error("README tables differ from eval/results: run make tables")
        return 1
    with open(tables.README, "w") as f:
        f.write(new)
    log.info("rewrote the README tables from eval/results (%s)", ", ".join(tables.TABLES))
    return 0


if __name__ == "__main__":
    sys.exit(main())
