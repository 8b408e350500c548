"""Resume: a fit SIGKILLed mid-epoch and started again with BackupAndRestore ends with the uninterrupted run's
weights, history and CSV log (the killed and the resumed run each in a process of their own, as after a real
crash; the uninterrupted reference in the test process)."""
import csv
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import lstmkit
from lstmkit.layers import LSTM, Dense
from lstmkit.models import ModelFileError, Sequential
from lstmkit.train import BackupAndRestore, LambdaCallback, resume

SCRIPT = Path(__file__).with_name("train_script.py")
sys.path.insert(0, str(SCRIPT.parent))
import train_script  # noqa: E402
SRC = str(Path(lstmkit.__file__).resolve().parents[1])


def _env():
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""))
    for k in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    return env


def _start(*args):
    return subprocess.Popen([sys.executable, str(SCRIPT), *map(str, args)], env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _finish(p, expect_rc=0):
    out, err = p.communicate(timeout=120)
    assert p.returncode == expect_rc, f"exit {p.returncode}\n{out}\n{err}"
    return out


def test_sigkill_mid_epoch_then_resume_equals_uninterrupted_run(tmp_path):
    backup = tmp_path / "backup"
    killed = _start(tmp_path / "run", "--backup", backup, "--kill-at", "2,2", "--dropout", "0.3")
    train_script.main([str(tmp_path / "ref"), "--dropout", "0.3"])  # the uninterrupted run, here, meanwhile
    _finish(killed, expect_rc=-signal.SIGKILL)
    state = json.loads((backup / "state.json").read_text())
    assert (state["info"]["epoch"], state["info"]["batch"]) == (2, 2)  # last backup: after batch 1 of epoch 2
    assert not (tmp_path / "run" / "weights.safetensors").exists()
    assert len(list(csv.reader(open(tmp_path / "run" / "log.csv")))) == 1 + 2  # header + epochs 0, 1
    _finish(_start(tmp_path / "run", "--backup", backup, "--dropout", "0.3"))
    assert not backup.exists()  # deleted when the resumed fit completed

    a, b = load_file(tmp_path / "run" / "weights.safetensors"), load_file(tmp_path / "ref" / "weights.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    ha = json.loads((tmp_path / "run" / "history.json").read_text())
    hb = json.loads((tmp_path / "ref" / "history.json").read_text())
    assert list(ha) == list(hb) == ["loss", "mae", "val_loss", "val_mae"] and len(ha["loss"]) == 4
    for k in ha:
        np.testing.assert_allclose(ha[k], hb[k], rtol=0, atol=1e-7)
    rows_a = list(csv.reader(open(tmp_path / "run" / "log.csv")))
    rows_b = list(csv.reader(open(tmp_path / "ref" / "log.csv")))
    assert [r[0] for r in rows_a] == ["epoch", "0", "1", "2", "3"]
    np.testing.assert_allclose(np.array(rows_a[1:], float), np.array(rows_b[1:], float), rtol=0, atol=1e-7)
    # the resumed process trained only on what was left: epoch 2 from its third batch (of 3), then epoch 3
    seen = json.loads((tmp_path / "run" / "samples-rank0.json").read_text())
    assert seen == {"2": 16, "3": 48}


def _model():
    torch.manual_seed(0)
    m = Sequential([LSTM(4, input_shape=(5, 2)), Dense(1)])
    m.compile("sgd", "mse")
    return m


def test_resume_within_one_process_after_an_exception(tmp_path):
    """An exception mid-epoch (no process restart) then fit again: same weights as an uninterrupted fit."""
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((40, 5, 2)).astype("float32"), rng.standard_normal((40, 1)).astype("float32")
    torch.manual_seed(7)
    ref = _model()
    ref.fit(x, y, batch_size=8, epochs=3, verbose=0)

    class Boom(Exception):
        pass

    def explode(batch, logs, state={"n": 0}):
        state["n"] += 1
        if state["n"] == 8:  # epoch 1, batch 2
            raise Boom
    torch.manual_seed(7)
    m = _model()
    with pytest.raises(Boom):
        m.fit(x, y, batch_size=8, epochs=3, verbose=0,
              callbacks=[LambdaCallback(on_train_batch_end=explode), BackupAndRestore(tmp_path / "b", save_freq=2)])
    torch.manual_seed(99)  # the RNG is restored from the backup, whatever happened since
    m2 = _model()
    h = m2.fit(x, y, batch_size=8, epochs=3, verbose=0, callbacks=[BackupAndRestore(tmp_path / "b", save_freq=2)])
    assert len(h.history["loss"]) == 3
    for (k, v), v2 in zip(ref.state_dict().items(), m2.state_dict().values()):
        assert torch.equal(v, v2), k


def test_resume_with_a_shuffling_dataloader_and_dropout(tmp_path):
    from torch.utils.data import DataLoader, TensorDataset
    from lstmkit.layers import Dropout
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((40, 5, 2)).astype("float32"), rng.standard_normal((40, 1)).astype("float32")

    def run(callbacks):
        torch.manual_seed(11)
        m = Sequential([LSTM(4, input_shape=(5, 2)), Dropout(0.5), Dense(1)])
        m.compile("adam", "mse")
        loader = DataLoader(TensorDataset(torch.from_numpy(x), torch.from_numpy(y)), batch_size=8, shuffle=True)
        h = m.fit(loader, epochs=3, verbose=0, callbacks=callbacks)
        return m, h

    ref, href = run([])

    def explode(batch, logs, state={"n": 0}):
        state["n"] += 1
        if state["n"] == 7:  # epoch 1, batch 1
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        run([LambdaCallback(on_train_batch_end=explode), BackupAndRestore(tmp_path, save_freq=1)])
    m, h = run([BackupAndRestore(tmp_path, save_freq=1)])
    for (k, v), v2 in zip(ref.state_dict().items(), m.state_dict().values()):
        assert torch.equal(v, v2), k
    np.testing.assert_allclose(h.history["loss"], href.history["loss"], rtol=0, atol=1e-7)


def test_damaged_backup_is_a_clear_error(tmp_path):
    m = _model()
    m._make_optimizer()
    resume.save(tmp_path, m, m.optimizer, {"epoch": 1})
    (f,) = tmp_path.glob("backup-*.safetensors")
    data = bytearray(f.read_bytes())
    data[-2] ^= 1
    f.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="fails its sha256 checksum"):
        resume.load(tmp_path, m, m.optimizer)
    f.unlink()
    with pytest.raises(ModelFileError, match=r"backup-.*\.safetensors.* is missing"):
        resume.load(tmp_path, m, m.optimizer)
    (tmp_path / "state.json").write_text("{not json")
    with pytest.raises(ModelFileError, match="not valid JSON"):
        resume.load(tmp_path, m, m.optimizer)
