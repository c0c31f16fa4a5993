"""sink.frames writes PNGs by frame index; sink.speaker fails clearly without a sound card."""

import numpy as np
import pytest
from PIL import Image

from audio2anim.graph.packets import Packet
from audio2anim.graph.testing import run_operator
from audio2anim.sinks.frames import FramesSink
from audio2anim.sinks.speaker import SpeakerSink, _Ring, find_output_device
from audio2anim.streams import Frames


def test_frames_sink_numbers_files_by_media_time(tmp_path):
    imgs = np.zeros((2, 8, 10, 3), np.uint8)
    imgs[1, :, :, 0] = 200
    packets = [
        Packet(Frames(imgs, 25.0), 0.0),
        Packet(Frames(imgs[:1], 25.0), 1.0),  # frame 25: a live gap before it
    ]
    run_operator(FramesSink, packets, {"dir": str(tmp_path / "f")})
    names = sorted(p.name for p in (tmp_path / "f").iterdir())
    assert names == ["frame_000000.png", "frame_000001.png", "frame_000025.png"]
    back = np.asarray(Image.open(tmp_path / "f" / "frame_000001.png"))
    np.testing.assert_array_equal(back, imgs[1])


def test_frames_sink_rejects_a_bad_pattern():
    with pytest.raises(ValueError, match="pattern"):
        FramesSink.Params(dir="x", pattern="frame.png")


def _has_output_device() -> bool:
    try:
        find_output_device(None)
        return True
    except RuntimeError:
        return False


@pytest.mark.skipif(_has_output_device(), reason="this machine has a sound card")
def test_speaker_without_output_device_is_one_clear_error():
    sink = SpeakerSink(SpeakerSink.Params())
    with pytest.raises(RuntimeError, match="sink.speaker: no audio output device") as e:
        sink.setup()
    assert "\n" not in str(e.value)
    sink.close()  # close after a failed setup is safe


def test_speaker_ring_delays_and_drops_oldest():
    ring = _Ring(max_samples=8)
    ring.push(np.zeros(3, np.float32))  # the delay
    ring.push(np.arange(1, 5, dtype=np.float32))
    out = np.empty(5, np.float32)
    ring.pull(out)
    np.testing.assert_array_equal(out, [0, 0, 0, 1, 2])
    ring.push(np.arange(10, 20, dtype=np.float32))  # overflow: the oldest go
    out = np.empty(10, np.float32)
    ring.pull(out)
    assert ring.dropped == 4  # 12 queued, 8 kept: 3, 4, 10, 11 dropped
    np.testing.assert_array_equal(out, [*range(12, 20), 0, 0])


def test_browser_sink_serves_page_assets_and_streams_to_every_client():
    import asyncio
    import json

    import aiohttp

    from audio2anim.sinks.browser import THREE_DIR, BrowserSink
    from audio2anim.streams import Params

    if not THREE_DIR.exists():
        pytest.skip("three.js not installed (npm ci in audio2anim/sinks/viewer)")

    async def scenario():
        sink = BrowserSink(BrowserSink.Params(port=0))
        await sink.setup()
        try:
            async with aiohttp.ClientSession() as http:
                token = f"?token={sink.server.token}"
                for path in ("", "viewer.js", "face.glb" + token, "three/build/three.module.js"):
                    async with http.get(sink.server.base + path) as resp:
                        assert resp.status == 200, path
                        assert len(await resp.read()) > 100
                sockets = [await http.ws_connect(sink.server.base + "ws" + token) for _ in range(2)]
                while len(sink.server.clients) < 2:
                    await asyncio.sleep(0.01)
                params = Params(
                    np.array([[0.5, 0.1]], np.float32), ("jawOpen", "eyeBlinkLeft"), 50.0
                )
                await sink.process("in", Packet(params, 1.25))
                for ws in sockets:
                    msg = json.loads((await ws.receive(timeout=5)).data)
                    assert msg["type"] == "params" and msg["t"] == 1.25
                    assert msg["names"] == ["jawOpen", "eyeBlinkLeft"] and msg["values"] == [
                        [0.5, 0.1]
                    ]
                    await ws.close()
            # a second sink on the same port is one clear error
            other = BrowserSink(BrowserSink.Params(port=sink.server.port))
            with pytest.raises(OSError, match="cannot listen"):
                await other.setup()
        finally:
            await sink.close()

    asyncio.run(scenario())
