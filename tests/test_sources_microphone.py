"""source.microphone and `audio2anim devices` on a machine without a sound card.

The PortAudio callback path is driven directly with real sample blocks from a real thread; the
open/start/stop path runs against ALSA's ``null`` PCM (a real PortAudio device with no clock),
declared in a throw-away ~/.asoundrc for a subprocess.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from audio2anim.graph.packets import Packet
from audio2anim.sources._audio_devices import (
    NO_INPUT_MESSAGE,
    Device,
    NoInputDevice,
    format_device_table,
    pick_input_device,
    query_devices,
)
from audio2anim.sources.microphone import MicrophoneSource
from audio2anim.streams import Audio

REPO = Path(__file__).resolve().parents[1]
NULL_ASOUNDRC = """\
pcm.a2a_null {
    type null
    hint { show on description "audio2anim test null device" }
}
"""


def run_python(code: str, home: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, HOME=str(home), PYTHONPATH=str(REPO))
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


# ------------------------------------------------------------------------ device choice


def dev(index, name, n_in, n_out=0, default_input=False):
    return Device(index, name, "ALSA", n_in, n_out, 48000.0, default_input=default_input)


def test_no_input_device_is_one_clear_error():
    with pytest.raises(NoInputDevice) as e:
        pick_input_device([dev(0, "HDMI out", 0, 2)], None)
    assert str(e.value) == NO_INPUT_MESSAGE
    assert "audio2anim devices" in NO_INPUT_MESSAGE


@pytest.mark.skipif(any(d.is_input for d in query_devices()), reason="machine has an input")
def test_microphone_setup_without_devices_fails_with_that_error():
    src = MicrophoneSource(MicrophoneSource.Params())
    with pytest.raises(NoInputDevice, match="no audio input device found; list devices with"):
        src.setup()
    src.close()


def test_pick_device_by_default_index_and_name():
    devices = [
        dev(0, "HDA Intel PCH: ALC3246 Analog (hw:0,0)", 2, 2),
        dev(1, "HDMI 0", 0, 8),
        dev(2, "USB Audio Device: Mic (hw:1,0)", 1, 0, default_input=True),
        dev(3, "USB Audio Device: Line (hw:1,1)", 2, 0),
    ]
    assert pick_input_device(devices, None).index == 2  # the default input
    assert pick_input_device(devices, 0).index == 0
    assert pick_input_device(devices, "3").index == 3
    assert pick_input_device(devices, "alc3246").index == 0
    assert pick_input_device(devices, "usb audio device: mic (hw:1,0)").index == 2
    with pytest.raises(ValueError, match="ambiguous"):
        pick_input_device(devices, "USB")
    with pytest.raises(ValueError, match="device 1 is not an audio input"):
        pick_input_device(devices, 1)
    with pytest.raises(ValueError, match="no audio input device matches 'webcam'"):
        pick_input_device(devices, "webcam")


def test_device_table_lists_inputs_and_outputs():
    table = format_device_table(
        [dev(0, "Built-in Mic", 1, 0, default_input=True), dev(1, "Speakers", 0, 2)]
    )
    lines = table.splitlines()
    assert "Built-in Mic" in lines[1] and lines[1].startswith(">")
    assert "Speakers" in lines[2] and " 0    2" in lines[2]
    assert "no audio devices found" in format_device_table([])


def test_devices_command_with_and_without_a_device(tmp_path):
    code = "from audio2anim.sources.cli import devices_command; devices_command(None)"
    (tmp_path / "null").mkdir()
    (tmp_path / "null" / ".asoundrc").write_text(NULL_ASOUNDRC)
    with_null = run_python(code, tmp_path / "null")
    assert with_null.returncode == 0, with_null.stderr
    assert "a2a_null" in with_null.stdout and "ALSA" in with_null.stdout
    if not any(d.is_input for d in query_devices()):
        (tmp_path / "empty").mkdir()
        bare = run_python(code, tmp_path / "empty")
        assert bare.returncode == 0, bare.stderr
        assert "no audio devices found" in bare.stdout


# ------------------------------------------------------------------- callback -> loop path


def test_callback_blocks_reach_the_loop_in_order_with_capture_times():
    """PortAudio's thread calls on_audio while the loop is stalled: nothing blocks, nothing lost."""
    import sounddevice as sd

    rate, block, n_blocks = 16000, 320, 40
    src = MicrophoneSource(
        MicrophoneSource.Params(samplerate=rate, block_ms=20, max_seconds=n_blocks * 0.02)
    )
    overflow_at = {5, 17, 30}
    stamps: list[tuple[float, float]] = []
    rng = np.random.default_rng(1)
    blocks = [rng.uniform(-0.5, 0.5, size=(block, 2)).astype(np.float32) for _ in range(n_blocks)]

    def portaudio_thread():
        for k, indata in enumerate(blocks):
            flags = sd.CallbackFlags()
            flags.input_overflow = k in overflow_at
            before = time.monotonic()
            src.on_audio(indata, block, None, flags)
            stamps.append((before, time.monotonic()))
            indata[:] = 99.0  # PortAudio reuses its buffer after the callback returns

    async def main():
        gen = src.packets()
        first = asyncio.ensure_future(gen.__anext__())
        await asyncio.sleep(0)  # packets() attaches to this loop and starts waiting
        thread = threading.Thread(target=portaudio_thread)
        thread.start()
        thread.join()  # the loop is stalled here on purpose; every callback still returned
        assert len(stamps) == n_blocks
        out = [await first]
        async for p in gen:
            out.append(p)
        return out

    packets = asyncio.run(main())
    assert len(packets) == n_blocks and src.blocks == n_blocks
    assert src.overruns == len(overflow_at)
    rng = np.random.default_rng(1)
    for k, p in enumerate(packets):
        assert isinstance(p, Packet) and isinstance(p.payload, Audio)
        assert p.payload.rate == rate and p.payload.samples.dtype == np.float32
        expected = rng.uniform(-0.5, 0.5, size=(block, 2)).astype(np.float32).mean(axis=1)
        np.testing.assert_allclose(p.payload.samples, expected, atol=1e-7)  # copied, mixed
        assert p.media_time == pytest.approx(k * block / rate)
        before, after = stamps[k]
        assert before <= p.capture_time <= after  # stamped in the callback, not on the loop
    captures = [p.capture_time for p in packets]
    assert captures == sorted(captures)
    # the device lost audio before each overflowed block: downstream state must restart there
    assert [k for k, p in enumerate(packets) if p.discontinuity] == sorted(overflow_at)


def test_max_seconds_cuts_the_last_block():
    src = MicrophoneSource(MicrophoneSource.Params(samplerate=8000, block_ms=10, max_seconds=0.025))

    async def main():
        gen = src.packets()
        first = asyncio.ensure_future(gen.__anext__())
        await asyncio.sleep(0)
        for _ in range(5):
            src.on_audio(np.ones((80, 1), np.float32), 80, None, None)
        return [await first] + [p async for p in gen]

    packets = asyncio.run(main())
    assert [len(p.payload.samples) for p in packets] == [80, 80, 40]


# ------------------------------------------------------------ a real PortAudio device (null)


def test_real_portaudio_stream_on_alsa_null_device(tmp_path):
    (tmp_path / ".asoundrc").write_text(NULL_ASOUNDRC)
    code = """
        import asyncio
        from audio2anim.sources.microphone import MicrophoneSource

        src = MicrophoneSource(MicrophoneSource.Params(
            device="a2a_null", samplerate=16000, block_ms=20, channels=2, max_seconds=0.2))
        src.setup()

        async def main():
            return [p async for p in src.packets()]

        packets = asyncio.run(main())
        src.close()
        print(src.device_name, len(packets), sum(len(p.payload.samples) for p in packets),
              packets[-1].media_time, all(p.capture_time > 0 for p in packets))
    """
    result = run_python(code, tmp_path)
    assert result.returncode == 0, result.stderr
    name, count, samples, last_time, stamped = result.stdout.split()
    assert name == "a2a_null" and int(count) == 10 and int(samples) == 3200
    assert float(last_time) == pytest.approx(0.18) and stamped == "True"
