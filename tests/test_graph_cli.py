"""The command line as a user runs it: run_graph.py, audio2anim run/ops, metrics, signals."""

import json
import re
import signal
import socket
import subprocess
import time
import urllib.request

from tests.conftest import ROOT


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_readme_passthrough_graph_runs(python, tmp_path):
    out = tmp_path / "p.jsonl"
    report = tmp_path / "report.json"
    r = subprocess.run(
        [python, "run_graph.py", "graphs/passthrough.yaml", "--set", f"log.path={out}",
         "--report", str(report)],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert sum(x["payload"]["samples"] for x in lines) > 16000 * 5  # the shipped ~7 s clip
    assert "e2e p50 ms" in r.stderr and "graph 'passthrough'" in r.stderr
    rep = json.loads(report.read_text())
    assert rep["stopped"] == "eos" and rep["nodes"]["rs"]["packets"] == len(lines)


def test_bad_set_value_exits_2_with_one_line(python):
    r = subprocess.run(
        [python, "-m", "audio2anim", "run", "graphs/passthrough.yaml", "--set", "rs.rate=fast"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0
    assert "graphs/passthrough.yaml: node 'rs' (resample): params.rate" in r.stderr


def test_ops_lists_operators_with_ports_and_params(python):
    r = subprocess.run(
        [python, "-m", "audio2anim", "ops", "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    ops = {o["name"]: o for o in json.loads(r.stdout)}
    for name in ("source.file", "source.synthetic", "resample", "sink.null", "sink.jsonl"):
        assert name in ops
    assert ops["resample"]["params"]["rate"]["default"] == 16000
    assert ops["resample"]["inputs"]["in"]["type"] == "Audio"
    text = subprocess.run(
        [python, "-m", "audio2anim", "ops", "resample"], cwd=ROOT, capture_output=True, text=True
    ).stdout
    assert "output sample rate (Hz)" in text


def test_metrics_served_during_run_and_sigint_stops_cleanly(python, tmp_path):
    port = free_port()
    out = tmp_path / "live.jsonl"
    proc = subprocess.Popen(
        [python, "run_graph.py", "graphs/passthrough.yaml", "--set", "src.realtime=true",
         "--set", f"log.path={out}", "--metrics-port", str(port)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        body = ""
        for _ in range(100):
            time.sleep(0.1)
            try:
                body = (
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2)
                    .read()
                    .decode()
                )
            except OSError:
                continue
            seen = re.search(
                r'audio2anim_packets_total\{graph="passthrough",node="log"\} (\S+)', body
            )
            if seen and float(seen.group(1)) >= 5:
                break
        for name in (
            "audio2anim_e2e_latency_seconds_bucket", "audio2anim_operator_seconds_bucket",
            "audio2anim_queue_depth", "audio2anim_dropped_total", "audio2anim_packets_total",
            "audio2anim_errors_total",
        ):  # fmt: skip
            assert name in body, name
        assert 'graph="passthrough",sink="log"' in body
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "ended by SIGINT" in err
    lines = [json.loads(x) for x in out.read_text().splitlines()]  # complete, valid lines
    assert 0 < len(lines) < 376


def test_version_names_the_installed_distribution(python):
    from importlib.metadata import version

    r = subprocess.run([python, "-m", "audio2anim", "--version"],
                       capture_output=True, text=True, timeout=60)  # fmt: skip
    assert r.returncode == 0
    assert r.stdout.strip() == f"audio2anim {version('audio2anim')}"
