"""Every weight source of zoo.create_model, and the refusals: bad hashes, foreign keys, pickles that run code."""

import hashlib
import http.server
import os
import pickle
import threading
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import zoo
from zoo.errors import CheckpointError, HashMismatchError, UnknownModelError, UnsafeCheckpointError
from zoo.hub import read_weights

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


def test_pickle_that_runs_code_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        pickle.dump({"state_dict": {"fc.weight": torch.zeros(1)}, "payload": _Exploit(marker)}, f)
    with pytest.raises(UnsafeCheckpointError, match="refused"):
        zoo.create_model(MODEL, pretrained=str(path))
    assert not marker.exists()
    # the same through torch.save's zip format
    torch.save({"payload": _Exploit(marker)}, tmp_path / "evil2.pt")
    with pytest.raises(UnsafeCheckpointError):
        read_weights(tmp_path / "evil2.pt")
    assert not marker.exists()


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


@pytest.fixture
def http_server(tmp_path):
    root = tmp_path / "served"
    root.mkdir()
    handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(*a, directory=str(root), **k)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


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
