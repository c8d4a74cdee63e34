"""What training optimises and how a run is judged, per task: targets, loss, metrics.

- binary: one logit per row, BCE-with-logits on the 0/1 labels; validation loss is the
  log loss; metrics ``val_auc`` and ``val_accuracy``;
- multiclass: K logits per row, cross-entropy on each label's position in the task's
  classes; validation loss is the cross-entropy; ``val_accuracy``, ``val_macro_f1``;
- regression: one value per row, MSE on standardised targets (the training part's
  :class:`~services.model.preprocessing.TargetScale`, so one learning rate suits any
  units); validation loss is the MSE in the label's units; ``val_mse``, ``val_mae``.

Pure functions of tensors and arrays; the training loop calls them.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from torch import nn

from services.model.preprocessing import TargetScale
from services.model.task import Task

VALIDATION_METRICS: Mapping[str, tuple[str, ...]] = {
    "binary": ("val_loss", "val_auc", "val_accuracy"),
    "multiclass": ("val_loss", "val_accuracy", "val_macro_f1"),
    "regression": ("val_loss", "val_mse", "val_mae"),
}
"""The validation metrics a run of each task reports (``val_loss`` selects the best)."""


def training_targets(task: Task, labels: np.ndarray, scale: TargetScale | None) -> torch.Tensor:
    """Valid labels in the form the loss takes: float 0/1, int64 class positions, or
    standardised float values."""
    y = np.asarray(labels, dtype=np.float64).reshape(-1)
    if task.kind == "multiclass":
        return torch.from_numpy(task.class_index(y))
    if task.kind == "regression" and scale is not None:
        y = scale.standardise(y)
    return torch.from_numpy(y.astype(np.float32))


def loss(task: Task, outputs: torch.Tensor, targets: torch.Tensor,
         reduction: str = "mean") -> torch.Tensor:
    """The training loss of ``outputs`` (``[n]`` or ``[n, K]``) against ``targets``."""
    out = outputs.float()
    if task.kind == "multiclass":
        return nn.functional.cross_entropy(out.reshape(out.shape[0], -1), targets,
                                           reduction=reduction)
    if task.kind == "binary":
        return nn.functional.binary_cross_entropy_with_logits(out.reshape(-1), targets,
                                                              reduction=reduction)
    return nn.functional.mse_loss(out.reshape(-1), targets, reduction=reduction)


def validation_loss_factor(task: Task, scale: TargetScale | None) -> float:
    """Multiplier from the training loss to the validation loss (regression: the MSE of
    standardised targets times std**2 is the MSE in label units; otherwise 1)."""
    if task.kind == "regression" and scale is not None:
        return scale.std**2
    return 1.0


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (tied scores get average ranks); NaN with one class."""
    pos = labels > 0.5
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    ranks = (ends - (counts - 1) / 2.0)[inverse]
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def macro_f1(truth: np.ndarray, predicted: np.ndarray) -> float:
    """Unweighted mean F1 over the classes present in ``truth`` or ``predicted``
    (a class never predicted and never true does not count; F1 is 0 when TP is 0)."""
    truth, predicted = np.asarray(truth).reshape(-1), np.asarray(predicted).reshape(-1)
    classes = np.union1d(truth, predicted)
    if classes.size == 0:
        return float("nan")
    scores = []
    for c in classes:
        tp = float(np.sum((truth == c) & (predicted == c)))
        fp = float(np.sum((truth != c) & (predicted == c)))
        fn = float(np.sum((truth == c) & (predicted != c)))
        scores.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    return float(np.mean(scores))


def validation_metrics(task: Task, outputs: np.ndarray, targets: np.ndarray,
                       scale: TargetScale | None, val_loss: float) -> dict[str, float]:
    """The task's validation metrics (:data:`VALIDATION_METRICS`) from the module's raw
    ``outputs`` and the training-form ``targets`` of the validation rows."""
    out = np.asarray(outputs, dtype=np.float64)
    y = np.asarray(targets)
    metrics = {"val_loss": float(val_loss)}
    if task.kind == "binary":
        scores = out.reshape(-1)
        metrics["val_auc"] = roc_auc(y, scores)
        metrics["val_accuracy"] = float(((scores > 0) == (y > 0.5)).mean()) if y.size else 0.0
    elif task.kind == "multiclass":
        predicted = out.reshape(len(y), -1).argmax(axis=1)
        metrics["val_accuracy"] = float((predicted == y).mean()) if y.size else 0.0
        metrics["val_macro_f1"] = macro_f1(y, predicted)
    else:
        values, truth = out.reshape(-1), y.astype(np.float64)
        if scale is not None:
            values, truth = scale.to_label_units(values), scale.to_label_units(truth)
        err = values - truth
        metrics["val_mse"] = float(np.mean(err**2)) if err.size else 0.0
        metrics["val_mae"] = float(np.mean(np.abs(err))) if err.size else 0.0
    return metrics
