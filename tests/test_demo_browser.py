"""The demo page in a real browser: Debian's chromium, driven by Playwright, against a real
server on loopback. It plays the bundled sample meeting (4× real time), and the test checks
that transcript lines with speaker labels appear, the polar plot draws the speakers'
directions, and the latency/RTF read-outs fill in. The screenshot lands in bench/results/.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import httpx
import pytest

from conftest import REPO, free_port, start_server, stop_process, wait_http
from test_client_live import store_for_plumbing


CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--autoplay-policy=no-user-gesture-required"]
SHOT = REPO / "bench" / "results" / "demo.png"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium not installed"),
]


@pytest.fixture(scope="module")
def demo_server(tmp_path_factory):
    store = store_for_plumbing(tmp_path_factory)
    port = free_port()
    proc = start_server(["--model-store", str(store)], port)
    try:
        wait_http(f"http://127.0.0.1:{port}/readyz", timeout=180)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_process(proc)


def test_server_serves_the_demo(demo_server):
    page = httpx.get(demo_server + "/", follow_redirects=True)  # / redirects to the page at /demo/
    assert page.status_code == 200 and "minutes" in page.text and "app.js" in page.text
    assert str(page.url).endswith("/demo/")
    assert {s["id"] for s in httpx.get(demo_server + "/demo/samples/samples.json").json()} == {"corpus-meeting", "meeting"}


def test_demo_plays_the_sample_meeting(demo_server):
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(demo_server + "/demo/?autostart=1&speed=4")
            page.wait_for_function("window.minutesDemo && window.minutesDemo.ended === true", timeout=120_000)
            page.wait_for_timeout(300)  # one more animation frame for the plot
            state = page.evaluate("""() => ({
                lines: minutesDemo.lines, points: minutesDemo.polarPoints, end: minutesDemo.end,
                diarisation: minutesDemo.ready.options.diarisation,
                partials: minutesDemo.partialLatency.length, errors: minutesDemo.errors,
                speakers: [...document.querySelectorAll('#transcript .line .speaker')].map(e => e.textContent),
                wordSpeakers: [...new Set([...document.querySelectorAll('#transcript .word')].map(e => e.dataset.speaker))],
                words: document.querySelectorAll('#transcript .word').length,
                opacities: [...document.querySelectorAll('#transcript .word')].map(e => parseFloat(e.style.opacity)),
                latency: document.getElementById('stat-latency').textContent,
                rtf: document.getElementById('stat-rtf').textContent,
                status: document.getElementById('status').textContent,
            })""")
            # pixels the plot drew in the speakers' colours (the grid is grey, the canvas transparent)
            coloured = page.evaluate("""() => {
                const c = document.getElementById('polar'), d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                let n = 0;
                for (let i = 0; i < d.length; i += 4) {
                    const [r, g, b, a] = [d[i], d[i + 1], d[i + 2], d[i + 3]];
                    if (a > 60 && Math.max(r, g, b) - Math.min(r, g, b) > 60) n++;
                }
                return n;
            }""")
            SHOT.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SHOT), full_page=True)
        finally:
            browser.close()
    assert not errors, errors
    assert not [e for e in state["errors"] if e.get("fatal")], state["errors"]
    assert state["status"].startswith("done"), state["status"]
    end = state["end"]
    # the page shows every word and every final the server sent, no more, no fewer
    assert state["words"] == end["words"] and state["lines"] == end["segments"], (state, end)
    assert end["duration"] > 20.0
    assert state["diarisation"] is True, "the server's diariser is on for a circular-7 stream"
    assert state["points"] >= 3 and coloured > 200, (state["points"], coloured)  # directions drawn
    assert re.fullmatch(r"\d+\.\d{3}", state["rtf"]), state["rtf"]
    print(f"demo: {end['words']} words in {end['segments']} lines, speakers {state['wordSpeakers']}, "
          f"partial latency {state['latency']}, RTF {state['rtf']}")
    if end["words"] == 0:
        pytest.fail("the model heard no word in the sample meeting: no transcript lines to check")
    labelled = [s for s in state["speakers"] if re.fullmatch(r"S\d+", s)]
    assert len(labelled) == len(state["speakers"]) >= 1, f"every transcript line names its speaker: {state['speakers']}"
    words_by = [s for s in state["wordSpeakers"] if re.fullmatch(r"S\d+", s)]
    assert len(words_by) >= 2, f"a 3-speaker meeting's words come from more than one speaker: {state['wordSpeakers']}"
    assert all(0.3 <= o <= 1.0 for o in state["opacities"])  # confidence shown as fading
    assert state["partials"] > 0 and "ms" in state["latency"]
    assert SHOT.stat().st_size > 10_000


def test_demo_streams_the_browser_microphone(demo_server):
    """The microphone path: chromium's fake capture device (a beep) through the AudioWorklet to
    the server as pcm_f32le; Stop sends `stop` and the server's `end` closes the stream."""
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS + [
            "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"])
        try:
            page = browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(demo_server + "/demo/?autostart=1&source=mic")
            page.wait_for_function("window.minutesDemo && window.minutesDemo.audioTime > 2.0", timeout=30_000)
            assert page.text_content("#status").startswith("streaming")
            page.click("#stop")
            page.wait_for_function("window.minutesDemo.ended === true", timeout=30_000)
            state = page.evaluate("({audio: minutesDemo.audioTime, errors: minutesDemo.errors,"
                                  " status: document.getElementById('status').textContent})")
        finally:
            browser.close()
    assert not errors, errors
    assert not state["errors"], state["errors"]
    assert state["status"].startswith("done") and state["audio"] > 2.0, state
