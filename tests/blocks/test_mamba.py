"""The 1-D Mamba block: the official layout and size, causality, the recurrent step against the parallel scan, and
a recall task that only a working selective state can solve."""

import pytest
import torch
import torch.nn.functional as F

from zoo.blocks.mamba import Mamba, MambaBlock
from zoo.errors import InputShapeError

OFFICIAL_NAMES = {"in_proj.weight", "conv1d.weight", "conv1d.bias", "x_proj.weight", "dt_proj.weight",
                  "dt_proj.bias", "A_log", "D", "out_proj.weight"}


def test_layout_and_size_are_mamba_130m():
    """mamba-130m: 24 RMSNorm + Mamba(768) blocks, a 50,280 x 768 tied embedding and a final RMSNorm, 129,135,360
    parameters (state-spaces/mamba-130m; the same count as Hugging Face's MambaForCausalLM config)."""
    with torch.device("meta"):
        blocks = torch.nn.ModuleList(MambaBlock(768) for _ in range(24))
    mixer = blocks[0].mixer
    assert set(mixer.state_dict()) == OFFICIAL_NAMES
    assert {k: tuple(v.shape) for k, v in mixer.state_dict().items()} == {
        "in_proj.weight": (3072, 768), "conv1d.weight": (1536, 1, 4), "conv1d.bias": (1536,),
        "x_proj.weight": (48 + 32, 1536), "dt_proj.weight": (1536, 48), "dt_proj.bias": (1536,),
        "A_log": (1536, 16), "D": (1536,), "out_proj.weight": (768, 1536),
    }
    assert set(blocks[0].state_dict()) == {"norm.weight"} | {f"mixer.{k}" for k in OFFICIAL_NAMES}
    total = sum(p.numel() for p in blocks.parameters()) + 50_280 * 768 + 768
    assert total == 129_135_360


def test_initialisation_is_the_official_one():
    torch.manual_seed(0)
    mixer = Mamba(64, d_state=8)
    torch.testing.assert_close(-torch.exp(mixer.A_log), -torch.arange(1.0, 9.0).expand(128, 8))
    torch.testing.assert_close(mixer.D, torch.ones(128))
    dt = F.softplus(mixer.dt_proj.bias)
    assert dt.min() >= 1e-3 * 0.999 and dt.max() <= 0.1 * 1.001
    assert dt.log().std() > 0.5  # log-uniform over two decades, not a constant
    bound = mixer.dt_rank**-0.5
    assert mixer.dt_proj.weight.abs().max() <= bound


def _random_mixer(scan_method="fast", seed=0, **kwargs) -> Mamba:
    torch.manual_seed(seed)
    mixer = Mamba(16, d_state=4, scan_method=scan_method, **kwargs).eval()
    with torch.no_grad():  # move every parameter off its structured initial value
        for p in mixer.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return mixer


def test_output_at_t_depends_only_on_inputs_up_to_t():
    mixer = _random_mixer()
    x = torch.randn(2, 40, 16)
    changed = x.clone()
    changed[:, 25:] += torch.randn(2, 15, 16)
    with torch.no_grad():
        y, y_changed = mixer(x), mixer(changed)
    torch.testing.assert_close(y[:, :25], y_changed[:, :25])
    assert (y[:, 25:] - y_changed[:, 25:]).abs().amax() > 1e-2


def test_fast_and_reference_scans_agree_with_gradients():
    x = torch.randn(2, 33, 16)
    outputs = []
    for method in ("fast", "reference"):
        mixer = _random_mixer(method)
        y = mixer(x)
        (y * torch.linspace(-1, 1, 16)).sum().backward()
        outputs.append((y.detach(), {n: p.grad for n, p in mixer.named_parameters()}))
    (y_fast, g_fast), (y_ref, g_ref) = outputs
    torch.testing.assert_close(y_fast, y_ref, rtol=1e-4, atol=1e-5)
    for name in g_ref:
        torch.testing.assert_close(g_fast[name], g_ref[name], rtol=1e-4, atol=1e-5, msg=name)


@pytest.mark.parametrize("prefix", [0, 2, 11])
def test_recurrent_steps_continue_the_parallel_scan(prefix):
    """forward over the first ``prefix`` steps, then one ``step`` per remaining input, equals forward over all."""
    block = MambaBlock(16, d_state=4).eval()
    with torch.no_grad():
        for p in block.parameters():
            p.add_(0.1 * torch.randn_like(p))
    x = torch.randn(3, 20, 16)
    with torch.no_grad():
        expected = block(x)
        if prefix:
            head, state = block.mixer(block.norm(x[:, :prefix]), return_state=True)
            outputs = [x[:, :prefix] + head]
        else:
            state, outputs = block.mixer.initial_state(3), []
        for t in range(prefix, 20):
            y, state = block.step(x[:, t], state)
            outputs.append(y.unsqueeze(1))
    torch.testing.assert_close(torch.cat(outputs, dim=1), expected, rtol=1e-4, atol=1e-5)


def test_learns_to_recall_a_token_across_a_long_gap():
    """The class of the first of 48 steps is asked for at every later step (the rest is noise) and scored at the
    last one, 47 steps on. A causal conv of width 4 cannot carry it that far, so only the scan's state can.
    Measured over seeds 0-3: last-step accuracy 1.0 after 100-150 steps (chance 0.25), about 7 s on one core."""
    torch.manual_seed(0)
    classes, length, dim = 4, 48, 16
    embed = torch.nn.Embedding(classes + 1, dim)  # index `classes` is the noise token
    block = MambaBlock(dim, d_state=8)
    head = torch.nn.Linear(dim, classes)
    optimizer = torch.optim.AdamW([*embed.parameters(), *block.parameters(), *head.parameters()], lr=1e-2)

    def batch(n):
        label = torch.randint(classes, (n,))
        tokens = torch.full((n, length), classes)
        tokens[:, 0] = label
        return embed(tokens) + 0.5 * torch.randn(n, length, dim), label

    for _ in range(150):
        x, label = batch(64)
        logits = head(block(x)[:, 1:])  # (64, 47, classes)
        loss = F.cross_entropy(logits.reshape(-1, classes), label.repeat_interleave(length - 1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        x, label = batch(512)
        accuracy = (head(block(x)[:, -1]).argmax(-1) == label).float().mean().item()
    assert accuracy > 0.9, f"recall accuracy at the last step {accuracy:.3f} (chance 0.25)"


def test_bad_inputs_are_named():
    mixer = Mamba(16)
    with pytest.raises(InputShapeError, match=r"\(batch, length, dim\) with dim=16, got \(2, 5, 8\)"):
        mixer(torch.randn(2, 5, 8))
    with pytest.raises(InputShapeError, match=r"\(batch, dim\)"):
        mixer.step(torch.randn(2, 5, 16), mixer.initial_state(2))
    with pytest.raises(ValueError, match="scan_method"):
        Mamba(16, scan_method="cuda")
    with pytest.raises(ValueError, match="norm"):
        MambaBlock(16, norm="batch")
