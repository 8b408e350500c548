"""docs/keras.md: every python example runs as written (in order, one shared namespace, in a temporary dir)."""
import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "keras.md"


def _blocks():
    return re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)


@pytest.mark.skipif(not DOC.exists(), reason="docs/keras.md not in this checkout")
def test_keras_md_examples_run(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    blocks = _blocks()
    assert len(blocks) >= 8
    ns = {"__name__": "keras_md"}
    for i, code in enumerate(blocks):
        try:
            exec(compile(code, f"docs/keras.md block {i + 1}", "exec"), ns)
        except Exception as e:  # pragma: no cover - the failure message is the point
            raise AssertionError(f"docs/keras.md python block {i + 1} fails: {type(e).__name__}: {e}\n{code}")
    out = capsys.readouterr().out
    # the printed values the document shows in comments
    assert "['loss', 'mae', 'val_loss', 'val_mae']" in out and "(4, 1)" in out
    assert "fit: x has 256 samples but y has 255; expected the same number" in out
    assert "model path 'runs': no config.json found" in out
