"""Retrieval from the training table, for tasks whose model retrieves its context from it (TabR).

A model says it retrieves with the class attribute ``retrieval = True``; it is then called with its candidates,
as ``zoo.blocks.retrieval.Candidates`` (the whole preprocessed training table and its labels), and must offer
``encode_candidates(candidates) -> (N, d) keys`` and ``contexts(x_num, x_bin, x_cat, candidate_keys=, exclude=)
-> (distances, (B, m) context rows)``. :class:`RetrievalMixin` is the task side of that contract:

- the candidates come from the data module's ``train_table()`` (on every rank under DDP: the full table, whatever
  shard of it the rank's loader yields; batch ``index`` values are rows of that table), are kept on the CPU with a
  copy on the model's device, and go into checkpoints (``CANDIDATES_KEY``), so a checkpoint alone predicts;
- in training, each object of the batch is kept out of its own candidates (the batch joins the candidates inside
  the model); with TabR's "context freeze" (``freeze_contexts_after_epochs``) each training object keeps the
  contexts it had at that epoch, and a step encodes only those candidates;
- in evaluation the encoder is fixed, so the candidates are encoded once per epoch.

The mixin goes before ``ZooTask`` in a task's bases; its Lightning hooks call ``super()`` and do nothing for a
model that does not retrieve. The task calls :meth:`RetrievalMixin.init_retrieval` once its model is built, and
routes its forward passes through :meth:`retrieval_train_outputs` / :meth:`retrieval_eval_outputs` when
``self.retrieval`` is set.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from zoo.blocks.retrieval import CANDIDATES_KEY, Candidates
from zoo.data.contracts import CandidateTable

__all__ = ["CANDIDATES_KEY", "RetrievalMixin"]

Features = tuple[Tensor, Tensor, Tensor]  # x_num (B, F_num), x_bin (B, F_bin), x_cat (B, F_cat)


class RetrievalMixin:
    """The candidates, context exclusion, context freeze and candidate checkpointing of a retrieval model.

    Needs, from the LightningModule it is mixed into: ``model`` (built), ``eval_model``, ``device``, ``model_id``
    and the trainer's ``datamodule`` (with ``train_table()``) when candidates are not set by hand.
    """

    def init_retrieval(self, freeze_contexts_after_epochs: int | None = None) -> None:
        """Call once the model is built: ``self.retrieval`` says whether it retrieves."""
        self.retrieval = bool(getattr(self.model, "retrieval", False))
        self.freeze_contexts_after_epochs = freeze_contexts_after_epochs
        self._candidates: Candidates | None = None  # CPU copy: the whole preprocessed training table
        self._device_candidates: Candidates | None = None
        self._eval_keys: Tensor | None = None  # (N, d) candidate keys of the current evaluation epoch
        self._frozen_contexts: Tensor | None = None  # (N, m) rows of the training table, once frozen

    # --- candidates -----------------------------------------------------------------------------------------------
    def set_candidates(self, candidates: Candidates) -> None:
        """The table retrieval models retrieve from (the preprocessed training table and its labels)."""
        self._candidates = Candidates(*(None if t is None else t.detach().cpu() for t in candidates))
        self._device_candidates = None
        self._eval_keys = None

    def _candidates_from_datamodule(self) -> None:
        datamodule = self.datamodule
        if not isinstance(datamodule, CandidateTable):
            raise RuntimeError(f"{self.model_id} retrieves from the training table: train with a tabular data "
                               "module, or load a checkpoint that holds the candidates")
        table = datamodule.train_table()
        self.set_candidates(Candidates(table.x_num, table.x_bin, table.x_cat, table.y))

    def candidates(self) -> Candidates:
        """The candidates on the model's device (taken from the data module the first time)."""
        if self._candidates is None:
            self._candidates_from_datamodule()
        if self._device_candidates is None or self._device_candidates.y.device != self.device:
            self._device_candidates = self._candidates.to(self.device)
        return self._device_candidates

    # --- forward passes -------------------------------------------------------------------------------------------
    def retrieval_train_outputs(self, features: Features, index: Tensor, y: Tensor) -> Tensor:
        """Training outputs (B, outputs) of the batch whose objects are the training rows ``index`` (B,) with
        labels ``y`` (B,): each object is barred from its own context (or uses its frozen context)."""
        candidates = self.candidates()
        if self._frozen_contexts is not None:
            contexts = self._frozen_contexts.to(self.device)[index]  # (B, m) rows of the training table
            rows, relative = contexts.unique(return_inverse=True)
            return self.model(*features, candidates=candidates.select(rows), y=y, context_index=relative)
        keep = torch.ones(candidates.size, dtype=torch.bool, device=self.device)
        keep[index] = False  # the batch joins the candidates inside the model, each object barred from itself
        return self.model(*features, candidates=candidates.select(keep.nonzero().squeeze(1)), y=y)

    def retrieval_eval_outputs(self, features: Features) -> Tensor:
        """Evaluation outputs (B, outputs) of the evaluated model, retrieving from every candidate."""
        model, candidates = self.eval_model, self.candidates()
        if self._eval_keys is None:  # the encoder is fixed during evaluation: encode the candidates once
            self._eval_keys = model.encode_candidates(candidates)
        return model(*features, candidates=candidates, candidate_keys=self._eval_keys)

    # --- context freeze -------------------------------------------------------------------------------------------
    @torch.no_grad()
    def freeze_contexts(self, batch_size: int = 4096) -> Tensor:
        """(N, m) contexts of every training object under the current encoder, itself excluded."""
        model, candidates = self.model, self.candidates()
        was_training = model.training
        model.eval()
        try:
            keys = model.encode_candidates(candidates)
            contexts = []
            for start in range(0, candidates.size, batch_size):
                rows = torch.arange(start, min(start + batch_size, candidates.size), device=self.device)
                part = candidates.select(rows)
                contexts.append(model.contexts(part.x_num, part.x_bin, part.x_cat, candidate_keys=keys,
                                               exclude=rows)[1])
        finally:
            model.train(was_training)
        return torch.cat(contexts)

    # --- Lightning hooks ------------------------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        super().setup(stage)
        if self.retrieval and stage == "fit":
            self._candidates_from_datamodule()  # the full table, not the rank's shard of it

    def on_train_epoch_start(self) -> None:
        super().on_train_epoch_start()
        after = self.freeze_contexts_after_epochs
        if self.retrieval and after is not None and self.current_epoch >= after and self._frozen_contexts is None:
            self._frozen_contexts = self.freeze_contexts()

    def on_validation_epoch_start(self) -> None:
        super().on_validation_epoch_start()
        self._eval_keys = None

    def on_test_epoch_start(self) -> None:
        super().on_test_epoch_start()
        self._eval_keys = None

    def on_predict_epoch_start(self) -> None:
        super().on_predict_epoch_start()
        self._eval_keys = None

    def on_validation_epoch_end(self) -> None:
        super().on_validation_epoch_end()
        self._eval_keys = None  # the encoder trains on: next epoch's keys differ

    def on_test_epoch_end(self) -> None:
        super().on_test_epoch_end()
        self._eval_keys = None

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        if self.retrieval:
            if self._candidates is None:
                self._candidates_from_datamodule()
            checkpoint[CANDIDATES_KEY] = {k: v for k, v in self._candidates._asdict().items() if v is not None}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        stored = checkpoint.get(CANDIDATES_KEY)
        if self.retrieval and stored is not None:
            self.set_candidates(Candidates(stored.get("x_num"), stored.get("x_bin"), stored.get("x_cat"),
                                           stored["y"]))
