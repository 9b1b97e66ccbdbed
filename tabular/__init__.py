"""Tabular models. Importing this package registers every tabular model id."""
