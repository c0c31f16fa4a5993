"""`audio2anim data …` end to end on a tiny corpus, and one-line errors on bad input."""

import json

from audio2anim.cli import main


def test_synth_label_teach_split_normalize_append_info(tmp_path, capsys):
    corpus, ds = tmp_path / "corpus", tmp_path / "ds"
    assert main(["data", "synth", "--out", str(corpus), "--hours", "0.003", "--workers", "1",
                 "--voices", "espeak:en-us,festival:kal", "--augment", "all", "--quiet"]) == 0  # fmt: skip
    assert main(["data", "make-viseme-ids", str(corpus), "--out", str(ds), "--quiet"]) == 0
    assert main(["data", "teach", str(corpus), "--out", str(ds), "--workers", "1", "--quiet"]) == 0
    assert main(["data", "split", str(ds), "--by", "voice", "--test", "0.5"]) == 0
    assert main(["data", "normalize", str(ds), "--array", "mouth", "--part", "train"]) == 0
    assert (
        main(["data", "append", str(ds), "--array", "mouth_norm", "--out", str(tmp_path / "m.npz")])
        == 0
    )
    capsys.readouterr()
    assert main(["data", "info", str(ds), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["voices"] == ["espeak:en-us", "festival:kal"] and summary["hours"] >= 0.003
    assert set(summary["arrays"]) == {"viseme_ids", "mouth", "eyes", "mouth_norm"}


def test_bad_input_is_one_line_naming_it(tmp_path, capsys):
    assert main(["data", "info", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err.strip()
    assert "nowhere" in err and "\n" not in err
    assert (
        main(["data", "synth", "--out", str(tmp_path / "c"), "--voices", "festival:bob", "--quiet"])
        == 2
    )
    assert "festival:bob" in capsys.readouterr().err
