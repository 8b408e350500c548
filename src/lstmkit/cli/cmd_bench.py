"""``lstmkit bench``: time lstmkit against torch.nn, PackedSequence, ONNX Runtime and its reference loop."""
from __future__ import annotations

import argparse

from lstmkit.errors import UserError

EPILOG = """examples:
  lstmkit bench --quick                                  two smallest shapes, 5 repeats, every suite
  lstmkit bench --suite lstm-train,lstm-infer --json out/bench.json
  lstmkit bench --shapes 8x100x32x128 32x100x64,256 --repeats 9 --threads 2
  lstmkit bench --suite list                             list the suites and exit
Ratios are peer time / lstmkit time (> 1: lstmkit faster); see docs/benchmarks.md."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``lstmkit bench`` (shared with benchmarks/bench_engine.py)."""
    parser.add_argument("--suite", default="all", metavar="NAMES",
                        help="'all' (default), 'list', or comma-separated suites: lstm-train, lstm-infer, "
                             "lengths-train, gru-train, variants-train, bf16-train, stream, gflops")
    parser.add_argument("--shapes", nargs="+", metavar="BxTxDxH",
                        help="shapes (B, T, D, H) to run, e.g. 1x100x32x64 8,100,32,128 "
                             "(default: the 5-shape grid; with --quick its two smallest)")
    parser.add_argument("--repeats", type=int, help="timed rounds per block; medians reported (default 7, "
                                                    "--quick 5)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed calls per row before timing (default 1)")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads and ONNX Runtime "
                                                               "intra-op threads (default 2)")
    parser.add_argument("--quick", action="store_true", help="two smallest shapes, 5 repeats, 200 stream steps")
    parser.add_argument("--json", metavar="PATH", help="write every raw timing, ratio and target verdict here")
    parser.add_argument("--max-ref-shape", metavar="BxTxDxH",
                        help="skip pure-PyTorch-loop rows at shapes costlier than this one (default: none)")
    parser.add_argument("--stream-hidden", metavar="H,H", default="64,256",
                        help="hidden sizes of the stream suite, B=1 and D=H (default 64,256)")
    parser.add_argument("--stream-steps", type=int, help="steps per timed call in the stream suite "
                                                         "(default 1000, --quick 200)")
    parser.add_argument("--matmul-size", type=int, default=2048,
                        help="N of the N x N fp32 matmul the gflops suite compares with (default 2048)")
    parser.add_argument("--min-time", type=float, default=0.02,
                        help="seconds one repeat lasts at least; short calls are repeated (default 0.02)")


def register(sub, train_sub) -> None:
    parser = sub.add_parser("bench", help="benchmark lstmkit against torch, PackedSequence and ONNX Runtime",
                            description="Benchmark lstmkit's recurrent layers against torch.nn, PackedSequence, "
                                        "ONNX Runtime and the pure-PyTorch loop, all interleaved in one "
                                        "process; prints tables and the speed targets.",
                            epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    parser.set_defaults(func=run)


def _suite_list() -> str:
    from lstmkit.bench import SUITES

    return "\n".join(f"{s.name:15s} {s.title}" for s in SUITES.values())


def run(args: argparse.Namespace, argv=None) -> int:
    """Run the benchmark described by the parsed ``args``; prints the report, returns 0.

    ``argv`` (the raw command line, when the caller has it) is recorded in the JSON; else the parsed options.
    """
    from lstmkit.bench import format_report, run_bench

    if args.suite.strip() == "list":
        print(_suite_list())
        return 0
    try:
        hidden = [int(h) for h in args.stream_hidden.split(",") if h.strip()]
    except ValueError:
        raise UserError(f"--stream-hidden {args.stream_hidden!r} is not a list of ints; expected e.g. 64,256")
    if not hidden:
        raise UserError(f"--stream-hidden {args.stream_hidden!r} is empty; expected e.g. 64,256")
    if args.min_time < 0:
        raise UserError(f"--min-time must be >= 0, got {args.min_time}")
    result = run_bench(suites=args.suite, shapes=args.shapes, repeats=args.repeats, warmup=args.warmup,
                       threads=args.threads, quick=args.quick, max_ref_shape=args.max_ref_shape,
                       stream_hidden=hidden, stream_steps=args.stream_steps, matmul_size=args.matmul_size,
                       min_time=args.min_time, json_path=args.json,
                       invocation=argv if argv is not None else {k: v for k, v in vars(args).items()
                                                                 if k != "func"})
    print(format_report(result))
    if args.json:
        print(f"\nraw timings written to {args.json}")
    return 0
