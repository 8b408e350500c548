"""lengths= and PackedSequence input against torch.nn on pack_padded_sequence(enforce_sorted=False)."""
import pytest
import torch

from core_helpers import KINDS, assert_same, make_pair, random_hx, run, tol

pytestmark = pytest.mark.filterwarnings("ignore:LSTM with projections is not supported with oneDNN")

B, T, D, H = 5, 6, 3, 4


def random_lengths(seed: int, batch: int = B, steps: int = T) -> torch.Tensor:
    """Random lengths in [1, T], always containing both 1 and T, in random (unsorted) order."""
    g = torch.Generator().manual_seed(seed)
    rest = torch.randint(1, steps + 1, (batch - 2,), generator=g)
    lengths = torch.cat([torch.tensor([1, steps]), rest])
    return lengths[torch.randperm(batch, generator=g)]


def _x(kw, dtype=torch.float64):
    return torch.randn((B, T, D) if kw.get("batch_first") else (T, B, D), dtype=dtype)


CONFIGS = {
    "one_layer": {},
    "bidir": {"bidirectional": True},
    "layers2": {"num_layers": 2},
    "bidir_layers2_batch_first": {"num_layers": 2, "bidirectional": True, "batch_first": True},
}


@pytest.mark.parametrize("with_hx", [False, True], ids=["zero_hx", "hx"])
@pytest.mark.parametrize("config", list(CONFIGS), ids=list(CONFIGS))
@pytest.mark.parametrize("kind", KINDS)
def test_lengths_match_torch_packed(kind, config, with_hx, backend):
    kw = CONFIGS[config]
    theirs, ours = make_pair(kind, D, H, backend=backend, **kw)
    x, lengths = _x(kw), random_lengths(10 * KINDS.index(kind) + list(CONFIGS).index(config))
    hx = random_hx(theirs, B) if with_hx else None
    mine = run(ours, x, hx, lengths=lengths)
    assert_same(mine, run(theirs, x, hx, lengths=lengths, via_pack=True), atol=tol(torch.float64))
    # Outputs past each length are exactly zero (torch's pad value), in both directions.
    y = mine["out"] if kw.get("batch_first") else mine["out"].transpose(0, 1)  # (B, T, F)
    for b, n in enumerate(lengths.tolist()):
        assert torch.count_nonzero(y[b, n:]) == 0
        if kind != "rnn_relu":  # relu outputs may be exactly zero inside the sequence
            assert torch.count_nonzero(y[b, :n]) == y[b, :n].numel()


@pytest.mark.parametrize("kind", KINDS)
def test_equal_lengths_shorter_than_input_match_torch_packed(kind, backend):
    """All sequences of one length L < T (the layer then runs only L steps): values and gradients as torch's."""
    kw = {"num_layers": 2, "bidirectional": True, "batch_first": True}
    theirs, ours = make_pair(kind, D, H, backend=backend, **kw)
    x, lengths, hx = _x(kw), torch.full((B,), T - 2), random_hx(theirs, B)
    mine = run(ours, x, hx, lengths=lengths)
    assert_same(mine, run(theirs, x, hx, lengths=lengths, via_pack=True), atol=tol(torch.float64))
    assert torch.count_nonzero(mine["out"][:, T - 2:]) == 0


def test_lstm_proj_lengths_match_torch_packed(backend):
    kw = {"num_layers": 2, "bidirectional": True, "proj_size": 2}
    theirs, ours = make_pair("lstm", D, H, backend=backend, **kw)
    x, lengths, hx = _x(kw), random_lengths(3), random_hx(theirs, B)
    assert_same(run(ours, x, hx, lengths=lengths), run(theirs, x, hx, lengths=lengths, via_pack=True),
                atol=tol(torch.float64))


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_lengths_float32_match_torch_packed(kind, backend):
    kw = {"num_layers": 2, "bidirectional": True}
    theirs, ours = make_pair(kind, D, H, dtype=torch.float32, backend=backend, **kw)
    x, lengths = _x(kw, torch.float32), random_lengths(11)
    assert_same(run(ours, x, lengths=lengths), run(theirs, x, lengths=lengths, via_pack=True),
                atol=tol(torch.float32))


@pytest.mark.parametrize("kind", KINDS)
def test_packed_sequence_input_matches_torch(kind, backend):
    kw = {"num_layers": 2, "bidirectional": True, "batch_first": True}
    theirs, ours = make_pair(kind, D, H, backend=backend, **kw)
    x, lengths, hx = _x(kw), random_lengths(5), random_hx(theirs, B)
    mine = run(ours, x, hx, lengths=lengths, packed_input=True)
    ref = run(theirs, x, hx, lengths=lengths, packed_input=True)
    assert_same(mine, ref, atol=tol(torch.float64))  # packed data, final states, all gradients
    for field in ("batch_sizes", "sorted_indices", "unsorted_indices"):
        assert torch.equal(getattr(mine["packed"], field), getattr(ref["packed"], field)), field


def test_packed_sequence_sorted_input_matches_torch():
    """enforce_sorted=True packing (sorted_indices None) goes through as well."""
    theirs, ours = make_pair("lstm", D, H, bidirectional=True)
    x = torch.randn(T, B, D, dtype=torch.float64)
    packed = torch.nn.utils.rnn.pack_padded_sequence(x, [6, 5, 3, 2, 1], enforce_sorted=True)
    (p_o, (h_o, c_o)), (p_t, (h_t, c_t)) = ours(packed), theirs(packed)
    assert p_o.sorted_indices is None
    for a, b in ((p_o.data, p_t.data), (h_o, h_t), (c_o, c_t)):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=0)


@pytest.mark.parametrize("kind", KINDS)
def test_lengths_list_and_tensor_agree(kind):
    _, ours = make_pair(kind, D, H, bidirectional=True)
    x, lengths = _x({}), random_lengths(9)
    as_tensor = run(ours, x, lengths=lengths)
    as_list = run(ours, x, lengths=lengths.tolist())
    assert_same(as_list, as_tensor, atol=0.0)


def test_full_lengths_equal_no_lengths():
    _, ours = make_pair("lstm", D, H, num_layers=2, bidirectional=True)
    x = _x({})
    assert_same(run(ours, x, lengths=[T] * B), run(ours, x), atol=0.0)


def test_lengths_with_unsorted_batch_is_per_sequence():
    """A sequence's result depends only on its own steps: running it alone, truncated, gives the same."""
    _, ours = make_pair("gru", D, H, num_layers=2, bidirectional=True)
    ours.eval()
    x, lengths = _x({}), random_lengths(21)
    y, h = ours(x, lengths=lengths)
    for b, n in enumerate(lengths.tolist()):
        y_b, h_b = ours(x[:n, b])  # unbatched, truncated to its length
        torch.testing.assert_close(y[:n, b], y_b, atol=1e-12, rtol=0)
        torch.testing.assert_close(h[:, b], h_b, atol=1e-12, rtol=0)
