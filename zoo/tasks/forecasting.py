"""Forecasting: multi-horizon regression of time series (windows -> horizons). Being built (issue 13)."""

from __future__ import annotations

from zoo.tasks.base import ZooTask
from zoo.tasks.registry import register_task


@register_task("forecasting")
class ForecastingTask(ZooTask):
    """Multi-horizon forecasting (being built)."""
