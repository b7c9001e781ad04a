"""The playground in a real browser: headless Chromium (Debian's `chromium` package) driven by
Playwright for Python, against the real `codecomplete serve` with the shipped model.

Type into the editor, see ghost text from the server appear, accept it with Tab, read the prompt
panel (the FIM prompt the model saw), cancel a request by typing on, read the server tab.
Screenshots go to test-artifacts/playground/ (or $CODECOMPLETE_TEST_ARTIFACTS).

Skips, saying how to get it, only when Playwright or Chromium is missing; `make test` installs
Chromium with apt when it can (Makefile, `browser`). Playwright's own browser download is never
used (`playwright install` needs the internet): it launches the system binary.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path

import httpx
import pytest

from codecomplete.settings import shipped_model
from serving import serve_subprocess

pytestmark = [pytest.mark.slow, pytest.mark.browser]

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("CODECOMPLETE_TEST_ARTIFACTS", ROOT / "test-artifacts")) / "playground"
# A CPU shared with other jobs can take several seconds per completion.
GHOST_TIMEOUT_MS = 120_000


def chromium_path() -> str | None:
    for candidate in (os.environ.get("CODECOMPLETE_CHROMIUM"), "chromium", "chromium-browser"):
        if candidate and (found := shutil.which(candidate)):
            return found
    return None


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="Playwright is missing: pip install -e '.[dev]'"
    )
    executable = chromium_path()
    if executable is None:
        pytest.skip(
            "no Chromium: `apt-get install -y chromium` (make test does it when it runs as root with "
            "apt), or set CODECOMPLETE_CHROMIUM to a Chromium binary"
        )
    with sync_api.sync_playwright() as p:
        # --no-sandbox: the sandbox needs user namespaces that containers and root lack.
        b = p.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture(scope="module")
def server():
    model = shipped_model()
    if model is None:
        pytest.skip("models/codecomplete-tiny-py is not in this checkout")
    # No default time budget: on a loaded test machine 700 ms can end a completion before its first
    # line (an empty suggestion); budgets are tested in test_editor_e2e.py.
    with serve_subprocess(model, "--num-threads", "2", "--completion-deadline-ms", "0") as base:
        yield base


@pytest.fixture
def page(browser, server):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(server + "/")
    page.wait_for_selector("#s-model option", state="attached")  # /v1/models answered
    yield page
    page.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def settings(page, **values) -> None:
    # No time budget: on a loaded CPU the server's default budget can end a suggestion before its
    # first whole line (the budget has its own tests).
    values.setdefault("deadline", 0)
    for field, value in values.items():
        page.fill(f"#s-{field.replace('_', '-')}", str(value))


def shot(page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 10_000
    return path


def metric(base: str, sample: str) -> float:
    m = re.search(rf"^{re.escape(sample)} (\S+)$", httpx.get(base + "/metrics").text, re.M)
    return float(m.group(1)) if m else 0.0


def test_ghost_text_appears_tab_accepts_and_the_prompt_panel_shows_the_fim_prompt(page, server):
    # No stop strings: what the shipped model writes at this cursor is its own business (run 8's
    # weights start the infill with a blank line, which the default stop "\n\n" cuts to nothing);
    # this test is about the ghost text, Tab and the prompt panel.
    settings(page, max_tokens=12, temperature=0, n=1, debounce=150, stop="[]")
    # Code after the cursor: it goes as `suffix` (an empty suffix would be left-to-right completion).
    page.fill("#code", "def fibonacci(n):\n    \n    return a\n\n\nprint(fibonacci(10))\n")
    page.click("#code")
    page.evaluate("document.getElementById('code').setSelectionRange(22, 22)")  # end of line 2
    page.keyboard.press("Escape")  # nothing from the fill is in flight
    with page.expect_response(lambda r: r.url.endswith("/v1/completions"), timeout=GHOST_TIMEOUT_MS) as resp:
        page.keyboard.type("a, b = 0, 1\n    for i in range(n):\n        ", delay=15)
    body = resp.value.json()
    sent = resp.value.request.post_data_json
    before = page.input_value("#code")
    cursor = page.evaluate("document.getElementById('code').selectionStart")
    # The request: text before the cursor as prompt, after it as suffix (FIM), asking for debug.
    assert sent["prompt"] == before[:cursor] and sent["suffix"] == before[cursor:] and sent["debug"] is True

    ghost = page.wait_for_selector("#ghost", timeout=GHOST_TIMEOUT_MS)
    text = ghost.inner_text()
    served = body["choices"][0]["text"]
    assert text and text == served, "the ghost text is the server's completion"
    shot(page, "ghost-text")

    # The prompt panel: the exact prompt the model saw, FIM template applied, and its token count.
    debug = body["debug"]["prompts"][0]
    shown = page.inner_text("#prompt-view")
    assert shown == debug["model_prompt"]
    assert shown.startswith("<fim_prefix>") and "<fim_suffix>" in shown and shown.endswith("<fim_middle>")
    assert before[:cursor] in shown
    assert page.inner_text("#f-tokens") == str(debug["num_prompt_tokens"]) and debug["num_prompt_tokens"] > 10
    assert page.inner_text("#f-fim").startswith("yes")
    assert page.inner_text("#f-finish") in ("stop", "length")
    assert page.inner_text("#f-ttft").endswith("ms")

    page.keyboard.press("Tab")
    assert page.query_selector("#ghost") is None
    after = page.input_value("#code")
    assert after == before[:cursor] + served + before[cursor:], "Tab inserts the suggestion at the cursor"
    assert page.evaluate("document.getElementById('code').selectionStart") == cursor + len(served)
    shot(page, "accepted")


def test_typing_on_cancels_the_request_in_flight(page, server):
    """Each keystroke (debounce 0) aborts the previous request; the server sees the client go and
    counts a cancelled completion instead of generating 200 tokens nobody will read."""
    # Gone before the answer: "cancelled", or "superseded" when the server saw the next keystroke
    # (same client, a longer prompt) before it saw the connection close.
    outcomes = [f'codecomplete_completions_total{{outcome="{o}"}}' for o in ("cancelled", "superseded")]

    def gone() -> float:
        return sum(metric(server, name) for name in outcomes)

    before = gone()
    settings(page, max_tokens=200, temperature=0, n=1, debounce=0, stop="[]")
    page.click("#code")
    page.keyboard.press("Control+End")
    page.keyboard.type("x = ", delay=120)
    deadline = time.time() + 30
    while gone() <= before and time.time() < deadline:
        time.sleep(0.2)
    assert gone() > before
    page.keyboard.press("Escape")


def test_server_tab_shows_live_metrics_and_acceptance(page, server):
    settings(page, max_tokens=6, temperature=0, n=1, debounce=0)
    page.click("#code")
    page.keyboard.press("Control+End")  # the end of the file: left-to-right
    page.keyboard.type("return ", delay=10)
    page.wait_for_selector("#ghost", timeout=GHOST_TIMEOUT_MS)
    page.keyboard.press("Tab")
    page.click("#tab-server")
    page.wait_for_function("document.getElementById('m-tps').textContent !== '\\u2013'", timeout=15_000)
    assert page.inner_text("#m-up") == "up"
    assert page.inner_text("#m-queue") == "0"
    accept = page.inner_text("#m-accept-detail")
    shown = metric(server, 'codecomplete_client_events_total{client="playground",event="view"}')
    accepted = metric(server, 'codecomplete_client_events_total{client="playground",event="select"}')
    assert accepted >= 1 and shown >= accepted
    assert re.match(r"\d+ accepted / \d+ shown", accept)
    shot(page, "server-tab")


def test_docs_page_sends_a_real_completion(browser, server):
    """/docs (Swagger UI shipped in the package, no CDN) renders the document and its example
    request body gets a real completion from the server."""
    page = browser.new_page(viewport={"width": 1280, "height": 1400})
    try:
        page.goto(server + "/docs")
        block = page.wait_for_selector("#operations-default-create_completion_v1_completions_post")
        block.query_selector(".opblock-summary").click()
        body = page.wait_for_selector("#operations-default-create_completion_v1_completions_post textarea")
        assert '"suffix"' in body.input_value(), "the example is in the request editor"
        with page.expect_response(
            lambda r: r.url.endswith("/v1/completions"), timeout=GHOST_TIMEOUT_MS
        ) as resp:
            page.click("#operations-default-create_completion_v1_completions_post button.execute")
        assert resp.value.status == 200 and resp.value.json()["choices"][0]["text"] is not None
        status = page.wait_for_selector(
            ".live-responses-table tr.response td.response-col_status", timeout=GHOST_TIMEOUT_MS
        )
        assert status.inner_text().strip().startswith("200")
        shot(page, "docs")
    finally:
        page.close()


def test_choices_cycle_and_the_panel_shows_token_healing(page, server):
    """n sampled choices: Alt+] shows the next distinct one. Without FIM, a prompt that ends
    mid-word is healed, and the panel shows the tail the model re-types."""
    settings(page, max_tokens=8, temperature=1.0, n=4, seed=7, debounce=0)
    page.uncheck("#s-fim")
    page.fill("#code", "")
    page.click("#code")
    with page.expect_response(
        lambda r: r.url.endswith("/v1/completions") and r.request.post_data_json["prompt"] == "import num",
        timeout=GHOST_TIMEOUT_MS,
    ) as resp:
        page.keyboard.type("import num")
    body = resp.value.json()
    assert "suffix" not in resp.value.request.post_data_json
    distinct = []
    for c in sorted(body["choices"], key=lambda c: c["index"]):
        if c["text"] and c["text"] not in distinct:
            distinct.append(c["text"])
    assert len(distinct) >= 2, body["choices"]
    page.wait_for_selector("#ghost", timeout=GHOST_TIMEOUT_MS)
    assert page.inner_text("#ghost") == distinct[0]
    assert page.inner_text("#choice-index") == f"1/{len(distinct)}"
    page.keyboard.press("Alt+]")
    assert page.inner_text("#ghost") == distinct[1]
    assert page.inner_text("#choice-index") == f"2/{len(distinct)}"

    debug = body["debug"]["prompts"][0]
    assert debug["healed_tail"] and "import num".endswith(debug["healed_tail"])
    assert page.inner_text("#f-heal") == f"re-types {json.dumps(debug['healed_tail'])}"
    assert page.inner_text("#f-fim") == "no"
    assert page.inner_text("#prompt-view").endswith(debug["healed_tail"])  # struck through
    shot(page, "choices-and-healing")
    page.keyboard.press("Tab")
    assert page.input_value("#code") == "import num" + distinct[1]
