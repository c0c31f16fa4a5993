"""``audio2anim animate`` as a batch and a writer of every exchange format: each format read
back by its reader, folders with a corrupt file, ``--skip-existing``, ``--fps``, and the
outputs refused before any audio is processed. Shipped viseme CNN graph, espeak-ng speech."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
from tiny_models import speak

from audio2anim import arkit
from audio2anim.animate.outputs import read_arkit_csv
from audio2anim.cli import main
from audio2anim.formats import animation_json, gltf_animation, livelink_csv, rhubarb


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """Two short espeak-ng lines in a folder tree, and a corrupt WAV beside them."""
    root = tmp_path_factory.mktemp("lines")
    (root / "act1").mkdir()
    for name, text in (("a.wav", "Bob made a map."), ("act1/b.wav", "Pam bought a boat.")):
        audio, sr, _ = speak(text)
        sf.write(root / name, audio, sr)
    return root


def test_every_writer_round_trips_through_its_reader(clips, tmp_path):
    wav = clips / "a.wav"
    outs = {ext: tmp_path / f"a{ext}" for ext in (
        ".csv", ".livelink.csv", ".json", ".visemes.csv", ".tsv", ".xml", ".dat",
        ".rhubarb.json", ".glb", ".gltf",
    )}  # fmt: skip
    args = ["animate", str(wav), "--quiet", "--workers", "1"]
    assert main(args + [a for p in outs.values() for a in ("-o", str(p))]) == 0
    anim = read_arkit_csv(outs[".csv"])
    assert anim.names == tuple(arkit.ALL) and anim.fps == pytest.approx(50.0)
    n = anim.frames
    assert abs(n - int(sf.info(str(wav)).duration * 50)) <= 1
    from_json = animation_json.read_animation_json(outs[".json"])
    np.testing.assert_allclose(from_json.values[:, : len(arkit.ALL)], anim.values, atol=2e-6)
    assert from_json.metadata["source"] == str(wav) and from_json.visemes.shape == (n, 15)
    times, vis = animation_json.read_viseme_csv(outs[".visemes.csv"])
    np.testing.assert_allclose(vis, from_json.visemes, atol=2e-6)
    assert vis.std(axis=0).max() > 0.1  # real posteriors, not zeros
    t, names, values = livelink_csv.read_csv(outs[".livelink.csv"])[:3]
    jaw = anim.values[:, anim.names.index("jawOpen")]
    np.testing.assert_allclose(values[:, list(names).index("jawOpen")], jaw, atol=2e-6)
    cues = {fmt: rhubarb.read_rhubarb(outs[ext], fmt) for ext, fmt in (
        (".tsv", "tsv"), (".xml", "xml"), (".rhubarb.json", "json"))}  # fmt: skip
    assert cues["tsv"] == cues["xml"] == cues["json"]
    assert "A" in {c.value for c in cues["tsv"]}  # the lips close on "Bob made a map"
    assert rhubarb.read_rhubarb(outs[".dat"], "dat")
    for ext in (".glb", ".gltf"):
        (times, weights), *_ = gltf_animation.read_morph_animation(outs[ext]).values()
        assert len(times) == n and weights.max() > 0.1


def test_fps_resamples_with_matching_timecodes(clips, tmp_path):
    out, ll = tmp_path / "a.csv", tmp_path / "a.livelink.csv"
    rc = main(["animate", str(clips / "a.wav"), "-o", str(out), "-o", str(ll), "--fps", "30",
               "--quiet", "--workers", "1"])  # fmt: skip
    assert rc == 0
    anim = read_arkit_csv(out)
    assert anim.fps == pytest.approx(30.0)
    np.testing.assert_allclose(anim.times, np.arange(anim.frames) / 30, atol=1e-6)
    t = livelink_csv.read_csv(ll)[0]
    np.testing.assert_allclose(t, np.arange(anim.frames) / 30, atol=1e-3)


def test_batch_over_a_folder_carries_on_past_a_corrupt_file(clips, tmp_path):
    src = tmp_path / "in"
    (src / "act1").mkdir(parents=True)
    for name in ("a.wav", "act1/b.wav"):
        (src / name).write_bytes((clips / name).read_bytes())
    (src / "act1" / "broken.wav").write_bytes(b"RIFF nonsense")
    out, report = tmp_path / "out", tmp_path / "failures.json"
    args = ["animate", str(src), "--out-dir", str(out), "--format", "csv,json,tsv",
            "--report", str(report), "--quiet"]  # fmt: skip
    assert main(args + ["--workers", "2"]) == 1
    for stem in ("a", "act1/b"):
        for ext in (".csv", ".json", ".tsv"):
            assert (out / f"{stem}{ext}").is_file()
    assert not list(out.rglob("broken*")) and not list(out.rglob("*.tmp"))
    failures = json.loads(report.read_text())["failures"]
    assert [f["input"] for f in failures] == [str(src / "act1" / "broken.wav")]
    assert "not a readable audio file" in failures[0]["error"]
    # resume: the written files are skipped, the broken one fails again
    before = (out / "a.csv").stat().st_mtime_ns
    (src / "act1" / "broken.wav").unlink()
    assert main(args + ["--skip-existing", "--workers", "1"]) == 0
    assert (out / "a.csv").stat().st_mtime_ns == before
    assert json.loads(report.read_text())["skipped"] == 2


def test_outputs_are_checked_before_any_audio(clips, tmp_path, capsys):
    wav = clips / "a.wav"
    cases = [
        (["-o", str(wav), "--format", "csv"], "would overwrite an input"),
        (["-o", str(tmp_path / "x.foo")], "unknown output extension .foo"),
        (["-o", str(tmp_path / "x.csv"), "-o", str(tmp_path / "x.csv")], "written twice"),
        (["--format", "nope"], "unknown format"),
        (["--fps", "0"], "--fps 0"),
        (["--out-dir", str(clips), "--format", "wav"], "unknown format"),
    ]
    for extra, words in cases:
        assert main(["animate", str(wav), "--quiet", *extra]) == 2
        err = capsys.readouterr().err
        assert words in err and err.count("\n") == 1, err
    # a list file and a glob name the same inputs; an input listed twice is animated once
    listing = tmp_path / "list.txt"
    listing.write_text(f"{wav}\n{wav}\n")
    out = tmp_path / "o"
    assert main(["animate", f"@{listing}", str(clips / "*.wav"), "--out-dir", str(out),
                 "--quiet", "--workers", "1"]) == 0  # fmt: skip
    assert [p.name for p in out.rglob("*.csv")] == ["a.csv"]
