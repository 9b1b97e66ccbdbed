"""SSAST (Gong, Lai, Chung, Glass, "SSAST: Self-Supervised Audio Spectrogram Transformer", AAAI 2022,
arXiv 2110.09784; official code YuanGongND/ssast, BSD-3-Clause, read for facts).

A DeiT-style ViT (CLS + distillation tokens, learnable positional embeddings) over a log-mel filterbank
(B, T, F = 128), cut into 16x16 patches ("patch" models) or full-frequency 128x2 frames ("frame" models) by a
1-channel convolution. Pretrained by masked spectrogram patch modelling (MSPM) on unlabelled audio, then fine-tuned
with a LayerNorm + Linear head on the mean of the patch tokens (or of the two CLS tokens).

- Pretraining ids (``audio/ssast_<size>_<patch|frame>_pretrain``, task "masked_pretraining"): stride = patch shape,
  a learnable mask token ``mask_embed`` that replaces masked patch embeddings *before* the positional embeddings,
  and the two pretext heads ``cpredlayer`` (discriminative) and ``gpredlayer`` (generative), each
  Linear(D, D) -> ReLU -> Linear(D, fshape * tshape). The objective itself lives in
  ``zoo.tasks.masked_pretraining``; this module gives the masks, the targets and the predictions.
- Fine-tuning ids (``audio/ssast_<size>_<patch|frame>``, task "image_classification"): stride 10 (patch) or
  (128, 1) (frame); ``pretrained=`` takes an official pretrained checkpoint, an official fine-tuned one, an AST
  checkpoint or a zoo pretraining run: positional embeddings are cropped or interpolated from the checkpoint's
  grid to the model's (see :func:`adapt_pos_embed`), and the patch shapes must match.

State-dict keys are the official ones without DataParallel's ``module.``: ``v.cls_token``, ``v.dist_token``,
``v.pos_embed``, ``v.patch_embed.proj``, ``v.blocks.<i>.{norm1,attn.qkv,attn.proj,norm2,mlp.fc1,mlp.fc2}``,
``v.norm``, ``cpredlayer.{0,2}``, ``gpredlayer.{0,2}``, ``mask_embed``, ``p_input_fdim``/``p_input_tdim``
(buffers here, parameters without gradient there), ``mlp_head.{0,1}``. timm's unused ImageNet heads
``v.head``/``v.head_dist`` that the official files carry are dropped on loading.

Differences from the released code (card notes): cluster masks are true c x c blocks of the patch grid (the release
lets a block run over the right edge into the next row, never masks patch 0, and keeps the 400 lowest patch
indices of a Python set when a draw overshoots: here the first 400 in drawing order); masking is vectorised over
the batch; the positional-embedding adaptation works for any grid (the release hard-codes 8 frequency rows when
interpolating time and crops frequency with the time length).
"""

from __future__ import annotations

from functools import partial
from typing import Any, Literal

import torch
import torch.nn.functional as F
from timm.layers import trunc_normal_
from timm.models.vision_transformer import Block
from torch import nn

from zoo.errors import CheckpointError, InputShapeError
from zoo.registry import Classes, ModelCard, Paper, Pretext, WeightSet, register_model

__all__ = ["SSAST", "adapt_pos_embed", "grid_size", "pretraining_kwargs_from_checkpoint", "ssast_checkpoint_filter"]

Pooling = Literal["avgtok", "cls"]
SIZES = {"tiny": (192, 3), "small": (384, 6), "base": (768, 12)}
PATCH_SHAPES = {"patch": (16, 16), "frame": (128, 2)}
FINE_TUNE_STRIDES = {"patch": (10, 10), "frame": (128, 1)}
NUM_PREFIX_TOKENS = 2  # CLS + distillation token


def grid_size(input_fdim: int, input_tdim: int, shape: tuple[int, int], stride: tuple[int, int]) -> tuple[int, int]:
    """Patch grid (f_dim, t_dim) of a (input_fdim x input_tdim) spectrogram cut by ``shape`` at ``stride``."""
    return (input_fdim - shape[0]) // stride[0] + 1, (input_tdim - shape[1]) // stride[1] + 1


class PatchEmbed(nn.Module):
    """1-channel convolution that cuts a (B, 1, F, T) spectrogram into (B, f_dim * t_dim, D) patch embeddings,
    frequency-major (patch index = f * t_dim + t), the order of ``nn.Unfold``."""

    def __init__(self, dim: int, shape: tuple[int, int], stride: tuple[int, int]):
        super().__init__()
        self.proj = nn.Conv2d(1, dim, kernel_size=shape, stride=stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, F, T) -> (B, N, D)."""
        return self.proj(x).flatten(2).transpose(1, 2)


class SpectrogramViT(nn.Module):
    """The official ``v`` module: DeiT-distilled ViT pieces (timm ``Block``s) over spectrogram patches."""

    def __init__(self, dim: int, depth: int, num_heads: int, shape: tuple[int, int], stride: tuple[int, int],
                 num_patches: int, mlp_ratio: float = 4.0, drop_rate: float = 0.0, drop_path_rate: float = 0.0):
        super().__init__()
        self.patch_embed = PatchEmbed(dim, shape, stride)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.dist_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, num_patches + NUM_PREFIX_TOKENS, dim))
        self.pos_drop = nn.Dropout(drop_rate)
        rates = [drop_path_rate * i / (depth - 1) if depth > 1 else drop_path_rate for i in range(depth)]
        norm = partial(nn.LayerNorm, eps=1e-6)
        self.blocks = nn.Sequential(*[
            Block(dim, num_heads, mlp_ratio, qkv_bias=True, proj_drop=drop_rate, drop_path=rates[i], norm_layer=norm)
            for i in range(depth)
        ])
        self.norm = norm(dim)


class SSAST(nn.Module):
    """Self-supervised audio spectrogram transformer.

    Args:
        embed_dim / depth / num_heads / mlp_ratio: ViT size (tiny 192/12/3, small 384/12/6, base 768/12/12).
        fshape / tshape: patch height (frequency bins) and width (frames): 16 x 16 or 128 x 2.
        fstride / tstride: patch strides (pretraining: the patch shape; fine-tuning: 10 or (128, 1)).
        input_fdim / input_tdim: mel bins and frames of the input (B, input_tdim, input_fdim).
        num_classes: size of the fine-tuning head (0: no head, ``forward`` gives the pooled features).
        pretraining: build the MSPM parts (mask token, pretext heads, ``p_input_*`` buffers) instead of a head.
        pooling: "avgtok" (mean of the patch tokens, the SSAST default) or "cls" (mean of the two CLS tokens, AST).
        cluster_masking: cluster (c x c block) masking with c from {3, 4, 5}; default on for patch models and off
            for frame models, as the official scripts decide.
        drop_rate / drop_path_rate: dropout after the positional embeddings and in the blocks, stochastic depth.
    """

    def __init__(self, embed_dim: int = 768, depth: int = 12, num_heads: int = 12, fshape: int = 16, tshape: int = 16,
                 fstride: int = 10, tstride: int = 10, input_fdim: int = 128, input_tdim: int = 1024,
                 num_classes: int = 527, pretraining: bool = False, pooling: Pooling = "avgtok",
                 cluster_masking: bool | None = None, mlp_ratio: float = 4.0, drop_rate: float = 0.0,
                 drop_path_rate: float = 0.0):
        super().__init__()
        if pooling not in ("avgtok", "cls"):
            raise ValueError(f"pooling must be 'avgtok' or 'cls', got {pooling!r}")
        if fshape > input_fdim or tshape > input_tdim:
            raise ValueError(f"a {fshape}x{tshape} patch does not fit a {input_fdim}x{input_tdim} input")
        if pretraining and (fstride, tstride) != (fshape, tshape):
            raise ValueError(f"pretraining needs stride = patch shape ({fshape}, {tshape}) so that patches do not "
                             f"overlap (masked content would leak); got stride ({fstride}, {tstride})")
        self.embed_dim, self.num_classes, self.pooling = embed_dim, num_classes, pooling
        self.fshape, self.tshape, self.fstride, self.tstride = fshape, tshape, fstride, tstride
        self.input_fdim, self.input_tdim = input_fdim, input_tdim
        self.f_dim, self.t_dim = grid_size(input_fdim, input_tdim, (fshape, tshape), (fstride, tstride))
        self.num_patches = self.f_dim * self.t_dim
        self.pretraining = pretraining
        self.cluster_masking = fshape != input_fdim if cluster_masking is None else cluster_masking
        self.v = SpectrogramViT(embed_dim, depth, num_heads, (fshape, tshape), (fstride, tstride), self.num_patches,
                                mlp_ratio, drop_rate, drop_path_rate)
        patch_size = fshape * tshape
        if pretraining:
            self.mask_embed = nn.Parameter(torch.zeros(1, 1, embed_dim))
            self.cpredlayer = nn.Sequential(nn.Linear(embed_dim, embed_dim), nn.ReLU(),
                                            nn.Linear(embed_dim, patch_size))
            self.gpredlayer = nn.Sequential(nn.Linear(embed_dim, embed_dim), nn.ReLU(),
                                            nn.Linear(embed_dim, patch_size))
            # The official model keeps its pretraining input size in the state dict, to rebuild the grid later.
            self.register_buffer("p_input_fdim", torch.tensor(input_fdim))
            self.register_buffer("p_input_tdim", torch.tensor(input_tdim))
            self.mlp_head = None
        else:
            self.mlp_head = self._make_head(num_classes)
        self.init_weights()

    def _make_head(self, num_classes: int) -> nn.Module | None:
        if num_classes <= 0:
            return None
        return nn.Sequential(nn.LayerNorm(self.embed_dim), nn.Linear(self.embed_dim, num_classes))

    def init_weights(self) -> None:
        """timm 0.4.5's ViT initialisation (truncated normal 0.02 for tokens, embeddings and linear weights), the
        PyTorch default for the patch convolution, Xavier-normal for the mask token (as the official code)."""
        for token in (self.v.cls_token, self.v.dist_token, self.v.pos_embed):
            trunc_normal_(token, std=0.02)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        if self.pretraining:
            nn.init.xavier_normal_(self.mask_embed)

    # --- classifier protocol ------------------------------------------------------------------------------------
    def get_classifier(self) -> nn.Module:
        """The head's Linear layer (the LayerNorm before it is kept when the classes change)."""
        return self.mlp_head[1] if self.mlp_head is not None else nn.Identity()

    def reset_classifier(self, num_classes: int) -> None:
        """A fresh LayerNorm + Linear head of ``num_classes`` (0: none), on the model's device and dtype."""
        if self.pretraining:
            raise ValueError("a pretraining SSAST has no classifier; build the fine-tuning id "
                             "(e.g. audio/ssast_tiny_patch) with pretrained=<the pretraining checkpoint>")
        reference = self.v.pos_embed
        self.num_classes = num_classes
        head = self._make_head(num_classes)
        if head is not None:
            for module in head.modules():
                if isinstance(module, nn.Linear):
                    trunc_normal_(module.weight, std=0.02)
                    nn.init.zeros_(module.bias)
            head = head.to(device=reference.device, dtype=reference.dtype)
        self.mlp_head = head

    def no_weight_decay(self) -> set[str]:
        return {"v.pos_embed", "v.cls_token", "v.dist_token", "mask_embed"}

    def input_shapes(self) -> dict[str, tuple[int | None, ...]]:
        """One clip's filterbank: (input_tdim, input_fdim) (``zoo.protocols.DeclaresInputShapes``)."""
        return {"input": (self.input_tdim, self.input_fdim)}

    # --- shared encoder -----------------------------------------------------------------------------------------
    def _spectrogram(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, F) filterbank -> (B, 1, F, T), checking the shape."""
        if x.ndim != 3 or x.shape[1] != self.input_tdim or x.shape[2] != self.input_fdim:
            raise InputShapeError(
                f"SSAST expects filterbanks of shape (batch, {self.input_tdim} frames, {self.input_fdim} mel bins), "
                f"got {tuple(x.shape)}; pad or cut clips to {self.input_tdim} frames (--data.num_frames) or build the "
                f"model with input_tdim={x.shape[1] if x.ndim == 3 else '...'}"
            )
        return x.unsqueeze(1).transpose(2, 3)

    def _encode(self, patches: torch.Tensor) -> torch.Tensor:
        """(B, N, D) patch embeddings -> (B, 2 + N, D) normalised tokens."""
        b = patches.shape[0]
        tokens = torch.cat([self.v.cls_token.expand(b, -1, -1), self.v.dist_token.expand(b, -1, -1), patches], 1)
        tokens = self.v.pos_drop(tokens + self.v.pos_embed)
        return self.v.norm(self.v.blocks(tokens))

    def forward_features(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B, T, F) filterbank -> (B, 2 + N, D) tokens (CLS, DIST, patches).

        Args:
            mask: optional (B, N) boolean, True where the patch embedding is replaced by the mask token
                (pretraining models only).
        """
        patches = self.v.patch_embed(self._spectrogram(x))
        if mask is not None:
            if not self.pretraining:
                raise ValueError("masking needs a pretraining model (it has the mask token)")
            patches = torch.where(mask.unsqueeze(-1), self.mask_embed.to(patches.dtype), patches)
        return self._encode(patches)

    def forward_head(self, tokens: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """(B, 2 + N, D) tokens -> (B, num_classes) logits (or (B, D) pooled features)."""
        pooled = tokens[:, NUM_PREFIX_TOKENS:].mean(1) if self.pooling == "avgtok" else tokens[:, :2].mean(1)
        if pre_logits or self.mlp_head is None:
            return pooled
        return self.mlp_head(pooled)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, F) filterbank -> (B, num_classes) logits; for pretraining models (and ``num_classes=0``) the
        (B, D) pooled features."""
        return self.forward_head(self.forward_features(x))

    # --- masked spectrogram patch modelling ---------------------------------------------------------------------
    def patch_targets(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, F) filterbank -> (B, N, fshape * tshape) raw patches (the MSPM targets), patch order of
        ``forward_features``."""
        spec = self._spectrogram(x)
        return F.unfold(spec, (self.fshape, self.tshape), stride=(self.fstride, self.tstride)).transpose(1, 2)

    def sample_mask(self, batch_size: int, num_masked: int, cluster: bool | None = None,
                    generator: torch.Generator | None = None, device: torch.device | None = None) -> torch.Tensor:
        """Indices (B, num_masked) of the patches to mask, distinct within each row, for the whole batch at once.

        Cluster masking (``cluster`` True, the patch-model default): for each clip a cluster factor c is drawn from
        {3, 4, 5}; c x c blocks of the patch grid at random corners are added in drawing order until
        ``num_masked`` distinct patches are covered. Otherwise a uniform random subset.
        """
        return mask_indices(batch_size, self.f_dim, self.t_dim, num_masked,
                            self.cluster_masking if cluster is None else cluster, generator,
                            device or self.v.pos_embed.device)

    def forward_pretext(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Predictions of both pretext heads at the masked positions.

        Args:
            x: (B, T, F) filterbank.
            mask: (B, M) indices of the masked patches (from :meth:`sample_mask`).

        Returns:
            (discriminative (B, M, P), generative (B, M, P)) with P = fshape * tshape.
        """
        if not self.pretraining:
            raise ValueError("this SSAST was built for fine-tuning and has no pretext heads (official issue 28); "
                             "use a *_pretrain id")
        masked = torch.zeros(x.shape[0], self.num_patches, dtype=torch.bool, device=x.device)
        masked.scatter_(1, mask, True)
        tokens = self.forward_features(x, masked)[:, NUM_PREFIX_TOKENS:]
        picked = tokens.gather(1, mask.unsqueeze(-1).expand(-1, -1, tokens.shape[-1]))
        return self.cpredlayer(picked), self.gpredlayer(picked)


def mask_indices(batch_size: int, f_dim: int, t_dim: int, num_masked: int, cluster: bool,
                 generator: torch.Generator | None = None, device: torch.device | str | None = None) -> torch.Tensor:
    """(batch_size, num_masked) distinct patch indices of an (f_dim x t_dim) grid per row; see
    :meth:`SSAST.sample_mask`."""
    n = f_dim * t_dim
    if not 0 < num_masked <= n:
        raise ValueError(f"cannot mask {num_masked} of {n} patches")
    if not cluster:
        scores = torch.rand(batch_size, n, generator=generator, device=device)
        return scores.argsort(1)[:, :num_masked]
    sizes = torch.randint(3, 6, (batch_size, 1, 1, 1), generator=generator, device=device)  # c in {3, 4, 5}
    # Enough random corners that the blocks cover num_masked patches with near certainty, then a random top-up.
    num_starts = max(4, (3 * num_masked) // 9 + 8)
    starts = torch.randint(0, n, (batch_size, num_starts, 1, 1), generator=generator, device=device)
    offsets = torch.arange(5, device=device)
    rows = starts // t_dim + offsets.view(1, 1, 5, 1)
    cols = starts % t_dim + offsets.view(1, 1, 1, 5)
    valid = (offsets.view(1, 1, 5, 1) < sizes) & (offsets.view(1, 1, 1, 5) < sizes) & (rows < f_dim) & (cols < t_dim)
    ids = (rows * t_dim + cols).clamp(max=n - 1).flatten(1)  # (B, K * 25) in drawing order
    order = torch.arange(ids.shape[1], device=device).expand_as(ids)
    big = ids.shape[1] + n
    order = torch.where(valid.flatten(1), order, torch.full_like(order, big))
    first = torch.full((batch_size, n), big, dtype=order.dtype, device=device)
    first.scatter_reduce_(1, ids, order, reduce="amin")  # rank of each patch's first appearance
    # Patches the blocks never reached come after all drawn ones, in random order.
    unreached = first >= big
    first = torch.where(unreached, big + torch.rand(batch_size, n, generator=generator, device=device).mul(n).long(),
                        first)
    return first.argsort(dim=1, stable=True)[:, :num_masked]


# --- checkpoints ------------------------------------------------------------------------------------------------
def adapt_pos_embed(pos_embed: torch.Tensor, source_grid: tuple[int, int],
                    target_grid: tuple[int, int]) -> torch.Tensor:
    """(1, 2 + Fs * Ts, D) positional embeddings of a source grid -> (1, 2 + Ft * Tt, D) of the target grid.

    As the official fine-tuning does: time axis centre-cropped when the target is shorter, else bilinearly
    interpolated; then the frequency axis the same way. CLS and DIST embeddings are kept.
    """
    (fs, ts), (ft, tt) = source_grid, target_grid
    prefix, grid = pos_embed[:, :NUM_PREFIX_TOKENS], pos_embed[:, NUM_PREFIX_TOKENS:]
    if grid.shape[1] != fs * ts:
        raise CheckpointError(f"positional embeddings of {grid.shape[1]} patches do not form a {fs}x{ts} grid")
    dim = grid.shape[-1]
    grid = grid.transpose(1, 2).reshape(1, dim, fs, ts).float()
    if tt < ts:
        start = ts // 2 - tt // 2
        grid = grid[..., start:start + tt]
    elif tt > ts:
        grid = F.interpolate(grid, size=(fs, tt), mode="bilinear")
    if ft < fs:
        start = fs // 2 - ft // 2
        grid = grid[:, :, start:start + ft]
    elif ft > fs:
        grid = F.interpolate(grid, size=(ft, tt), mode="bilinear")
    grid = grid.reshape(1, dim, ft * tt).transpose(1, 2).to(pos_embed.dtype)
    return torch.cat([prefix, grid], 1)


def _source_grid(state_dict: dict[str, torch.Tensor], model: SSAST, shape: tuple[int, int]) -> tuple[int, int]:
    """The patch grid the checkpoint's positional embeddings were made for."""
    num = state_dict["v.pos_embed"].shape[1] - NUM_PREFIX_TOKENS
    if "p_input_fdim" in state_dict and "p_input_tdim" in state_dict:  # a pretraining checkpoint: stride = shape
        grid = grid_size(int(state_dict["p_input_fdim"]), int(state_dict["p_input_tdim"]), shape, shape)
        if grid[0] * grid[1] == num:
            return grid
    if num == model.num_patches:
        return model.f_dim, model.t_dim
    # Fine-tuned and AST checkpoints do not record their input size: take the frequency rows of a 128-bin input at
    # the model's stride, then at the pretraining stride (= shape), then at any stride that divides the count.
    candidates = [model.f_dim, grid_size(model.input_fdim, 1, shape, shape)[0]]
    candidates += [grid_size(model.input_fdim, 1, shape, (s, 1))[0] for s in range(1, shape[0] + 1)]
    for f in candidates:
        if f > 0 and num % f == 0:
            return f, num // f
    raise CheckpointError(f"cannot tell the patch grid of positional embeddings for {num} patches")


def ssast_checkpoint_filter(state_dict: dict[str, Any], model: SSAST) -> dict[str, Any]:
    """Official SSAST (pretrained or fine-tuned), AST and zoo checkpoints -> this model's keys.

    Drops timm's unused ``v.head``/``v.head_dist``; drops the pretext parts when fine-tuning and the head when
    pretraining; adapts the positional embeddings to the model's grid; refuses another patch shape.
    """
    sd = {k: v for k, v in state_dict.items() if not k.startswith(("v.head.", "v.head_dist."))}
    weight = sd.get("v.patch_embed.proj.weight")
    if weight is None or "v.pos_embed" not in sd:
        raise CheckpointError("not an SSAST/AST checkpoint: no v.patch_embed.proj.weight or v.pos_embed "
                              f"(keys start with: {', '.join(sorted(state_dict)[:5])})")
    shape = tuple(weight.shape[-2:])
    model_shape = (model.fshape, model.tshape)
    if shape != model_shape:
        kind = {v: k for k, v in PATCH_SHAPES.items()}
        raise CheckpointError(
            f"the checkpoint cuts {shape[0]}x{shape[1]} patches ({kind.get(shape, 'custom')} model) but the model "
            f"cuts {model_shape[0]}x{model_shape[1]} ({kind.get(model_shape, 'custom')}); patch shapes must match "
            "between pretraining and fine-tuning (strides may differ): pick the model id of the same variant"
        )
    source = _source_grid(sd, model, shape)
    if source != (model.f_dim, model.t_dim):
        sd["v.pos_embed"] = adapt_pos_embed(sd["v.pos_embed"], source, (model.f_dim, model.t_dim))
    pretext = ("mask_embed", "cpredlayer.", "gpredlayer.", "p_input_fdim", "p_input_tdim")
    if model.pretraining:
        sd = {k: v for k, v in sd.items() if not k.startswith("mlp_head.")}
        sd["p_input_fdim"], sd["p_input_tdim"] = model.p_input_fdim.clone(), model.p_input_tdim.clone()
    else:
        sd = {k: v for k, v in sd.items() if not k.startswith(pretext)}
        if model.mlp_head is None:
            sd = {k: v for k, v in sd.items() if not k.startswith("mlp_head.")}
        elif not any(k.startswith("mlp_head.") for k in sd):  # an encoder without a head: keep the fresh head
            sd |= {k: v for k, v in model.state_dict().items() if k.startswith("mlp_head.")}
    return sd


def pretraining_kwargs_from_checkpoint(state_dict: dict[str, Any]) -> dict[str, Any]:
    """The input size a pretraining checkpoint records (``p_input_fdim`` / ``p_input_tdim``, official and zoo), so
    that a pretraining model built from it has the grid of its positional embeddings."""
    fdim, tdim = state_dict.get("p_input_fdim"), state_dict.get("p_input_tdim")
    if not isinstance(fdim, torch.Tensor) or not isinstance(tdim, torch.Tensor):
        return {}
    return {"input_fdim": int(fdim), "input_tdim": int(tdim)}


# --- registered configurations ----------------------------------------------------------------------------------
PAPER = Paper("SSAST: Self-Supervised Audio Spectrogram Transformer", arxiv="2110.09784", venue="AAAI 2022",
              code_url="https://github.com/YuanGongND/ssast")
LICENSE = "BSD-3-Clause (official code, read for facts only)"
DOWNLOAD_PAGE = "https://github.com/YuanGongND/ssast#pretrained-models"
# Official pretrained checkpoints (Dropbox links on the README page, no stable direct url and no published hash).
OFFICIAL = {("base", "patch"): ("SSAST-Base-Patch-400.pth", "SSAST-Base-Patch-250.pth"),
            ("base", "frame"): ("SSAST-Base-Frame-400.pth", "SSAST-Base-Frame-250.pth"),
            ("small", "patch"): ("SSAST-Small-Patch-400.pth",),
            ("tiny", "patch"): ("SSAST-Tiny-Patch-400.pth",),
            ("tiny", "frame"): ("SSAST-Tiny-Frame-400.pth",)}
REPORTED = {"SSAST-Base-Patch-400.pth": {"avg_audio": 59.9, "avg_speech": 79.5},
            "SSAST-Base-Frame-400.pth": {"avg_audio": 57.6, "avg_speech": 84.0},
            "SSAST-Base-Patch-250.pth": {"avg_audio": 58.6, "avg_speech": 79.5},
            "SSAST-Base-Frame-250.pth": {"avg_audio": 55.6, "avg_speech": 81.6},
            "SSAST-Small-Patch-400.pth": {"avg_audio": 58.1, "avg_speech": 78.2},
            "SSAST-Tiny-Patch-400.pth": {"avg_audio": 53.3, "avg_speech": 75.7},
            "SSAST-Tiny-Frame-400.pth": {"avg_audio": 47.8}}

# (size, variant) -> (pretraining params, fine-tuning params at 1024 frames with the 527-class head, MACs of each)
NUM_PARAMS = {
    ("tiny", "patch"): (5_660_288, 5_723_663), ("tiny", "frame"): (5_660_288, 5_687_375),
    ("small", "patch"): (22_084_352, 22_063_631), ("small", "frame"): (22_084_352, 21_991_055),
    ("base", "patch"): (87_225_344, 86_594_063), ("base", "frame"): (87_225_344, 86_448_911),
}
MACS = {  # at the card's input (1, 1024, 128), counted by zoo.profile.count_macs' rules
    ("tiny", "patch", True): 3_971_106_816,
    ("tiny", "patch", False): 13_295_342_400,
    ("tiny", "frame", True): 3_971_106_816,
    ("tiny", "frame", False): 10_332_790_080,
    ("small", "patch", True): 13_399_265_280,
    ("small", "patch", False): 39_479_518_848,
    ("small", "frame", True): 13_399_265_280,
    ("small", "frame", False): 31_547_832_960,
    ("base", "patch", True): 48_626_737_152,
    ("base", "patch", False): 130_514_373_888,
    ("base", "frame", True): 48_626_737_152,
    ("base", "frame", False): 106_624_677_120,
}

NOTES_COMMON = (
    "Input: Kaldi-compatible 128-bin log-mel filterbank (zoo.data.audio.KaldiFbank: torchaudio.compliance.kaldi.fbank, "
    "htk_compat, hanning window, 25 ms / 10 ms, no dither), normalised (x - mean) / (2 std) with the dataset's "
    "statistics (AudioSet -4.268/4.569, ESC-50 -6.627/5.358, Speech Commands -6.846/5.565). Official checkpoints "
    "are Dropbox downloads without published hashes: fetch them from the README page and pass the path. "
    "Masking is vectorised; cluster masks are true c x c blocks (the release wraps blocks over the right edge into the "
    "next row, never masks patch 0 and keeps the lowest indices of a Python set when a draw overshoots)."
)


QUICK_START_NOTE = (
    "Quick start (recipe quickstart): 10 English words synthesised offline, 240 eSpeak NG voices each "
    "(zoo.data.spoken_words), 96 frames x 40 mel bins (16x16 patches at stride 16: the model hears 20 Hz-4.6 kHz), "
    "the 12-block model from scratch, 12 epochs at AdamW 3e-4. Measured for ssast_tiny_patch on 2 quiet CPU cores "
    "(2026-12-07, seeds 0 and 1, 238-287 s): test accuracy 0.86-0.89 on eSpeak takes and 0.51-0.52 on the same "
    "words from Flite and Festival voices it never heard (benchmarks/ssast_heldout.py; chance 0.10; the mel bins and "
    "learning rate were chosen looking at those voices, so the figure is somewhat optimistic). 128 bins and learning "
    "rate 1e-3, the recipe before, gave 0.30-0.32 there. It carries over to other synthetic voices about half the "
    "time; it is not a keyword spotter for a person's voice. "
)


def _weights(size: str, variant: str, pretraining: bool) -> tuple[WeightSet, ...]:
    sets = []
    for file in OFFICIAL.get((size, variant), ()):
        name = "official_" + file.removesuffix(".pth").lower().replace("ssast-", "").replace("-", "_")
        sets.append(WeightSet(
            name=name, file_name=file, download_page=DOWNLOAD_PAGE, license="BSD-3-Clause",
            description=(f"official MSPM pretraining on AudioSet-2M + LibriSpeech ({file}), 128 x 1024 inputs"
                         + ("" if pretraining else "; the fine-tuning model takes the encoder and adapts the "
                            "positional embeddings")),
            metrics=REPORTED.get(file, {}),
        ))
    return tuple(sets)


def _register(size: str, variant: str, pretraining: bool) -> None:
    dim, heads = SIZES[size]
    fshape, tshape = PATCH_SHAPES[variant]
    fstride, tstride = (fshape, tshape) if pretraining else FINE_TUNE_STRIDES[variant]
    model_id = f"audio/ssast_{size}_{variant}" + ("_pretrain" if pretraining else "")
    fixed = dict(embed_dim=dim, depth=12, num_heads=heads, fshape=fshape, tshape=tshape, fstride=fstride,
                 tstride=tstride, pretraining=pretraining)
    grid = grid_size(128, 1024, (fshape, tshape), (fstride, tstride))
    if pretraining:
        card = ModelCard(
            task="masked_pretraining", paper=PAPER, license=LICENSE, num_params=NUM_PARAMS[(size, variant)][0],
            macs=MACS.get((size, variant, True)), input_shape=(1024, 128), output=Pretext(),
            recipes={"quickstart": "ssast_pretrain_quickstart.yaml", "paper": f"ssast_pretrain_{variant}.yaml"},
            weights=_weights(size, variant, True),
            notes=(f"MSPM pretraining model: {fshape}x{tshape} patches at stride = shape, {grid[0]}x{grid[1]} = "
                   f"{grid[0] * grid[1]} patches of 128 x 1024 inputs, "
                   f"{'cluster' if variant == 'patch' else 'random'} masking of 400; joint loss InfoNCE + 10 MSE "
                   "from two forward passes. InfoNCE normalises each prediction over the masked patches as the "
                   "paper's Eq. 1; the release normalises over the predictions (issue 13): the task's "
                   "nce_normalise='official' gives its loss and masked accuracy. The input size is read from an "
                   "official or zoo pretraining file (p_input_fdim/p_input_tdim). "
                   "The parameter count is the official state dict's without timm's unused "
                   "v.head/v.head_dist and the two p_input_* scalars (buffers here). Fine-tune with "
                   f"`zoo train audio/ssast_{size}_{variant} --model.pretrained "
                   "runs:/<this run id>/pretrained/model.safetensors` (the encoder this task logs). "
                   + NOTES_COMMON),
        )
    else:
        card = ModelCard(
            task="image_classification", paper=PAPER, license=LICENSE, num_params=NUM_PARAMS[(size, variant)][1],
            macs=MACS.get((size, variant, False)), input_shape=(1024, 128), output=Classes(527),
            recipes={"quickstart": f"ssast_{variant}_quickstart.yaml",
                     "speechcommands": f"ssast_{variant}_speechcommands.yaml", "esc50": f"ssast_{variant}_esc50.yaml"},
            weights=_weights(size, variant, False),
            notes=(f"Fine-tuning model: {fshape}x{tshape} patches at stride ({fstride}, {tstride}), "
                   f"{grid[0]}x{grid[1]} = {grid[0] * grid[1]} patches of 128 x 1024 inputs (AudioSet, 527 classes) by "
                   "default; mean of the patch tokens (pooling='cls': of the CLS and DIST tokens) -> LayerNorm -> "
                   "Linear. pretrained= takes "
                   "official pretrained and fine-tuned SSAST checkpoints, AST checkpoints (base) and zoo pretraining "
                   "runs; positional embeddings are centre-cropped or interpolated to the grid. " + QUICK_START_NOTE
                   + NOTES_COMMON),
        )

    def factory(num_classes: int = 527, **kwargs: Any) -> SSAST:
        overrides = {k: kwargs.pop(k) for k in list(kwargs) if k in fixed and k not in ("fstride", "tstride", "depth")}
        if overrides:
            raise ValueError(f"{model_id} fixes {', '.join(overrides)}; pick another SSAST id")
        args = {**fixed, **kwargs}
        if pretraining:
            args["num_classes"] = 0
        else:
            args["num_classes"] = num_classes
        return SSAST(**args)

    factory.__name__ = factory.__qualname__ = model_id.rpartition("/")[2]
    factory.__doc__ = f"SSAST-{size} {variant} ({'pretraining' if pretraining else 'fine-tuning'})."
    register_model(model_id, card=card, checkpoint_filter=ssast_checkpoint_filter,
                   kwargs_from_checkpoint=pretraining_kwargs_from_checkpoint if pretraining else None)(factory)


for _size in SIZES:
    for _variant in PATCH_SHAPES:
        for _pretraining in (True, False):
            _register(_size, _variant, _pretraining)
