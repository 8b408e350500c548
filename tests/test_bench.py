"""Benchmark harness: interleaved timing, JSON structure, ratios recomputed from raw timings, targets, CLI."""
import json
import statistics

import pytest

from lstmkit import backend
from lstmkit.bench import GRID, SUITES, format_report, parse_shape, run_bench
from lstmkit.bench.timing import Row, calibrate, measure
from lstmkit.cli.main import main

TINY = (1, 5, 4, 8)
FAST = dict(shapes=["1x5x4x8"], repeats=2, warmup=0, min_time=0.0, stream_hidden=[8], stream_steps=3,
            matmul_size=32, threads=1, log=lambda msg: None)


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    path = tmp_path_factory.mktemp("bench") / "out" / "bench.json"
    res = run_bench(suites="lstm-train,lstm-infer,lengths-train,variants-train,stream,gflops", json_path=str(path),
                    **FAST)
    return res, json.loads(path.read_text())


def test_measure_interleaves_rows_round_robin_with_rotation():
    calls = []
    rows = [Row(k, k, (lambda k=k: calls.append(k))) for k in "abc"]
    timings = measure(rows, repeats=3, warmup=1, min_time=0.0)
    assert calls[:6] == ["a", "a", "b", "b", "c", "c"]  # warm-up and calibration calls per row
    assert calls[6:] == ["a", "b", "c", "b", "c", "a", "c", "a", "b"]  # one call per row per round, rotated
    assert all(len(t.times) == 3 and t.number == 1 for t in timings.values())


def test_measure_reports_skipped_and_failing_rows():
    def boom():
        raise RuntimeError("no kernel for this dtype")
    timings = measure([Row("ok", "ok", lambda: None), Row("skip", "skip", None, "too big"),
                       Row("bad", "bad", boom)], repeats=2, warmup=0, min_time=0.0)
    assert timings["skip"].skipped == "too big" and timings["skip"].median is None
    assert "RuntimeError: no kernel for this dtype" in timings["bad"].skipped
    assert len(timings["ok"].times) == 2


def test_calibrate():
    assert calibrate(0.004, 0.02) == 5 and calibrate(1.0, 0.02) == 1 and calibrate(1e-9, 0.02) == 1000


def test_json_file_equals_result_and_has_every_raw_timing(result):
    res, on_disk = result
    assert on_disk == json.loads(json.dumps(res))
    assert on_disk["schema"] == "lstmkit-bench/1" and on_disk["meta"]["repeats"] == 2
    assert list(on_disk["suites"]) == ["lstm-train", "lstm-infer", "lengths-train", "variants-train", "stream",
                                       "gflops"]
    for name, suite in on_disk["suites"].items():
        assert suite["shapes"] == (["H=8"] if name == "stream" else ["1x5x4x8"])
        for key, row in suite["rows"].items():
            for shape in suite["shapes"]:
                cell = row["results"][shape]
                if "skipped" in cell:
                    assert isinstance(cell["skipped"], str) and cell["skipped"]
                    continue
                assert len(cell["times"]) == 2 and all(t > 0 for t in cell["times"])
                assert cell["median"] == pytest.approx(statistics.median(cell["times"]))


def test_ratios_are_peer_over_lstmkit_from_raw_timings(result):
    _, data = result
    checked = 0
    for name, suite in data["suites"].items():
        for comp in suite["comparisons"]:
            for shape, ratio in comp["ratios"].items():
                subj = suite["rows"][comp["subject"]]["results"][shape]
                peer = suite["rows"][comp["peer"]]["results"][shape]
                if "skipped" in subj or "skipped" in peer:
                    assert ratio is None
                    continue
                s, p = statistics.median(subj["times"]), statistics.median(peer["times"])
                if comp["by_rate"]:  # gflops: (FLOPs/time of lstmkit) / (FLOPs/time of the matmul)
                    b, t, d, h = TINY
                    flops = {"matmul": 2.0 * 32 ** 3, comp["subject"]: 3 * 2.0 * t * b * 4 * h * (d + h)}
                    expected = (flops[comp["subject"]] / s) / (flops["matmul"] / p)
                else:
                    expected = p / s
                assert ratio == pytest.approx(expected, rel=1e-9)
                checked += 1
    assert checked >= 8


def test_rows_and_checks_of_each_suite(result):
    _, data = result
    s = data["suites"]
    assert set(s["lstm-train"]["rows"]) == {"lstmkit", "torch", "torch_packed", "loop"}
    assert s["lstm-train"]["extras"]["1x5x4x8"]["checks"]["max_abs_diff_vs_torch"] < 1e-5
    assert s["lengths-train"]["extras"]["1x5x4x8"]["checks"]["max_abs_diff_vs_torch_packed"] < 1e-5
    assert s["stream"]["extras"]["H=8"]["checks"]["max_abs_diff_vs_lstmcell_last_step"] < 1e-5
    assert s["stream"]["extras"]["H=8"]["checks"]["gru_max_abs_diff_vs_grucell_last_step"] < 1e-5
    assert set(s["stream"]["rows"]) == {"lstmkit", "torch_lstmcell", "lstmkit_gru", "torch_grucell"}
    assert set(s["variants-train"]["rows"]) == {"lstmkit_standard"} | {
        f"{kind}_{v}" for kind in ("lstmkit", "loop") for v in ("peephole", "layer_norm", "coupled")}
    if not backend.native_available():  # the loop row would repeat the lstmkit row: skipped with a note
        assert "native engine is unavailable" in s["lstm-train"]["rows"]["loop"]["results"]["1x5x4x8"]["skipped"]
        assert "reference" in s["lstm-train"]["rows"]["lstmkit"]["label"]
    ort_row = s["lstm-infer"]["rows"]["ort"]["results"]["1x5x4x8"]
    checks = s["lstm-infer"]["extras"]["1x5x4x8"]["checks"]
    if "skipped" not in ort_row:  # onnxruntime installed: the graph holds an LSTM node and matches torch
        assert "LSTM" in checks["onnx_ops"] and checks["ort_max_abs_diff_vs_torch"] <= 1e-4


def test_targets_follow_the_issue(result):
    _, data = result
    for t in data["targets"]:
        assert t["met"] == (None if t["ratio"] is None else t["ratio"] >= t["required"])
    lstm_train = [t for t in data["targets"] if t["suite"] == "lstm-train"]
    assert [(t["peer"], t["required"]) for t in lstm_train] == [("torch", 1.0)]  # tiny shape: not a first-two
    gflops = [t for t in data["targets"] if t["suite"] == "gflops"]
    assert [(t["peer"], t["required"]) for t in gflops] == [("matmul", 0.70)]
    summary = data["targets_summary"]
    assert summary["met"] + summary["missed"] + summary["unmeasured"] == len(data["targets"])
    train = SUITES["lstm-train"].comparisons[0].target
    gru = SUITES["gru-train"].comparisons[0].target
    bf16 = SUITES["bf16-train"].comparisons[0].target
    assert [train(s) for s in GRID] == [2.0, 2.0, 1.0, 1.0, 1.0]
    assert [gru(s) for s in GRID] == [2.0, 2.0, 2.0, 1.0, 1.0]
    assert [bf16(s) for s in GRID] == [None, None, 1.5, 1.5, 1.5]
    padded = SUITES["lengths-train"].comparisons[1]
    assert padded.peer == "lstmkit_padded" and padded.target(GRID[0]) == pytest.approx(1 / 1.1)


def test_report_shows_ratios_in_cells(result):
    res, _ = result
    text = format_report(res)
    ratio = res["suites"]["lstm-train"]["comparisons"][0]["ratios"]["1x5x4x8"]
    torch_line = next(line for line in text.splitlines() if line.startswith("torch.nn.LSTM "))
    assert f"({ratio:.2f}x)" in torch_line and " ms " in torch_line
    assert "ratio lstmkit_standard/lstmkit_peephole" in text and "== targets" in text


def test_parse_shape():
    assert parse_shape("8x100x32x128") == parse_shape("8,100,32,128") == (8, 100, 32, 128)
    with pytest.raises(ValueError, match="--shapes '1x2'"):
        parse_shape("1x2")


def test_cli_bench_tiny_run_writes_json(tmp_path, capsys):
    path = tmp_path / "b.json"
    code = main(["bench", "--suite", "lstm-train,gru-train", "--shapes", "1x5x4x8", "2,3,4,5", "--repeats", "1",
                 "--warmup", "0", "--min-time", "0", "--threads", "1", "--json", str(path)])
    out = capsys.readouterr().out
    assert code == 0
    data = json.loads(path.read_text())
    assert data["suites"]["gru-train"]["shapes"] == ["1x5x4x8", "2x3x4x5"]
    assert data["meta"]["invocation"]["suite"] == "lstm-train,gru-train" and "warning" in data["meta"]
    assert "== gru-train" in out and "torch.nn.GRU" in out and "2x3x4x5" in out


def test_cli_bench_list_and_bad_arguments(capsys):
    assert main(["bench", "--suite", "list"]) == 0
    assert "variants-train" in capsys.readouterr().out
    assert main(["bench", "--suite", "nope"]) == 2
    assert "--suite 'nope' is not a known suite" in capsys.readouterr().err
    assert main(["bench", "--shapes", "1x0x3x4"]) == 2
    assert main(["bench", "--stream-hidden", "a,b"]) == 2


def test_noisy_cells_are_marked(result):
    res, _ = result
    cell = res["suites"]["lstm-train"]["rows"]["torch"]["results"]["1x5x4x8"]
    assert cell["spread"] == pytest.approx((max(cell["times"]) - min(cell["times"])) / cell["median"])
    noisy = json.loads(json.dumps(res))
    noisy["suites"]["lstm-train"]["rows"]["torch"]["results"]["1x5x4x8"]["spread"] = 0.9
    line = next(l for l in format_report(noisy).splitlines() if l.startswith("torch.nn.LSTM "))
    assert "~" in line and "~ noisy" in format_report(noisy)
    for suite in noisy["suites"].values():
        for row in suite["rows"].values():
            for cell in row["results"].values():
                cell["spread"] = 0.9 if "times" in cell else None
    assert "cells are noisy (~)" in format_report(noisy) and "--threads 1" in format_report(noisy)


def test_a_suite_that_cannot_build_is_reported_not_fatal(monkeypatch):
    import dataclasses

    def broken(shape, ctx):
        raise RuntimeError("engine exploded")
    monkeypatch.setitem(SUITES, "gru-train", dataclasses.replace(SUITES["gru-train"], build=broken))
    res = run_bench(suites="gru-train,stream", **FAST)
    assert res["suites"]["gru-train"]["errors"] == {"1x5x4x8": "RuntimeError: engine exploded"}
    assert res["suites"]["stream"]["rows"]["lstmkit"]["results"]["H=8"]["median"] > 0
    assert "building the rows failed: RuntimeError: engine exploded" in format_report(res)


def test_benchmarks_script_uses_the_same_options():
    import pathlib
    import subprocess
    import sys

    script = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "bench_engine.py"
    out = subprocess.run([sys.executable, str(script), "--suite", "list"], capture_output=True, text=True)
    assert out.returncode == 0 and "lengths-train" in out.stdout
