"""Masked self-supervised pretraining: masked spectrogram patch modelling (MSPM, Gong et al., SSAST, AAAI 2022).

Each batch is masked twice, independently (as the official ``pretrain_joint``):

- discriminative pass: the model predicts a vector per masked patch; InfoNCE between predictions and the true
  patches, the negatives being the other masked patches of the same clip. Paper Eq. 1 normalises each prediction's
  scores over the candidate patches (``nce_normalise="paper"``, default); the released code normalises each patch's
  scores over the predictions (``"official"``, SSAST issue 13). Masked accuracy: the fraction of masked positions
  whose prediction scores its own patch highest among the clip's masked patches, on the normalised scores (with
  ``"official"`` exactly the released metric: the argmax over patches of the softmax over predictions).
- generative pass: the model reconstructs the raw masked patches; mean squared error.

Loss = NCE + ``mse_weight`` (10) x MSE for ``objective="joint"``, or one of them alone.

The task needs a model with this protocol (SSAST's pretraining ids have it):
``num_patches``; ``sample_mask(batch_size, num_masked, cluster=None, generator=None, device=None) -> (B, M)``
distinct patch indices; ``patch_targets(x) -> (B, N, P)``; ``forward_pretext(x, mask) -> (disc (B, M, P),
gen (B, M, P))``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Literal, Protocol

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from typing_extensions import override

from zoo.data.contracts import ZooData
from zoo.tasks.base import ZooTask, write_csv
from zoo.tasks.registry import register_task

Objective = Literal["joint", "discriminative", "generative"]
ENCODER_ARTIFACT = "pretrained/model.safetensors"


class MaskedPatchModel(Protocol):
    num_patches: int

    def sample_mask(self, batch_size: int, num_masked: int, cluster: bool | None = None,
                    generator: torch.Generator | None = None, device: Any = None) -> torch.Tensor: ...

    def patch_targets(self, x: torch.Tensor) -> torch.Tensor: ...

    def forward_pretext(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]: ...


def info_nce(predictions: torch.Tensor, targets: torch.Tensor, normalise: str = "paper"
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """InfoNCE over the masked patches of each clip, and the masked accuracy.

    Args:
        predictions: (B, M, P) discriminative outputs at the masked positions.
        targets: (B, M, P) the true patches.
        normalise: "paper" (each prediction against every masked patch, Eq. 1) or "official" (each patch against
            every prediction, the released code).

    Returns:
        (loss, accuracy), scalars.
    """
    with torch.autocast(predictions.device.type, enabled=False):  # a log-softmax over bf16 scores loses the loss
        scores = targets.float() @ predictions.float().transpose(1, 2)  # (B, M targets, M predictions)
    if normalise == "paper":
        log_p = scores.log_softmax(dim=1)
    elif normalise == "official":
        log_p = scores.log_softmax(dim=2)
    else:
        raise ValueError(f"nce_normalise must be 'paper' or 'official', got {normalise!r}")
    loss = -log_p.diagonal(dim1=1, dim2=2).mean()
    # a prediction is right when its own patch scores highest among the masked patches, on the normalised scores:
    # with "official" that is the released code's argmax over patches of the softmax over predictions
    right = log_p.argmax(dim=1) == torch.arange(scores.shape[1], device=scores.device)
    return loss, right.float().mean()


@register_task("masked_pretraining")
class MaskedPretrainingTask(ZooTask):
    """Masked spectrogram patch modelling (self-supervised; labels in the batches are ignored).

    Args:
        num_masked: patches masked per clip; default ``mask_ratio`` of the model's patches (400 of 512 in the paper).
        mask_ratio: fraction masked when ``num_masked`` is not given (400 / 512 = 0.78125).
        cluster: cluster masking on/off; None leaves it to the model (on for patch models, off for frame models).
        objective: "joint" (NCE + mse_weight x MSE, two passes), "discriminative" or "generative".
        mse_weight: weight of the generative loss (10 in the paper).
        nce_normalise: "paper" (Eq. 1) or "official" (the released code's axis, SSAST issue 13).
        **kwargs: the arguments of ``zoo.tasks.base.ZooTask`` (pretrained, model_kwargs, optimizer, ...).

    Batches are ``inputs (B, ...)`` or ``(inputs, anything)``. Metrics: ``<stage>/masked_acc``, ``/nce``, ``/mse``.
    At the end of training the encoder's weights are also logged as the run artifact ``pretrained/model.safetensors``
    (a plain state dict) to fine-tune from: ``--model.pretrained runs:/<run id>/pretrained/model.safetensors``.
    """

    monitor = "val/masked_acc"
    monitor_mode = "max"
    prediction_output = "embeddings.csv"

    def __init__(self, model: str, num_masked: int | None = None, mask_ratio: float = 400 / 512,
                 cluster: bool | None = None, objective: Objective = "joint", mse_weight: float = 10.0,
                 nce_normalise: Literal["paper", "official"] = "paper", **kwargs: Any):
        super().__init__(model, **kwargs)
        if objective not in ("joint", "discriminative", "generative"):
            raise ValueError(f"objective must be 'joint', 'discriminative' or 'generative', got {objective!r}")
        if nce_normalise not in ("paper", "official"):
            raise ValueError(f"nce_normalise must be 'paper' or 'official', got {nce_normalise!r}")
        if not 0 < mask_ratio < 1:
            raise ValueError(f"mask_ratio must lie in (0, 1), got {mask_ratio}")
        self.save_hyperparameters()
        self.build_model()
        for name in ("sample_mask", "patch_targets", "forward_pretext"):
            if not callable(getattr(self.model, name, None)) or getattr(self.model, "pretraining", True) is False:
                raise TypeError(f"{model} cannot be pretrained by masking: it has no {name}() (masked pretraining "
                                "needs a *_pretrain model id)")
        patches = self.model.num_patches
        self.num_masked = num_masked if num_masked is not None else max(1, round(mask_ratio * patches))
        if not 0 < self.num_masked < patches:
            raise ValueError(f"num_masked must lie in [1, {patches - 1}] for {patches} patches, got {self.num_masked}")
        self._eval_generator: torch.Generator | None = None

    def _generator(self, stage: str, device: torch.device) -> torch.Generator | None:
        """Evaluation masks repeat from epoch to epoch (seeded once per evaluation), so the metric is comparable."""
        if stage == "train":
            return None
        if self._eval_generator is None or self._eval_generator.device != device:
            self._eval_generator = torch.Generator(device=device)
            self._eval_generator.manual_seed(0)
        return self._eval_generator

    @override
    def on_validation_epoch_start(self) -> None:
        self._eval_generator = None

    @override
    def on_test_epoch_start(self) -> None:
        self._eval_generator = None

    def losses(self, x: torch.Tensor, model: MaskedPatchModel, generator: torch.Generator | None = None
               ) -> dict[str, torch.Tensor]:
        """The MSPM losses and masked accuracy of one batch (B, ...)."""
        objective, b = self.hparams.objective, x.shape[0]
        targets = model.patch_targets(x).detach()
        out: dict[str, torch.Tensor] = {}
        if objective in ("joint", "discriminative"):
            mask = model.sample_mask(b, self.num_masked, self.hparams.cluster, generator, x.device)
            disc, _ = model.forward_pretext(x, mask)
            picked = targets.gather(1, mask.unsqueeze(-1).expand(-1, -1, targets.shape[-1]))
            out["nce"], out["masked_acc"] = info_nce(disc, picked, self.hparams.nce_normalise)
        if objective in ("joint", "generative"):
            mask = model.sample_mask(b, self.num_masked, self.hparams.cluster, generator, x.device)
            _, gen = model.forward_pretext(x, mask)
            picked = targets.gather(1, mask.unsqueeze(-1).expand(-1, -1, targets.shape[-1]))
            out["mse"] = F.mse_loss(gen, picked)
        if objective == "joint":
            out["loss"] = out["nce"] + self.hparams.mse_weight * out["mse"]
        else:
            out["loss"] = out["nce"] if objective == "discriminative" else out["mse"]
        return out

    @staticmethod
    def _inputs(batch: Any) -> torch.Tensor:
        return batch[0] if isinstance(batch, (tuple, list)) else batch

    @override
    def step(self, batch: Any, stage: str) -> torch.Tensor:
        x = self._inputs(batch)
        out = self.losses(x, self.model if stage == "train" else self.eval_model, self._generator(stage, x.device))
        for name, value in out.items():
            if name != "loss":
                self.log(f"{stage}/{name}", value, on_step=False, on_epoch=True, prog_bar=name == "masked_acc",
                         sync_dist=stage != "train")
        return out["loss"]

    @override
    def predict_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        """(B, D) pooled encoder features of each clip (unmasked)."""
        return self.eval_model(self._inputs(batch))

    @override
    def write_predictions(self, predictions: list[torch.Tensor], datamodule: Any, output: Path) -> str:
        """One CSV row per clip: its path (when the data module lists them) and its embedding."""
        features = torch.cat(predictions).float().cpu()
        names = (datamodule.predict_paths if isinstance(datamodule, ZooData) else None) or range(len(features))
        rows = [{"input": str(name), **{f"f{i}": f"{v:.6f}" for i, v in enumerate(row.tolist())}}
                for name, row in zip(names, features, strict=True)]
        return write_csv(rows, output)

    @override
    def on_fit_end(self) -> None:
        """Log the encoder's weights as a plain state dict, for fine-tuning under another (fine-tuning) model id."""
        logger = self.run_recorder()
        if logger is None or not self.trainer.is_global_zero:
            return
        state = {k: v.detach().contiguous().cpu() for k, v in self.eval_model.state_dict().items()}
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / Path(ENCODER_ARTIFACT).name
            save_file(state, path, metadata={"format": "pt", "pretrained_as": self.model_id})
            logger.log_artifact(path, str(Path(ENCODER_ARTIFACT).parent))
