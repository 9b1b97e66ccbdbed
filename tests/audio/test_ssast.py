"""SSAST: parameter counts against the official state-dict layout, official pretrained / fine-tuned / AST checkpoints,
positional-embedding adaptation, masking statistics, shapes and errors."""

import pytest
import torch
from zoo.audio.ssast import SSAST, adapt_pos_embed, mask_indices, ssast_checkpoint_filter

import zoo
from zoo.errors import CheckpointError, InputShapeError

SIZES = {"tiny": (192, 3), "small": (384, 6), "base": (768, 12)}
SHAPES = {"patch": (16, 16), "frame": (128, 2)}


def official_shapes(dim, fshape, tshape, num_patches, pretraining, num_classes=None, depth=12):
    """Key -> shape of an official SSAST/AST ``.pth`` (DataParallel prefix, timm's ImageNet heads included)."""
    shapes = {"v.cls_token": (1, 1, dim), "v.dist_token": (1, 1, dim), "v.pos_embed": (1, num_patches + 2, dim),
              "v.patch_embed.proj.weight": (dim, 1, fshape, tshape), "v.patch_embed.proj.bias": (dim,),
              "v.norm.weight": (dim,), "v.norm.bias": (dim,), "v.head.weight": (1000, dim), "v.head.bias": (1000,),
              "v.head_dist.weight": (1000, dim), "v.head_dist.bias": (1000,)}
    for i in range(depth):
        p = f"v.blocks.{i}."
        shapes |= {p + "norm1.weight": (dim,), p + "norm1.bias": (dim,), p + "attn.qkv.weight": (3 * dim, dim),
                   p + "attn.qkv.bias": (3 * dim,), p + "attn.proj.weight": (dim, dim), p + "attn.proj.bias": (dim,),
                   p + "norm2.weight": (dim,), p + "norm2.bias": (dim,), p + "mlp.fc1.weight": (4 * dim, dim),
                   p + "mlp.fc1.bias": (4 * dim,), p + "mlp.fc2.weight": (dim, 4 * dim), p + "mlp.fc2.bias": (dim,)}
    if pretraining:
        for head in ("cpredlayer", "gpredlayer"):
            shapes |= {f"{head}.0.weight": (dim, dim), f"{head}.0.bias": (dim,),
                       f"{head}.2.weight": (fshape * tshape, dim), f"{head}.2.bias": (fshape * tshape,)}
        shapes |= {"mask_embed": (1, 1, dim), "p_input_fdim": (), "p_input_tdim": ()}
    if num_classes:
        shapes |= {"mlp_head.0.weight": (dim,), "mlp_head.0.bias": (dim,), "mlp_head.1.weight": (num_classes, dim),
                   "mlp_head.1.bias": (num_classes,)}
    return {"module." + k: v for k, v in shapes.items()}


def official_state_dict(*args, **kwargs):
    sd = {k: torch.randn(s) for k, s in official_shapes(*args, **kwargs).items()}
    if "module.p_input_fdim" in sd:
        sd["module.p_input_fdim"], sd["module.p_input_tdim"] = torch.tensor(128), torch.tensor(1024)
    return sd


def numel(shapes, skip=("v.head.", "v.head_dist.", "p_input_")):
    return sum(torch.Size(s).numel() for k, s in shapes.items() if not any(x in k for x in skip))


@pytest.mark.parametrize("size", list(SIZES))
@pytest.mark.parametrize("variant", list(SHAPES))
def test_parameter_counts_equal_the_official_layout(size, variant):
    dim, _ = SIZES[size]
    fshape, tshape = SHAPES[variant]
    pretrain = official_shapes(dim, fshape, tshape, 512, pretraining=True)
    grid = {"patch": 12 * 101, "frame": 1023}[variant]  # fine-tuning at 1024 frames, stride 10 / (128, 1)
    fine = official_shapes(dim, fshape, tshape, grid, pretraining=False, num_classes=527)
    assert zoo.get_card(f"audio/ssast_{size}_{variant}_pretrain").num_params == numel(pretrain)
    assert zoo.get_card(f"audio/ssast_{size}_{variant}").num_params == numel(fine)
    # The README's "6M / 23M / 89M" count timm's unused ImageNet heads left in the files.
    readme = {"tiny": 6e6, "small": 23e6, "base": 89e6}[size]
    assert abs(numel(pretrain, skip=("p_input_",)) - readme) / readme < 0.06


def test_official_pretrained_checkpoint_loads_for_pretraining_and_fine_tuning(tmp_path):
    path = tmp_path / "SSAST-Tiny-Patch-400.pth"
    sd = official_state_dict(192, 16, 16, 512, pretraining=True)
    torch.save(sd, path)
    model = zoo.create_model("audio/ssast_tiny_patch_pretrain", pretrained=str(path))  # nothing missing/unexpected
    assert torch.equal(model.cpredlayer[2].weight, sd["module.cpredlayer.2.weight"])
    assert torch.equal(model.v.pos_embed, sd["module.v.pos_embed"])
    fine = zoo.create_model("audio/ssast_tiny_patch", pretrained=str(path), num_classes=35, input_tdim=128)
    assert fine.v.pos_embed.shape == (1, 2 + 12 * 12, 192)
    assert torch.equal(fine.v.blocks[3].mlp.fc1.weight, sd["module.v.blocks.3.mlp.fc1.weight"])
    assert torch.equal(fine.v.pos_embed[:, :2], sd["module.v.pos_embed"][:, :2])
    assert fine(torch.randn(2, 128, 128)).shape == (2, 35)


def test_frame_fine_tuning_crops_the_time_axis_of_the_pretraining_grid(tmp_path):
    sd = official_state_dict(192, 128, 2, 512, pretraining=True)
    torch.save(sd, tmp_path / "frame.pth")
    fine = zoo.create_model("audio/ssast_tiny_frame", pretrained=str(tmp_path / "frame.pth"), num_classes=35,
                            input_tdim=128)
    assert (fine.f_dim, fine.t_dim) == (1, 127)
    grid = sd["module.v.pos_embed"][:, 2:]
    start = 512 // 2 - 127 // 2
    assert torch.equal(fine.v.pos_embed[:, 2:], grid[:, start:start + 127])


def test_official_fine_tuned_checkpoint_reloads_without_p_input(tmp_path):
    """Official issue 7: fine-tuned files lack p_input_*, and the official loader fails on them."""
    sd = official_state_dict(192, 16, 16, 12 * 12, pretraining=False, num_classes=35)
    torch.save(sd, tmp_path / "speechcommands.pth")
    model = zoo.create_model("audio/ssast_tiny_patch", pretrained=str(tmp_path / "speechcommands.pth"),
                             input_tdim=128)
    assert model.num_classes == 35 and torch.equal(model.mlp_head[1].weight, sd["module.mlp_head.1.weight"])


def test_ast_checkpoint_layout_adapts_to_a_shorter_input():
    """AST's AudioSet checkpoints: 12 x 101 patches (1214 positions) of a ViT-B; a 512-frame model crops time."""
    sd = {k.removeprefix("module."): v for k, v in
          official_state_dict(768, 16, 16, 1212, pretraining=False, num_classes=527, depth=1).items()}
    model = SSAST(embed_dim=768, depth=1, num_heads=12, input_tdim=512, num_classes=527)
    fitted = ssast_checkpoint_filter(sd, model)
    model.load_state_dict(fitted)  # strict: nothing missing or unexpected
    grid = sd["v.pos_embed"][:, 2:].reshape(1, 12, 101, 768)
    assert torch.equal(model.v.pos_embed[:, 2:].reshape(1, 12, 50, 768), grid[:, :, 25:75])


def test_pos_embed_interpolates_a_longer_grid_and_keeps_prefix_tokens():
    pos = torch.randn(1, 2 + 8 * 64, 16)
    out = adapt_pos_embed(pos, (8, 64), (12, 101))
    assert out.shape == (1, 2 + 12 * 101, 16) and torch.equal(out[:, :2], pos[:, :2])
    assert torch.equal(adapt_pos_embed(pos, (8, 64), (8, 64)), pos)


def test_mismatched_patch_shapes_are_refused_naming_both(tmp_path):
    torch.save(official_state_dict(192, 128, 2, 512, pretraining=True), tmp_path / "frame.pth")
    with pytest.raises(CheckpointError, match=r"128x2 patches \(frame.*16x16 \(patch\)"):
        zoo.create_model("audio/ssast_tiny_patch", pretrained=str(tmp_path / "frame.pth"))


def test_cluster_masks_are_distinct_blocks_and_random_masks_uniform():
    generator = torch.Generator().manual_seed(0)
    masks = mask_indices(64, 8, 64, 400, cluster=True, generator=generator)
    assert masks.shape == (64, 400)
    assert all(len(set(row.tolist())) == 400 for row in masks)  # never the same patch twice

    def neighbour_share(masks, f_dim=8, t_dim=64):
        grid = torch.zeros(len(masks), f_dim * t_dim, dtype=torch.bool).scatter_(1, masks, True)
        grid = grid.view(-1, f_dim, t_dim)
        padded = torch.nn.functional.pad(grid, (1, 1, 1, 1))
        near = padded[:, :-2, 1:-1] | padded[:, 2:, 1:-1] | padded[:, 1:-1, :-2] | padded[:, 1:-1, 2:]
        return (near & grid).sum().item() / grid.sum().item()

    clustered = mask_indices(64, 8, 64, 100, cluster=True, generator=generator)
    scattered = mask_indices(64, 8, 64, 100, cluster=False, generator=generator)
    assert neighbour_share(clustered) > 0.97 > 0.8 > neighbour_share(scattered)
    # Cluster sizes: a lone 3x3..5x5 block at the start of a draw (corner far from the edges).
    counts = torch.zeros(512)
    frames = mask_indices(2000, 1, 512, 400, cluster=False, generator=generator)
    counts.scatter_add_(0, frames.flatten(), torch.ones(frames.numel()))
    assert counts.min() > 0 and (counts / 2000).sub(400 / 512).abs().max() < 0.05  # every frame equally likely


def test_masking_covers_patch_zero_unlike_the_release():
    masks = mask_indices(400, 8, 64, 400, cluster=True, generator=torch.Generator().manual_seed(1))
    assert (masks == 0).any()


def test_pretext_outputs_and_features():
    model = zoo.create_model("audio/ssast_tiny_patch_pretrain", input_tdim=64)
    x = torch.randn(3, 64, 128)
    assert model.num_patches == 8 * 4 and model(x).shape == (3, 192)
    mask = model.sample_mask(3, 20)
    disc, gen = model.forward_pretext(x, mask)
    assert disc.shape == gen.shape == (3, 20, 256)
    targets = model.patch_targets(x)
    # patch k of the unfold is the k-th 16x16 block, frequency-major
    f, t = divmod(5, 4)
    assert torch.equal(targets[0, 5].view(16, 16), x[0, t * 16:(t + 1) * 16, f * 16:(f + 1) * 16].T)


def test_masked_embeddings_replace_the_patch_before_positions():
    model = zoo.create_model("audio/ssast_tiny_frame_pretrain", input_tdim=16).eval()
    x = torch.randn(1, 16, 128)
    mask = torch.zeros(1, 8, dtype=torch.bool)
    mask[0, 3] = True
    y = x.clone()
    y[0, 6:8] += 5.0  # frame 3 covers frames 6-7: masked, so the change is invisible
    with torch.no_grad():
        assert torch.allclose(model.forward_features(x, mask), model.forward_features(y, mask), atol=1e-6)
        assert not torch.allclose(model.forward_features(x), model.forward_features(y), atol=1e-3)


def test_fine_tuning_model_pooling_head_and_errors():
    model = zoo.create_model("audio/ssast_tiny_frame", num_classes=10, input_tdim=32)
    x = torch.randn(2, 32, 128)
    assert model(x).shape == (2, 10)
    model.reset_classifier(4)
    assert model(x).shape == (2, 4) and model.get_classifier().out_features == 4
    cls = zoo.create_model("audio/ssast_tiny_frame", num_classes=10, input_tdim=32, pooling="cls")
    assert cls(x).shape == (2, 10)
    with pytest.raises(InputShapeError, match=r"\(batch, 32 frames, 128 mel bins\)"):
        model(torch.randn(2, 30, 128))
    with pytest.raises(ValueError, match="pretext heads"):
        model.forward_pretext(x, torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="stride = patch shape"):
        SSAST(embed_dim=192, num_heads=3, fshape=16, tshape=16, fstride=10, tstride=10, pretraining=True)
    with pytest.raises(ValueError, match="does not fit"):
        SSAST(embed_dim=192, num_heads=3, input_tdim=8)
    with pytest.raises(ValueError, match="fixes embed_dim"):
        zoo.create_model("audio/ssast_tiny_patch", embed_dim=64)
