"""The web console in a real browser: headless Chromium driven by Selenium against the API.

The scenario is an auditor's: sign in with a token, search, open a recording, read its custody
timeline, give a reason and play the viewing copy (the video must really decode), download the
original (bit-exact), switch the language, sign out. Around it: a wrong token, a page opened
without signing in, the 429 message, and hostile text from a card rendered as text.

Uses Debian's ``chromium`` and ``chromium-driver`` at fixed paths (no driver download) and the
``api_server`` fixture (``tests/api_fixtures.py``). Skips with the reason when the browser or its
driver is missing. A screenshot of the console goes to ``tests/artifacts/console.png`` and to the
test's ``tmp_path``.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
WAIT_S = 10.0
VIDEO_WAIT_S = 20.0
DOWNLOAD_WAIT_S = 30.0

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(),
                       reason=f"{CHROMIUM} missing (Debian package chromium)"),
    pytest.mark.skipif(not CHROMEDRIVER.exists(),
                       reason=f"{CHROMEDRIVER} missing (Debian package chromium-driver)"),
]

webdriver = pytest.importorskip("selenium.webdriver", reason="Python package selenium missing")

from selenium.common.exceptions import TimeoutException  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.remote.webdriver import WebDriver  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

OpenBrowser = Callable[..., WebDriver]


@pytest.fixture
def open_browser(tmp_path: Path) -> Iterator[OpenBrowser]:
    """``open_browser(lang="en-US")`` → a fresh headless Chromium (own profile, own storage);
    downloads go to ``tmp_path / "downloads"``. Every browser is quit at the end of the test."""
    drivers: list[WebDriver] = []

    def open_(lang: str = "en-US") -> WebDriver:
        options = webdriver.ChromeOptions()
        options.binary_location = str(CHROMIUM)
        for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                         "--autoplay-policy=no-user-gesture-required", "--window-size=1400,1100",
                         f"--lang={lang}", "--mute-audio"):
            options.add_argument(argument)
        downloads = tmp_path / "downloads"
        downloads.mkdir(exist_ok=True)
        options.add_experimental_option("prefs", {
            "intl.accept_languages": lang,
            "download.default_directory": str(downloads),
            "download.prompt_for_download": False,
        })
        driver = cast(WebDriver, webdriver.Chrome(service=Service(str(CHROMEDRIVER)),
                                                  options=options))
        drivers.append(driver)
        driver.set_page_load_timeout(30)
        return driver

    yield open_
    for driver in drivers:
        driver.quit()


def wait_for(driver: WebDriver, condition: Callable[[WebDriver], Any], what: str,
             timeout_s: float = WAIT_S) -> Any:
    try:
        return WebDriverWait(driver, timeout_s, poll_frequency=0.1).until(condition)
    except TimeoutException:
        raise AssertionError(f"timed out after {timeout_s} s waiting for {what}; "
                             f"page status: {page_messages(driver)}") from None


def page_messages(driver: WebDriver) -> dict[str, str]:
    """What the console is telling the user, for assertion messages."""
    ids = ("notice", "signin-error", "search-status", "detail-status", "custody-status",
           "audit-ref", "player-error", "reason-error")
    return cast(dict[str, str], driver.execute_script(
        "const out = {}; for (const id of arguments[0]) {"
        " const n = document.getElementById(id); out[id] = n ? n.textContent : null; }"
        " return out;", list(ids)))


def visible(driver: WebDriver, element_id: str) -> bool:
    return driver.find_element(By.ID, element_id).is_displayed()


def text(driver: WebDriver, element_id: str) -> str:
    return driver.find_element(By.ID, element_id).text


def sign_in(driver: WebDriver, base_url: str, token: str) -> None:
    driver.get(base_url + "/")
    wait_for(driver, lambda d: visible(d, "signin"), "the sign-in form")
    field = driver.find_element(By.ID, "token")
    field.clear()
    field.send_keys(token)
    driver.find_element(By.ID, "signin-button").click()


def session_storage(driver: WebDriver) -> dict[str, str]:
    return cast(dict[str, str], driver.execute_script(
        "const out = {}; for (let i = 0; i < sessionStorage.length; i++) {"
        " const k = sessionStorage.key(i); out[k] = sessionStorage.getItem(k); } return out;"))


def local_storage(driver: WebDriver) -> dict[str, str]:
    return cast(dict[str, str], driver.execute_script(
        "const out = {}; for (let i = 0; i < localStorage.length; i++) {"
        " const k = localStorage.key(i); out[k] = localStorage.getItem(k); } return out;"))


def result_ids(driver: WebDriver) -> list[str]:
    return cast(list[str], driver.execute_script(
        "return [...document.querySelectorAll('#results-body tr')].map(r => r.dataset.id);"))


def answer_reason_dialog(driver: WebDriver, reason: str) -> None:
    wait_for(driver, lambda d: d.execute_script(
        "return document.getElementById('reason-dialog').open"), "the reason dialog")
    field = driver.find_element(By.ID, "reason-input")
    field.clear()
    field.send_keys(reason)
    driver.find_element(By.ID, "reason-ok").click()


def video_state(driver: WebDriver) -> dict[str, Any]:
    return cast(dict[str, Any], driver.execute_script(
        "const v = document.getElementById('player');"
        " return {readyState: v.readyState, networkState: v.networkState,"
        " error: v.error ? v.error.code : null, errorMessage: v.error ? v.error.message : null,"
        " currentSrc: v.currentSrc, paused: v.paused, currentTime: v.currentTime};"))


def save_screenshot(driver: WebDriver, tmp_path: Path) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    png = driver.get_screenshot_as_png()
    (ARTIFACTS / "console.png").write_bytes(png)
    (tmp_path / "console.png").write_bytes(png)


def fake_api_script(responses: dict[str, tuple[int, Any, dict[str, str]]]) -> str:
    """JavaScript replacing ``fetch`` in the page: each API path prefix answers a fixed status
    and JSON body. For messages the real server cannot be made to send without harm (429)
    and for hostile catalog text."""
    return (
        "const table = " + json.dumps(responses) + ";"
        "window.__requests = [];"
        "window.fetch = async (url, init) => {"
        "  const path = new URL(url, location.origin).pathname;"
        "  window.__requests.push({path, init: {method: init && init.method,"
        "    headers: init && init.headers}});"
        "  const key = Object.keys(table).filter(k => path.startsWith(k))"
        "    .sort((a, b) => b.length - a.length)[0];"
        "  const [status, body, headers] = key ? table[key] : [404, {error: 'not faked'}, {}];"
        "  return new Response(status === 204 ? null : JSON.stringify(body),"
        "    {status, headers: {'Content-Type': 'application/json', ...(headers || {})}});"
        "};"
    )


# -- the auditor's scenario ------------------------------------------------------------------


def test_auditor_signs_in_searches_plays_downloads_and_signs_out(
        api_server: Any, open_browser: OpenBrowser, tmp_path: Path) -> None:
    driver = open_browser()
    token = api_server.tokens["auditor"]
    sign_in(driver, api_server.base_url, token)

    wait_for(driver, lambda d: visible(d, "app"), "the console after sign-in")
    assert visible(driver, "who") and visible(driver, "sign-out")
    assert text(driver, "who-role").startswith("auditor")
    assert text(driver, "who-name")
    assert not visible(driver, "signin")
    # The token lives in sessionStorage only: not in localStorage, not in the URL.
    assert token in session_storage(driver).values()
    assert token not in json.dumps(local_storage(driver))
    assert token not in driver.current_url

    # Search with a from/to window: the datetime-local values go out as ISO instants with the
    # browser's offset, which the server must accept (a malformed instant would be a 422).
    driver.execute_script(
        "document.getElementById('q-from').value = '2000-01-01T00:00:00';"
        "document.getElementById('q-to').value = '2099-12-31T23:59:59';")
    Select(driver.find_element(By.ID, "q-compliance")).select_by_value("")
    driver.find_element(By.ID, "search-button").click()
    wanted = set(api_server.recordings)
    deadline = time.monotonic() + WAIT_S
    while not wanted <= set(result_ids(driver)):
        more = driver.find_element(By.ID, "more")
        if more.is_displayed() and more.is_enabled():
            more.click()
        if time.monotonic() > deadline:
            raise AssertionError(f"search results {result_ids(driver)} lack some of {wanted}; "
                                 f"{page_messages(driver)}")
        time.sleep(0.1)
    requested = driver.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)"
        ".filter(n => n.includes('/api/v1/recordings?'));")
    iso_with_offset = re.compile(r"from=2000-01-01T00%3A00%3A00(%2B|-)\d\d%3A\d\d")
    assert any(iso_with_offset.search(url) for url in requested), requested

    # Open a recording: summary with the full id, custody timeline with verified entries.
    recording = api_server.recordings[0]
    open_button = f'#results-body tr[data-id="{recording}"] button.open'
    driver.find_element(By.CSS_SELECTOR, open_button).click()
    wait_for(driver, lambda d: recording in text(d, "detail-summary"), "the recording summary")
    summary = text(driver, "detail-summary")
    for label in ("Size", "Time source", "Archived at", "Archive deadline", "Compliance"):
        assert label in summary, summary
    wait_for(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#custody-body tr"),
             "the custody timeline")
    rows = driver.find_elements(By.CSS_SELECTOR, "#custody-body tr")
    assert driver.find_elements(By.CSS_SELECTOR, "#custody-body tr.verified"), \
        [row.text for row in rows]
    assert not driver.find_elements(By.CSS_SELECTOR, "#custody-body tr.unverified"), \
        [row.text for row in rows]
    assert "✓" in text(driver, "custody-verified")
    first = rows[0].find_elements(By.TAG_NAME, "td")
    assert re.fullmatch(r"\S+#\d+", first[1].text), first[1].text
    assert "✓" in first[4].text
    details = rows[0].find_element(By.TAG_NAME, "details")
    assert details.get_attribute("open") is None  # collapsed until asked

    # Play: the reason dialog refuses a too-short reason, then grants and plays.
    driver.find_element(By.ID, "play").click()
    answer_reason_dialog(driver, "ab")
    wait_for(driver, lambda d: visible(d, "reason-error"), "the reason-length error")
    assert driver.execute_script("return document.getElementById('reason-dialog').open")
    answer_reason_dialog(driver, "console test: reviewing the incident")
    wait_for(driver, lambda d: not d.execute_script(
        "return document.getElementById('reason-dialog').open"), "the dialog to close")
    wait_for(driver, lambda d: d.find_element(By.ID, "audit-ref").get_attribute("data-audit"),
             "the audit reference of the grant")
    audit = driver.find_element(By.ID, "audit-ref").get_attribute("data-audit") or ""
    assert re.fullmatch(r"\S+#\d+", audit), audit
    assert audit in text(driver, "audit-ref")
    try:
        WebDriverWait(driver, VIDEO_WAIT_S, poll_frequency=0.2).until(
            lambda d: video_state(d)["readyState"] >= 2)
    except TimeoutException:
        state = video_state(driver)
        raise AssertionError(
            f"the viewing copy did not load within {VIDEO_WAIT_S} s: readyState "
            f"{state['readyState']}, error.code {state['error']} ({state['errorMessage']}), "
            f"networkState {state['networkState']}, src {state['currentSrc']}; "
            f"{page_messages(driver)}") from None
    src = video_state(driver)["currentSrc"]
    assert src.startswith(api_server.base_url + "/api/v1/grants/"), src
    assert token not in src
    # The access shows up in the timeline, marked as this auditor's.
    writer, seq = audit.rsplit("#", 1)
    mine = f'#custody-body tr[data-writer="{writer}"][data-seq="{seq}"]'
    wait_for(driver, lambda d: d.find_elements(By.CSS_SELECTOR, mine), "the access in the timeline")
    row = driver.find_element(By.CSS_SELECTOR, mine)
    assert "accessed" in row.text and "mine" in (row.get_attribute("class") or "")

    # Language: 中文, remembered in localStorage.
    Select(driver.find_element(By.ID, "lang")).select_by_value("zh")
    wait_for(driver, lambda d: text(d, "play") == "播放", "the Chinese play label")
    assert text(driver, "search-heading") == "查询"
    assert "大小" in text(driver, "detail-summary")
    assert driver.execute_script("return document.documentElement.lang") == "zh-CN"
    assert local_storage(driver).get("evidence-console.lang") == "zh"
    save_screenshot(driver, tmp_path)

    # Download the original: same dialog, a grant of kind original, the bytes are bit-exact.
    downloads = tmp_path / "downloads"
    driver.find_element(By.ID, "download").click()
    answer_reason_dialog(driver, "console test: copy for the case file")
    deadline = time.monotonic() + DOWNLOAD_WAIT_S
    done: list[Path] = []
    while not done:
        done = [p for p in downloads.iterdir() if not p.name.endswith(".crdownload")]
        if time.monotonic() > deadline:
            raise AssertionError(f"no download in {downloads} after {DOWNLOAD_WAIT_S} s: "
                                 f"{list(downloads.iterdir())}; {page_messages(driver)}")
        time.sleep(0.2)
    assert hashlib.sha256(done[0].read_bytes()).hexdigest() == recording
    assert visible(driver, "detail")  # the attachment did not replace the page

    # Sign out: nothing of the session is left in the page or in sessionStorage.
    driver.find_element(By.ID, "sign-out").click()
    wait_for(driver, lambda d: visible(d, "signin"), "the sign-in form after sign-out")
    assert not visible(driver, "app")
    assert result_ids(driver) == []
    assert session_storage(driver) == {}
    assert driver.find_elements(By.CSS_SELECTOR, "#custody-body tr") == []
    assert not driver.execute_script("return document.getElementById('player').hasAttribute('src')")
    assert video_state(driver)["readyState"] == 0
    driver.refresh()
    wait_for(driver, lambda d: visible(d, "signin"), "the sign-in form after reload")
    assert not visible(driver, "app")
    assert text(driver, "signin-heading") == "登录"  # the language choice outlived the session


# -- without a valid token -------------------------------------------------------------------


def test_page_without_signing_in_shows_no_data(api_server: Any, open_browser: OpenBrowser) -> None:
    driver = open_browser()
    driver.get(api_server.base_url + "/")
    wait_for(driver, lambda d: visible(d, "signin"), "the sign-in form")
    assert driver.find_element(By.ID, "token").get_attribute("type") == "password"
    assert not visible(driver, "app")
    assert not visible(driver, "who")
    assert result_ids(driver) == []
    assert driver.find_elements(By.CSS_SELECTOR, "#custody-body tr") == []
    fetched = driver.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)"
        ".filter(n => n.includes('/api/'));")
    assert fetched == []


def test_wrong_token_is_refused_with_a_message(api_server: Any, open_browser: OpenBrowser) -> None:
    driver = open_browser()
    sign_in(driver, api_server.base_url, "not-a-token-" + "x" * 20)
    wait_for(driver, lambda d: visible(d, "signin-error"), "the sign-in error")
    assert text(driver, "signin-error") == "Token not accepted."
    assert not visible(driver, "app")
    assert session_storage(driver) == {}
    assert result_ids(driver) == []


# -- messages and hostile data, with the API faked inside the page -----------------------------


def test_too_many_attempts_message(api_server: Any, open_browser: OpenBrowser) -> None:
    # Exhausting the real server's limit would lock 127.0.0.1 out for every other test.
    driver = open_browser()
    driver.get(api_server.base_url + "/")
    wait_for(driver, lambda d: visible(d, "signin"), "the sign-in form")
    driver.execute_script(fake_api_script({
        "/api/v1/me": (429, {"error": "too many failed sign-ins"}, {"Retry-After": "42"}),
    }))
    driver.find_element(By.ID, "token").send_keys("whatever-token")
    driver.find_element(By.ID, "signin-button").click()
    wait_for(driver, lambda d: visible(d, "signin-error"), "the 429 message")
    assert text(driver, "signin-error") == "Too many attempts — wait 42 s and try again."
    assert not visible(driver, "app")


HOSTILE = '<img src=x onerror="window.__pwned=1">'


def test_hostile_catalog_text_is_shown_as_text(api_server: Any, open_browser: OpenBrowser) -> None:
    recording = "ab" * 32
    summary = {
        "id": recording, "short_id": recording[:12], "station": HOSTILE, "device_id": HOSTILE,
        "officer_id": "<b>A1001</b>", "recorded_start": "2026-11-25T09:00:00+08:00",
        "recorded_end": None, "time_source": "filename", "archived_at": "2026-11-25T10:00:00Z",
        "archive_deadline": "2026-11-26T09:00:00+08:00", "compliance": "late",
        "size_bytes": 1234, "extension": "mp4", "flags": ["unplayable"], "cases": [HOSTILE],
        "held": True, "has_proxy": False, "has_poster": False, "duration_s": None,
    }
    detail = {**summary, "flag_reasons": {"unplayable": HOSTILE}, "manifest": {},
              "media": None, "holds": [{"hold_id": "0" * 16, "reason": HOSTILE}],
              "notes": [{"text": HOSTILE, "by": "user:x", "at": "2026-11-25T11:00:00Z"}],
              "retain_until": None, "content": {"original": {"sha256": recording,
                                                             "size_bytes": 1234}}}
    custody = {"recording": recording, "verified": False, "events": [{
        "writer": "<i>st</i>", "seq": 1, "time": "2026-11-25T10:00:00Z", "event": HOSTILE,
        "actor": HOSTILE, "details": {"x": HOSTILE}, "entry_hash": "0" * 64,
        "verified": False, "problem": HOSTILE}]}
    driver = open_browser(lang="zh-CN")
    driver.get(api_server.base_url + "/")
    wait_for(driver, lambda d: visible(d, "signin"), "the sign-in form")
    # Default language from navigator.language.
    assert text(driver, "signin-heading") == "登录"
    driver.execute_script(fake_api_script({
        "/api/v1/me": (200, {"name": HOSTILE, "role": "auditor", "officer_id": None}, {}),
        "/api/v1/session": (204, None, {}),
        "/api/v1/recordings": (200, {"items": [summary], "next_cursor": None}, {}),
        f"/api/v1/recordings/{recording}": (200, detail, {}),
        f"/api/v1/recordings/{recording}/custody": (200, custody, {}),
        "/api/v1/incidents": (200, {"items": [{
            "incident_id": "JQ-1", "officers": [HOSTILE], "start": "2026-11-25T01:00:00+00:00",
            "end": "2026-11-25T01:30:00+00:00", "type": HOSTILE, "place": HOSTILE,
            "station": "", "coverage": "missing", "fraction": 0, "gaps": [],
            "recordings": [], "officer_coverage": []}], "counts": {"missing": 1},
            "next_cursor": None}, {}),
    }))
    driver.find_element(By.ID, "token").send_keys("fake-token")
    driver.find_element(By.ID, "signin-button").click()
    wait_for(driver, lambda d: result_ids(d) == [recording], "the faked search result")
    driver.find_element(By.CSS_SELECTOR, "#results-body button.open").click()
    wait_for(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#custody-body tr"),
             "the faked custody timeline")

    assert driver.execute_script("return document.querySelectorAll('main img, header img, b, i')"
                                 ".length") == 0
    assert driver.execute_script("return window.__pwned === undefined")
    assert text(driver, "who-name") == HOSTILE
    assert HOSTILE in driver.find_element(By.ID, "results-body").text
    wait_for(driver, lambda d: "JQ-1" in d.find_element(By.ID, "incidents-body").text,
             "the faked incident")
    incident_row = driver.find_element(By.ID, "incidents-body").text
    assert HOSTILE in incident_row and "无录像" in incident_row
    assert f"unplayable: {HOSTILE}" in text(driver, "detail-summary")
    row = driver.find_element(By.CSS_SELECTOR, "#custody-body tr")
    assert "unverified" in (row.get_attribute("class") or "")
    assert "✗" in row.text and HOSTILE in row.text
    assert "✗" in text(driver, "custody-verified")
    assert not driver.find_element(By.ID, "play").is_enabled()  # no viewing copy
    # Every faked call carried the token in the header, never in the URL.
    requests = driver.execute_script("return window.__requests")
    assert requests and all(r["init"]["headers"]["Authorization"] == "Bearer fake-token"
                            for r in requests)
    assert all("fake-token" not in r["path"] for r in requests)


def test_supervisor_sees_incidents_without_footage_in_both_languages(
        api_server: Any, open_browser: OpenBrowser, tmp_path: Path) -> None:
    import httpx

    token = api_server.tokens["supervisor"]
    dispatch = ("incident_id,officers,start,end,type,place\n"
                "CONSOLE-1,A1002,2026-11-24T08:00:00+08:00,2026-11-24T08:20:00+08:00,纠纷,东街\n")
    imported = httpx.post(api_server.base_url + "/api/v1/incidents", content=dispatch.encode(),
                          headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert imported.status_code == 201, imported.text
    driver = open_browser()
    sign_in(driver, api_server.base_url, token)
    wait_for(driver, lambda d: visible(d, "incidents")
             and "CONSOLE-1" in d.find_element(By.ID, "incidents-body").text,
             "the incidents panel listing the missing incident")
    row = driver.find_element(By.CSS_SELECTOR, "#incidents-body tr[data-incident='CONSOLE-1']")
    assert "Missing" in row.text and "纠纷" in row.text and "A1002" in row.text
    Select(driver.find_element(By.ID, "lang")).select_by_value("zh")
    assert text(driver, "incidents-heading") == "警情与执法记录"
    assert "无录像" in driver.find_element(
        By.CSS_SELECTOR, "#incidents-body tr[data-incident='CONSOLE-1']").text
    # an officer's console has no incidents panel (their role may not report)
    officer = open_browser()
    sign_in(officer, api_server.base_url, api_server.tokens["officer"])
    wait_for(officer, lambda d: visible(d, "app"), "the officer's console")
    assert not visible(officer, "incidents")
