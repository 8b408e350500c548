"""The benchmark suites: what each times, which rows it compares, and the speed targets from the issue.

A :class:`Comparison` relates a *subject* row (an lstmkit implementation) to a *peer* row: its ratio is
``median(peer) / median(subject)`` (> 1 means lstmkit is faster). For comparisons marked ``by_rate`` (the
gflops suite) it is the subject's achieved FLOP rate over the peer's, i.e. the fraction of the matmul rate.
A target is a minimum ratio at a shape (None: no target there); "<= 1.1x own padded time" is the minimum
ratio 1/1.1 of padded/lengths.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

from lstmkit.bench import builders

GRID = ((1, 100, 32, 64), (8, 100, 32, 128), (32, 100, 64, 256), (64, 100, 128, 256), (32, 200, 256, 512))
STREAM_HIDDEN = (64, 256)


def _first(n: int, high: float, low: float):
    """Target ``high`` at the first ``n`` shapes of the default grid, ``low`` at every other shape."""
    return lambda shape: high if tuple(shape) in GRID[:n] else low


def _const(value: Optional[float]):
    return lambda shape: value


@dataclass(frozen=True)
class Comparison:
    """``ratio = median(peer) / median(subject)``; the target is met when ``ratio >= target(shape)``.

    Attributes:
        subject, peer: row keys. target: shape -> required minimum ratio, or None for no target there.
        text: the target as stated in the issue (printed). by_rate: compare FLOP rates instead of times.
    """

    subject: str
    peer: str
    target: Callable = _const(None)
    text: str = ""
    by_rate: bool = False


@dataclass(frozen=True)
class Suite:
    """One suite: ``build(shape, ctx) -> (rows, extras)`` and its comparisons.

    Attributes:
        name: CLI name. title: one-line description. unit: "ms" or "us" (per item, see Row.divisor).
        shapes: "grid" (the selected grid shapes), "stream" (B=1, D=H per --stream-hidden) or "largest"
        (only the largest selected grid shape).
    """

    name: str
    title: str
    build: Callable
    comparisons: tuple
    unit: str = "ms"
    shapes: str = "grid"


SUITES = {s.name: s for s in (
    Suite("lstm-train", "LSTM fp32 forward+backward (grads to input and parameters)", builders.build_lstm_train,
          (Comparison("lstmkit", "torch", _first(2, 2.0, 1.0), ">= 2.0x torch at the first two grid shapes, "
                                                                ">= 1.0x at the others"),
           Comparison("lstmkit", "torch_packed"), Comparison("lstmkit", "loop"))),
    Suite("lstm-infer", "LSTM fp32 forward under torch.inference_mode()", builders.build_lstm_infer,
          (Comparison("lstmkit", "torch", _first(2, 2.0, 1.0), ">= 2.0x torch at the first two grid shapes, "
                                                                ">= 1.0x at the others"),
           Comparison("lstmkit", "ort", _const(1.0), ">= 1.0x ONNX Runtime at every shape"))),
    Suite("lengths-train", "LSTM training with per-sequence lengths uniform in [T/2, T]",
          builders.build_lengths_train,
          (Comparison("lstmkit_lengths", "torch_packed", _const(4.0), ">= 4x torch PackedSequence"),
           Comparison("lstmkit_lengths", "lstmkit_padded", _const(1 / 1.1), "<= 1.1x own padded time"))),
    Suite("gru-train", "GRU fp32 forward+backward", builders.build_gru_train,
          (Comparison("lstmkit", "torch", _first(3, 2.0, 1.0), ">= 2.0x torch at the first three grid shapes, "
                                                                ">= 1.0x at the others"),)),
    Suite("variants-train", "LSTM variants forward+backward vs their pure-PyTorch loop and the standard LSTM",
          builders.build_variants_train,
          tuple(c for v in builders.VARIANTS for c in (
              Comparison(f"lstmkit_{v}", f"loop_{v}", _const(5.0), f">= 5x the pure-PyTorch loop ({v})"),
              Comparison(f"lstmkit_{v}", "lstmkit_standard", _const(1 / 1.3),
                         f"<= 1.3x own standard LSTM time ({v})")))),
    Suite("bf16-train", "LSTM training in bfloat16 (module and input bf16)", builders.build_bf16_train,
          (Comparison("lstmkit_bf16", "lstmkit_fp32", lambda s: 1.5 if s[3] >= 256 else None,
                      ">= 1.5x own fp32 at H >= 256"),
           Comparison("lstmkit_bf16", "torch_bf16", _const(1.0), ">= 1.0x torch bf16"))),
    Suite("stream", "single steps, B=1, D=H, inference; time per step", builders.build_stream,
          (Comparison("lstmkit", "torch_lstmcell", _const(3.0), ">= 3x torch.nn.LSTMCell"),
           Comparison("lstmkit_gru", "torch_grucell")),
          unit="us", shapes="stream"),
    Suite("gflops", "achieved GFLOP/s of LSTM training (3x forward FLOPs) vs a large fp32 matmul",
          builders.build_gflops,
          (Comparison("lstmkit", "matmul", _const(0.70), ">= 70% of matmul GFLOP/s at the largest shape",
                      by_rate=True),
           Comparison("torch", "matmul", by_rate=True)),
          shapes="largest"),
)}


def parse_suites(spec) -> list[str]:
    """Suite names from ``"all"``, a comma-separated string or a list; raises ValueError naming unknown ones.

    Example:
        >>> parse_suites("lstm-train,stream")
        ['lstm-train', 'stream']
    """
    if spec is None or spec == "all" or spec == ["all"]:
        return list(SUITES)
    names = spec.split(",") if isinstance(spec, str) else [n for item in spec for n in str(item).split(",")]
    names = [n.strip() for n in names if n.strip()]
    unknown = [n for n in names if n not in SUITES]
    if unknown or not names:
        raise ValueError(f"--suite {','.join(unknown) or spec!r} is not a known suite; expected 'all', 'list' "
                         f"or a comma-separated subset of {', '.join(SUITES)}")
    return list(dict.fromkeys(names))
