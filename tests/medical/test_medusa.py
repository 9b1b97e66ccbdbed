"""MEDUSA-style classifier: counts, two inputs with clear errors, the body's maps reach the backbone, heads."""

import pytest
import torch
from zoo.medical.medusa import Medusa, attention_input

import zoo
from zoo.errors import InputShapeError


def test_parameter_count_matches_the_card():
    with torch.device("meta"):
        model = zoo.create_model("medical/medusa")
    assert sum(p.numel() for p in model.parameters()) == 28_676_102
    assert sum(p.numel() for p in model.body.parameters()) == 5_163_972
    card = zoo.get_card("medical/medusa")
    assert card.extra_inputs == {"attention_image": (1, 256, 256)} and card.target_layer == "backbone.layer4"


@pytest.fixture(scope="module")
def small():
    torch.manual_seed(0)
    return Medusa(backbone="resnet18", body_size=64).eval()  # small and fast; same wiring


def test_two_inputs_and_the_default_attention_image(small):
    x = torch.rand(2, 3, 64, 64)
    att = attention_input(x, 64)
    assert att.shape == (2, 1, 64, 64)
    torch.testing.assert_close(att.mean(dim=(1, 2, 3)), torch.zeros(2), atol=1e-5, rtol=0)
    with torch.no_grad():
        torch.testing.assert_close(small(x), small(x, att))
        other = small(x, torch.randn(2, 1, 64, 64))
    assert other.shape == (2, 2) and not torch.allclose(other, small(x))  # the body's maps gate the backbone


def test_maps_cover_the_four_stages(small):
    with torch.no_grad():
        maps = small.attention_maps(torch.rand(1, 3, 64, 64))
    assert [tuple(m.shape[-2:]) for m in maps] == [(32, 32), (16, 16), (8, 8), (4, 4)]
    assert all(float(m.min()) >= 0 and float(m.max()) <= 1 for m in maps)


def test_wrong_inputs_are_named(small):
    with pytest.raises(InputShapeError, match="attention_image must be"):
        small(torch.rand(1, 3, 64, 64), torch.rand(1, 1, 32, 32))
    with pytest.raises(InputShapeError, match=r"\(B, 3, 480, 480\)"):
        small(torch.rand(1, 1, 64, 64))


def test_reset_classifier_keeps_device_and_dtype():
    model = Medusa(backbone="resnet18", body_size=64).double().eval()
    model.reset_classifier(3)
    assert model.get_classifier().out_features == 3 and model.get_classifier().weight.dtype == torch.float64
    assert model(torch.rand(1, 3, 32, 32, dtype=torch.float64)).shape == (1, 3)


@pytest.mark.slow
def test_a_small_medusa_learns_simulated_covid_opacities(tmp_path):
    """A ResNet-18 MEDUSA at 64 px on simulated COVIDx-layout radiographs: test accuracy well above chance."""
    import lightning as L
    from zoo.data.covidx import CovidxData, write_simulated_covidx

    from zoo.tasks.classification import ClassificationTask

    L.seed_everything(0)
    root = write_simulated_covidx(train=200, test=60, size=64, root=tmp_path / "covidx")
    data = CovidxData(str(root), image_size=64, batch_size=8, num_workers=0)
    task = ClassificationTask("medical/medusa", num_classes=2, class_names=data.class_names,
                              model_kwargs={"backbone": "resnet18", "body_size": 32}, explain_images=0,
                              optimizer={"class_path": "torch.optim.Adam", "init_args": {"lr": 1e-3}})
    trainer = L.Trainer(max_epochs=6, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False)
    trainer.fit(task, datamodule=data)
    (result,) = trainer.test(task, datamodule=data, verbose=False)
    assert result["test/acc"] > 0.75, result
