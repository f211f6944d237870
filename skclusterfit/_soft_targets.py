"""Soft targets for knowledge distillation: the loss the training loop uses
when a teacher's class scores, not only hard labels, are the targets."""

import numpy as np
import torch
from torch.nn import functional as F


class SoftTargets:
    """A teacher's class scores softened at a temperature (Hinton et al., 2015).

    The student's loss on a batch is ::

        alpha * T**2 * CE(softmax(z / T), softmax(s / T)) + (1 - alpha) * CE(z, y)

    with ``z`` the student's logits, ``s`` the teacher's scores and ``y`` the
    hard labels. The ``T**2`` keeps the soft term's gradients on the scale of
    the hard term's whatever the temperature (Hinton et al., section 2).

    Parameters
    ----------
    scores : array-like of shape (n_samples, n_classes)
        The teacher's logits, or log-probabilities (the same softmax).
    classes : array-like of shape (n_classes,)
        The class of each column of ``scores``.
    temperature : float, default=4.0
        ``T``; above 1 it raises the small probabilities, which carry what
        the teacher knows about the similarity between classes.
    alpha : float, default=1.0
        Weight of the soft term; 1 ignores the hard labels.

    Examples
    --------
    >>> import numpy as np
    >>> import torch
    >>> from skclusterfit._soft_targets import SoftTargets
    >>> soft = SoftTargets(np.log([[0.7, 0.2, 0.1]]), classes=[0, 1, 2], temperature=2.0)
    >>> soft.probabilities().numpy().round(3)
    array([[0.523, 0.279, 0.198]], dtype=float32)
    """

    def __init__(self, scores, classes, *, temperature=4.0, alpha=1.0):
        self.scores = np.asarray(scores, dtype=np.float32)
        self.classes = np.asarray(classes)
        self.temperature = float(temperature)
        self.alpha = float(alpha)
        if self.scores.ndim != 2 or self.scores.shape[1] != len(self.classes):
            raise ValueError(
                f"soft-target scores of shape {self.scores.shape} do not match "
                f"{len(self.classes)} classes."
            )
        if not np.isfinite(self.scores).all():
            raise ValueError("the teacher's class scores hold NaN or inf values.")

    def __len__(self):
        return len(self.scores)

    def encode(self, y):
        """Indices into ``classes`` of the labels ``y``; an unknown label is refused."""
        y = np.asarray(y)
        order = np.argsort(self.classes)
        position = np.searchsorted(self.classes, y, sorter=order).clip(0, len(order) - 1)
        encoded = order[position]
        unknown = self.classes[encoded] != y
        if unknown.any():
            raise ValueError(
                f"y holds labels the teacher has no score for, e.g. "
                f"{y[unknown][:3].tolist()}; the teacher's classes are "
                f"{self.classes[:10].tolist()}{' ...' if len(self.classes) > 10 else ''}."
            )
        return encoded.astype(np.int64)

    def probabilities(self):
        """``softmax(scores / T)``: the per-sample targets, float32 tensor on the CPU."""
        return torch.softmax(torch.from_numpy(self.scores) / self.temperature, dim=1)

    def fingerprint_array(self, y_encoded):
        """Everything the targets depend on, as one array (for checkpoint fingerprints)."""
        settings = np.array([self.temperature, self.alpha], dtype=np.float32)
        return np.concatenate([y_encoded.astype(np.float32), self.scores.ravel(), settings])

    def loss(self, logits, soft, target, hard_criterion):
        """The distillation loss of a batch (computed in float32).

        Parameters
        ----------
        logits : Tensor of shape (batch, n_classes)
            The student's.
        soft : Tensor of shape (batch, n_classes)
            Rows of :meth:`probabilities` for the batch.
        target : Tensor of shape (batch,)
            Hard labels (class indices).
        hard_criterion : callable
            The loss on hard labels, e.g. ``nn.CrossEntropyLoss()``.
        """
        logits = logits.float()
        log_student = F.log_softmax(logits / self.temperature, dim=1)
        soft_loss = -(soft * log_student).sum(dim=1).mean() * self.temperature**2
        if self.alpha == 1.0:
            return soft_loss
        return self.alpha * soft_loss + (1 - self.alpha) * hard_criterion(logits, target)
