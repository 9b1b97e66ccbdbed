"""What every benchmark prints beside its numbers: the machine's load, and the results file it writes."""

from __future__ import annotations

import os
from pathlib import Path


def load_average() -> str:
    """The 1, 5 and 15 minute load averages, so that a reader can judge how busy the machine was."""
    try:
        return "load average {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
    except OSError:
        return "load average unavailable"


def write_report(path: str | Path, lines: list[str]) -> Path:
    """Write a Markdown report (creating its folder) and say where it went."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))
    print(f"wrote {path}")
    return path
