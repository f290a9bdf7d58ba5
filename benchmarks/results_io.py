"""Where and how the benchmark scripts write their results (JSON + Markdown side by side)."""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
from collections.abc import Callable
from pathlib import Path

logger = logging.getLogger(__name__)


def write_results(
    out_dir: Path, prefix: str, machine: str, when: dt.datetime, report: dict,
    markdown: Callable[[dict], str],
) -> Path:
    """Write ``<prefix>_<machine>_<YYYYmmdd-HHMM>.{json,md}`` into ``out_dir``; returns the stem.

    ``machine`` (device or host name) is reduced to letters, digits and dashes.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    name = re.sub(r"[^A-Za-z0-9]+", "-", machine).strip("-")
    stem = out_dir / f"{prefix}_{name}_{when:%Y%m%d-%H%M}"
    stem.with_suffix(".json").write_text(json.dumps(report, indent=2))
    stem.with_suffix(".md").write_text(markdown(report))
    logger.info("wrote %s.{json,md}", stem)
    return stem
