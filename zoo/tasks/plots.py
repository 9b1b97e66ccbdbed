"""Figures the tasks log to MLflow."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")  # headless: figures are written to files, never shown
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

MAX_LABELLED_CLASSES = 40


def confusion_matrix_figure(matrix: np.ndarray, class_names: Sequence[str] | None = None,
                            title: str = "Confusion matrix") -> Figure:
    """Row-normalised confusion matrix (rows = true class), with counts written in when there are few classes.

    Args:
        matrix: (C, C) counts, ``matrix[i, j]`` = examples of class i predicted as j.
    """
    matrix = np.asarray(matrix)
    n = matrix.shape[0]
    rates = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    size = min(4 + 0.45 * n, 20)
    fig, ax = plt.subplots(figsize=(size, size * 0.85), dpi=100)
    image = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="fraction of the true class")
    accuracy = np.trace(matrix) / max(matrix.sum(), 1)
    ax.set_title(f"{title} (accuracy {accuracy:.3f}, n={int(matrix.sum())})")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if n <= MAX_LABELLED_CLASSES:
        names = list(class_names) if class_names is not None else [str(i) for i in range(n)]
        ax.set_xticks(range(n), names, rotation=90 if max(map(len, names)) > 3 else 0)
        ax.set_yticks(range(n), names)
        if n <= 20:
            for i in range(n):
                for j in range(n):
                    if matrix[i, j]:
                        ax.text(j, i, int(matrix[i, j]), ha="center", va="center", fontsize=8,
                                color="white" if rates[i, j] > 0.5 else "black")
    fig.tight_layout()
    return fig


def predicted_vs_true_figure(predicted: np.ndarray, true: np.ndarray, title: str) -> Figure:
    """Scatter of predictions against targets (original scale) with the identity line, RMSE and R2 in the title."""
    fig, ax = plt.subplots(figsize=(5.5, 5), dpi=100)
    ax.scatter(true, predicted, s=8, alpha=0.5, edgecolors="none")
    low, high = float(min(true.min(), predicted.min())), float(max(true.max(), predicted.max()))
    ax.plot([low, high], [low, high], color="black", linewidth=1, label="prediction = target")
    rmse = float(np.sqrt(np.mean((predicted - true) ** 2)))
    r2 = 1 - float(np.sum((true - predicted) ** 2)) / max(float(np.sum((true - true.mean()) ** 2)), 1e-12)
    ax.set_title(f"{title} (RMSE {rmse:.4g}, R2 {r2:.3f}, n={len(true)})")
    ax.set_xlabel("target")
    ax.set_ylabel("prediction")
    ax.legend(loc="upper left")
    fig.tight_layout()
    return fig
