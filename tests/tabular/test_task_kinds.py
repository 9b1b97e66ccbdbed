"""One task kind ("tabular") for every tabular card, two task classes: TabularTask builds the regression or the
classification task from the model's number of classes; retrieval is a piece of its own."""

from __future__ import annotations

import inspect

import pytest

from zoo.tasks.registry import get_task_class
from zoo.tasks.retrieval import RetrievalMixin
from zoo.tasks.tabular import TabularClassificationTask, TabularRegressionTask, TabularTask

SHAPES = {"n_num_features": 3, "n_bin_features": 1, "cat_cardinalities": [2]}


def test_the_tabular_kind_builds_the_task_of_the_table():
    assert get_task_class("tabular") is TabularTask
    regression = TabularTask("tabular/mlp", num_classes=1, feature_shapes=SHAPES, target_scaling=[2.0, 3.0])
    assert type(regression) is TabularRegressionTask and regression.kind == "regression"
    assert (regression.monitor, regression.monitor_mode, regression.y_mean) == ("val/rmse", "min", 2.0)
    binary = TabularTask("tabular/mlp", 2, SHAPES, class_names=["no", "yes"])
    assert type(binary) is TabularClassificationTask and binary.kind == "binclass" and hasattr(binary, "val_auc")
    multi = TabularTask("tabular/mlp", 4, SHAPES, model_kwargs={"d_block": 16})
    assert multi.kind == "multiclass" and multi.monitor == "val/acc" and multi.class_names == ["0", "1", "2", "3"]
    card_default = TabularTask("tabular/mlp", feature_shapes=SHAPES)  # the card's num_classes: 1
    assert type(card_default) is TabularRegressionTask
    assert not regression.retrieval and TabularTask("tabular/tabr_s", 1, SHAPES).retrieval


def test_the_constructor_signature_is_the_flags():
    parameters = inspect.signature(TabularTask).parameters
    assert list(parameters)[:3] == ["model", "num_classes", "feature_shapes"] and "kwargs" in parameters


def test_a_task_class_refuses_the_other_kind():
    with pytest.raises(ValueError, match="TabularRegressionTask trains regression"):
        TabularRegressionTask("tabular/mlp", num_classes=3, feature_shapes=SHAPES)
    with pytest.raises(ValueError, match="2 class names for 3 classes"):
        TabularTask("tabular/mlp", num_classes=3, feature_shapes=SHAPES, class_names=["a", "b"])


def test_retrieval_is_its_own_piece():
    assert issubclass(TabularTask, RetrievalMixin)
    source = inspect.getsource(inspect.getmodule(TabularTask))
    assert "tabular.tabr" not in source and "zoo.blocks.retrieval" not in source
