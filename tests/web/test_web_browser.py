"""The page in a real browser: Debian's chromium driven by Playwright (no browser download).

Skipped with a reason when /usr/bin/chromium or the playwright package is missing (CI installs both).
A screenshot of the answered page is saved to $LETTERS_WEB_SCREENSHOT (default outputs/screenshots/web.png),
and one at phone size next to it (web-phone.png).
"""
import base64
import datetime
import io
import json
import os
import re

import numpy as np
import pytest

from core import configs
from tests.web.conftest import STABLE_CLASS, STABLE_VERSION, letter_png

pytestmark = pytest.mark.slow   # drives Chromium

CHROMIUM = os.environ.get("LETTERS_CHROMIUM", "/usr/bin/chromium")
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update"]
BAD, OK = "rgb(179, 38, 30)", "rgb(31, 122, 61)"   # the page's --bad (not saved) and --ok colours
SCREENSHOT = os.environ.get("LETTERS_WEB_SCREENSHOT") or str(configs.PROJECT_ROOT / "outputs" / "screenshots" /
                                                              "web.png")

if not os.path.exists(CHROMIUM):
    pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium); the browser tests need it",
                allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
expect = sync_api.expect


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def open_page(browser):
    contexts = []

    def open_(url, **context_options):
        context = browser.new_context(**context_options)
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(20_000)
        page.problems = []
        page.on("console", lambda msg: page.problems.append(msg.text) if msg.type == "error" else None)
        page.on("pageerror", lambda err: page.problems.append(str(err)))
        page.goto(url)
        page.wait_for_selector("body[data-ready=true]")
        page.wait_for_selector("#letter-grid button", state="attached")
        return page

    yield open_
    for context in contexts:
        context.close()


def draw_letter(page):
    box = page.locator("#pad").bounding_box()
    x, y, w, h = box["x"], box["y"], box["width"], box["height"]
    page.mouse.move(x + 0.3 * w, y + 0.2 * h)
    page.mouse.down()
    for i in range(1, 21):
        page.mouse.move(x + 0.3 * w + 0.4 * w * i / 20, y + 0.2 * h + 0.6 * h * (i / 20) ** 1.5)
    page.mouse.up()
    page.mouse.move(x + 0.7 * w, y + 0.25 * h)
    page.mouse.down()
    page.mouse.move(x + 0.45 * w, y + 0.55 * h, steps=8)
    page.mouse.up()


def answer_of(page):
    page.wait_for_selector("#top3 li:nth-child(3)")
    items = page.locator("#top3 li")
    return {
        "classes": [items.nth(i).get_attribute("data-class") for i in range(items.count())],
        "glyphs": [items.nth(i).locator(".glyph").inner_text() for i in range(items.count())],
        "version": page.locator("#meta-version").inner_text(),
        "route": page.locator("#meta-route").inner_text(),
        "latency": page.locator("#meta-latency").inner_text(),
    }


@pytest.fixture
def web(start_web, serving_labelled):
    return start_web(serving_labelled.url)


def test_draw_and_recognise(web, open_page):
    page = open_page(web.url, viewport={"width": 1100, "height": 820})
    assert page.locator("#send").is_disabled()          # nothing drawn yet
    draw_letter(page)
    assert page.locator("#undo").is_enabled()
    # The drawing is dark ink on a white background.
    pixels = page.evaluate("""() => {
        const c = document.getElementById('pad'); const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let dark = 0, white = 0; for (let i = 0; i < d.length; i += 4) {
          if (d[i] < 60 && d[i + 3] === 255) dark++; else if (d[i] === 255 && d[i + 3] === 255) white++; }
        return {dark, white, total: d.length / 4}; }""")
    assert pixels["dark"] > 500 and pixels["dark"] + pixels["white"] > 0.95 * pixels["total"]
    page.click("#send")
    answer = answer_of(page)
    assert answer["classes"][0] == STABLE_CLASS and len(answer["glyphs"]) == 3 and answer["glyphs"][0] == "ב"
    assert answer["version"] == str(STABLE_VERSION) and answer["route"] == "stable"
    assert answer["latency"].endswith(" ms")
    assert page.locator("#sent-image").evaluate("img => img.complete && img.naturalWidth") == 320
    assert "status-up" in page.locator("#serving-status").get_attribute("class")

    # Undo and clear.
    page.click("#undo")
    page.click("#undo")
    assert page.locator("#send").is_disabled()
    draw_letter(page)
    page.click("#clear")
    assert page.locator("#clear").is_disabled()
    draw_letter(page)
    page.click("#send")
    answer_of(page)

    os.makedirs(os.path.dirname(SCREENSHOT), exist_ok=True)
    page.check("#feedback-mode")
    page.wait_for_selector("#feedback:not([hidden])")
    page.screenshot(path=SCREENSHOT, full_page=True)
    assert page.problems == [], page.problems           # no CSP violation, no script error


def test_upload_png_and_phone_layout(web, open_page):
    page = open_page(web.url, viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True,
                     device_scale_factor=2)
    page.set_input_files("#file", files=[{"name": "letter.png", "mimeType": "image/png",
                                          "buffer": letter_png(size=64, seed=2)}])
    answer = answer_of(page)
    assert answer["classes"][0] == STABLE_CLASS and answer["version"] == str(STABLE_VERSION)
    assert "PNG 64×64" in page.locator("#image-info").inner_text()
    # Nothing overflows the phone's width.
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    page.screenshot(path=os.path.join(os.path.dirname(SCREENSHOT), "web-phone.png"), full_page=True)
    # A file that is not an image gets a plain message.
    page.set_input_files("#file", files=[{"name": "notes.png", "mimeType": "image/png", "buffer": b"not an image"}])
    page.wait_for_selector("#error:not([hidden])")
    assert "not an image" in page.locator("#error").inner_text()


def answered_in_feedback_mode(open_page, url: str):
    """A page in feedback mode showing the answer to a drawn letter."""
    page = open_page(url)
    page.check("#feedback-mode")
    draw_letter(page)
    page.click("#send")
    answer_of(page)
    page.wait_for_selector("#feedback:not([hidden])")
    return page


def test_feedback_is_stored(web, open_page):
    page = answered_in_feedback_mode(open_page, web.url)
    page.click("#letter-grid button[data-class=alef]")
    expect(page.locator("#feedback-result")).to_contain_text("saved")
    records = web.backend.store.records()
    assert len(records) == 1
    record = records[0]
    assert (record.true_label, record.predicted_label, record.model_version, record.route) == \
        ("alef", STABLE_CLASS, STABLE_VERSION, "stable")
    assert record.confirmed is False and 0 < record.probability <= 1 and record.image_format == "PNG"

    # Confirming the next prediction stores the predicted class as the true one.
    draw_letter(page)
    page.click("#send")
    expect(page.locator("#feedback-result")).to_have_text("")
    page.click("#confirm")
    expect(page.locator("#feedback-result")).to_contain_text("saved")
    confirmed = [r for r in web.backend.store.records() if r.confirmed]
    assert len(confirmed) == 1 and confirmed[0].true_label == STABLE_CLASS

    # One answer, one feedback: turning the mode off and on again does not offer the buttons a second time.
    page.uncheck("#feedback-mode")
    page.check("#feedback-mode")
    expect(page.locator("#feedback-result")).to_contain_text("saved")
    assert page.locator("#confirm").is_disabled() and page.locator("#letter-grid button[data-class=alef]").is_disabled()
    assert len(web.backend.store.records()) == 2
    assert page.problems == [], page.problems


def test_feedback_of_a_reencoded_upload_sends_the_upload(web, open_page):
    """A WebP is re-encoded for the model (a lossy one as a JPEG), which can make it several times larger; the
    feedback sends the upload as it came (the server re-encodes it the same way), so it stays under the body
    limit."""
    from PIL import Image

    noisy = Image.fromarray(np.random.default_rng(0).integers(0, 256, (700, 700), dtype=np.uint8), "L")
    buffer = io.BytesIO()
    noisy.save(buffer, format="WEBP", quality=80)
    webp = buffer.getvalue()
    page = open_page(web.url)
    page.check("#feedback-mode")
    page.set_input_files("#file", files=[{"name": "photo.webp", "mimeType": "image/webp", "buffer": webp}])
    answer_of(page)
    assert "→ JPEG" in page.locator("#image-info").inner_text()
    assert page.locator("#sent-image").get_attribute("src").startswith("data:image/jpeg;base64,")
    with page.expect_request("**/api/feedback") as sent:
        page.click("#confirm")
    expect(page.locator("#feedback-result")).to_contain_text("saved")
    assert base64.b64decode(sent.value.post_data_json["image"]) == webp
    assert [r.image_format for r in web.backend.store.records()] == ["JPEG"]
    assert page.problems == [], page.problems
    # A failed upload after it leaves no feedback buttons of the earlier answer to press.
    page.set_input_files("#file", files=[{"name": "notes.png", "mimeType": "image/png", "buffer": b"not an image"}])
    page.wait_for_selector("#error:not([hidden])")
    assert page.locator("#feedback").is_hidden()


def test_a_file_that_is_not_an_image_leaves_no_feedback_for_the_earlier_answer(web, open_page):
    """The server refuses a file that is not an image; the answer shown before is hidden, and so is its feedback:
    a letter pressed then was stored for an image no longer shown. Chosen or dropped."""
    page = open_page(web.url)
    page.check("#feedback-mode")
    upload = {"name": "c.png", "mimeType": "image/png", "buffer": letter_png(size=64, seed=5)}
    note = {"name": "note.txt", "mimeType": "text/plain", "buffer": b"a shopping list"}

    def answered():
        page.set_input_files("#file", files=[upload])
        answer_of(page)
        page.wait_for_selector("#feedback:not([hidden])")

    def refused():
        page.wait_for_selector("#error:not([hidden])")
        assert "This is not an image the server can read" in page.locator("#error").inner_text()
        assert page.locator("#result").is_hidden() and page.locator("#feedback").is_hidden()
        alef = page.locator("#letter-grid button[data-class=alef]")
        alef.dispatch_event("click")         # (hidden: no user can press it; a feedback would start at once)
        assert alef.get_attribute("aria-pressed") == "false" and page.locator("#feedback-result").inner_text() == ""

    answered()
    page.set_input_files("#file", files=[note])
    refused()
    answered()
    dropped = page.evaluate_handle("""() => { const t = new DataTransfer();
        t.items.add(new File(["a shopping list"], "note.txt", {type: "text/plain"})); return t; }""")
    page.dispatch_event("#drop-zone", "drop", {"dataTransfer": dropped})
    refused()
    assert web.backend.store.count() == 0
    assert all("status of 400" in problem for problem in page.problems), page.problems   # (the refusals' log lines)


def test_an_image_is_judged_by_its_bytes_not_its_name(web, open_page):
    """A PNG named bet.img (typed by the browser from its name as a disk image) had been refused by the page as
    not an image file, unsent, and the answer shown hidden: the server reads what it is, chosen or dropped."""
    page = open_page(web.url)
    png = letter_png(size=64, seed=4)
    page.set_input_files("#file", files=[{"name": "bet.img", "mimeType": "application/x-raw-disk-image",
                                          "buffer": png}])
    answer = answer_of(page)
    assert answer["classes"][0] == STABLE_CLASS and "PNG 64×64" in page.locator("#image-info").inner_text()
    page.evaluate("document.getElementById('top3').replaceChildren()")
    dropped = page.evaluate_handle("""(bytes) => { const t = new DataTransfer();
        t.items.add(new File([new Uint8Array(bytes)], "bet.img", {type: "application/x-raw-disk-image"}));
        return t; }""", list(letter_png(size=48, seed=4)))
    page.dispatch_event("#drop-zone", "drop", {"dataTransfer": dropped})
    answer_of(page)
    expect(page.locator("#image-info")).to_contain_text("PNG 48×48")
    assert page.locator("#error").is_hidden()
    assert page.problems == [], page.problems


def test_a_file_over_the_upload_limit_is_refused_before_it_is_read_or_sent(start_web, serving_labelled, open_page):
    """Any file is sent for the server to judge, but one over the backend's limit (/api/classes' max_upload_bytes)
    is refused by the page at once: a video dropped by mistake had been read, base64-encoded and sent whole."""
    web = start_web(serving_labelled.url, max_upload_bytes=50_000)
    page = open_page(web.url)
    page.wait_for_function("document.querySelectorAll('#letter-grid button').length === 27")
    predictions = []
    page.on("request", lambda request: predictions.append(request.url) if "/api/predict" in request.url else None)
    page.set_input_files("#file", files=[{"name": "clip.mp4", "mimeType": "video/mp4", "buffer": b"\0" * 60_000}])
    page.wait_for_selector("#error:not([hidden])")
    assert page.locator("#error").inner_text() == ("התמונה גדולה מדי · The image is too large: 60000 bytes, "
                                                   "over the 50000-byte limit.")
    assert predictions == []
    page.set_input_files("#file", files=[{"name": "bet.png", "mimeType": "image/png",
                                          "buffer": letter_png(size=64, seed=4)}])
    assert answer_of(page)["classes"][0] == STABLE_CLASS and predictions


def test_serving_down_is_said_plainly(start_web, dead_url, open_page):
    web = start_web(dead_url)
    page = open_page(web.url)
    page.wait_for_selector("#serving-status.status-down")
    assert "The model server is down" in page.locator("#serving-status").inner_text()
    draw_letter(page)
    page.click("#send")
    page.wait_for_selector("#error:not([hidden])")
    message = page.locator("#error").inner_text()
    assert "The model server is down" in message and "not reachable" in message
    assert page.locator("#result").is_hidden()
    page.screenshot(path=os.path.join(os.path.dirname(SCREENSHOT), "web-serving-down.png"))


@pytest.mark.parametrize("status, state, reason, error, hebrew", [
    (429, "busy", "serving_error", "The model server is busy: queue full.", "שרת המודל עמוס"),
    (504, "slow", "serving_timeout", "The model server is slow: TF Serving at http://x did not answer within 15 s; "
                                     "it may be busy.", "שרת המודל איטי"),
])
def test_a_busy_or_slow_model_server_is_said_so_in_neither_colour(web, browser, status, state, reason, error, hebrew):
    """While /api/status answers 429 (TF Serving busy) or 504 (it did not answer in time) the status line says
    busy or slow, in neither the up nor the down colour: the server is not down."""
    context = browser.new_context()
    try:
        page = context.new_page()
        body = json.dumps({"serving": state, "reason": reason, "error": error})
        page.route("**/api/status", lambda route: route.fulfill(status=status, content_type="application/json",
                                                                 body=body))
        page.goto(web.url)
        page.wait_for_selector(f"#serving-status.status-unknown:has-text('{state}')")
        text = page.locator("#serving-status").inner_text()
        assert hebrew in text and error in text
        assert "down" not in text
    finally:
        context.close()


def test_the_status_line_is_rewritten_only_when_it_changes(web, browser):
    """The status line (role=status) was rewritten at every 30 s check, its text unchanged, and screen readers read it
    out again each time: the check touches it only when what it says changes."""
    context = browser.new_context()
    try:
        page = context.new_page()
        page.clock.install()
        page.goto(web.url)
        page.wait_for_selector("#serving-status.status-up")
        page.evaluate("""() => { window.statusChanges = 0;
            new MutationObserver((records) => { window.statusChanges += records.length; }).observe(
                document.getElementById('serving-status'),
                {subtree: true, childList: true, characterData: true, attributes: true}); }""")

        def checked():
            with page.expect_response("**/api/status"):
                page.clock.run_for(30_000)
            page.wait_for_timeout(300)                                    # its answer read and shown
            return page.evaluate("window.statusChanges")

        assert checked() == 0 and checked() == 0
        page.route("**/api/status", lambda route: route.fulfill(
            status=429, content_type="application/json",
            body=json.dumps({"serving": "busy", "reason": "serving_error", "error": "The model server is busy: x."})))
        assert checked() > 0
        expect(page.locator("#serving-status.status-unknown")).to_contain_text("busy")
        changes = page.evaluate("window.statusChanges")
        assert checked() == changes
    finally:
        context.close()


# Every reason the backend gives for an error (web/server.py, web/tfserving.py, serving/client.py, the image check's
# and the feedback store's), with a status it is sent with; the model server's own by each status it can come with.
REASONS = [(400, r) for r in ("empty", "decompression_bomb", "side_too_long", "not_an_image", "unsupported_format",
                              "corrupt", "truncated_or_corrupt", "model_rejected_image", "bad_base64", "missing_field",
                              "bad_json", "bad_multipart", "bad_request", "bad_route", "bad_source", "unknown_label",
                              "invalid_feedback")] + [
    (404, "not_found"), (405, "method_not_allowed"), (408, "timeout"), (409, "already_stored"),
    (411, "length_required"), (413, "too_large"), (414, "uri_too_long"), (415, "unsupported_media_type"),
    (431, "headers_too_large"), (500, "internal_error"), (501, "not_implemented"), (505, "http_version_not_supported"),
    (507, "not_stored"), (502, "bad_serving_response"),
    (429, "serving_error"), (503, "serving_error"), (504, "serving_error"), (503, "serving_unreachable"),
    (504, "serving_timeout"), (503, "model_not_loaded"), (503, "stopping")]


def test_every_error_the_backend_gives_is_said_in_hebrew_too(web, open_page):
    """429 (busy), 408 (the request did not arrive whole in time) and 502 (an unexpected answer of the model server)
    had been said in English only: every reason has its Hebrew line first, then the server's English message."""
    page = open_page(web.url)
    answers = iter(REASONS)

    def refuse(route):
        status, reason = next(answers)
        route.fulfill(status=status, content_type="application/json",
                      body=json.dumps({"error": f"English {status} {reason}.", "reason": reason}))
    page.route("**/api/predict", refuse)
    draw_letter(page)
    english_only = []
    for status, reason in REASONS:
        expect(page.locator("#send")).to_be_enabled()
        page.dispatch_event("#send", "click")       # (not a pointer's click: the error box may be scrolling in)
        expect(page.locator("#error")).to_contain_text(f"English {status} {reason}.")
        first = page.locator("#error bdi").first.inner_text()
        if not re.search("[\u0590-\u05FF]", first):
            english_only.append((status, reason))
        elif status == 429:
            assert first == "שרת המודל עמוס", first                        # busy, as the status line says
    assert english_only == []


STOPPING = json.dumps({"error": "the web client is stopping; send the request again", "reason": "stopping"})


def test_a_stopping_web_client_is_said_restarting_and_the_model_server_not_marked_down(web, browser):
    """The web client's own 503 while it stops (reason stopping) had been said "the model server is unavailable"
    and the status line turned down: it says this page's server is restarting, to try again, in Hebrew and
    English, and the model server's status line stays as it was, for a prediction, a feedback and the status
    check alike."""
    context = browser.new_context()
    try:
        page = context.new_page()
        page.clock.install()
        page.goto(web.url)
        status = page.locator("#serving-status")
        page.check("#feedback-mode")
        draw_letter(page)
        page.click("#send")
        answer_of(page)
        before = status.inner_text()
        page.route(re.compile(r"/api/(predict|status|feedback)$"),
                   lambda route: route.fulfill(status=503, content_type="application/json", body=STOPPING))
        page.click("#letter-grid button[data-class=alef]")
        expect(page.locator("#feedback-result")).to_contain_text("שרת הדף מופעל מחדש: נסו שוב · the web client is "
                                                                 "stopping; send the request again")
        draw_letter(page)
        page.click("#send")
        expect(page.locator("#error")).to_contain_text("the web client is stopping; send the request again")
        assert page.locator("#error bdi").all_inner_texts() == [
            "שרת הדף מופעל מחדש: נסו שוב", "the web client is stopping; send the request again"]
        assert "status-up" in status.get_attribute("class") and status.inner_text() == before
        with page.expect_response(re.compile(r"/api/status$")):
            page.clock.run_for(30_000)                                   # the next status check
        page.wait_for_timeout(300)
        assert "status-up" in status.get_attribute("class") and status.inner_text() == before
    finally:
        context.close()


def test_an_answer_that_cannot_be_shown_leaves_no_answer_or_feedback_behind(web, open_page):
    """A 200 whose body is no answer ({} from a proxy) is an error: the earlier answer, dimmed, had stayed shown
    and busy, and the feedback then read the empty answer as the prediction."""
    page = answered_in_feedback_mode(open_page, web.url)
    page.route("**/api/predict", lambda route: route.fulfill(status=200, content_type="application/json", body="{}"))
    draw_letter(page)
    page.click("#send")
    expect(page.locator("#error")).to_be_visible()
    assert page.locator("#result").is_hidden() and page.locator("#result-empty").is_visible()
    assert page.locator("#result-card").get_attribute("aria-busy") is None
    assert page.locator("#feedback").is_hidden()
    assert all("top" in problem for problem in page.problems), page.problems   # the body's TypeError, said once


def test_a_model_server_too_slow_is_said_slow_and_not_marked_down(start_web, slow_predict, open_page):
    """A prediction not answered within --serving-timeout (504) had been said "The model server is down" and the
    status line turned down: it is said slow, in Hebrew and English, and the status line stays as it was."""
    web = start_web(slow_predict, serving_timeout=0.5)
    page = open_page(web.url)
    page.wait_for_selector("#serving-status.status-up")
    draw_letter(page)
    page.click("#send")
    page.wait_for_selector("#error:not([hidden])")
    message = page.locator("#error").inner_text()
    assert "שרת המודל איטי" in message and "The model server is slow" in message and "it may be busy" in message
    assert "down" not in message and "אינו זמין" not in message
    assert "status-up" in page.locator("#serving-status").get_attribute("class")
    assert "down" not in page.locator("#serving-status").inner_text()


def test_an_upload_while_an_answer_is_coming_is_the_one_answered(web, open_page):
    """The newest image wins: an upload made while the drawing's answer is on its way is sent, and the drawing's
    late answer is not shown over it (the upload had been dropped without a word)."""
    page = open_page(web.url)
    held = []
    page.route("**/api/predict", lambda route: held.append(route) if not held else route.continue_())
    draw_letter(page)
    page.click("#send")
    while not held:
        page.wait_for_timeout(20)
    page.set_input_files("#file", files=[{"name": "up.png", "mimeType": "image/png", "buffer": letter_png(size=64)}])
    expect(page.locator("#image-info")).to_contain_text("64×64")
    with page.expect_response("**/api/predict"):
        held[0].continue_()
    page.wait_for_timeout(200)                                            # the late answer's script has run
    expect(page.locator("#image-info")).to_contain_text("64×64")
    assert page.locator("#send").get_attribute("aria-busy") is None and page.locator("#send").is_enabled()
    assert page.problems == [], page.problems


def test_a_failed_feedback_then_another_letter_leaves_one_letter_chosen(web, open_page):
    page = open_page(web.url)
    failed = []

    def first_fails(route):
        if failed:
            route.continue_()
        else:
            failed.append(route)
            route.fulfill(status=507, content_type="application/json",
                          body='{"error": "the disk is full", "reason": "not_stored"}')
    page.route("**/api/feedback", first_fails)
    page.check("#feedback-mode")
    draw_letter(page)
    page.click("#send")
    answer_of(page)
    page.click("#letter-grid button[data-class=alef]")
    expect(page.locator("#feedback-result")).to_contain_text("Not saved")
    page.click("#letter-grid button[data-class=gimel]")
    expect(page.locator("#feedback-result")).to_contain_text("saved as gimel")
    pressed = page.eval_on_selector_all("#letter-grid button[aria-pressed=true]", "bs => bs.map(b => b.dataset.class)")
    assert pressed == ["gimel"] and [r.true_label for r in web.backend.store.records()] == ["gimel"]


def test_feedback_to_a_server_that_does_not_answer_says_so(web, open_page):
    page = open_page(web.url)
    page.route("**/api/feedback", lambda route: route.abort("connectionrefused"))
    page.check("#feedback-mode")
    draw_letter(page)
    page.click("#send")
    answer_of(page)
    page.click("#confirm")
    expect(page.locator("#feedback-result")).to_contain_text("Not saved: השרת אינו עונה · This page's server is "
                                                             "not answering.")
    assert "Failed to fetch" not in page.locator("#feedback-result").inner_text()


def test_keyboard_focus_on_upload_is_visible_and_messages_keep_each_languages_direction(web, open_page):
    page = open_page(web.url)
    for _ in range(40):
        if page.evaluate("() => document.activeElement && document.activeElement.id") == "file":
            break
        page.keyboard.press("Tab")
    assert page.evaluate("() => document.activeElement.id") == "file"
    outline = page.eval_on_selector("label.file-button", "l => [getComputedStyle(l).outlineStyle, "
                                                         "getComputedStyle(l).outlineWidth]")
    assert outline == ["solid", "3px"]
    page.set_input_files("#file", files=[{"name": "notes.txt", "mimeType": "text/plain", "buffer": b"hello"}])
    expect(page.locator("#error")).to_contain_text("not an image")
    parts = page.eval_on_selector_all("#error bdi", "bs => bs.map(b => [b.textContent, getComputedStyle(b).direction])")
    assert parts[0] == ["זו אינה תמונה שהשרת יכול לקרוא", "rtl"]
    assert parts[1][0].startswith("This is not an image the server can read") and parts[1][1] == "ltr"


def test_undo_while_drawing_leaves_no_ink_behind(web, open_page):
    page = open_page(web.url)
    box = page.locator("#pad").bounding_box()
    page.mouse.move(box["x"] + 50, box["y"] + 50)
    page.mouse.down()
    page.mouse.move(box["x"] + 150, box["y"] + 120, steps=6)
    page.keyboard.press("Control+z")                                      # mid-stroke: ignored
    page.mouse.move(box["x"] + 200, box["y"] + 220, steps=6)
    page.mouse.up()
    assert page.locator("#send").is_enabled() and page.locator("#clear").is_enabled()
    page.keyboard.press("Control+z")                                      # the stroke, once drawn
    assert dark_pixels(page) == 0 and page.locator("#send").is_disabled()


def test_clear_while_drawing_leaves_no_ink_behind(web, open_page):
    """Clear pressed mid-stroke (the mouse held, Enter on the focused Clear) had left the rest of the stroke drawn
    onto the pad, recorded nowhere, with Undo, Clear and Recognise disabled: the stroke goes with the others."""
    page = open_page(web.url)
    box = page.locator("#pad").bounding_box()
    page.mouse.move(box["x"] + 50, box["y"] + 50)
    page.mouse.down()
    page.mouse.move(box["x"] + 150, box["y"] + 120, steps=6)
    page.focus("#clear")
    page.keyboard.press("Enter")
    page.mouse.move(box["x"] + 200, box["y"] + 220, steps=6)             # the same press, still held
    page.mouse.up()
    assert dark_pixels(page) == 0
    assert page.eval_on_selector_all("#undo, #clear, #send", "bs => bs.every(b => b.disabled)")
    draw_letter(page)                                                     # the pad draws again as before
    assert dark_pixels(page) > 0 and page.locator("#send").is_enabled()
    page.click("#undo")
    page.click("#undo")
    assert dark_pixels(page) == 0 and page.locator("#send").is_disabled()
    assert page.problems == [], page.problems


def dark_pixels(page):
    """The number of the pad's pixels inked."""
    return page.evaluate("""() => { const c = document.getElementById('pad');
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; let n = 0;
        for (let i = 0; i < d.length; i += 4) if (d[i] < 128) n++; return n; }""")


def test_the_redo_shortcut_undoes_nothing(web, open_page):
    """Ctrl+Shift+Z (Cmd+Shift+Z), the usual redo, had undone a stroke as Ctrl+Z does (pressed twice after an
    undo of three strokes, the pad was empty); the pad has no redo, so it leaves the pad as it is."""
    page = open_page(web.url)
    draw_letter(page)                                                     # two strokes
    box = page.locator("#pad").bounding_box()
    page.mouse.move(box["x"] + 20, box["y"] + 20)
    page.mouse.down()
    page.mouse.move(box["x"] + 20, box["y"] + 200, steps=6)
    page.mouse.up()
    three = dark_pixels(page)
    page.keyboard.press("Control+z")
    two = dark_pixels(page)
    assert 0 < two < three
    for redo in ("Control+Shift+Z", "Meta+Shift+Z", "Control+Shift+Z"):
        page.keyboard.press(redo)
        assert dark_pixels(page) == two, redo
    page.keyboard.press("Meta+z")                                         # Cmd+Z undoes
    assert 0 < dark_pixels(page) < two and page.locator("#undo").is_enabled()


def test_an_image_gets_one_feedback_and_a_failed_one_shows_no_earlier_answer(web, open_page):
    page = answered_in_feedback_mode(open_page, web.url)
    page.click("#confirm")
    expect(page.locator("#feedback-result")).to_contain_text("saved as")
    page.click("#send")                      # the same drawing asked about again: its feedback was given
    page.wait_for_selector("#send:not([aria-busy])")   # its new answer shown (the earlier one matched already)
    expect(page.locator("#meta-version")).to_have_text(str(STABLE_VERSION))
    page.wait_for_selector("#feedback:not([hidden])")
    expect(page.locator("#feedback-result")).to_contain_text("saved as")
    assert page.locator("#confirm").is_disabled() and page.locator("#letter-grid button[data-class=alef]").is_disabled()
    assert len(web.backend.store.records()) == 1

    # A corrupt upload after it: the error in both languages, and the drawing's answer no longer on show.
    page.set_input_files("#file", files=[{"name": "cut.png", "mimeType": "image/png",
                                          "buffer": letter_png(size=64, seed=2)[:60]}])
    page.wait_for_selector("#error:not([hidden])")
    parts = page.eval_on_selector_all("#error bdi", "bs => bs.map(b => b.textContent)")
    assert parts[0] == "התמונה קטועה או פגומה" and parts[1].startswith("The image is truncated or corrupt.")
    assert page.locator("#result").is_hidden() and page.locator("#result-empty").is_visible()
    # The letters' buttons are named by what they show.
    assert page.locator("#letter-grid button[data-class=kaf_final]").get_attribute("aria-label") == "ך kaf final"
    assert page.problems == [] or all("400" in problem for problem in page.problems), page.problems


def test_a_hebrew_first_message_reads_right_to_left_with_the_hebrew_at_the_right(web, open_page):
    """Each part keeps its own direction and the line's runs right to left from the Hebrew: with only isolated
    parts, the browser had laid the line out left to right, the Hebrew at its far (left) end."""
    page = open_page(web.url, viewport={"width": 900, "height": 800})
    page.set_input_files("#file", files=[{"name": "notes.txt", "mimeType": "text/plain", "buffer": b"hello"}])
    expect(page.locator("#error")).to_contain_text("not an image")
    hebrew, english = (page.locator("#error bdi").nth(i).bounding_box() for i in range(2))
    assert page.eval_on_selector("#error", "e => getComputedStyle(e).direction") == "rtl"
    assert hebrew["x"] > english["x"], (hebrew, english)


def test_on_a_phone_an_error_is_shown_where_the_user_is(web, open_page):
    page = open_page(web.url, viewport={"width": 360, "height": 640}, is_mobile=True, has_touch=True)
    draw_letter(page)
    page.click("#send")
    answer_of(page)                                    # the page scrolls down to the answer
    page.evaluate("document.getElementById('pad').scrollIntoView({block: 'start'})")   # back to the pad, then
    assert page.evaluate("window.scrollY") > 0                                          # a refused upload
    page.set_input_files("#file", files=[{"name": "cut.png", "mimeType": "image/png",
                                          "buffer": letter_png(size=64, seed=2)[:60]}])
    page.wait_for_selector("#error:not([hidden])")
    page.wait_for_function("""() => { const b = document.getElementById('error').getBoundingClientRect();
        return b.top >= 0 && b.bottom <= window.innerHeight; }""", timeout=5000)


def test_while_a_new_image_is_asked_about_the_old_answer_is_dimmed_and_keyboard_focus_stays(web, open_page):
    page = open_page(web.url)
    draw_letter(page)
    page.focus("#send")
    page.keyboard.press("Enter")
    answer_of(page)
    # Recognise disables itself while it works: focus had fallen back to <body>, now it is on the answer
    assert page.evaluate("() => document.activeElement.id") == "result-card"
    held = []
    page.route("**/api/predict", lambda route: held.append(route))
    page.click("#clear")
    draw_letter(page)
    page.click("#send")
    while not held:
        page.wait_for_timeout(20)
    assert "stale" in page.locator("#result").get_attribute("class")
    assert page.locator("#result-card").get_attribute("aria-busy") == "true"
    held[0].continue_()
    page.wait_for_selector("#result-card:not([aria-busy])")
    assert "stale" not in (page.locator("#result").get_attribute("class") or "")


def test_feedback_by_keyboard_keeps_focus_and_an_image_stored_before_unmarks_the_letter(web, open_page):
    page = answered_in_feedback_mode(open_page, web.url)
    page.focus("#letter-grid button[data-class=alef]")
    page.keyboard.press("Enter")
    expect(page.locator("#feedback-result")).to_contain_text("saved as alef")
    assert page.evaluate("() => document.activeElement.id") == "feedback-result"
    # the same drawing on a fresh page: stored already under alef, so a 409 for bet, and bet is not left chosen
    again = answered_in_feedback_mode(open_page, web.url)
    again.click("#letter-grid button[data-class=bet]")
    expect(again.locator("#feedback-result")).to_contain_text("already stored as alef")
    assert again.eval_on_selector_all("#letter-grid button[aria-pressed=true]", "bs => bs.length") == 0


def test_a_picture_stored_before_under_another_letter_is_said_in_red_not_as_saved(web, open_page):
    """The 409 (the picture is stored under another letter: nothing was stored now) had been shown in the green of
    "Thanks, saved": it is in the red of the other feedback not saved, also when the mode is turned off and on."""
    page = answered_in_feedback_mode(open_page, web.url)
    page.click("#letter-grid button[data-class=alef]")
    expect(page.locator("#feedback-result")).to_contain_text("saved as alef")
    expect(page.locator("#feedback-result")).to_have_css("color", OK)
    again = answered_in_feedback_mode(open_page, web.url)        # the same drawing on a fresh page, sent as bet
    result = again.locator("#feedback-result")
    again.click("#letter-grid button[data-class=bet]")
    expect(result).to_contain_text("already stored as alef")
    expect(result).to_have_class(re.compile(r"\bfailed\b"))
    expect(result).to_have_css("color", BAD)
    again.uncheck("#feedback-mode")
    again.check("#feedback-mode")
    expect(result).to_contain_text("already stored as alef")
    expect(result).to_have_css("color", BAD)
    assert web.backend.store.count() == 1
    problems = page.problems + [p for p in again.problems if "status of 409" not in p]   # (the refusal's log line)
    assert problems == [], problems


def recognised(page):
    """Clicks Recognise and waits for the answer: until the request is sent the card is not busy yet (the drawing is
    encoded first), so waiting for it to be not busy alone could pass before the click had any effect."""
    with page.expect_response("**/api/predict"):
        page.click("#send")
    page.wait_for_selector("#result-card:not([aria-busy])")


def feedback_withheld(page):
    """Whether the answer shown is dimmed and its feedback withheld, saying why (every button disabled)."""
    return ("stale" in (page.locator("#result").get_attribute("class") or "")
            and page.locator("#feedback-withheld").is_visible()
            and page.eval_on_selector_all("#confirm, #letter-grid button", "bs => bs.every(b => b.disabled)"))


def test_a_changed_drawing_withholds_the_answers_feedback_until_it_is_recognised(web, open_page):
    """The answer's feedback goes with the image sent: after a stroke, Undo or Clear, a letter pressed had stored
    the earlier drawing under the new one's letter. The answer is dimmed and its feedback withheld, saying why,
    until Recognise answers the drawing on the pad; then the letter is stored with that drawing."""
    page = answered_in_feedback_mode(open_page, web.url)
    offered = page.locator("#letter-grid button[data-class=alef]")
    assert not feedback_withheld(page) and page.locator("#feedback-withheld").is_hidden() and offered.is_enabled()

    page.click("#undo")                                                   # one stroke of two
    assert feedback_withheld(page)
    recognised(page)
    assert not feedback_withheld(page) and offered.is_enabled()

    page.click("#clear")
    assert feedback_withheld(page)
    draw_letter(page)                                                     # another letter, not recognised yet
    assert feedback_withheld(page) and page.locator("#feedback-result").inner_text() == ""
    recognised(page)
    assert not feedback_withheld(page)

    draw_letter(page)                                                     # a stroke added: the pad changed again
    assert feedback_withheld(page)
    held = []
    page.route("**/api/predict", lambda route: held.append(route))
    page.click("#send")
    while not held:
        page.wait_for_timeout(20)
    page.click("#undo")                                                   # while the answer is coming
    held[0].continue_()
    page.wait_for_selector("#result-card:not([aria-busy])")
    page.unroute("**/api/predict")
    assert feedback_withheld(page)                                        # the answer came for the pad before
    with page.expect_request("**/api/predict") as asked:
        recognised(page)
    with page.expect_request("**/api/feedback") as given:
        offered.click()
    expect(page.locator("#feedback-result")).to_contain_text("saved as alef")
    assert given.value.post_data_json["image"] == asked.value.post_data_json["image"]   # the drawing on the pad
    assert [r.true_label for r in web.backend.store.records()] == ["alef"]
    assert page.problems == [], page.problems


def test_drawing_after_an_uploads_answer_leaves_its_feedback_offered(web, open_page):
    """An upload's answer is not the pad's: a stroke drawn after it had dimmed it and withheld its feedback, saying
    to Recognise the drawing, which would not send the upload. The upload is stored with the letter chosen."""
    page = open_page(web.url)
    page.check("#feedback-mode")
    upload = letter_png(size=64, seed=3)
    page.set_input_files("#file", files=[{"name": "c.png", "mimeType": "image/png", "buffer": upload}])
    answer_of(page)
    page.wait_for_selector("#feedback:not([hidden])")
    draw_letter(page)
    page.click("#undo")
    assert not feedback_withheld(page) and page.locator("#feedback-withheld").is_hidden()
    assert "stale" not in (page.locator("#result").get_attribute("class") or "")
    with page.expect_request("**/api/feedback") as given:
        page.click("#letter-grid button[data-class=alef]")
    expect(page.locator("#feedback-result")).to_contain_text("saved as alef")
    assert base64.b64decode(given.value.post_data_json["image"]) == upload
    assert page.problems == [], page.problems


def test_a_feedback_on_its_way_when_the_drawing_changes_is_kept_for_its_image(web, open_page):
    """A feedback sent before the pad changed is the answered image's: it is stored, said and its letter stays
    chosen; one that fails is not offered again for the changed pad."""
    page = answered_in_feedback_mode(open_page, web.url)
    held = []
    page.route("**/api/feedback", lambda route: held.append(route))
    alef = page.locator("#letter-grid button[data-class=alef]")

    alef.click()
    while not held:
        page.wait_for_timeout(20)
    page.click("#undo")
    assert feedback_withheld(page) and alef.get_attribute("aria-pressed") == "true"
    expect(page.locator("#feedback-result")).to_contain_text("saving")
    held.pop().fulfill(status=507, content_type="application/json",
                       body='{"error": "the disk is full", "reason": "not_stored"}')
    expect(page.locator("#feedback-result")).to_contain_text("Not saved")
    assert feedback_withheld(page) and alef.get_attribute("aria-pressed") == "false"

    recognised(page)                                                      # the pad as it is now, answered
    alef.click()
    while not held:
        page.wait_for_timeout(20)
    sent = held[0].request.post_data_json["image"]
    draw_letter(page)
    assert feedback_withheld(page)
    held.pop().continue_()
    expect(page.locator("#feedback-result")).to_contain_text("saved as alef")
    assert feedback_withheld(page) and alef.get_attribute("aria-pressed") == "true"
    records = web.backend.store.records()
    assert [r.true_label for r in records] == ["alef"]
    with open(os.path.join(web.backend.store.root, records[0].image_path), "rb") as stored:
        assert stored.read() == base64.b64decode(sent)


def test_a_stroke_width_restored_by_going_back_is_the_one_shown_and_drawn(web, open_page):
    """Back to the page, the browser restores the slider's value without an input event: its number had said 18
    and the pen had drawn 18 px while the slider stood at 36. The number and the pen follow the slider."""
    page = open_page(web.url)
    page.focus("#stroke-width")
    for _ in range(18):
        page.keyboard.press("ArrowUp")
    assert page.locator("#stroke-width").input_value() == "36"
    page.goto(web.url + "/healthz")
    page.go_back()
    page.wait_for_selector("body[data-ready=true]")
    assert page.locator("#stroke-width").input_value() == "36"
    expect(page.locator("#stroke-width-value")).to_have_text("36")
    box = page.locator("#pad").bounding_box()
    page.mouse.move(box["x"] + 160, box["y"] + 60)
    page.mouse.down()
    page.mouse.move(box["x"] + 160, box["y"] + 260, steps=10)
    page.mouse.up()
    width = page.evaluate("""() => { const c = document.getElementById('pad');
        const d = c.getContext('2d').getImageData(0, 160, c.width, 1).data; let n = 0;
        for (let i = 0; i < d.length; i += 4) if (d[i] < 128) n++; return n; }""")
    assert 30 <= width <= 40, width                       # 36 px (a mouse's pressure: the width as set)


def test_a_probability_is_rounded_to_a_tenth_of_a_percent_up_to_100(web, open_page):
    """0.9952 had been shown as 100% (no decimal from 99.5 % up): only what rounds to 100.0 % is 100%."""
    page = open_page(web.url)
    shown = []

    def answer(probabilities):
        top = [{"class": c, "letter": g, "index": i, "probability": p}
               for (i, c, g), p in zip([(1, "bet", "ב"), (0, "alef", "א"), (2, "gimel", "ג")], probabilities)]
        body = json.dumps({"top": top, "model_version": "1", "route": "stable", "requested_route": "stable",
                           "fallback_reason": "", "latency_ms": 5.0,
                           "image": {"format": "PNG", "width": 320, "height": 320, "reencoded": False}})
        page.route("**/api/predict", lambda route: route.fulfill(status=200, content_type="application/json",
                                                                 body=body))
        page.evaluate("document.getElementById('top3').replaceChildren()")
        page.click("#send")
        answer_of(page)
        shown.append(page.locator("#top3 .prob").all_inner_texts())
        page.unroute("**/api/predict")

    draw_letter(page)
    answer([0.9952, 0.0044, 0.0004])
    answer([0.99949, 0.00046, 0.00005])
    answer([0.99951, 0.0004, 0.00009])
    assert shown == [["99.5%", "0.4%", "0%"], ["99.9%", "0%", "0%"], ["100%", "0%", "0%"]], shown


def test_while_an_answer_is_coming_the_page_says_it_is_recognising(web, open_page):
    """A slow model server can take up to --serving-timeout to answer: the page had shown no sign of the request,
    the first one under "No answer yet: draw or upload a letter.". It says it is recognising until the answer
    (or the error) comes."""
    page = open_page(web.url)
    empty, pending = page.locator("#result-empty"), page.locator("#result-pending")
    assert empty.is_visible() and pending.is_hidden()
    held = []
    page.route("**/api/predict", lambda route: held.append(route))
    draw_letter(page)
    page.click("#send")
    while not held:
        page.wait_for_timeout(20)
    expect(pending).to_be_visible()
    assert pending.locator("bdi").all_inner_texts() == ["מזהה…", "recognising…"] and empty.is_hidden()
    held.pop().continue_()
    answer_of(page)
    expect(pending).to_be_hidden()
    assert empty.is_hidden()

    page.set_input_files("#file", files=[{"name": "c.png", "mimeType": "image/png", "buffer": letter_png(size=64)}])
    while not held:
        page.wait_for_timeout(20)
    expect(pending).to_be_visible()
    held.pop().fulfill(status=504, content_type="application/json",
                       body='{"error": "The model server is slow.", "reason": "serving_timeout"}')
    expect(page.locator("#error")).to_contain_text("The model server is slow.")
    assert pending.is_hidden() and empty.is_visible()


def test_a_disabled_button_shows_no_busy_cursor_unless_its_request_is_on_its_way(web, open_page):
    """Every disabled button had the busy cursor (progress): Undo, Clear and Recognise on an empty pad, the letters
    once a feedback was saved. A disabled button shows not-allowed; progress only while its request is running."""
    page = open_page(web.url)
    cursor = lambda selector: page.locator(selector).first.evaluate("b => getComputedStyle(b).cursor")  # noqa: E731
    assert [cursor(b) for b in ("#undo", "#clear", "#send")] == ["not-allowed"] * 3
    held = []
    page.route(re.compile(r"/api/(predict|feedback)$"), lambda route: held.append(route))
    page.check("#feedback-mode")
    draw_letter(page)
    page.click("#send")
    while not held:
        page.wait_for_timeout(20)
    expect(page.locator("#send")).to_be_disabled()
    assert cursor("#send") == "progress" and cursor("#undo") == "pointer"       # recognising
    held.pop().continue_()
    answer_of(page)
    page.click("#letter-grid button[data-class=alef]")
    while not held:
        page.wait_for_timeout(20)
    assert cursor("#letter-grid button") == "progress" and cursor("#confirm") == "progress"   # saving
    held.pop().continue_()
    expect(page.locator("#feedback-result")).to_contain_text("saved")
    assert cursor("#letter-grid button") == "not-allowed" and cursor("#confirm") == "not-allowed"
    assert page.problems == [], page.problems


def test_the_letter_group_is_named_in_hebrew_and_english(web, open_page):
    """The 27 letters' group had been named in English only ("27 letters") on a Hebrew page whose every other name
    is Hebrew · English."""
    page = answered_in_feedback_mode(open_page, web.url)
    assert page.locator("#letter-grid").get_attribute("aria-label") == "27 אותיות · 27 letters"
    group = page.get_by_role("group", name="27 אותיות · 27 letters", exact=True)
    assert group.count() == 1 and group.locator("button").count() == 27


def test_a_dropped_folder_is_said_unreadable_in_both_languages_and_the_answer_stays(web, open_page, tmp_path):
    """A folder (or a file gone since it was chosen) cannot be read: the page had shown the browser's English
    DOMException ("A requested file or directory could not be found ...") and hidden the answer shown. Nothing was
    sent: it says so in Hebrew and English, and the answer of the image shown stays."""
    page = open_page(web.url)
    draw_letter(page)
    page.click("#send")
    answer_of(page)
    folder = tmp_path / "letters"
    folder.mkdir()
    (folder / "bet.png").write_bytes(letter_png(size=64))
    cdp = page.context.new_cdp_session(page)
    box = page.locator("#drop-zone").bounding_box()
    drag = {"x": box["x"] + box["width"] / 2, "y": box["y"] + box["height"] / 2,
            "data": {"items": [], "files": [str(folder)], "dragOperationsMask": 1}}
    for kind in ("dragEnter", "dragOver", "drop"):
        cdp.send("Input.dispatchDragEvent", {"type": kind, **drag})
    page.wait_for_selector("#error:not([hidden])")
    parts = page.eval_on_selector_all("#error bdi", "bs => bs.map(b => b.textContent)")
    assert parts == ["לא ניתן לקרוא את הקובץ: גררו או בחרו קובץ תמונה אחד",
                     "The file could not be read: drop or choose one image file, not a folder."], parts
    assert page.locator("#result").is_visible() and page.locator("#result-empty").is_hidden()
    assert "stale" not in (page.locator("#result").get_attribute("class") or "")
    assert page.locator("#result-card").get_attribute("aria-busy") is None and page.locator("#send").is_enabled()
    assert page.problems == [], page.problems


def classes_refused(how):
    """A route handler refusing /api/classes as a restarting web client does: the connection refused, or its 503
    stopping, whose body has no classes."""
    def refuse(route):
        if how == "refused":
            route.abort("connectionrefused")
        else:
            route.fulfill(status=503, content_type="application/json", body=STOPPING)
    return refuse


def letters_not_loaded(page):
    expect(page.locator("#error")).to_have_text("לא ניתן לטעון את רשימת האותיות · Could not load the list of letters.")
    assert page.locator("#letter-grid button").count() == 0


def page_without_letters(context, url, how, paused=False):
    """A page of ``context`` opened at ``url`` on a fake clock (paused: no time passes unless the test says), whose
    /api/classes is refused (:func:`classes_refused`) until the test unroutes it."""
    page = context.new_page()
    page.clock.install()
    if paused:
        page.clock.pause_at(datetime.datetime.now() + datetime.timedelta(seconds=1))
    page.route("**/api/classes", classes_refused(how))
    page.goto(url)
    letters_not_loaded(page)
    return page


@pytest.mark.parametrize("how", ["refused", "stopping"])
def test_letters_not_loaded_at_the_start_are_asked_for_again(web, browser, how):
    """/api/classes failing once at the page's start (its server restarting just then) had left the page without
    its 27 letters until a reload: feedback mode showed "otherwise pick the right letter:" over an empty grid. The
    page asks again until they come, and its "could not load" message goes then."""
    context = browser.new_context()
    try:
        page = page_without_letters(context, web.url, how)
        page.clock.run_for(2_000)                                        # asked again, refused again
        letters_not_loaded(page)
        page.unroute("**/api/classes")                                    # the web client is back
        page.clock.run_for(30_000)
        expect(page.locator("#letter-grid button")).to_have_count(27)
        expect(page.locator("#error")).to_be_hidden()
        page.check("#feedback-mode")
        draw_letter(page)
        page.click("#send")
        answer_of(page)
        page.click("#letter-grid button[data-class=alef]")
        expect(page.locator("#feedback-result")).to_contain_text("saved as alef")
    finally:
        context.close()


def test_letters_not_loaded_at_the_start_are_asked_for_with_a_request(web, browser):
    """With no time passing (the clock paused), a Recognise after the web client is back brings the letters too:
    the answer's feedback offers all 27."""
    context = browser.new_context()
    try:
        page = page_without_letters(context, web.url, "stopping", paused=True)
        page.unroute("**/api/classes")
        page.check("#feedback-mode")
        draw_letter(page)
        page.click("#send")
        answer_of(page)
        expect(page.locator("#letter-grid button")).to_have_count(27)
        assert page.locator("#letter-grid button[data-class=alef]").is_enabled()
        expect(page.locator("#error")).to_be_hidden()
    finally:
        context.close()


def test_a_failed_request_keeps_its_own_message_when_the_letters_come(web, browser):
    """The letters arriving take away only their own "could not load" message, not a request's error shown since."""
    context = browser.new_context()
    try:
        page = page_without_letters(context, web.url, "refused", paused=True)
        page.set_input_files("#file", files=[{"name": "notes.txt", "mimeType": "text/plain", "buffer": b"hello"}])
        expect(page.locator("#error")).to_contain_text("not an image")
        page.unroute("**/api/classes")
        page.clock.run_for(30_000)
        expect(page.locator("#letter-grid button")).to_have_count(27)
        expect(page.locator("#error")).to_contain_text("not an image")
    finally:
        context.close()


def test_a_model_server_back_up_takes_away_the_error_that_said_it_was_down(start_web, serving_labelled, dead_url,
                                                                           browser):
    """The status check turned the status line green once the model server was back, while the error box beside it
    still said it was down ("... not reachable (connection refused). Try again later.") until the next image: the
    check that finds it up takes that error away, and only that one (a file that is not an image stays said)."""
    web, down = start_web(serving_labelled.url), start_web(dead_url)
    context = browser.new_context()
    try:
        page = context.new_page()
        page.clock.install()
        served_by_down = re.compile(r"/api/(predict|status)$")
        page.route(served_by_down, lambda route: route.fulfill(
            response=route.fetch(url=down.url + route.request.url[len(web.url):])))
        page.goto(web.url)
        page.wait_for_selector("#serving-status.status-down")
        draw_letter(page)
        page.click("#send")
        expect(page.locator("#error")).to_contain_text("not reachable")
        assert "The model server is down" in page.locator("#error").inner_text()
        page.unroute(served_by_down)                                      # the model server is back

        def checked():
            with page.expect_response(re.compile(r"/api/status$")):
                page.clock.run_for(30_000)
        checked()
        expect(page.locator("#serving-status.status-up")).to_contain_text("Model server up")
        expect(page.locator("#error")).to_be_hidden()

        page.set_input_files("#file", files=[{"name": "notes.txt", "mimeType": "text/plain", "buffer": b"hello"}])
        expect(page.locator("#error")).to_contain_text("not an image")
        checked()
        page.wait_for_timeout(300)                                        # its answer read and shown
        expect(page.locator("#error")).to_contain_text("not an image")
    finally:
        context.close()
