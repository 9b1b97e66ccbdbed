"""Sequence labelling: one label per time step of padded sequences (ICU hours, ...). Being built (issue 14)."""

from __future__ import annotations

from zoo.tasks.base import ZooTask
from zoo.tasks.registry import register_task


@register_task("sequence_labelling")
class SequenceLabellingTask(ZooTask):
    """Per-step binary labelling of padded sequences (being built)."""
