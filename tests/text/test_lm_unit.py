"""LM internals: chunked evaluation carrying state equals one pass over the whole stream; detach keeps values."""
import torch

from lstmkit.tasks.lm import LanguageModel, detach_state, stream_nll


def test_chunked_state_carry_equals_full_pass():
    torch.manual_seed(0)
    m = LanguageModel(12, embed=5, hidden=7, layers=2, dropout=0.0, backend="reference").eval()
    ids = torch.randint(0, 12, (53,))
    nll, n = stream_nll(m, ids, bptt=7, n_streams=1)  # 8 chunks, state carried between them
    with torch.no_grad():
        logits, _ = m(ids[None, :-1])
        full = torch.nn.functional.cross_entropy(logits[0], ids[1:], reduction="sum").item()
    assert n == 52
    assert abs(nll - full) < 1e-4 * max(1.0, abs(full))


def test_detach_state_cuts_graph_keeps_values():
    h = torch.randn(1, 2, 3, requires_grad=True) * 2
    c = torch.randn(1, 2, 3, requires_grad=True) * 2
    hd, cd = detach_state((h, c))
    assert not hd.requires_grad and not cd.requires_grad and torch.equal(hd, h) and torch.equal(cd, c)
    assert detach_state(None) is None
