"""save/load: identical predictions and optimizer state, clear errors for damaged or foreign files, atomic writes."""
import json
import os

import numpy as np
import pytest
import torch

from lstmkit.layers import LSTM, Dense, Dropout, Embedding
from lstmkit.models import ModelFileError, Sequential, load_model, save_model
from lstmkit.models import saving

RNG = np.random.default_rng(1)
X = RNG.standard_normal((40, 5, 3)).astype("float32")
Y = X[:, :, 0].sum(1, keepdims=True).astype("float32")


def _trained(epochs=2):
    torch.manual_seed(0)
    model = Sequential([LSTM(6, input_shape=(5, 3)), Dropout(0.1), Dense(1)])
    model.compile("adam", "mse", metrics=["mae"], learning_rate=0.01)
    model.fit(X, Y, epochs=epochs, batch_size=8, verbose=0)
    return model


def _files(d):
    return sorted(p.name for p in d.iterdir())


def test_save_load_identical_predictions_and_optimizer_state(tmp_path):
    model = _trained()
    model.save(tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    # optimizer state round-trips: every Adam moment and step equal
    a, b = model.optimizer.state_dict(), loaded.optimizer.state_dict()
    assert a["param_groups"][0]["lr"] == b["param_groups"][0]["lr"] == 0.01
    assert set(a["state"]) == set(b["state"]) and len(a["state"]) == len(list(model.parameters()))
    for pid in a["state"]:
        for k, v in a["state"][pid].items():
            assert torch.equal(torch.as_tensor(v), torch.as_tensor(b["state"][pid][k])), (pid, k)
    # so one more identical training step gives identical weights (fresh Adam state would not)
    for m in (model, loaded):
        torch.manual_seed(5)
        m.train_on_batch(X[:8], Y[:8])
    for (k, v), (k2, v2) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert k == k2 and torch.equal(v, v2), k
    fresh = load_model(tmp_path / "m")
    fresh.optimizer = None
    fresh._make_optimizer()
    torch.manual_seed(5)
    fresh.train_on_batch(X[:8], Y[:8])
    assert not torch.equal(fresh.layers[2].linear.weight, model.layers[2].linear.weight)


def test_weights_only_and_embedding_model_round_trip(tmp_path):
    model = Sequential([Embedding(10, 4, mask_zero=True, input_shape=(None,)), LSTM(3), Dense(2)])
    ids = np.array([[1, 2, 3, 0], [4, 5, 0, 0]])
    save_model(model, tmp_path / "e", include_optimizer=False, metadata={"task": "demo"})
    assert json.loads((tmp_path / "e" / "config.json").read_text())["task"] == "demo"
    np.testing.assert_array_equal(load_model(tmp_path / "e").predict(ids), model.predict(ids))
    model.save_weights(tmp_path / "w.safetensors")
    other = Sequential([Embedding(10, 4, mask_zero=True, input_shape=(None,)), LSTM(3), Dense(2)])
    assert not np.array_equal(other.predict(ids), model.predict(ids))
    other.load_weights(tmp_path / "w.safetensors")
    np.testing.assert_array_equal(other.predict(ids), model.predict(ids))


def _flip(path, offset):
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("which", ["weights", "optimizer", "optimizer_info"])
def test_flipped_byte_in_any_data_file_is_a_clear_error(tmp_path, which):
    _trained(1).save(tmp_path / "m")
    (f,) = [p for p in (tmp_path / "m").iterdir() if p.name.split("-")[0] == which]
    _flip(f, f.stat().st_size - 3)
    with pytest.raises(ModelFileError, match=rf"{f.name} fails its sha256 checksum"):
        load_model(tmp_path / "m")


def test_truncated_weights_file_is_a_clear_error(tmp_path):
    _trained(1).save(tmp_path / "m")
    (f,) = (tmp_path / "m").glob("weights-*.safetensors")
    f.write_bytes(f.read_bytes()[:100])
    with pytest.raises(ModelFileError, match=rf"{f.name} is truncated or altered: 100 bytes, expected \d+"):
        load_model(tmp_path / "m")
    f.unlink()
    with pytest.raises(ModelFileError, match=rf"{f.name} is missing"):
        load_model(tmp_path / "m")


def test_damaged_weights_only_file_is_a_clear_error(tmp_path):
    model = _trained(1)
    p = tmp_path / "w.safetensors"
    model.save_weights(p)
    good = p.read_bytes()
    p.write_bytes(good[:len(good) // 2])
    with pytest.raises(ModelFileError, match=r"weights file .*w\.safetensors.* not a valid safetensors"):
        model.load_weights(p)
    data = bytearray(good)
    data[-5] ^= 0x10  # inside a tensor: the header still parses, the checksum does not match
    p.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match=r"w\.safetensors.* fails its sha256 checksum"):
        model.load_weights(p)
    with pytest.raises(ModelFileError, match="does not exist"):
        model.load_weights(tmp_path / "nothing.safetensors")
    p.write_bytes(good)
    small = Sequential([LSTM(2, input_shape=(5, 3)), Dense(1)])
    with pytest.raises(ModelFileError, match=r"w\.safetensors.* does not fit Sequential"):
        small.load_weights(p)


def test_directory_that_is_not_an_lstmkit_model(tmp_path):
    with pytest.raises(ModelFileError, match=r"no config.json found"):
        load_model(tmp_path)
    (tmp_path / "saved_model.pb").write_bytes(b"\x08\x01")
    with pytest.raises(ModelFileError, match=rf"{tmp_path.name}.*no config.json found"):
        load_model(tmp_path)
    with pytest.raises(ModelFileError, match="no config.json found"):
        load_model(tmp_path / "does_not_exist")


@pytest.mark.parametrize("text, message", [
    ('{"architectures": ["BertModel"], "hidden_size": 768}', r"not an lstmkit model \(config.json format=None"),
    ('[1, 2, 3]', r"not an lstmkit model \(config.json format='list'"),
    ('{"format": "lstmkit.model", "format_ver', r"config.json is not valid JSON"),
    ('{"format": "lstmkit.model", "format_version": 99}', r"format_version 99"),
    ('{"format": "lstmkit.model", "format_version": 1, "config": {}, "files": {}}', r"'class_name' is None"),
    ('{"format": "lstmkit.model", "class_name": "Sequential", "config": {}, "files": {"weights": "w.bin"}}',
     r"files\['weights'\] = 'w.bin'"),
    ('{"format": "lstmkit.model", "class_name": "Sequential", "config": {},'
     ' "files": {"weights": {"file": "../x", "sha256": "0", "size": 1}}}', r"files\['weights'\]"),
    ('{"format": "lstmkit.model", "class_name": "NoSuchModel", "config": {}, "files": {}}',
     r"unknown class name 'NoSuchModel'"),
    ('{"format": "lstmkit.model", "class_name": "Sequential", "config": {"units": 3}, "files": {}}',
     r"'config' does not rebuild Sequential"),
])
def test_wrong_format_config_is_a_clear_error(tmp_path, text, message):
    d = tmp_path / "model"
    d.mkdir()
    (d / "config.json").write_text(text)
    with pytest.raises(ModelFileError, match=message) as e:
        load_model(d)
    assert str(d) in str(e.value)  # every message names the path


@pytest.mark.parametrize("fail_at", [1, 2, 3, 4])  # weights, optimizer, optimizer_info, config.json (commit)
def test_failed_save_leaves_the_previous_model_and_no_temp_files(tmp_path, monkeypatch, fail_at):
    d = tmp_path / "m"
    old = _trained(1)
    old.save(d)
    before = _files(d)
    expected = old.predict(X)
    new = _trained(2)
    assert not np.array_equal(new.predict(X), expected)
    calls = {"n": 0}
    real_fsync = os.fsync

    def failing_fsync(fd):  # file k fails after its bytes went to the temporary file (fsync calls: file, dir)
        calls["n"] += 1
        if calls["n"] == 2 * fail_at - 1:
            raise OSError(28, "No space left on device (simulated)")
        return real_fsync(fd)

    monkeypatch.setattr(saving.os, "fsync", failing_fsync)
    with pytest.raises(OSError, match="simulated"):
        new.save(d)
    monkeypatch.undo()
    assert _files(d) == before  # no temporary files, no orphaned new data files
    np.testing.assert_array_equal(load_model(d).predict(X), expected)
    new.save(d)  # and a later save succeeds and replaces it, leaving no stale files
    np.testing.assert_array_equal(load_model(d).predict(X), new.predict(X))
    assert len(_files(d)) == 4 and not any(n.endswith(".tmp") for n in _files(d))


def test_failed_rename_of_config_keeps_old_model(tmp_path, monkeypatch):
    d = tmp_path / "m"
    old = _trained(1)
    old.save(d)
    before = _files(d)
    real_replace = os.replace

    def failing_replace(src, dst):
        if str(dst).endswith("config.json"):
            raise KeyboardInterrupt  # interrupted at the commit point
        return real_replace(src, dst)

    monkeypatch.setattr(saving.os, "replace", failing_replace)
    with pytest.raises(KeyboardInterrupt):
        _trained(3).save(d)
    monkeypatch.undo()
    assert _files(d) == before
    np.testing.assert_array_equal(load_model(d).predict(X), old.predict(X))
