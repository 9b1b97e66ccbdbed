"""Tabular models. Importing this package registers every tabular model id."""

from tabular import baselines, tabr  # noqa: F401  (registers the model ids)
