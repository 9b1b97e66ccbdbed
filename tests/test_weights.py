"""Every weight source of zoo.create_model, and the refusals: bad hashes, foreign keys, pickles that run code."""

import hashlib
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import zoo
from zoo.errors import CheckpointError, HashMismatchError, UnknownModelError
from zoo.safe_pickle import PickledObject
from zoo.weights import read_weights

MODEL = "vision/eca_resnet18"


@pytest.fixture(scope="module")
def source_model():
    torch.manual_seed(0)
    return zoo.create_model(MODEL, num_classes=7).eval()


def _same_outputs(a, b):
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(a.eval()(x), b.eval()(x))


@pytest.mark.parametrize(("layout", "suffix"), [
    *((layout, ".pth") for layout in ("bare", "module_prefix", "state_dict_wrapper", "model_wrapper", "compiled")),
    *(("module_prefix", suffix) for suffix in (".pt", ".pth.tar", ".bin")),
])
def test_torch_state_dict_files(tmp_path, source_model, layout, suffix):
    state = source_model.state_dict()
    prefix = {"module_prefix": "module.", "compiled": "_orig_mod."}.get(layout, "")
    state = {prefix + k: v for k, v in state.items()}
    obj = {"state_dict": state, "epoch": 3} if layout == "state_dict_wrapper" else \
        {"model": state, "epoch": 3} if layout == "model_wrapper" else state
    path = tmp_path / f"weights{suffix}"
    torch.save(obj, path)
    _same_outputs(zoo.create_model(MODEL, pretrained=str(path)), source_model)


def test_safetensors_and_saved_folder(tmp_path, source_model):
    save_file({k: v.contiguous() for k, v in source_model.state_dict().items()}, tmp_path / "w.safetensors")
    _same_outputs(zoo.create_model(MODEL, pretrained=str(tmp_path / "w.safetensors")), source_model)

    folder = zoo.save_pretrained(source_model, tmp_path / "saved")
    assert {p.name for p in folder.iterdir()} == {"model.safetensors", "config.json", "README.md"}
    assert "ECA-Net" in (folder / "README.md").read_text()
    loaded = zoo.create_model(MODEL, pretrained=str(folder))
    _same_outputs(loaded, source_model)
    assert loaded.zoo_config["num_classes"] == 7
    with pytest.raises(CheckpointError, match="holds weights of vision/eca_resnet18, not vision/eca_resnet34"):
        zoo.create_model("vision/eca_resnet34", pretrained=str(folder))


def test_unknown_model_id_suggests_close_ids():
    with pytest.raises(UnknownModelError, match="did you mean vision/eca_resnet50"):
        zoo.create_model("vision/eca_resnet05")


class _Exploit:
    """Unpickling this would create a file: proof that code ran."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickle_that_runs_code_never_runs(tmp_path, source_model):
    """A pickled call of os.system is read as an inert stand-in (the weights beside it load); a pickle that is not
    a torch file is refused as unreadable; neither runs the call."""
    marker = tmp_path / "pwned"
    torch.save({"state_dict": source_model.state_dict(), "payload": _Exploit(marker)}, tmp_path / "evil.pt")
    _same_outputs(zoo.create_model(MODEL, pretrained=str(tmp_path / "evil.pt")), source_model)
    payload = read_weights(tmp_path / "evil.pt").checkpoint["payload"]
    assert isinstance(payload, PickledObject) and payload.pickled_name in ("posix.system", "nt.system")
    assert payload.args == (f"touch {marker}",)
    assert not marker.exists()
    with open(tmp_path / "evil.pth", "wb") as f:  # plain pickle, not torch's format
        pickle.dump({"state_dict": {"fc.weight": torch.zeros(1)}, "payload": _Exploit(marker)}, f)
    with pytest.raises(CheckpointError, match=r"evil\.pth"):
        zoo.create_model(MODEL, pretrained=str(tmp_path / "evil.pth"))
    assert not marker.exists()
    torch.save({"payload": _Exploit(marker)}, tmp_path / "evil2.pt")
    with pytest.raises(CheckpointError, match="holds no tensors"):
        read_weights(tmp_path / "evil2.pt")
    assert not marker.exists()


def test_foreign_lightning_checkpoints_and_training_dicts(tmp_path, source_model):
    """The content tells the layout, whatever the suffix: another project's Lightning checkpoint keeps the network
    under one attribute (``net.`` here, an EMA copy beside it, taken when asked for); a training script's dict
    keeps it under ``model_dict`` beside numpy values."""
    state = source_model.state_dict()
    ema = {k: v + 1 if v.is_floating_point() else v for k, v in state.items()}
    lightning = {"pytorch-lightning_version": "2.5.0", "epoch": 3, "hyper_parameters": {"lr": np.float64(0.1)},
                 "state_dict": {**{f"net.{k}": v for k, v in state.items()},
                                **{f"ema_model.{k}": v for k, v in ema.items()}, "criterion.weight": torch.ones(7)}}
    torch.save(lightning, tmp_path / "epoch=3.pt")
    _same_outputs(zoo.create_model(MODEL, pretrained=str(tmp_path / "epoch=3.pt")), source_model)
    assert torch.equal(read_weights(tmp_path / "epoch=3.pt", key="ema_model").state_dict["fc.bias"], ema["fc.bias"])
    with pytest.raises(CheckpointError, match=r"no 'model_ema' weights.*criterion, ema_model, net"):
        read_weights(tmp_path / "epoch=3.pt", key="model_ema")
    torch.save({"test_loss": np.float32(0.5), "args_dict": {"epochs": np.int64(3)}, "model_dict": state,
                "trainer_dict": {"state": {}}}, tmp_path / "snapshot.pth")
    _same_outputs(zoo.create_model(MODEL, pretrained=str(tmp_path / "snapshot.pth")), source_model)


def test_unreadable_and_missing_files_are_named(tmp_path):
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match=r"junk\.pth"):
        zoo.create_model(MODEL, pretrained=str(tmp_path / "junk.pth"))
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 20)
    with pytest.raises(CheckpointError, match=r"junk\.safetensors"):
        zoo.create_model(MODEL, pretrained=str(tmp_path / "junk.safetensors"))
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        zoo.create_model(MODEL, pretrained=str(tmp_path / "absent.pth"))
    with pytest.raises(CheckpointError, match="weight sets: official_in1k"):
        zoo.create_model(MODEL, pretrained="imagenet")


def test_url_download_is_cached_and_hash_checked(tmp_path, source_model, http_server):
    root, base = http_server
    torch.save(source_model.state_dict(), root / "eca.pth")
    digest = hashlib.sha256((root / "eca.pth").read_bytes()).hexdigest()
    model = zoo.create_model(MODEL, pretrained=f"{base}/eca.pth#sha256={digest}")
    _same_outputs(model, source_model)
    cached = list((tmp_path / "cache").rglob("eca.pth"))
    assert len(cached) == 1
    (root / "eca.pth").unlink()  # served no more: the cached copy is used (and re-hashed)
    _same_outputs(zoo.create_model(MODEL, pretrained=f"{base}/eca.pth#sha256={digest}"), source_model)
    cached[0].write_bytes(cached[0].read_bytes()[:-10] + b"0123456789")  # so it was read, and hashed again
    with pytest.raises(HashMismatchError):
        zoo.create_model(MODEL, pretrained=f"{base}/eca.pth#sha256={digest}")

    # torch-hub style: the file name carries a prefix of its sha256, checked like a full hash
    torch.save(source_model.state_dict(), root / "tmp.pth")
    prefix = hashlib.sha256((root / "tmp.pth").read_bytes()).hexdigest()[:8]
    wrong = f"{int(prefix[0], 16) ^ 1:x}{prefix[1:]}"  # the same prefix with its first digit changed
    (root / "tmp.pth").rename(root / f"eca-{prefix}.pth")
    (root / f"eca-{wrong}.pth").write_bytes((root / f"eca-{prefix}.pth").read_bytes())
    _same_outputs(zoo.create_model(MODEL, pretrained=f"{base}/eca-{prefix}.pth"), source_model)
    with pytest.raises(HashMismatchError, match=f"expected {wrong}"):
        zoo.create_model(MODEL, pretrained=f"{base}/eca-{wrong}.pth")
    assert not list((tmp_path / "cache").rglob(f"eca-{wrong}.pth"))


def test_url_with_wrong_hash_is_refused_and_deleted(tmp_path, source_model, http_server):
    root, base = http_server
    torch.save(source_model.state_dict(), root / "eca.pth")
    with pytest.raises(HashMismatchError, match="expected 0000"):
        zoo.create_model(MODEL, pretrained=f"{base}/eca.pth#sha256={'0' * 64}")
    assert not list((tmp_path / "cache").rglob("eca.pth"))
    # a cached file that was tampered with is refused too
    digest = hashlib.sha256((root / "eca.pth").read_bytes()).hexdigest()
    zoo.create_model(MODEL, pretrained=f"{base}/eca.pth#sha256={digest}")
    cached = next((tmp_path / "cache").rglob("eca.pth"))
    cached.write_bytes(cached.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(HashMismatchError):
        zoo.create_model(MODEL, pretrained=f"{base}/eca.pth#sha256={digest}")
    with pytest.raises(CheckpointError, match="could not download"):
        zoo.create_model(MODEL, pretrained=f"{base}/absent.pth")


def test_save_pretrained_keeps_a_model_whose_modules_alias(tmp_path):
    """MLPLOB's released layout has first_layer == layers.0 (two keys, one tensor): it saves and loads back."""
    model = zoo.create_model("finance/mlplob")
    assert model.state_dict()["first_layer.weight"].data_ptr() == model.state_dict()["layers.0.weight"].data_ptr()
    zoo.save_pretrained(model, tmp_path / "mlplob")
    loaded = zoo.create_model("finance/mlplob", pretrained=str(tmp_path / "mlplob"))
    for key, value in model.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key]), key
