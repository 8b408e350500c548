"""Bad inputs and impossible options raise ValueError naming the argument; backend selection and the seam."""
import warnings

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence

import lstmkit.nn as lnn
from lstmkit import backend as lk_backend
from lstmkit.nn import _engine
from lstmkit.nn.rnn import RNNBase

T, B, D, H = 5, 3, 4, 6


def _lstm(**kw):
    return lnn.LSTM(D, H, dtype=torch.float64, backend="reference", **kw)


def _x(*shape, dtype=torch.float64):
    return torch.randn(*(shape or (T, B, D)), dtype=dtype)


# -- forward-time errors -------------------------------------------------------------------------------------
@pytest.mark.parametrize("module", [_lstm, lambda: lnn.GRU(D, H, dtype=torch.float64),
                                    lambda: lnn.RNN(D, H, dtype=torch.float64)], ids=["lstm", "gru", "rnn"])
@pytest.mark.parametrize("bad,match", [
    (lambda: _x(D), r"input must be 2-D .* got 1-D"),
    (lambda: _x(2, T, B, D), r"input must be 2-D .* got 4-D"),
    (lambda: _x(T, B, D + 1), rf"input\.size\(-1\) must be input_size={D}, got {D + 1}"),
    (lambda: _x(T, D + 2), rf"input\.size\(-1\) must be input_size={D}, got {D + 2}"),
    (lambda: _x(dtype=torch.float32), r"input dtype torch\.float32 does not match"),
    (lambda: _x(0, B, D), r"input must have at least one time step"),
    (lambda: [[1.0] * D] * T, r"input must be a torch\.Tensor"),
], ids=["1d", "4d", "features", "features_unbatched", "dtype", "empty", "list"])
def test_bad_input(module, bad, match):
    with pytest.raises(ValueError, match=match):
        module()(bad())


@pytest.mark.parametrize("hx,match", [
    (lambda: (_x(2, B, H), _x(1, B, H)), r"hx\[0\] \(h_0\) must have shape \(1, 3, 6\), got \(2, 3, 6\)"),
    (lambda: (_x(1, B, H), _x(1, B + 1, H)), r"hx\[1\] \(c_0\) must have shape \(1, 3, 6\), got \(1, 4, 6\)"),
    (lambda: (_x(1, B, H - 1), _x(1, B, H)), r"hx\[0\] \(h_0\) must have shape"),
    (lambda: (_x(1, B, H, dtype=torch.float32), _x(1, B, H)), r"hx\[0\] \(h_0\) dtype torch\.float32"),
    (lambda: (_x(1, B, H), _x(1, B, H, dtype=torch.float32)), r"hx\[1\] \(c_0\) dtype torch\.float32"),
    (lambda: _x(1, B, H), r"hx must be a tuple \(h_0, c_0\) for LSTM, got Tensor"),
    (lambda: (_x(1, B, H),), r"hx must be a tuple \(h_0, c_0\)"),
    (lambda: ([[0.0]], _x(1, B, H)), r"hx\[0\] \(h_0\) must be a torch\.Tensor"),
])
def test_bad_lstm_hx(hx, match):
    with pytest.raises(ValueError, match=match):
        _lstm()(_x(), hx())


def test_bad_lstm_hx_with_projection_and_unbatched():
    lstm = _lstm(proj_size=2, num_layers=2)
    with pytest.raises(ValueError, match=r"hx\[0\] \(h_0\) must have shape \(2, 3, 2\), got \(2, 3, 6\)"):
        lstm(_x(), (_x(2, B, H), _x(2, B, H)))
    with pytest.raises(ValueError, match=r"hx\[0\] \(h_0\) must have shape \(2, 2\), got \(2, 1, 2\)"):
        lstm(_x(T, D), (_x(2, 1, 2), _x(2, 1, H)))  # unbatched input takes unbatched states


@pytest.mark.parametrize("cls", [lnn.GRU, lnn.RNN])
def test_bad_hx_gru_rnn(cls):
    module = cls(D, H, num_layers=2, bidirectional=True, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"hx must have shape \(4, 3, 6\), got \(2, 3, 6\)"):
        module(_x(), _x(2, B, H))
    with pytest.raises(ValueError, match=r"hx dtype torch\.float32 does not match the input's dtype torch\.float64"):
        module(_x(), _x(4, B, H, dtype=torch.float32))


@pytest.mark.parametrize("lengths,match", [
    ([0, 2, 3], r"lengths must lie in \[1, T=5\], got min 0"),
    ([1, T + 1, 3], r"lengths must lie in \[1, T=5\], got min 1 and max 6"),
    (torch.tensor([-1, 2, 3]), r"lengths must lie in \[1, T=5\]"),
    ([1, 2], r"lengths must have shape \(3,\) \(one length per sequence\), got \(2,\)"),
    (torch.tensor([[1, 2, 3]]), r"lengths must have shape \(3,\)"),
    ([1, 2, 3, 4], r"lengths must have shape \(3,\)"),
    (torch.tensor([1.0, float("nan"), 2.0]), r"lengths must be whole numbers in \[1, 5\], got NaN"),
    ([1.0, 2.5, 3.0], r"lengths must be whole numbers in \[1, 5\]"),
    (torch.tensor([True, True, False]), r"lengths must be integers, got dtype torch\.bool"),
    (["a", "b", "c"], r"lengths must be a 1-D tensor or sequence of ints"),
], ids=["zero", "above_T", "negative", "short", "2d", "long", "nan", "fraction", "bool", "strings"])
def test_bad_lengths(lengths, match):
    with pytest.raises(ValueError, match=match):
        _lstm()(_x(), lengths=lengths)


def test_whole_float_lengths_are_accepted_as_ints():
    lstm = _lstm()
    x = _x()
    torch.testing.assert_close(lstm(x, lengths=[5.0, 2.0, 1.0])[0], lstm(x, lengths=[5, 2, 1])[0], atol=0, rtol=0)


def test_lengths_with_packed_sequence_is_rejected():
    packed = pack_padded_sequence(_x(), [5, 3, 1])
    with pytest.raises(ValueError, match=r"lengths must be None when input is a PackedSequence"):
        _lstm()(packed, lengths=[5, 3, 1])


def test_bad_cell_inputs():
    cell = lnn.LSTMCell(D, H, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"input must be 1-D \(D,\) unbatched or 2-D \(B, D\), got \(5, 3, 4\)"):
        cell(_x())
    with pytest.raises(ValueError, match=rf"input\.size\(-1\) must be input_size={D}"):
        cell(_x(B, D + 1))
    with pytest.raises(ValueError, match=r"hx\[1\] \(c\) must have shape \(3, 6\), got \(3, 5\)"):
        cell(_x(B, D), (_x(B, H), _x(B, H - 1)))
    with pytest.raises(ValueError, match=r"hx must have shape \(6,\), got \(1, 6\)"):
        lnn.GRUCell(D, H, dtype=torch.float64)(_x(D), _x(1, H))


# -- constructor errors --------------------------------------------------------------------------------------
@pytest.mark.parametrize("build,match", [
    (lambda: lnn.LSTM(D, 0), r"hidden_size must be a positive int, got 0"),
    (lambda: lnn.LSTM(-1, H), r"input_size must be a positive int, got -1"),
    (lambda: lnn.GRU(D, H, num_layers=0), r"num_layers must be a positive int, got 0"),
    (lambda: lnn.RNN(D, H, num_layers=1.5), r"num_layers must be a positive int, got 1\.5"),
    (lambda: lnn.LSTM(D, True), r"hidden_size must be a positive int, got True"),
    (lambda: lnn.LSTM(D, H, proj_size=H), r"proj_size must be smaller than hidden_size=6, got 6"),
    (lambda: lnn.LSTM(D, H, proj_size=-1), r"proj_size must be a non-negative int, got -1"),
    (lambda: RNNBase("gru", D, H, proj_size=2), r"proj_size is only supported by LSTM"),
    (lambda: RNNBase("gru", D, H, coupled=True), r"LSTM options; GRU does not take them"),
    (lambda: RNNBase("rnn_tanh", D, H, peephole=True), r"LSTM options; RNN_TANH does not take them"),
    (lambda: RNNBase("gru", D, H, zoneout=0.1), r"LSTM options"),
    (lambda: RNNBase("rnn_relu", D, H, forget_bias=1.0), r"LSTM options"),
    (lambda: RNNBase("gru", D, H, layer_norm=True), r"LSTM options"),
    (lambda: lnn.LSTM(D, H, dropout=1.5), r"dropout must be a number in \[0, 1\], got 1\.5"),
    (lambda: lnn.GRU(D, H, dropout=-0.1), r"dropout must be a number in \[0, 1\], got -0\.1"),
    (lambda: lnn.LSTM(D, H, dropout="0.1"), r"dropout must be a number"),
    (lambda: lnn.LSTM(D, H, recurrent_dropout=1.0), r"recurrent_dropout must be a number in \[0, 1\), got 1\.0"),
    (lambda: lnn.LSTM(D, H, zoneout=1.5), r"zoneout must be a number in \[0, 1\], got 1\.5"),
    (lambda: lnn.RNN(D, H, nonlinearity="sigmoid"), r"nonlinearity must be 'tanh' or 'relu', got 'sigmoid'"),
    (lambda: lnn.RNNCell(D, H, nonlinearity="gelu"), r"nonlinearity must be 'tanh' or 'relu', got 'gelu'"),
    (lambda: lnn.LSTMCell(D, 0), r"hidden_size must be a positive int, got 0"),
    (lambda: lnn.LSTM(D, H, backend="bogus"), r"backend='bogus' is not a known backend"),
    (lambda: lnn.GRU(D, H, backend="cuda"), r"backend='cuda' is not a known backend"),
])
def test_constructor_errors(build, match):
    with pytest.raises(ValueError, match=match):
        build()


@pytest.mark.parametrize("cls,option", [(lnn.GRU, "coupled"), (lnn.GRU, "peephole"), (lnn.RNN, "layer_norm"),
                                        (lnn.GRU, "proj_size"), (lnn.RNN, "zoneout")])
def test_lstm_only_options_are_not_in_gru_rnn_signatures(cls, option):
    """GRU and RNN keep torch's signature: LSTM-only options are unknown keywords, as in torch.nn."""
    with pytest.raises(TypeError, match=option):
        cls(D, H, **{option: 1})


# -- backend selection ---------------------------------------------------------------------------------------
@pytest.fixture
def clean_backend(monkeypatch):
    """No LSTMKIT_BACKEND, default "auto", warning not yet given; native state restored afterwards."""
    monkeypatch.delenv(lk_backend.ENV_VAR, raising=False)
    for name in ("_default", "_warned", "_native_checked", "_native_module", "_native_error"):
        monkeypatch.setattr(lk_backend, name, getattr(lk_backend, name))
    lk_backend._default, lk_backend._warned = "auto", False
    return monkeypatch


@pytest.fixture
def no_native(clean_backend):
    """Simulate a build without the native engine, whatever this machine has."""
    lk_backend._native_checked, lk_backend._native_module = True, None
    lk_backend._native_error = "simulated: engine not built"
    return clean_backend


class FakeNative:
    """Stands in for lstmkit._native.ops: checks the seam's argument contract, then runs the reference."""

    def __init__(self, supported=True):
        self.supported, self.calls = supported, []

    def available(self):
        return True

    def supports(self, spec, dtype):
        return self.supported

    def run_direction(self, spec, x, h0, c0, w, lengths, rd_mask, zo_h, zo_c):
        assert isinstance(spec, _engine.CellSpec) and isinstance(w, _engine.DirectionWeights)
        assert x.dim() == 3 and h0.shape == (x.size(1), spec.state_size)
        assert lengths is None or (lengths.dtype == torch.int64 and lengths.device.type == "cpu")
        self.calls.append(spec)
        return _engine.reference_run_direction(spec, x, h0, c0, w, lengths, rd_mask, zo_h, zo_c)

    def run_bidirectional(self, spec, dirs, lengths):
        assert len(dirs) == 2 and all(len(d) == 4 for d in dirs)
        return [self.run_direction(spec, *d, lengths, None, None, None) for d in dirs]


@pytest.fixture
def fake_native(clean_backend):
    fake = FakeNative()
    lk_backend._native_checked, lk_backend._native_module, lk_backend._native_error = True, fake, None
    return fake


def _count_reference_calls(monkeypatch):
    calls = []
    real = _engine.reference_run_direction

    def spy(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(_engine, "reference_run_direction", spy)
    return calls


def test_unknown_backend_in_environment(clean_backend):
    clean_backend.setenv(lk_backend.ENV_VAR, "bogus")
    lstm = lnn.LSTM(D, H, backend="reference")
    with pytest.raises(ValueError, match=r"LSTMKIT_BACKEND='bogus' is not a known backend"):
        lstm(_x(dtype=torch.float32))
    with pytest.raises(ValueError, match=r"backend='gpu' is not a known backend"):
        lk_backend.set_default("gpu")


def test_forced_native_unavailable_raises(no_native):
    lstm = lnn.LSTM(D, H, backend="native")
    with pytest.raises(RuntimeError, match=r"backend='native' was requested .* simulated: engine not built"):
        lstm(_x(dtype=torch.float32))
    no_native.setenv(lk_backend.ENV_VAR, "native")
    with pytest.raises(RuntimeError, match=r"native engine is unavailable"):
        lnn.GRU(D, H, backend="auto")(_x(dtype=torch.float32))


def test_auto_falls_back_with_exactly_one_warning(no_native):
    calls = _count_reference_calls(no_native)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        y1 = lnn.LSTM(D, H, backend="auto")(_x(dtype=torch.float32))[0]
        lnn.GRU(D, H, backend="auto", bidirectional=True)(_x(dtype=torch.float32))
        lnn.LSTM(D, H)(_x(dtype=torch.float32))  # "auto" is the default
    ours = [w for w in caught if "native engine unavailable" in str(w.message)]
    assert len(ours) == 1 and issubclass(ours[0].category, RuntimeWarning)
    assert "simulated: engine not built" in str(ours[0].message)
    assert len(calls) == 4 and y1.shape == (T, B, H)


def test_environment_reference_overrides_and_does_not_warn(no_native):
    no_native.setenv(lk_backend.ENV_VAR, "reference")
    calls = _count_reference_calls(no_native)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert lk_backend.resolve("auto") == "reference"
        assert lk_backend.resolve("native") == "reference"  # the variable forces it everywhere
        lnn.LSTM(D, H, backend="native")(_x(dtype=torch.float32))
    assert len(calls) == 1


def test_set_default_reference_avoids_warning(no_native):
    lk_backend.set_default("reference")
    assert lk_backend.get_default() == "reference"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert lk_backend.resolve("auto") == "reference"


def test_auto_uses_native_when_available_and_matches_reference(fake_native):
    x = _x()
    theirs = lnn.LSTM(D, H, num_layers=2, bidirectional=True, dtype=torch.float64, backend="reference")
    ours = lnn.LSTM(D, H, num_layers=2, bidirectional=True, dtype=torch.float64, backend="auto")
    ours.load_state_dict(theirs.state_dict())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y_n, (h_n, c_n) = ours(x, lengths=[5, 1, 3])
    assert len(fake_native.calls) == 4 and fake_native.calls[0].mode == "lstm"
    y_r, (h_r, c_r) = theirs(x, lengths=[5, 1, 3])
    assert len(fake_native.calls) == 4  # backend="reference" never reaches the engine
    for a, b in ((y_n, y_r), (h_n, h_r), (c_n, c_r)):
        torch.testing.assert_close(a, b, atol=0, rtol=0)


def test_environment_native_selects_native(fake_native, clean_backend):
    clean_backend.setenv(lk_backend.ENV_VAR, "native")
    lnn.GRU(D, H, backend="reference", dtype=torch.float64)(_x())
    assert [s.mode for s in fake_native.calls] == ["gru"]


def test_unsupported_spec_falls_back_to_reference(fake_native, clean_backend):
    fake_native.supported = False
    calls = _count_reference_calls(clean_backend)
    lnn.LSTM(D, H, layer_norm=True, backend="native", dtype=torch.float64)(_x())
    assert fake_native.calls == [] and len(calls) == 1


def test_native_backend_resolution_when_built():
    if not lk_backend.native_available():
        assert lk_backend.native_error()  # says why
        pytest.skip(f"native engine not built: {lk_backend.native_error()}")
    assert lk_backend.native_error() is None


@pytest.mark.parametrize("lengths, want", [
    ([4, 4, 4], 4),  # a common length below T: run that many steps
    (torch.tensor([2, 2, 2], dtype=torch.int32), 2),
    ([5.0, 5.0, 5.0], None),  # all T: no lengths at all
    ([5, 3, 5], None),  # different lengths: no common one
])
def test_lengths_and_common_reports_the_shared_length(lengths, want):
    from lstmkit.nn import _checks

    lt, common = _checks.lengths_and_common(lengths, 3, 5)
    assert common == want
    if lt is None:
        assert all(int(v) == 5 for v in lengths)
    else:
        assert lt.dtype == torch.int64 and lt.tolist() == [int(v) for v in lengths]
    assert (_checks.check_lengths(lengths, 3, 5) is None) == (lt is None)


def test_lengths_range_check_on_a_large_batch():
    """Above 1024 sequences the range is taken with one reduction instead of a list: the same errors."""
    from lstmkit.nn import _checks

    lengths = torch.full((2000,), 3)
    assert _checks.lengths_and_common(lengths, 2000, 5)[1] == 3
    lengths[7] = 6
    with pytest.raises(ValueError, match=r"lengths must lie in \[1, T=5\], got min 3 and max 6"):
        _checks.lengths_and_common(lengths, 2000, 5)


def test_empty_batch_with_lengths_runs_on_both_backends():
    """B = 0 with an empty lengths tensor: nothing to mask, and both backends return empty outputs."""
    from lstmkit.nn import _checks

    assert _checks.lengths_and_common(torch.zeros(0, dtype=torch.long), 0, 5) == (None, None)
    for backend in ("reference", "native") if lk_backend.native_available() else ("reference",):
        y, (h, c) = lnn.LSTM(3, 4, backend=backend)(torch.randn(5, 0, 3), lengths=torch.zeros(0, dtype=torch.long))
        assert y.shape == (5, 0, 4) and h.shape == (1, 0, 4) and c.shape == (1, 0, 4)
