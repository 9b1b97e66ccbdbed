"""Every vision model (classifier, detector, image-to-image) names the problem of a wrongly shaped or typed batch."""

import pytest
import torch

import zoo
from zoo.errors import InputShapeError


@pytest.mark.parametrize("model_id", zoo.list_models("vision/*"))
def test_bad_image_batches_are_named(model_id):
    with torch.device("meta"):  # the checks run before any arithmetic, so no weights are needed
        # classifiers get a small head; image-to-image models (DEA-Net) have no classes to set
        classes = {"num_classes": 3} if zoo.get_card(model_id).num_classes is not None else {}
        model = zoo.create_model(model_id, **classes)
        with pytest.raises(InputShapeError, match=r"\(B, 3, H, W\)"):
            model(torch.empty(3, 32, 32))
        with pytest.raises(InputShapeError, match=r"got \(2, 1, 32, 32\)"):
            model(torch.empty(2, 1, 32, 32))
        with pytest.raises(InputShapeError, match="float"):
            model(torch.empty(2, 3, 32, 32, dtype=torch.uint8))
