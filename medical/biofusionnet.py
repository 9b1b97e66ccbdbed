"""BioFusionNet (Mondol, Millar, Sowmya, Meijering 2024, arXiv 2402.10717): survival risk of ER+ breast cancer
from histopathology patch features, gene expression and clinical variables.

Pipeline (dimensions of the released code, re-implemented from the paper; the repository has no licence):

1. three frozen self-supervised ViT-S/16 pathology extractors give 384-d features per 224 px patch; their
   per-patch concatenation is 1152-d (at most 500 patches per patient);
2. a VAE (1152 -> 512 -> 256 (mu, log var) -> 512 -> 1152) fuses them; its mean ``mu`` (256-d) is the patch
   embedding. The VAE is its own stage: ``mu`` is detached from the risk network and the VAE learns from its own
   loss (``auxiliary_loss``: summed MSE + KL, beta 1);
3. patient-level self-attention over the patches (Q/K/V 256 -> 256, softmax(QK^T) without 1/sqrt(d));
4. co-attention (bias-free projections, image 256 -> 256, genes 138 -> 256), dual cross-attention in two stages
   (scaled dot-product blocks 256 -> 256; stage 2 re-attends to the image features and to genes projected
   138 -> 256), the [image | gene] concatenation (512) through a 3-layer post-norm transformer encoder (8 heads,
   FFN 512, dropout 0.1);
5. 512 -> 512 -> 256 -> 128 (Linear, LayerNorm, ReLU, Dropout 0.1/0.1/0.01), the 4 clinical variables appended,
   132 -> 32 (LayerNorm, ReLU, Dropout 0.01), 32 -> 1 without bias: the log-risk.

``attention="tokens"`` (default) is what the paper describes: attention over real token sequences (the patches;
the gene vector is one token), the transformer encoder over the patch tokens each joined with the gene token,
masked mean pooling at the end. ``attention="released"`` is the released behaviour: the patches are summed into
one vector first, so every co-/cross-attention is over one key (weight 1) and the encoder sees a sequence of
length 1 (computed per patient, as the released code calls the model one patient at a time).
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from zoo.errors import InputShapeError
from zoo.registry import ModelCard, Paper, Risk, register_model

PATCH_FEATURES = 1152  # 3 extractors x 384
FUSED = 256
GENES = 138
CLINICAL = 4
MAX_PATCHES = 500
EXTRACTORS = {  # timm hub ids of the frozen feature extractors (ViT-S/16, 384-d each)
    "dino33m": "hf-hub:1aurent/vit_small_patch16_224.lunit_dino",
    "dino2m": "hf-hub:1aurent/vit_small_patch16_256.tcga_brca_dino",
    "mocov3": "hf-hub:1aurent/vit_small_patch16_224.transpath_mocov3",
}


def _attend(q: Tensor, k: Tensor, v: Tensor, scale: float, key_mask: Tensor | None) -> Tensor:
    """softmax(q k^T * scale) v over (B, Lq, D) x (B, Lk, D); ``key_mask`` (B, Lk) True where a key is real."""
    scores = q @ k.transpose(-2, -1) * scale
    if key_mask is not None:
        scores = scores.masked_fill(~key_mask[:, None, :], float("-inf"))
    return F.softmax(scores, dim=-1) @ v


class FusionVAE(nn.Module):
    """The VAE that fuses the three extractors' features of a patch. (B, N, 1152) -> mu (B, N, 256)."""

    def __init__(self, in_features: int = PATCH_FEATURES, hidden: int = 512, latent: int = FUSED, beta: float = 1.0):
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden)
        self.fc21 = nn.Linear(hidden, latent)
        self.fc22 = nn.Linear(hidden, latent)
        self.fc3 = nn.Linear(latent, hidden)
        self.fc4 = nn.Linear(hidden, in_features)
        self.beta = beta

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h = F.relu(self.fc1(x))
        return self.fc21(h), self.fc22(h)

    def decode(self, z: Tensor) -> Tensor:
        return self.fc4(F.relu(self.fc3(z)))

    def loss(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """Summed reconstruction MSE + beta * KL over the real patches, divided by their number."""
        mu, logvar = self.encode(x)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if self.training else mu
        per_patch = F.mse_loss(self.decode(z), x, reduction="none").sum(-1)
        per_patch = per_patch - 0.5 * self.beta * (1 + logvar - mu.pow(2) - logvar.exp()).sum(-1)
        if mask is None:
            return per_patch.mean()
        return (per_patch * mask).sum() / mask.sum().clamp_min(1)


class PatchSelfAttention(nn.Module):
    """Patient-level self-attention over patches, unscaled as released. (B, N, D) -> (B, N, D)."""

    def __init__(self, dim: int = FUSED):
        super().__init__()
        self.query, self.key, self.value = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        return _attend(self.query(x), self.key(x), self.value(x), 1.0, mask)


class CoAttention(nn.Module):
    """Image attends to genes and genes attend to image (bias-free projections, unscaled)."""

    def __init__(self, img_dim: int = FUSED, gene_dim: int = GENES, dim: int = FUSED):
        super().__init__()
        self.img_query = nn.Linear(img_dim, dim, bias=False)
        self.img_key = nn.Linear(img_dim, dim, bias=False)
        self.img_value = nn.Linear(img_dim, dim, bias=False)
        self.gene_query = nn.Linear(gene_dim, dim, bias=False)
        self.gene_key = nn.Linear(gene_dim, dim, bias=False)
        self.gene_value = nn.Linear(gene_dim, dim, bias=False)

    def forward(self, img: Tensor, gene: Tensor, img_mask: Tensor | None) -> tuple[Tensor, Tensor]:
        """img (B, N, 256), gene (B, 1, 138) -> (B, N, 256), (B, 1, 256)."""
        img_to_gene = _attend(self.img_query(img), self.gene_key(gene), self.gene_value(gene), 1.0, None)
        gene_to_img = _attend(self.gene_query(gene), self.img_key(img), self.img_value(img), 1.0, img_mask)
        return img_to_gene, gene_to_img


class ScaledAttention(nn.Module):
    """Scaled dot-product attention with its own Q/K/V projections (with bias)."""

    def __init__(self, dim: int = FUSED, out_dim: int = FUSED):
        super().__init__()
        self.query, self.key, self.value = nn.Linear(dim, out_dim), nn.Linear(dim, out_dim), nn.Linear(dim, out_dim)
        self.scale = out_dim ** -0.5

    def forward(self, q: Tensor, k: Tensor, v: Tensor, key_mask: Tensor | None = None) -> Tensor:
        return _attend(self.query(q), self.key(k), self.value(v), self.scale, key_mask)


class DualCrossAttention(nn.Module):
    """Two cross-attention blocks; with ``gene_dim`` set, the second projects raw genes 138 -> 256 first."""

    def __init__(self, dim: int = FUSED, gene_dim: int | None = None):
        super().__init__()
        self.attention1 = ScaledAttention(dim, dim)
        self.attention2 = ScaledAttention(dim, dim)
        if gene_dim is not None:
            self.adjust_gene_dim = nn.Linear(gene_dim, dim)


class CoDualCrossAttention(nn.Module):
    """Co-attention, two stages of dual cross-attention and the 3-layer transformer encoder over [img | gene]."""

    def __init__(self, dim: int = FUSED, gene_dim: int = GENES, heads: int = 8, layers: int = 3,
                 ffn: int = 512, dropout: float = 0.1):
        super().__init__()
        self.co_attention = CoAttention(dim, gene_dim, dim)
        self.dual_cross_attention = DualCrossAttention(dim)
        self.dual_cross_attention2 = DualCrossAttention(dim, gene_dim)
        layer = nn.TransformerEncoderLayer(2 * dim, heads, ffn, dropout, batch_first=True)
        # The released module also registers this template layer as an attribute (1,577,984 unused parameters);
        # here it is only the template that nn.TransformerEncoder copies.
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)

    def forward(self, img: Tensor, gene: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor]:
        """img (B, N, 256), gene (B, 1, 138), mask (B, N) -> tokens (B, N, 512) after the encoder."""
        co_img, co_gene = self.co_attention(img, gene, mask)
        s1 = self.dual_cross_attention
        img_to_gene = s1.attention1(co_img, co_gene, co_gene)
        gene_to_img = s1.attention2(co_gene, co_img, co_img, mask)
        s2 = self.dual_cross_attention2
        refined_img = s2.attention1(img_to_gene, img, img, mask)
        genes = s2.adjust_gene_dim(gene)
        refined_gene = s2.attention2(gene_to_img, genes, genes)
        tokens = torch.cat([refined_img, refined_gene.expand(-1, refined_img.shape[1], -1)], dim=-1)
        padding = None if mask is None else ~mask
        return self.encoder(tokens, src_key_padding_mask=padding)


def _block(in_features: int, out_features: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_features, out_features), nn.LayerNorm(out_features), nn.ReLU(),
                         nn.Dropout(dropout))


class BioFusionNet(nn.Module):
    """Multimodal log-risk.

    Args:
        fusion: "vae" (inputs are the 1152-d extractor features; the VAE stage is part of the model) or "none"
            (inputs are already-fused 256-d patch embeddings, e.g. the released VAE feature files).
        attention: "tokens" (the paper: attention over patch tokens) or "released" (patches summed first;
            every later attention is over one key).
        clinical_features, gene_features: widths of the two further inputs.

    Inputs: ``patches`` (B, N, 1152 or 256) with N <= 500 (zero-padded), ``genes`` (B, 138), ``clinical`` (B, 4),
    optional ``mask`` (B, N) True for real patches. Output: (B,) log-risks.
    """

    def __init__(self, fusion: str = "vae", attention: str = "tokens", gene_features: int = GENES,
                 clinical_features: int = CLINICAL, dropout: float = 0.1):
        super().__init__()
        if fusion not in ("vae", "none"):
            raise ValueError(f"fusion must be 'vae' or 'none', got {fusion!r}")
        if attention not in ("tokens", "released"):
            raise ValueError(f"attention must be 'tokens' or 'released', got {attention!r}")
        self.fusion, self.attention = fusion, attention
        self.in_features = PATCH_FEATURES if fusion == "vae" else FUSED
        self.gene_features, self.clinical_features = gene_features, clinical_features
        self.vae = FusionVAE() if fusion == "vae" else None
        self.self_attention = PatchSelfAttention(FUSED)
        self.comodel = CoDualCrossAttention(FUSED, gene_features, dropout=dropout)
        self.fc1 = _block(2 * FUSED, 512, dropout)
        self.fc2 = _block(512, 256, dropout)
        self.fc3 = _block(256, 128, dropout / 10)
        self.fc4 = _block(128 + clinical_features, 32, dropout / 10)
        self.final_layer = nn.Sequential(nn.Linear(32, 1, bias=False))

    def _check(self, patches: Tensor, genes: Tensor, clinical: Tensor, mask: Tensor | None) -> None:
        if patches.ndim != 3 or patches.shape[-1] != self.in_features:
            raise InputShapeError(f"patches must be (B, N, {self.in_features}) (fusion={self.fusion!r}), "
                                  f"got {tuple(patches.shape)}")
        batch = patches.shape[0]
        if genes.shape != (batch, self.gene_features):
            raise InputShapeError(f"genes must be (B, {self.gene_features}) = ({batch}, {self.gene_features}), "
                                  f"got {tuple(genes.shape)}")
        if clinical.shape != (batch, self.clinical_features):
            raise InputShapeError(f"clinical must be ({batch}, {self.clinical_features}), got {tuple(clinical.shape)}")
        if mask is not None and mask.shape != patches.shape[:2]:
            raise InputShapeError(f"mask must be (B, N) = {tuple(patches.shape[:2])}, got {tuple(mask.shape)}")

    def input_shapes(self) -> dict[str, tuple[int | None, ...]]:
        """Patches (any number up to 500, in_features), genes and clinical covariates
        (``zoo.protocols.DeclaresInputShapes``)."""
        return {"input": (None, self.in_features), "genes": (self.gene_features,),
                "clinical": (self.clinical_features,)}

    def embed_patches(self, patches: Tensor) -> Tensor:
        """(B, N, 1152) extractor features -> (B, N, 256) VAE means (detached: the VAE is its own stage)."""
        if self.vae is None:
            return patches
        return self.vae.encode(patches)[0].detach()

    def auxiliary_loss(self, patches: Tensor, genes: Tensor, clinical: Tensor, mask: Tensor | None = None) -> Tensor:
        """The VAE stage's own loss (zero without a VAE); a survival task adds it to the Cox loss."""
        if self.vae is None:
            return patches.new_zeros(())
        return self.vae.loss(patches, None if mask is None else mask.to(patches.dtype))

    def forward(self, patches: Tensor, genes: Tensor, clinical: Tensor, mask: Tensor | None = None) -> Tensor:
        """patches (B, N, F), genes (B, 138), clinical (B, 4), mask (B, N) bool -> log-risk (B,)."""
        self._check(patches, genes, clinical, mask)
        mask = None if mask is None else mask.bool()
        img = self.embed_patches(patches)
        attended = self.self_attention(img, mask)
        if mask is not None:
            attended = attended * mask[..., None]
        gene = genes[:, None, :]
        if self.attention == "released":
            pooled = attended.sum(dim=1, keepdim=True)  # one vector per patient: later softmaxes are over 1 key
            fused = self.comodel(pooled, gene, None)[:, 0]
        else:
            tokens = self.comodel(attended, gene, mask)
            if mask is None:
                fused = tokens.mean(dim=1)
            else:
                weights = mask[..., None].to(tokens.dtype)
                fused = (tokens * weights).sum(1) / weights.sum(1).clamp_min(1)
        x = self.fc3(self.fc2(self.fc1(fused)))
        x = self.fc4(torch.cat([x, clinical], dim=1))
        return self.final_layer(x)[:, 0]


def released_checkpoint_filter(state_dict: dict[str, Any], model: nn.Module) -> dict[str, Any]:
    """Map the released ``MultimodalModel`` layout onto this model: the names are the same; the orphan template
    layer ``comodel.transformer_encoder.*`` (registered, never called) is dropped with a message. A released risk
    model holds no VAE, so with ``fusion='vae'`` the VAE keeps its current weights (load a VAE state dict with
    ``model.vae.load_state_dict``; the released ``VAE.py`` names ``fc1, fc21, fc22, fc3, fc4`` match)."""
    orphan = [k for k in state_dict if k.startswith("comodel.transformer_encoder.")]
    if orphan:
        count = sum(state_dict[k].numel() for k in orphan)
        warnings.warn(f"ignoring the released checkpoint's unused encoder layer comodel.transformer_encoder.* "
                      f"({len(orphan)} tensors, {count:,} parameters): it is registered but never called",
                      stacklevel=2)
    out = {k: v for k, v in state_dict.items() if k not in orphan}
    if getattr(model, "vae", None) is not None and not any(k.startswith("vae.") for k in out):
        out.update({f"vae.{k}": v for k, v in model.vae.state_dict().items()})
    return out


def released_kwargs(state_dict: dict[str, Any]) -> dict[str, Any]:
    """A released risk model's file holds no VAE (``train_loop.py`` saves the ``MultimodalModel``, which reads the
    VAE features of ``training_VAE.py``): such a file builds ``fusion='none'``."""
    if "self_attention.query.weight" in state_dict and not any(k.startswith("vae.") for k in state_dict):
        return {"fusion": "none"}
    return {}


PAPER = Paper("BioFusionNet: Deep Learning-Based Survival Risk Stratification in ER+ Breast Cancer Through "
              "Multifeature and Multimodal Data Fusion", arxiv="2402.10717", venue="IEEE JBHI 2024",
              code_url="https://github.com/raktim-mondol/BioFusionNet")
NOTES = (
    "Parameters: 8,067,584 = 6,492,032 on the released risk model's forward path + 1,575,552 of the VAE fusion "
    "stage (fusion='none' drops the VAE: 6,492,032). The released state dict also holds 1,577,984 parameters of an "
    "encoder layer registered but never called (comodel.transformer_encoder.*): not built here, and ignored with a "
    "message when released-layout weights load. "
    "attention='tokens' (default) attends over real token sequences as the paper describes: the patch tokens in "
    "the self-attention, in gene-attends-image co-attention and in both dual cross-attention stages (image "
    "queries attending to image keys), and in the transformer encoder (each patch token joined with the gene "
    "token), then a masked mean over patches; attention whose keys are the single gene token stays weight 1. "
    "attention='released' keeps the release: patches summed into one vector, every later softmax over one key "
    "(inert), encoder sequence length 1. "
    "The VAE is its own stage (mu detached); it trains from its own loss (summed MSE + KL, beta 1) alongside the "
    "Cox loss in one loop rather than first (the paper trains it first, AdamW 1e-3, 100 epochs). "
    f"Feature extractors (timm, frozen, 224 px patches at 0.25 um/px, Macenko-normalised): {EXTRACTORS}. "
    "Features are standardised with training-set statistics by the data module (the release z-scores per batch). "
    "Clinical inputs: Grade, Age, LN_Status, Tumor_Size, binarised. The paper's weighted Cox loss is the survival "
    "task's event_weight (the release sorts risk sets by predicted risk and passes uniform weights, which cancel: "
    "both fixed). Quick start (biofusionnet_quickstart.yaml, zoo.data.survival.MultimodalSurvivalData without a "
    "root): REAL survival and the 4 clinical variables of the GBSG2 breast-cancer cohort (lifelines, 686 patients, "
    "299 events), SIMULATED gene expression (138 genes) and patch features (8 x 3 x 384 per patient) with a weak "
    "signal of the real receptor values; no slides or RNA ship offline. The paper recipe (biofusionnet_paper.yaml) "
    "reads the real layout with 5-fold CV and td-AUC at 5 and 10 years. "
    "No weights are released; the repository has no licence (re-implemented from the paper)."
)


def _card(num_params: int, in_features: int) -> ModelCard:
    return ModelCard(
        task="survival", paper=PAPER, license="none (all rights reserved; re-implemented from the paper)",
        num_params=num_params, input_shape=(MAX_PATCHES, in_features),
        extra_inputs={"genes": (GENES,), "clinical": (CLINICAL,)}, output=Risk(),
        recipes={"quickstart": "biofusionnet_quickstart.yaml", "paper": "biofusionnet_paper.yaml"}, notes=NOTES,
    )


@register_model("medical/biofusionnet", card=_card(8_067_584, PATCH_FEATURES),
                checkpoint_filter=released_checkpoint_filter, kwargs_from_checkpoint=released_kwargs)
def biofusionnet(**kwargs: Any) -> BioFusionNet:
    return BioFusionNet(**kwargs)
