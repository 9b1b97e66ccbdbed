"""Tabular models: parameter counts of the official configurations to the unit, TabR's retrieval mechanics, the
weight-decay policies, and building a model back from a checkpoint's tensors."""

from __future__ import annotations

import pytest
import torch
from zoo.tabular.tabr import TabR

import zoo
import zoo.blocks.retrieval as retrieval
from zoo.blocks.retrieval import Candidates
from zoo.errors import InputShapeError
from zoo.profile import count_macs, count_parameters

# From the official report.json files (exp/<model>/california/<config>-evaluation/0/report.json).
OFFICIAL_PARAMS = {"tabular/tabr_s": 832_948, "tabular/tabr": 271_395, "tabular/mlp": 20_563,
                   "tabular/mlp_plr": 320_520}


@pytest.mark.parametrize("model_id", zoo.list_models("tabular/*"))
def test_card_counts(model_id):
    card = zoo.get_card(model_id)
    model = zoo.create_model(model_id)
    assert count_parameters(model) == card.num_params
    assert model_id not in OFFICIAL_PARAMS or card.num_params == OFFICIAL_PARAMS[model_id]
    assert card.task == "tabular" and card.input_shape == (8,) and not card.weights
    assert {"default", "paper"} <= set(card.recipes)
    if card.macs is not None:
        assert count_macs(model, card.input_shape) == card.macs


def test_tabr_s_california_count_is_exact():
    assert count_parameters(zoo.create_model("tabular/tabr_s", n_num_features=8)) == 832_948
    assert zoo.get_card("tabular/tabr").paper.arxiv == "2307.14338"


def table(n: int, num_classes: int, seed: int = 0) -> Candidates:
    g = torch.Generator().manual_seed(seed)
    y = torch.randn(n, generator=g) if num_classes == 1 else torch.randint(0, num_classes, (n,), generator=g)
    return Candidates(torch.randn(n, 5, generator=g), torch.randint(0, 2, (n, 2), generator=g).float(),
                      torch.randint(0, 4, (n, 2), generator=g), y)


def small_tabr(num_classes: int = 1, **kwargs) -> TabR:
    config = dict(d_main=16, context_size=8, num_embeddings="plr", d_embedding=4, n_frequencies=3)
    return TabR(5, 2, [3, 4], num_classes, **{**config, **kwargs})


@pytest.mark.parametrize("num_classes", [1, 2, 3])
def test_heads_and_label_encoders(num_classes):
    model = small_tabr(num_classes)
    data = table(60, num_classes)
    out = model(data.x_num[:7], data.x_bin[:7], data.x_cat[:7], candidates=data)
    assert out.shape == (7, 1 if num_classes <= 2 else num_classes)
    encoder = model.label_encoder
    assert isinstance(encoder, torch.nn.Linear if num_classes == 1 else torch.nn.Embedding)
    if num_classes == 1:
        assert encoder.weight.abs().max() <= 2 ** -0.5 and encoder.bias.abs().max() <= 2 ** -0.5
    else:
        assert encoder.weight.shape == (num_classes, 16) and encoder.weight.abs().max() <= 1


def test_value_transform_has_no_bias_in_its_last_layer():
    model = small_tabr()
    assert model.T[-1].bias is None and model.T[0].bias is not None
    assert model.T[0].out_features == model.T[-1].in_features == 32  # d_main * d_multiplier


def test_an_object_never_retrieves_itself_in_training(monkeypatch):
    seen = {}
    search = retrieval.nearest_neighbors

    def spy(queries, keys, k, **kwargs):
        seen.update(queries=queries, keys=keys, **kwargs)
        seen["result"] = search(queries, keys, k, **kwargs)
        return seen["result"]

    monkeypatch.setattr("zoo.tabular.tabr.nearest_neighbors", spy)
    model = small_tabr()
    data = table(40, 1)
    batch, rest = data.select(torch.arange(6)), data.select(torch.arange(6, 40))
    model(batch.x_num, batch.x_bin, batch.x_cat, candidates=rest, y=batch.y)
    _, indices = seen["result"]
    # The batch is prepended to the candidates: row i of the batch is candidate i.
    assert len(seen["keys"]) == 40 and torch.equal(seen["exclude"], torch.arange(6))
    assert not (indices == torch.arange(6)[:, None]).any()
    # Without exclusion, each object's own key (distance 0) would be its nearest neighbour.
    _, plain = search(seen["queries"], seen["keys"], 8)
    assert torch.equal(plain[:, 0], torch.arange(6))


def test_context_dropout_acts_on_the_probabilities():
    model = small_tabr(context_dropout=1.0)  # every probability dropped: no context reaches x
    data = table(40, 1)
    batch, rest = data.select(torch.arange(6)), data.select(torch.arange(6, 40))
    captured = {}
    model.dropout.register_forward_hook(lambda m, inputs, output: captured.update(p=inputs[0], out=output))
    x = model.forward_features(batch.x_num, batch.x_bin, batch.x_cat, candidates=rest, y=batch.y)
    assert captured["p"].shape == (6, 8)
    torch.testing.assert_close(captured["p"].sum(-1), torch.ones(6))  # softmax over the m neighbours
    assert torch.equal(captured["out"], torch.zeros(6, 8))
    torch.testing.assert_close(x, model.encode(batch.x_num, batch.x_bin, batch.x_cat)[0])
    model.eval()  # no dropout in evaluation: the context changes x
    x = model.forward_features(batch.x_num, batch.x_bin, batch.x_cat, candidates=data)
    assert not torch.allclose(x, model.encode(batch.x_num, batch.x_bin, batch.x_cat)[0])


def test_similarity_is_negative_squared_l2():
    model = small_tabr().eval()
    data = table(30, 1)
    captured = {}
    model.dropout.register_forward_hook(lambda m, inputs, output: captured.update(p=inputs[0]))
    model(data.x_num[:4], data.x_bin[:4], data.x_cat[:4], candidates=data)
    _, k = model.encode(data.x_num[:4], data.x_bin[:4], data.x_cat[:4])
    keys = model.encode_candidates(data)
    _, index = retrieval.nearest_neighbors(k, keys, 8)
    expected = torch.softmax(-(k[:, None] - keys[index]).square().sum(-1), dim=-1)
    torch.testing.assert_close(captured["p"], expected, rtol=1e-4, atol=1e-5)


@pytest.mark.skipif(not retrieval.faiss_available(), reason="faiss-cpu is not installed")
def test_faiss_and_torch_backends_give_the_same_outputs():
    data = table(300, 3)
    model = small_tabr(3, retrieval_backend="faiss").eval()
    out_faiss = model(data.x_num[:20], data.x_bin[:20], data.x_cat[:20], candidates=data)
    model.retrieval_backend = "torch"
    out_torch = model(data.x_num[:20], data.x_bin[:20], data.x_cat[:20], candidates=data)
    torch.testing.assert_close(out_faiss, out_torch, rtol=1e-5, atol=1e-5)


def test_memory_efficient_and_precomputed_keys_agree():
    data = table(80, 2)
    model = small_tabr(2).eval()
    expected = model(data.x_num[:9], data.x_bin[:9], data.x_cat[:9], candidates=data)
    keys = model.encode_candidates(data)
    out = model(data.x_num[:9], data.x_bin[:9], data.x_cat[:9], candidates=data, candidate_keys=keys)
    torch.testing.assert_close(out, expected)
    torch.manual_seed(0)
    train = small_tabr(2, dropout0=0.0)
    batch, rest = data.select(torch.arange(9)), data.select(torch.arange(9, 80))
    a = train(batch.x_num, batch.x_bin, batch.x_cat, candidates=rest, y=batch.y)
    train.memory_efficient, train.candidate_encoding_batch_size = True, 16
    b = train(batch.x_num, batch.x_bin, batch.x_cat, candidates=rest, y=batch.y)
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    b.sum().backward()
    assert train.K.weight.grad is not None


def test_unknown_categories_and_bad_shapes():
    model = small_tabr().eval()
    data = table(30, 1)
    unseen = data.x_cat[:2].clone()
    unseen[:, 0] = 3  # the code "cardinality" marks a category never seen in training: one-hot zeros
    assert model.input.one_hot(unseen)[:, :3].sum() == 0
    model(data.x_num[:2], data.x_bin[:2], unseen, candidates=data)
    with pytest.raises(InputShapeError, match=r"x_num must be \(batch, 5\)"):
        model(data.x_num[:2, :3], data.x_bin[:2], data.x_cat[:2], candidates=data)
    with pytest.raises(InputShapeError, match="only 5 candidates"):
        model(data.x_num[:2], data.x_bin[:2], data.x_cat[:2], candidates=data.select(torch.arange(5)))


def test_weight_decay_policies():
    from zoo.tasks.tabular import TabularTask

    shapes = {"n_num_features": 5, "n_bin_features": 2, "cat_cardinalities": [3, 4]}
    intended = TabularTask("tabular/tabr", num_classes=3, feature_shapes=shapes, class_names=["a", "b", "c"])
    decay, no_decay = intended.parameter_groups()
    names = {id(p): n for n, p in intended.model.named_parameters()}
    skipped = {names[id(p)] for p in no_decay["params"]}
    assert no_decay["weight_decay"] == 0.0
    assert {"label_encoder.weight", "input.num_embeddings.periodic.weight", "K.bias", "head.0.weight"} <= skipped
    assert {names[id(p)] for p in decay["params"]} >= {"K.weight", "T.0.weight", "T.3.weight",
                                                       "input.num_embeddings.linear.weight"}
    paper = TabularTask("tabular/tabr", num_classes=3, feature_shapes=shapes, class_names=["a", "b", "c"],
                        decay_norm_and_bias=True)
    groups = paper.parameter_groups()  # the official code's behaviour: one group, decay on everything
    assert len(groups) == 1 and len(groups[0]["params"]) == len(list(paper.model.parameters()))


@pytest.mark.parametrize("model_id", ["tabular/tabr", "tabular/tabr_s", "tabular/mlp_plr", "tabular/ft_transformer"])
def test_constructor_arguments_from_checkpoint_tensors(model_id, tmp_path):
    from safetensors.torch import save_file

    kwargs = {"n_num_features": 3, "n_bin_features": 2, "cat_cardinalities": [4, 2]}
    model = zoo.create_model(model_id, **kwargs)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, tmp_path / "w.safetensors")
    loaded = zoo.create_model(model_id, pretrained=str(tmp_path / "w.safetensors"))
    for a, b in zip(model.state_dict().values(), loaded.state_dict().values(), strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("model_id", ["tabular/mlp", "tabular/mlp_plr", "tabular/ft_transformer"])
def test_weights_with_a_new_head(model_id, tmp_path):
    """Every tabular model is a Classifier: weights of a 3-class model loaded with num_classes=5 keep the body and
    get a new 5-output head (it used to keep the old head silently)."""
    from safetensors.torch import save_file

    from zoo.protocols import Classifier

    kwargs = {"n_num_features": 3, "n_bin_features": 2, "cat_cardinalities": [4, 2]}
    model = zoo.create_model(model_id, num_classes=3, **kwargs)
    assert isinstance(model, Classifier) and model.get_classifier().out_features == 3
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, tmp_path / "w.safetensors")
    tuned = zoo.create_model(model_id, pretrained=str(tmp_path / "w.safetensors"), num_classes=5)
    assert tuned.get_classifier().out_features == 5
    head = {n for n, p in tuned.named_parameters() if any(p is q for q in tuned.get_classifier().parameters())}
    body = {k: v for k, v in model.state_dict().items() if k in tuned.state_dict() and
            tuned.state_dict()[k].shape == v.shape and k not in head and "label_encoder" not in k}
    assert body and all(torch.equal(v, tuned.state_dict()[k]) for k, v in body.items())
    x = (torch.randn(2, 3), torch.randint(0, 2, (2, 2)).float(), torch.randint(0, 2, (2, 2)))
    assert tuned(*x).shape == (2, 5)
