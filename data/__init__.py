"""LightningDataModules and readers of real on-disk data formats, one file per kind of data."""
