"""Benchmarks of lstmkit against torch.nn, PackedSequence, ONNX Runtime and its own reference loop.

Public API: :func:`run_bench` (run suites, get every raw timing as a JSON-able dict), :func:`format_report`
(the printed tables), :data:`GRID` (default shapes) and :data:`SUITES`. The command line is ``lstmkit bench``;
docs/benchmarks.md explains rows, columns, ratios and targets.

Example:
    >>> from lstmkit.bench import run_bench, format_report
    >>> print(format_report(run_bench("lstm-train", shapes=["1x5x4x8"], repeats=2)))  # doctest: +SKIP
"""
from lstmkit.bench.report import format_report  # noqa: F401
from lstmkit.bench.runner import parse_shape, run_bench, write_json  # noqa: F401
from lstmkit.bench.suites import GRID, SUITES  # noqa: F401
