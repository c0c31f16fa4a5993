"""sink.browser in real headless Chromium: streamed weights move the three.js face."""

import asyncio
import shutil
import time

import numpy as np
import pytest

from audio2anim.face.build import MOUTH_Y
from audio2anim.face.renderer import Camera
from audio2anim.graph.packets import Packet
from audio2anim.sinks.browser import THREE_DIR, BrowserSink
from audio2anim.streams import Audio, Params, Visemes

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless", "--no-sandbox", "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--no-first-run", "--autoplay-policy=no-user-gesture-required",
]  # fmt: skip
SIZE = 400

pytestmark = pytest.mark.skipif(
    shutil.which(CHROMIUM) is None or not THREE_DIR.exists(),
    reason="needs Debian chromium and `npm ci` in audio2anim/sinks/viewer",
)

OPEN_VOWEL = {"jawOpen": 0.75, "mouthLowerDownLeft": 0.3, "mouthLowerDownRight": 0.3}
BILABIAL = {"jawOpen": 0.08, "mouthClose": 0.08, "mouthPressLeft": 0.6, "mouthPressRight": 0.6}


def _block(pose, names, frames=10):
    row = [pose.get(n, 0.0) for n in names]
    return np.tile(np.array(row, np.float32), (frames, 1))


async def _scenario():
    from playwright.async_api import async_playwright

    sink = BrowserSink(BrowserSink.Params(port=0))
    await sink.setup()
    try:
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
            pages = [
                await browser.new_page(viewport={"width": SIZE, "height": SIZE}) for _ in range(2)
            ]
            errors = []
            for page in pages:
                page.on("pageerror", lambda e: errors.append(str(e)))
                await page.goto(sink.url)
                await page.wait_for_function(
                    "window.viewerState && window.viewerState.ready", timeout=20000
                )
            assert len(sink.server.clients) == 2  # several browsers watch one graph
            names = tuple(sorted(set(OPEN_VOWEL) | set(BILABIAL)))
            shots = {}
            t = 0.0
            for label, pose in (("open", OPEN_VOWEL), ("bilabial", BILABIAL)):
                block = _block(pose, names)
                await sink.process("audio", Packet(Audio(np.zeros(1600, np.float32), 16000), t))
                await sink.process(
                    "visemes",
                    Packet(
                        Visemes(
                            np.full(10, 10 if label == "open" else 1), np.zeros((10, 15)), 25.0
                        ),
                        t,
                    ),
                )
                now = time.monotonic()  # as the runner stamps: captured 50 ms before arrival
                stamped = Packet(Params(block, names, 25.0), t).stamped(now - 0.05, "src")
                stamped = stamped.received(now)
                await sink.process("in", stamped)
                t_last = t + 9 / 25
                for page in pages:
                    await page.wait_for_function(
                        f"window.viewerState.t !== null && window.viewerState.t >= {t_last - 1e-6}",
                        timeout=10000,
                    )
                await pages[0].wait_for_timeout(100)  # the frame after the last update
                shots[label] = await pages[0].screenshot()
                hud = await pages[1].inner_text("#hud")
                assert ("aa" if label == "open" else "PP") in hud
                assert "ms" in hud  # the latency readout
                t += 0.4
            # the audio blocks were parsed and scheduled for playback on the media timeline
            assert await pages[0].evaluate("window.viewerState.audioScheduled") >= 1
            await sink.flush()
            await browser.close()
            assert not errors, errors
            return shots
    finally:
        await sink.close()


def _luma(png: bytes) -> np.ndarray:
    import io

    from PIL import Image

    img = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), np.float64)
    return img @ [0.299, 0.587, 0.114]


def test_open_vowel_and_bilabial_look_different_in_chromium():
    shots = asyncio.run(_scenario())
    cam = Camera()
    (x, top), (_, bottom) = cam.project(
        [[0, MOUTH_Y - 0.001, 0.09], [0, MOUTH_Y - 0.015, 0.09]], SIZE, SIZE
    )
    box = slice(int(top), int(bottom)), slice(int(x - 12), int(x + 12))
    open_mouth = _luma(shots["open"])[box]
    closed_mouth = _luma(shots["bilabial"])[box]
    # below the lip line: the open vowel shows the dark cavity (and teeth, tongue), the
    # bilabial the lit lower lip
    dark_open, dark_closed = (open_mouth < 50).mean(), (closed_mouth < 50).mean()
    assert dark_open > 0.25 and dark_closed < 0.05, (dark_open, dark_closed)
    assert closed_mouth.mean() > open_mouth.mean() + 30, (closed_mouth.mean(), open_mouth.mean())
