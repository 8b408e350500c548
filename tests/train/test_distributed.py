"""Data parallel: the same fit script under torchrun --nproc_per_node=2 (DDP, gloo) ends with the single-process
weights; each rank trains on half of every global batch; only rank 0 prints and writes files."""
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import lstmkit

SCRIPT = Path(__file__).with_name("train_script.py")
SRC = str(Path(lstmkit.__file__).resolve().parents[1])

pytestmark = pytest.mark.slow  # two torchrun workers plus a plain run: about 7-12 s on 2 shared cores


def _env():
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""))
    for k in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    return env


def _run(cmd):
    return subprocess.Popen(cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _done(p):
    out, err = p.communicate(timeout=300)
    assert p.returncode == 0, f"exit {p.returncode}\n{out}\n{err}"
    return out


@pytest.mark.parametrize("feed", [[], ["--loader"]], ids=["arrays", "dataloader"])
def test_torchrun_two_processes_equal_one_process(tmp_path, feed):
    two = _run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(SCRIPT),
                str(tmp_path / "two"), "--verbose", "2", *feed])
    one = _run([sys.executable, str(SCRIPT), str(tmp_path / "one"), "--verbose", "2", *feed])
    out_two, out_one = _done(two), _done(one)

    a, b = load_file(tmp_path / "two" / "weights.safetensors"), load_file(tmp_path / "one" / "weights.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-5)
    ha = json.loads((tmp_path / "two" / "history.json").read_text())
    hb = json.loads((tmp_path / "one" / "history.json").read_text())
    for k in hb:  # epoch losses are reduced over ranks: the global-batch averages
        np.testing.assert_allclose(ha[k], hb[k], rtol=1e-5, atol=1e-6)
    assert ha["loss"][-1] < ha["loss"][0]

    # each rank saw its half of the 48 training samples every epoch
    s0 = json.loads((tmp_path / "two" / "samples-rank0.json").read_text())
    s1 = json.loads((tmp_path / "two" / "samples-rank1.json").read_text())
    assert s0 == s1 == {str(e): 24 for e in range(4)}
    # rank 0 only: one progress line per epoch, one CSV row per epoch
    epoch_lines = [l for l in out_two.splitlines() if l.startswith("Epoch ")]
    assert [l.split(" - ")[0] for l in epoch_lines] == [f"Epoch {e}/4" for e in range(1, 5)]
    assert len([l for l in out_one.splitlines() if l.startswith("Epoch ")]) == 4
    rows = list(csv.reader(open(tmp_path / "two" / "log.csv")))
    assert [r[0] for r in rows] == ["epoch", "0", "1", "2", "3"]


def test_a_stop_on_one_rank_stops_every_rank(tmp_path):
    """E.g. TerminateOnNaN seeing a NaN in rank 1's share only: both ranks stop after that batch (no hang)."""
    p = _run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(SCRIPT),
              str(tmp_path / "two"), "--stop-rank1-at", "1,1"])
    _done(p)
    s0 = json.loads((tmp_path / "two" / "samples-rank0.json").read_text())
    s1 = json.loads((tmp_path / "two" / "samples-rank1.json").read_text())
    assert s0 == s1 == {"0": 24, "1": 16}  # epoch 1 stopped after its second batch on both ranks
    assert len(json.loads((tmp_path / "two" / "history.json").read_text())["loss"]) == 2
