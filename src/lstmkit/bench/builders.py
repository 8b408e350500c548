"""Row builders: for one suite and one shape, the implementations to time (closures) and correctness checks.

Every builder takes ``(shape, ctx)`` with ``shape = (B, T, D, H)`` and a :class:`Context`, and returns
``(rows, extras)``: a list of :class:`~lstmkit.bench.timing.Row` and a dict of per-shape facts recorded in the
JSON (``checks``: max abs differences against torch; ``flops``: work per call for the GFLOP/s suite).
Modules are batch_first, fp32 unless the suite says otherwise, and lstmkit rows share torch's weights.
Training iterations compute ``out.sum()`` and ``torch.autograd.grad`` to the input and every parameter.
"""
from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from typing import Optional

import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import lstmkit.nn as lnn
from lstmkit import backend as _backend
from lstmkit.bench.timing import Row
from lstmkit.nn._engine import CellSpec


@dataclass
class Context:
    """Run-wide settings the builders need.

    Attributes:
        backend: backend of the "lstmkit" rows: "native" when the engine is available, else "reference".
        threads: intra-op threads (torch and ONNX Runtime).
        max_ref_work: skip pure-PyTorch-loop rows at shapes with ``work(shape)`` above this (None: never).
        stream_steps: steps per call in the stream suite. matmul_size: N of the N x N matmul (gflops suite).
        gflops_shape: the shape whose training GFLOP/s the gflops suite measures.
    """

    backend: str = "reference"
    threads: int = 2
    max_ref_work: Optional[int] = None
    stream_steps: int = 1000
    matmul_size: int = 2048
    gflops_shape: tuple = (32, 200, 256, 512)


def work(shape) -> int:
    """Relative cost of an LSTM at ``shape = (B, T, D, H)``: ``B*T*H*(D+H)`` (FLOPs up to a constant)."""
    b, t, d, h = shape
    return b * t * h * (d + h)


def lstm_train_flops(shape, gates: int = 4) -> float:
    """FLOPs of one training iteration: 3 x forward, forward = ``2*T*B*G*H*(D+H)`` (G = 4 for LSTM)."""
    b, t, d, h = shape
    return 3.0 * 2 * t * b * gates * h * (d + h)


def lstmkit_label(ctx: Context, what: str = "lstmkit", spec: Optional[CellSpec] = None,
                  dtype=torch.float32) -> str:
    """Printed name of an lstmkit row, saying when it ran on the reference loop instead of the native engine."""
    if ctx.backend != "native":
        return f"{what} [reference: native unavailable]"
    ops = _backend.native_module()
    try:
        ok = spec is None or ops.supports(spec, dtype)
    except Exception:  # an engine without supports() for this case: assume it handles it
        ok = True
    return what if ok else f"{what} [reference: native lacks {str(dtype).replace('torch.', '')} {spec.mode}]"


def _train(module, x, **kwargs):
    inputs = [x] + [p for p in module.parameters() if p.requires_grad]

    def fn():
        out = module(x, **kwargs)[0]
        torch.autograd.grad(out.sum(), inputs)
    return fn


def _train_packed(module, x, lengths):
    inputs = [x] + [p for p in module.parameters() if p.requires_grad]
    steps = x.size(1)

    def fn():
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        out, _ = pad_packed_sequence(module(packed)[0], batch_first=True, total_length=steps)
        torch.autograd.grad(out.sum(), inputs)
    return fn


def _infer(module, x):
    def fn():
        with torch.inference_mode():
            module(x)
    return fn


def _input(shape, dtype=torch.float32, grad=True):
    b, t, d, _ = shape
    return torch.randn(b, t, d).to(dtype).requires_grad_(grad)


def _lengths(shape) -> torch.Tensor:
    """Lengths uniform in [ceil(T/2), T] from a fixed seed (the same at every call for a given shape)."""
    b, t, _, _ = shape
    gen = torch.Generator().manual_seed(1234)
    return torch.randint((t + 1) // 2, t + 1, (b,), generator=gen, dtype=torch.int64)


def _diff(a, b) -> float:
    return float((a.detach().float() - b.detach().float()).abs().max())


def _loop_row(key, label, module_fn, shape, ctx: Context) -> Row:
    """A pure-PyTorch-loop row, skipped when it would repeat the lstmkit row or the shape is too big."""
    if ctx.backend != "native":
        return Row(key, label, None, "same code as the lstmkit row while the native engine is unavailable")
    if ctx.max_ref_work is not None and work(shape) > ctx.max_ref_work:
        return Row(key, label, None, "skipped: shape larger than --max-ref-shape")
    return Row(key, label, module_fn())


def _lstm_pair(shape, ctx: Context, grad: bool = True):
    """A torch.nn.LSTM, the lstmkit LSTM with its weights, and an input ``(B, T, D)`` for ``shape``."""
    theirs = torch.nn.LSTM(shape[2], shape[3], batch_first=True)
    return theirs, lnn.from_torch(theirs, backend=ctx.backend), _input(shape, grad=grad)


def build_lstm_train(shape, ctx: Context):
    h = shape[3]
    theirs, ours, x = _lstm_pair(shape, ctx)
    lengths = _lengths(shape)
    with torch.no_grad():
        checks = {"max_abs_diff_vs_torch": _diff(ours(x)[0], theirs(x)[0])}
    rows = [Row("lstmkit", lstmkit_label(ctx, spec=CellSpec("lstm", h)), _train(ours, x)),
            Row("torch", "torch.nn.LSTM", _train(theirs, x)),
            Row("torch_packed", "torch.nn.LSTM PackedSequence", _train_packed(theirs, x, lengths)),
            _loop_row("loop", "pure-PyTorch loop (reference)",
                      lambda: _train(lnn.from_torch(theirs, backend="reference"), x), shape, ctx)]
    return rows, {"checks": checks}


def _ort_row(theirs, x, threads: int):
    """ONNX Runtime on torch.nn.LSTM exported with torch.onnx.export; (row, checks). Skipped when unavailable."""
    label = "ONNX Runtime (CPU)"
    try:
        import onnxruntime as ort
    except ImportError:
        return Row("ort", label, None, "onnxruntime is not installed"), {}
    data, how, errors = None, "", []
    for dynamo in (False, True):  # the TorchScript exporter emits the ONNX LSTM op directly
        buf = io.BytesIO()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.onnx.export(theirs, (x,), buf, input_names=["x"], output_names=["y", "h", "c"],
                                  dynamo=dynamo, **({"verbose": False} if dynamo else {}))
            data, how = buf.getvalue(), f"torch.onnx.export(dynamo={dynamo})"
            break
        except Exception as exc:
            errors.append(f"dynamo={dynamo}: {type(exc).__name__}: {str(exc).splitlines()[0][:120]}")
    if data is None:
        return Row("ort", label, None, "ONNX export failed: " + "; ".join(errors)), {}
    checks = {"onnx_export": how}
    try:
        import onnx

        ops = sorted({node.op_type for node in onnx.load_from_string(data).graph.node})
        checks["onnx_ops"] = ops
        if "LSTM" not in ops:
            return Row("ort", label, None, f"exported graph has no LSTM node (ops: {ops})"), checks
    except ImportError:
        checks["onnx_ops"] = "not verified: onnx is not installed"
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
    # ORT's pool spin-waits after each run by default; interleaved with the other rows in one process, that
    # spinning steals the cores from whichever row runs next. Spinning off keeps the rows independent.
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    sess = ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])
    feed = {sess.get_inputs()[0].name: x.detach().numpy()}
    with torch.inference_mode():
        expected = theirs(x)[0]
    checks["max_abs_diff_vs_torch"] = _diff(torch.from_numpy(sess.run(None, feed)[0]), expected)
    if not checks["max_abs_diff_vs_torch"] <= 1e-4:
        return Row("ort", label, None, f"ORT output differs from torch by {checks['max_abs_diff_vs_torch']:.2e} "
                                       f"(> 1e-4)"), checks
    return Row("ort", label, lambda: sess.run(None, feed)), checks


def build_lstm_infer(shape, ctx: Context):
    h = shape[3]
    theirs, ours, x = _lstm_pair(shape, ctx, grad=False)
    theirs.eval()
    ours.eval()
    with torch.inference_mode():
        checks = {"max_abs_diff_vs_torch": _diff(ours(x)[0], theirs(x)[0])}
    ort_row, ort_checks = _ort_row(theirs, x, ctx.threads)
    checks.update({f"ort_{k}" if not k.startswith("onnx") else k: v for k, v in ort_checks.items()})
    return [Row("lstmkit", lstmkit_label(ctx, spec=CellSpec("lstm", h)), _infer(ours, x)),
            Row("torch", "torch.nn.LSTM", _infer(theirs, x)), ort_row], {"checks": checks}


def build_lengths_train(shape, ctx: Context):
    t, h = shape[1], shape[3]
    theirs, ours, x = _lstm_pair(shape, ctx)
    lengths = _lengths(shape)
    with torch.no_grad():
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        ref, _ = pad_packed_sequence(theirs(packed)[0], batch_first=True, total_length=t)
        checks = {"max_abs_diff_vs_torch_packed": _diff(ours(x, lengths=lengths)[0], ref),
                  "mean_length": float(lengths.float().mean())}
    label = lstmkit_label(ctx, spec=CellSpec("lstm", h))
    return [Row("lstmkit_lengths", f"{label} lengths=", _train(ours, x, lengths=lengths)),
            Row("torch_packed", "torch.nn.LSTM PackedSequence", _train_packed(theirs, x, lengths)),
            Row("lstmkit_padded", f"{label} padded, no lengths", _train(ours, x))], {"checks": checks}


def build_gru_train(shape, ctx: Context):
    b, t, d, h = shape
    theirs = torch.nn.GRU(d, h, batch_first=True)
    ours = lnn.from_torch(theirs, backend=ctx.backend)
    x = _input(shape)
    with torch.no_grad():
        checks = {"max_abs_diff_vs_torch": _diff(ours(x)[0], theirs(x)[0])}
    return [Row("lstmkit", lstmkit_label(ctx, "lstmkit GRU", CellSpec("gru", h)), _train(ours, x)),
            Row("torch", "torch.nn.GRU", _train(theirs, x))], {"checks": checks}


VARIANTS = ("peephole", "layer_norm", "coupled")


def build_variants_train(shape, ctx: Context):
    b, t, d, h = shape
    x = _input(shape)
    rows = []
    for name in VARIANTS:
        ours = lnn.LSTM(d, h, batch_first=True, backend=ctx.backend, **{name: True})
        spec = CellSpec("lstm", h, **{name: True})

        def make_loop(ours=ours, name=name):
            loop = lnn.LSTM(d, h, batch_first=True, backend="reference", **{name: True})
            loop.load_state_dict(ours.state_dict())
            return _train(loop, x)
        rows.append(Row(f"lstmkit_{name}", lstmkit_label(ctx, f"lstmkit {name}", spec), _train(ours, x)))
        rows.append(_loop_row(f"loop_{name}", f"pure-PyTorch loop {name}", make_loop, shape, ctx))
    standard = lnn.LSTM(d, h, batch_first=True, backend=ctx.backend)
    rows.append(Row("lstmkit_standard", lstmkit_label(ctx, "lstmkit standard LSTM", CellSpec("lstm", h)),
                    _train(standard, x)))
    return rows, {}


def build_bf16_train(shape, ctx: Context):
    b, t, d, h = shape
    theirs = torch.nn.LSTM(d, h, batch_first=True)
    ours32 = lnn.from_torch(theirs, backend=ctx.backend)
    ours16 = lnn.from_torch(theirs, backend=ctx.backend).to(torch.bfloat16)
    theirs16 = torch.nn.LSTM(d, h, batch_first=True).to(torch.bfloat16)
    theirs16.load_state_dict(ours16.state_dict())
    x32 = _input(shape)
    x16 = x32.detach().to(torch.bfloat16).requires_grad_(True)
    with torch.no_grad():
        checks = {"max_abs_diff_bf16_vs_fp32": _diff(ours16(x16)[0], theirs(x32)[0])}
    spec = CellSpec("lstm", h)
    return [Row("lstmkit_bf16", lstmkit_label(ctx, "lstmkit bf16", spec, torch.bfloat16), _train(ours16, x16)),
            Row("lstmkit_fp32", lstmkit_label(ctx, "lstmkit fp32", spec), _train(ours32, x32)),
            Row("torch_bf16", "torch.nn.LSTM bf16", _train(theirs16, x16))], {"checks": checks}


def build_stream(shape, ctx: Context):
    """Single steps at B=1, D=H: lstmkit's streaming API vs torch.nn.LSTMCell, and the same for the GRU (no
    target: the issue's streaming target is the LSTM's) vs torch.nn.GRUCell."""
    _, _, d, h = shape
    steps = ctx.stream_steps
    xs = torch.randn(steps, 1, d)
    lstm_rows, lstm_diff = _stream_rows(lnn.LSTM, torch.nn.LSTMCell, ("lstmkit", "torch_lstmcell"), "lstmkit",
                                        "lstm", d, h, xs, ctx)
    gru_rows, gru_diff = _stream_rows(lnn.GRU, torch.nn.GRUCell, ("lstmkit_gru", "torch_grucell"), "lstmkit GRU",
                                      "gru", d, h, xs, ctx)
    checks = {"max_abs_diff_vs_lstmcell_last_step": lstm_diff, "gru_max_abs_diff_vs_grucell_last_step": gru_diff,
              "steps_per_call": steps}
    return lstm_rows + gru_rows, {"checks": checks}


def _stream_rows(cls, cell_cls, keys, what: str, mode: str, d: int, h: int, xs: torch.Tensor, ctx: Context):
    """Rows ``keys``: lstmkit's stream of a ``cls`` layer (or a module call per step, in a build without the stream
    API) and ``cell_cls`` called once per step, on the same weights; and the difference of their last outputs."""
    ours = cls(d, h, backend=ctx.backend).eval()
    cell = cell_cls(d, h).eval()
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(cell, name).copy_(getattr(ours, f"{name}_l0"))
    label = lstmkit_label(ctx, what, CellSpec(mode, h))
    if hasattr(ours, "stream"):
        stream = ours.stream(batch_size=1)

        def run_ours():
            with torch.inference_mode():
                stream.reset()
                for x_t in xs:
                    y = stream.step(x_t)
            return y
        label += " stream.step"
    else:
        def run_ours():
            with torch.inference_mode():
                hx = None
                for x_t in xs:
                    y, hx = ours(x_t.view(1, 1, d), hx)
            return y.view(1, h)
        label += " [no stream API: module call per step]"

    def run_cell():
        with torch.inference_mode():
            state = None  # zeros
            for x_t in xs:
                state = cell(x_t, state)
        return state[0] if isinstance(state, tuple) else state
    steps = xs.size(0)
    return [Row(keys[0], label, run_ours, divisor=steps),
            Row(keys[1], f"torch.nn.{cell_cls.__name__} per step", run_cell, divisor=steps)], \
        _diff(run_ours(), run_cell())


def build_gflops(shape, ctx: Context):
    """A large fp32 matmul and fp32 LSTM training at ``shape`` (the largest selected), timed together."""
    n = ctx.matmul_size
    a, bm, out = torch.randn(n, n), torch.randn(n, n), torch.empty(n, n)
    rows, extras = build_lstm_train(shape, ctx)
    keep = [r for r in rows if r.key in ("lstmkit", "torch")]
    flops = {"matmul": 2.0 * n ** 3, "lstmkit": lstm_train_flops(shape), "torch": lstm_train_flops(shape)}
    return [Row("matmul", f"matmul {n}x{n}x{n} fp32", lambda: torch.mm(a, bm, out=out))] + keep, \
        {"checks": extras["checks"], "flops": flops}
