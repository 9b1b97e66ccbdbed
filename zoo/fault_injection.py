"""Faults injected at chosen moments of a run, for the tests of what survives them (``ZOO_FAULT``)."""

from __future__ import annotations

import os
import signal
import sys

__all__ = ["FAULT_ENV", "inject"]

FAULT_ENV = "ZOO_FAULT"


def inject(point: str, **where: int) -> None:
    """Send this process the signal that ``ZOO_FAULT`` names when ``point`` and all its conditions match.

    ``ZOO_FAULT="point[@key=value,...][:SIGNAL]"``, e.g. ``train_batch@epoch=1,batch=2`` (SIGKILL there),
    ``val_batch@epoch=1,batch=0:SIGTERM``, ``checkpoint_write@n=2`` (killed half-way through the second write).
    """
    spec = os.environ.get(FAULT_ENV)
    if not spec:
        return
    spec, _, action = spec.partition(":")
    name, _, conditions = spec.partition("@")
    wanted = {k: int(v) for k, v in (c.split("=") for c in conditions.split(",") if c)}
    if name != point or any(where.get(k) != v for k, v in wanted.items()):
        return
    print(f"{FAULT_ENV}: {action or 'SIGKILL'} at {point} {where}", file=sys.stderr, flush=True)
    os.kill(os.getpid(), getattr(signal, action or "SIGKILL"))
