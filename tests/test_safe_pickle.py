"""The safe checkpoint reader: what official training scripts pickle beside their weights comes back as data or as
inert stand-ins, and nothing in a pickle ever runs."""

from __future__ import annotations

import argparse
import collections
import enum
import os
import pickle
import random
import sys
import types
import zipfile

import numpy as np
import pytest
import torch
from lightning.fabric.utilities.data import AttributeDict
from torch import nn

import zoo
from zoo.errors import CheckpointError, UnsafeCheckpointError
from zoo.safe_pickle import (
    PickledObject,
    UnsafePickleError,
    read_torch_file,
    safe_unpickle,
    state_dict_of_pickled_module,
    to_plain,
)
from zoo.weights import read_weights


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_pickled_call_of_os_system_is_inert(tmp_path):
    marker = tmp_path / "pwned"
    torch.save({"weights": {"w": torch.ones(2)}, "payload": _Exploit(marker), "nested": [_Exploit(marker)]},
               tmp_path / "evil.pt")
    checkpoint = read_torch_file(tmp_path / "evil.pt")
    assert not marker.exists()
    assert isinstance(checkpoint["payload"], PickledObject) and checkpoint["payload"].args == (f"touch {marker}",)
    assert torch.equal(checkpoint["weights"]["w"], torch.ones(2))
    # the classic protocol-0 exploit: builtins.eval of a string
    source = f'__import__("os").system("touch {marker}")'
    payload = safe_unpickle(b"cbuiltins\neval\n(V" + source.encode() + b"\ntR.")
    assert isinstance(payload, PickledObject) and payload.pickled_name == "builtins.eval"
    assert not marker.exists()


def test_a_pickle_that_would_patch_a_class_is_refused():
    # BUILD on the class argparse.Namespace itself (setting a class attribute) instead of on an instance
    patch = b"\x80\x02cargparse\nNamespace\nN}X\x06\x00\x00\x00__eq__cbuiltins\nprint\ns\x86b."
    with pytest.raises(UnsafePickleError, match=r"argparse\.Namespace"):
        safe_unpickle(patch)
    assert argparse.Namespace.__eq__.__qualname__ == "Namespace.__eq__"


def test_numpy_python_and_torch_values_are_rebuilt(tmp_path):
    checkpoint = {
        "max_psnr": np.float64(31.5), "epoch": np.int64(7), "psnrs": np.arange(4, dtype=np.float32),
        "names": np.array(["a", "b"], dtype=object), "dtype": np.dtype("float16"),
        "args": argparse.Namespace(lr=0.1, layers=[2, 3]), "counts": collections.Counter("aab"),
        "history": collections.defaultdict(list, {"loss": [1.0]}), "queue": collections.deque([1, 2]),
        "random_state": {"random": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()},
        "rng": random.Random(3), "hparams": AttributeDict(lr=0.1, layers=2),  # Lightning's dict subclass
    }
    for legacy in (False, True):
        path = tmp_path / f"train_{legacy}.pt"
        torch.save(checkpoint, path, _use_new_zipfile_serialization=not legacy)
        read = read_torch_file(path)
        assert read["max_psnr"] == 31.5 and isinstance(read["max_psnr"], np.float64)
        assert read["epoch"] == 7 and read["dtype"] == np.float16
        np.testing.assert_array_equal(read["psnrs"], np.arange(4, dtype=np.float32))
        assert read["names"].tolist() == ["a", "b"]
        assert read["args"] == argparse.Namespace(lr=0.1, layers=[2, 3])
        assert read["counts"] == collections.Counter("aab") and read["queue"] == collections.deque([1, 2])
        assert read["history"]["loss"] == [1.0] and read["history"].default_factory is list
        assert read["random_state"]["random"] == random.getstate()
        np.testing.assert_array_equal(read["random_state"]["numpy"][1], np.random.get_state()[1])
        assert torch.equal(read["random_state"]["torch"], torch.get_rng_state())
        assert read["rng"].random() == random.Random(3).random()
    assert to_plain(read["args"]) == {"lr": 0.1, "layers": [2, 3]} and to_plain(read["max_psnr"]) == 31.5
    assert isinstance(read["hparams"], PickledObject) and to_plain(read["hparams"]) == {"lr": 0.1, "layers": 2}


@pytest.fixture
def fake_project(monkeypatch):
    """A project's modules (an enum, an OmegaConf-like config with omegaconf's pickled layout, a dict-subclass
    config, a network) that exist while the file is written and are gone when it is read, as for a user."""
    names = ("omegaconf", "omegaconf.dictconfig", "omegaconf.nodes", "constants", "models", "models.net")
    modules = {name: types.ModuleType(name) for name in names}

    class Node:  # omegaconf.nodes.AnyNode pickles its __dict__, the value under _val
        def __init__(self, value):
            self._val, self._metadata, self._parent = value, None, None

    class DictConfig:  # omegaconf.DictConfig pickles its __dict__, the nodes under _content
        def __init__(self, content):
            self._content = {k: v if isinstance(v, DictConfig) else Node(v) for k, v in content.items()}
            self._metadata, self._parent = None, None

        def __getstate__(self):
            return dict(self.__dict__)

        def __setstate__(self, state):
            raise AssertionError("the real class must never run while reading")

    class DatasetType(enum.Enum):
        LOBSTER = "LOBSTER"

    class CfgNode(dict):  # yacs: a dict subclass with flags in __dict__
        def __init__(self, init):
            super().__init__(init)
            self.__dict__["__immutable__"] = True

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 3)
            self.blocks = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4))
            self.register_buffer("scratch", torch.zeros(1), persistent=False)

        def forward(self, x):
            raise AssertionError("never runs")

    for cls, module in ((Node, "omegaconf.nodes"), (DictConfig, "omegaconf.dictconfig"), (DatasetType, "constants"),
                        (CfgNode, "constants"), (Net, "models.net")):
        cls.__module__, cls.__qualname__ = module, cls.__name__
        setattr(modules[module], cls.__name__, cls)
    for name, module in modules.items():
        monkeypatch.setitem(sys.modules, name, module)

    def write_then_forget(path, obj):
        torch.save(obj, path)
        for name in names:
            monkeypatch.delitem(sys.modules, name)

    return types.SimpleNamespace(DictConfig=DictConfig, DatasetType=DatasetType, CfgNode=CfgNode, Net=Net,
                                 write_then_forget=write_then_forget)


def test_configs_come_back_as_plain_python(tmp_path, fake_project):
    config = fake_project.DictConfig({"model": fake_project.DictConfig({"hidden_dim": 40, "type": "TLOB"}),
                                      "dataset": fake_project.DatasetType.LOBSTER, "seq_size": 128})
    yacs = fake_project.CfgNode({"MODEL": {"NUM_CLASSES": 241}})
    path = tmp_path / "official.pt"
    fake_project.write_then_forget(path, {"hyper_parameters": config, "config": yacs, "w": torch.ones(1)})
    read = read_torch_file(path)
    assert isinstance(read["hyper_parameters"], PickledObject)
    assert to_plain(read["hyper_parameters"]) == {"model": {"hidden_dim": 40, "type": "TLOB"},
                                                  "dataset": "LOBSTER", "seq_size": 128}
    assert to_plain(read["config"]) == {"MODEL": {"NUM_CLASSES": 241}}


def test_a_whole_pickled_module_becomes_its_state_dict(tmp_path, fake_project):
    torch.manual_seed(0)
    net = fake_project.Net()
    net.blocks[1].running_mean.normal_()
    expected = net.state_dict()
    fake_project.write_then_forget(tmp_path / "whole.pt", {"model": net, "ema": net, "epoch": 3})
    read = read_torch_file(tmp_path / "whole.pt")
    assert read["model"].pickled_name == "models.net.Net"
    state_dict = state_dict_of_pickled_module(read["model"])
    assert list(state_dict) == list(expected) and "scratch" not in state_dict
    for key, value in expected.items():
        assert torch.equal(state_dict[key], value), key
    assert not isinstance(state_dict["conv.weight"], nn.Parameter)
    with pytest.raises(CheckpointError, match="not a pickled torch module"):
        state_dict_of_pickled_module(PickledObject())


def test_create_model_loads_a_whole_pickled_model(tmp_path):
    torch.manual_seed(0)
    model = zoo.create_model("finance/deeplob", seq_len=30).eval()
    torch.save(model, tmp_path / "deeplob_whole.pt")  # torch.save(model): the class is never imported back
    torch.save({"model": model.half(), "optimizer": None}, tmp_path / "yolo_style.pt")
    x = torch.randn(2, 30, 40)
    for name in ("deeplob_whole.pt", "yolo_style.pt"):
        loaded = zoo.create_model("finance/deeplob", pretrained=str(tmp_path / name), seq_len=30).eval()
        torch.testing.assert_close(loaded(x), model.float()(x), rtol=1e-2, atol=1e-2)
    assert read_weights(tmp_path / "yolo_style.pt").state_dict["fc1.weight"].dtype == torch.float16


def test_unreadable_files_name_the_file_and_the_class(tmp_path):
    class Odd(np.ndarray):
        pass

    odd = np.arange(3).view(Odd)
    Odd.__module__, Odd.__qualname__ = "project_arrays", "Odd"
    module = types.ModuleType("project_arrays")
    module.Odd = Odd
    sys.modules["project_arrays"] = module
    try:
        torch.save({"stats": odd}, tmp_path / "odd.pt")
    finally:
        del sys.modules["project_arrays"]
    with pytest.raises(CheckpointError, match=r"odd\.pt.*project_arrays\.Odd"):
        read_torch_file(tmp_path / "odd.pt")
    with zipfile.ZipFile(tmp_path / "scripted.pt", "w") as archive:  # the layout of torch.jit.save's archives
        for name in ("data.pkl", "constants.pkl", "code/__torch__.py"):
            archive.writestr(f"scripted/{name}", b"")
    with pytest.raises(UnsafeCheckpointError, match=r"scripted\.pt.*TorchScript"):
        read_torch_file(tmp_path / "scripted.pt")
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(CheckpointError, match=r"junk\.pt"):
        read_torch_file(tmp_path / "junk.pt")
    with open(tmp_path / "plain.pkl", "wb") as f:
        pickle.dump({"a": 1}, f)
    with pytest.raises(CheckpointError, match=r"plain\.pkl"):
        read_torch_file(tmp_path / "plain.pkl")
