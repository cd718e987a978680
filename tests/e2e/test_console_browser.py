"""The web console in a real browser: Debian's chromium driven by selenium through /usr/bin/chromedriver,
against the real daemon, with sipp placing the calls. One daemon, PBX and browser for the module.

The tests run in file order and build on each other's calls (the flagged caller, the voicemail).
Screenshots of every page are saved under the module's tmp dir (path printed) as test artifacts.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import (ROOT, Daemon, call_scenario, expect_final_scenario, free_port, media_call_scenario, uac,
                               uas, write_config, write_dialplan)

pytestmark = pytest.mark.e2e

os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager must never fetch a browser or driver
from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
SECRET = "console test secret"
ACME = """
customer = "acme"
targets = ["pbx-a"]
[[numbers]]
number = "+12025550100"
[[numbers]]
number = "+12025550102"
action = "voicemail"
[voicemail.main]
max_length = "10s"
silence = "0s"
"""
GLOBEX = """
customer = "globex"
targets = ["pbx-a"]
[[numbers]]
number = "+13125550100"
"""
SPAMMER = "+14155550123"
# Markup, an attribute break-out and RTL/LTR override characters: all must appear as text.
HOSTILE_CNAM = '<script>window.__xss=1</script><img src=x onerror="window.__xss=2"> \\"onmouseover=window.__xss=3 x \u202eevil\u202d'
# ... the bidi overrides are shown as code points, so "evil" cannot be displayed as "live".
HOSTILE_SHOWN = '<script>window.__xss=1</script><img src=x onerror="window.__xss=2"> "onmouseover=window.__xss=3 x [U+202E]evil[U+202D]'


class ConsoleEdge:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.port = free_port()
        self.pbx_port = free_port()
        self.admin_port = free_port(socket.SOCK_STREAM, None)
        self.base = f"http://127.0.0.1:{self.admin_port}"
        self.shots = tmp / "screenshots"
        self.shots.mkdir()
        extra = (f'[admin]\nlisten = "127.0.0.1:{self.admin_port}"\ntoken_file = "{tmp / "admin.token"}"\n'
                 f'[media]\nvoicemail_dir = "{tmp / "voicemail"}"\nmedia_timeout = "8s"\n')
        self.config = write_config(tmp, self.port, ["127.0.0.1/32"], [("pbx-a", self.pbx_port)], extra=extra,
                                   health_interval="")
        plans = write_dialplan(tmp, ACME)
        write_dialplan(tmp, GLOBEX, "globex.toml")
        for name, role, customer in [("ed", "editor", "acme"), ("ann", "viewer", "acme"), ("gus", "editor", "globex")]:
            out = subprocess.run([sys.executable, "-m", "edge.cli", "users", "--config", str(self.config), "add", name,
                                  "--role", role, "--customer", customer, "--password-stdin"],
                                 input=SECRET + "\n", capture_output=True, text=True, cwd=ROOT, timeout=30)
            assert out.returncode == 0, out.stderr
            assert f"added {name} ({role}, customer {customer})" in out.stdout
        self.daemon = Daemon(self.config, plans, tmp / "daemon.log")
        self.daemon.wait_ready()
        self.pbx = uas(tmp, self.pbx_port, timeout=170)

    def call(self, caller: str, called: str = "12025550100", from_name: str = "", name: str = "carrier") -> None:
        car = uac(self.tmp, self.port, called, call_scenario(self.tmp, caller, from_name), name=name, timeout=20)
        assert car.wait(25) == 0, car.errors() + car.messages()[-3000:]

    def api(self, method: str, path: str, user: str, body: object | None = None) -> int:
        req = urllib.request.Request(self.base + path, method=method,
                                     data=json.dumps(body).encode() if body is not None else None)
        req.add_header("Authorization", "Basic " + base64.b64encode(f"{user}:{SECRET}".encode()).decode())
        req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=5) as resp:
                return resp.status
        except urllib.error.HTTPError as exc:
            return exc.code

    def stop(self) -> None:
        self.pbx.stop()
        self.daemon.stop()


def browser(tmp: Path) -> webdriver.Chrome:
    assert Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists(), "make test installs chromium and chromium-driver"
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile = tmp / f"chromium-{time.monotonic_ns()}"
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--autoplay-policy=no-user-gesture-required", f"--user-data-dir={profile}", "--window-size=1400,1000"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(20)
    return driver


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsoleEdge]:
    edge = ConsoleEdge(tmp_path_factory.mktemp("console"))
    print(f"\nconsole screenshots: {edge.shots}")
    try:
        yield edge
    finally:
        edge.stop()


@pytest.fixture
def page(console: ConsoleEdge) -> Iterator[webdriver.Chrome]:
    driver = browser(console.tmp)
    try:
        yield driver
    finally:
        driver.quit()


def wait(driver: webdriver.Chrome, what, timeout: float = 15.0):  # type: ignore[no-untyped-def]
    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(what)


def log_in(driver: webdriver.Chrome, edge: ConsoleEdge, user: str) -> None:
    driver.get(edge.base + "/")
    wait(driver, lambda d: d.current_url.endswith("/login"))
    driver.find_element(By.ID, "user").send_keys(user)
    driver.find_element(By.ID, "password").send_keys(SECRET)
    driver.find_element(By.ID, "login-button").click()
    wait(driver, lambda d: d.find_element(By.ID, "page").get_attribute("data-ready") == "1")


def open_page(driver: webdriver.Chrome, name: str) -> None:
    driver.execute_script("window.location.hash = arguments[0];", name)
    wait(driver, lambda d: d.find_element(By.ID, "page").get_attribute("data-page") == name
         and d.find_element(By.ID, "page").get_attribute("data-ready") == "1")


def rows_from(driver: webdriver.Chrome, caller: str) -> list:
    return [r for r in driver.find_elements(By.CSS_SELECTOR, "#activity-rows tr")
            if r.find_element(By.CSS_SELECTOR, "td.caller .number").text == caller]


def shot(driver: webdriver.Chrome, edge: ConsoleEdge, name: str) -> None:
    path = edge.shots / f"{name}.png"
    driver.save_screenshot(str(path))
    assert path.stat().st_size > 1000


def test_console_row_appears_live_then_flag_blocks_the_next_call_with_603(console, page):
    log_in(page, console, "ed")
    wait(page, lambda d: d.find_element(By.ID, "live-status").get_attribute("data-live") == "1")
    page.execute_script("window.__sameDocument = 'yes';")
    console.call("+14155550777", called="13125550100", name="globex-call")  # another customer's contact
    console.call(SPAMMER, from_name="ROBO SALES")
    row = wait(page, lambda d: (rows_from(d, SPAMMER) or [None])[0])
    assert page.execute_script("return window.__sameDocument;") == "yes"  # arrived without a reload
    assert row.find_element(By.CSS_SELECTOR, ".cnam").text == "ROBO SALES"
    assert "allow" in row.find_element(By.CSS_SELECTOR, "td.decision").text
    assert not rows_from(page, "+14155550777")  # globex's call never reaches acme's page
    row.find_element(By.CSS_SELECTOR, ".flag-button").click()
    form = row.find_element(By.CSS_SELECTOR, "form.flag-form")
    Select(form.find_element(By.NAME, "scope")).select_by_value("number")
    Select(form.find_element(By.NAME, "expiry")).select_by_value("1d")
    assert "global" not in [o.get_attribute("value") for o in form.find_elements(By.CSS_SELECTOR, "select[name=scope] option")]
    form.find_element(By.CSS_SELECTOR, ".block-button").click()
    blocked = wait(page, lambda d: rows_from(d, SPAMMER)[0].find_elements(By.CSS_SELECTOR, ".blocked"))
    assert "blocked" in blocked[0].text
    shot(page, console, "activities")
    car = uac(console.tmp, console.port, "12025550100", expect_final_scenario(console.tmp, 603, caller=SPAMMER),
              name="blocked-call", timeout=20)
    assert car.wait(25) == 0, car.errors() + car.messages()[-3000:]
    rejected = wait(page, lambda d: [r for r in rows_from(d, SPAMMER) if "reject" in r.find_element(By.CSS_SELECTOR, "td.decision").text])
    assert "603" in rejected[0].find_element(By.CSS_SELECTOR, "td.evidence").text
    open_page(page, "rules")
    rule_rows = page.find_elements(By.CSS_SELECTOR, "table.rules tbody tr")
    assert len(rule_rows) == 1 and SPAMMER in rule_rows[0].text and "+12025550100" in rule_rows[0].text
    assert rule_rows[0].find_elements(By.TAG_NAME, "td")[4].text == "1"  # one hit: the rejected call
    shot(page, console, "rules")


def test_console_undo_removes_the_block(console, page):
    log_in(page, console, "ed")
    open_page(page, "rules")
    before = page.find_elements(By.CSS_SELECTOR, "table.rules tbody tr")
    assert before, "the previous test's block"
    before[0].find_element(By.XPATH, ".//button[text()='Remove']").click()
    wait(page, lambda d: d.find_element(By.ID, "page").get_attribute("data-ready") == "1"
         and not d.find_elements(By.CSS_SELECTOR, "table.rules tbody tr"))
    console.call(SPAMMER, name="after-undo")  # forwarded again


def test_console_hostile_caller_name_is_shown_as_text_and_runs_nothing(console, page):
    log_in(page, console, "ed")
    console.call("+14155550999", from_name=HOSTILE_CNAM, name="hostile")
    row = wait(page, lambda d: (rows_from(d, "+14155550999") or [None])[0])
    assert row.find_element(By.CSS_SELECTOR, ".cnam").get_attribute("textContent") == HOSTILE_SHOWN
    assert page.execute_script("return window.__xss;") is None
    assert not page.find_elements(By.CSS_SELECTOR, "#page script, #page img, #page [onmouseover], #page [onerror]")
    row.find_element(By.CSS_SELECTOR, ".cnam").click()
    assert page.execute_script("return window.__xss;") is None
    severe = [e for e in page.get_log("browser") if e["level"] == "SEVERE" and "Content Security Policy" in e["message"]]
    assert severe == []  # nothing was even attempted inline: the text never became markup


def test_console_viewer_sees_no_flag_button_and_the_api_refuses(console, page):
    log_in(page, console, "ann")
    wait(page, lambda d: rows_from(d, SPAMMER))
    assert page.find_elements(By.CSS_SELECTOR, ".flag-button") == []
    assert not rows_from(page, "+14155550777")
    activity = json.loads(urllib.request.urlopen(urllib.request.Request(
        console.base + "/activities?calling=%2B14155550123&limit=1",
        headers={"Authorization": "Basic " + base64.b64encode(f"ann:{SECRET}".encode()).decode()}), timeout=5).read())
    aid = activity["items"][0]["id"]
    assert console.api("POST", f"/activities/{aid}/flag", "ann", {"by": "number", "scope": "customer"}) == 403
    assert console.api("POST", f"/activities/{aid}/flag", "gus", {"by": "number", "scope": "customer"}) == 404


def test_console_voicemail_left_by_a_screened_call_plays(console, page):
    scen = media_call_scenario(console.tmp, "+13035550103", "", 3500, caller_hangs_up_after=100, codecs=(8,))
    text = Path(scen).read_text().replace(
        '<pause milliseconds="100"/>\n  <send retrans="500"><![CDATA[\nBYE',
        '<nop><action><exec play_pcap_audio="/usr/share/sip-tester/g711a.pcap"/></action></nop>\n'
        '  <pause milliseconds="4500"/>\n  <send retrans="500"><![CDATA[\nBYE', 1)
    Path(scen).write_text(text)
    car = uac(console.tmp, console.port, "12025550102", scen, name="voicemail-call", timeout=30)
    assert car.wait(35) == 0, car.errors() + car.messages()[-3000:]
    log_in(page, console, "ed")
    deadline = time.monotonic() + 10
    while True:  # the message is listed once the call has ended and the WAV is closed
        open_page(page, "voicemail")
        audios = page.find_elements(By.CSS_SELECTOR, "table.voicemail audio")
        if audios or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert len(audios) == 1
    src = audios[0].get_attribute("src")
    state = page.execute_async_script("""
        const [audio, done] = arguments;
        audio.muted = true;
        const finish = () => {
          const t = performance.getEntriesByName(audio.currentSrc).pop();
          done({ready: audio.readyState, duration: audio.duration, error: audio.error && audio.error.code,
                status: t ? t.responseStatus : null});
        };
        audio.addEventListener("error", finish, {once: true});
        audio.addEventListener("playing", finish, {once: true});
        audio.play().catch(finish);
    """, audios[0])
    assert state["error"] is None and state["ready"] >= 2 and state["duration"] > 1.0, state
    # Chromium's media element asks with Range: bytes=0-, so the file answers 206 (a 200 without Range).
    assert state["status"] in (200, 206), state
    assert src.endswith("/audio")
    got = page.execute_async_script("""
        const done = arguments[1];
        fetch(arguments[0], {credentials: "same-origin"}).then(async (r) => {
          const head = new Uint8Array(await r.arrayBuffer()).slice(0, 4);
          done({status: r.status, type: r.headers.get("Content-Type"), head: String.fromCharCode(...head)});
        });
    """, src)
    assert got == {"status": 200, "type": "audio/wav", "head": "RIFF"}
    shot(page, console, "voicemail")


def test_console_dashboard_renders_its_charts(console, page):
    log_in(page, console, "ed")
    open_page(page, "dashboard")
    lines = page.find_elements(By.CSS_SELECTOR, "#chart-decisions svg polyline")
    legends = {t.text for t in page.find_elements(By.CSS_SELECTOR, "#chart-decisions svg text.legend")}
    assert len(lines) >= 2 and {"allow", "reject"} <= legends
    callers = [t.text for t in page.find_elements(By.CSS_SELECTOR, "#chart-callers svg text.label")]
    assert callers == [SPAMMER]
    assert page.find_elements(By.CSS_SELECTOR, "#chart-stir svg rect.bar")
    assert len(page.find_elements(By.CSS_SELECTOR, "#chart-scores svg rect.bar")) == 11
    shot(page, console, "dashboard")
    open_page(page, "activities")
    wait(page, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#activity-rows tr")) >= 5)
    shot(page, console, "activities-log")
    if os.environ.get("CONSOLE_SCREENSHOTS_TO"):  # refresh the README images: CONSOLE_SCREENSHOTS_TO=docs
        for name in ("activities-log", "dashboard"):
            shutil.copy(console.shots / f"{name}.png", Path(os.environ["CONSOLE_SCREENSHOTS_TO"]) / f"console-{name}.png")


def test_console_number_release_then_too_early_assign_shows_the_refusal(console, page):
    log_in(page, console, "ed")
    open_page(page, "numbers")
    assert page.find_elements(By.CSS_SELECTOR, "section.number[data-number='+12025550100']")
    assert not page.find_elements(By.CSS_SELECTOR, "section.number[data-number='+13125550100']")  # globex's
    section = "section.number[data-number='+12025550102']"
    page.find_element(By.CSS_SELECTOR, f"{section} .release-button").click()
    wait(page, lambda d: d.find_elements(By.CSS_SELECTOR, f"{section} .state-released"))
    countdown = page.find_element(By.CSS_SELECTOR, f"{section} .countdown").text
    assert "0 day(s) in quarantine; eligible in " in countdown and "(90 days left)" in countdown
    assert page.find_elements(By.CSS_SELECTOR, f"{section} svg rect.bar")  # residual traffic per day
    page.find_element(By.CSS_SELECTOR, f"{section} .assign-button").click()
    refusal = wait(page, lambda d: d.find_element(By.CSS_SELECTOR, f"{section} .refusal").text)
    assert refusal.startswith("refused: +12025550102 is not eligible for reassignment: ") and "quarantine" in refusal
    shot(page, console, "numbers")


def test_console_logins_and_flags_reach_the_logs_and_metrics(console):
    logins = console.daemon.events("console_login")
    assert {(e["user"], e["customer"]) for e in logins} >= {("ed", "acme"), ("ann", "acme")}
    flagged = console.daemon.events("activity_flagged")
    assert flagged and flagged[0]["user"] == "ed" and flagged[0]["scope"] == "number"
    token = (console.tmp / "admin.token").read_text().strip()
    req = urllib.request.Request(console.base + "/metrics", headers={"Authorization": f"Bearer {token}"})
    text = urllib.request.urlopen(req, timeout=5).read().decode()
    values = {line.split()[0]: float(line.split()[1]) for line in text.splitlines() if line.startswith("edge_console_")}
    assert values["edge_console_logins_total"] >= 6 and values["edge_console_login_failures_total"] == 0
