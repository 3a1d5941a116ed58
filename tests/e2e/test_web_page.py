"""
The web page at ``/``, driven in two headless Chromium browsers.

Alice and Bob sign in through the dev token form of the suite's real server,
under names of their own so that no other test's messages change the ticks.
The page is read through the ``data-`` attributes it keeps for this purpose:
``status`` on one's own messages, ``online`` on the presence dot.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from tests.e2e.deployment import Deployment

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
TIMEOUT = 15.0
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1000,700",
)

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="needs Chromium at /usr/bin/chromium: apt-get install chromium "
    "chromium-driver",
)

OpenBrowser = Callable[[], WebDriver]


@pytest.fixture
def open_browser(tmp_path: Path) -> Iterator[OpenBrowser]:
    """
    Start headless browsers, each on a fresh profile; all quit at the end.
    """
    opened: list[WebDriver] = []

    def open_one() -> WebDriver:
        options = webdriver.ChromeOptions()
        options.binary_location = str(CHROMIUM)
        for flag in CHROMIUM_FLAGS:
            options.add_argument(flag)
        options.add_argument(f"--user-data-dir={tmp_path / f'browser-{len(opened)}'}")
        # A driver path of our own also keeps Selenium Manager off the network.
        service = Service(executable_path=str(CHROMEDRIVER))
        opened.append(webdriver.Chrome(options=options, service=service))
        return opened[-1]

    yield open_one
    for number, browser in enumerate(opened):
        # What each page last showed, for whoever reads a failure.
        browser.save_screenshot(str(tmp_path / f"browser-{number}.png"))
        browser.quit()


@pytest.fixture
def names() -> tuple[str, str]:
    suffix = uuid.uuid4().hex[:8]
    return f"alice-{suffix}", f"bob-{suffix}"


def wait_until(
    browser: WebDriver, check: Callable[[WebDriver], bool], what: str
) -> None:
    waiting = WebDriverWait(
        browser, TIMEOUT, ignored_exceptions=[StaleElementReferenceException]
    )
    waiting.until(check, message=f"waiting for {what}")


def sign_in(browser: WebDriver, base_url: str, user: str) -> WebDriver:
    browser.get(f"{base_url}/")
    browser.find_element(By.ID, "user").send_keys(user, Keys.ENTER)
    wait_until(browser, lambda b: link_of(b) == "online", f"{user}'s socket")
    return browser


def open_chat(browser: WebDriver, peer: str) -> None:
    browser.find_element(By.ID, "peer-input").send_keys(peer, Keys.ENTER)
    wait_until(browser, lambda b: b.find_element(By.ID, "body").is_enabled(), peer)


def write(browser: WebDriver, body: str) -> None:
    browser.find_element(By.ID, "body").send_keys(body, Keys.ENTER)


def link_of(browser: WebDriver) -> str:
    return str(browser.find_element(By.ID, "link").text)


# The page redraws a chat whole, so it is read in one script, not node by node.
BODIES = "return [...document.querySelectorAll('#messages li')]" + (
    ".map((item) => item.firstChild.textContent)"
)
TICKS = "return [...document.querySelectorAll('#messages li.mine')]" + (
    ".map((item) => item.dataset.status)"
)


def bodies(browser: WebDriver) -> list[str]:
    return [str(body) for body in browser.execute_script(BODIES)]


def ticks(browser: WebDriver) -> list[str]:
    return [str(status) for status in browser.execute_script(TICKS)]


def peer_online(browser: WebDriver) -> str:
    return browser.find_element(By.ID, "presence").get_attribute("data-online") or ""


def test_a_message_is_seen_and_its_ticks_turn_to_read(
    deployment: Deployment, open_browser: OpenBrowser, names: tuple[str, str]
) -> None:
    alice_id, bob_id = names
    alice = sign_in(open_browser(), deployment.base_url, alice_id)
    bob = sign_in(open_browser(), deployment.base_url, bob_id)
    text = "hi bob <b>not bold</b>"

    # Alice writes; Bob's device takes it, but he has not opened the chat yet.
    open_chat(alice, bob_id)
    write(alice, text)
    wait_until(alice, lambda b: ticks(b) == ["delivered"], "a delivered tick")
    entry = f"#conversations li[data-peer='{alice_id}']"
    badge = f"{entry} .badge"
    wait_until(bob, lambda b: bool(b.find_elements(By.CSS_SELECTOR, badge)), "badge")

    # Bob opens it: he reads the text as text, and Alice sees it read.
    bob.find_element(By.CSS_SELECTOR, entry).click()
    wait_until(bob, lambda b: bodies(b) == [text], "Alice's message at Bob")
    assert not bob.find_elements(By.CSS_SELECTOR, "#messages b")
    wait_until(alice, lambda b: ticks(b) == ["read"], "a read tick")
    assert peer_online(alice) == "true"
    assert peer_online(bob) == "true"

    # Bob answers, and Alice has it live.
    write(bob, "hello alice")
    wait_until(alice, lambda b: bodies(b) == [text, "hello alice"], "Bob's answer")
    wait_until(bob, lambda b: ticks(b) == ["read"], "Bob's read tick")

    # Bob leaves the page: Alice's dot for him goes out.
    bob.get("about:blank")
    wait_until(alice, lambda b: peer_online(b) == "false", "Bob offline")


def test_a_refused_message_is_shown_and_the_socket_stays_usable(
    deployment: Deployment, open_browser: OpenBrowser, names: tuple[str, str]
) -> None:
    alice_id, bob_id = names
    alice = sign_in(open_browser(), deployment.base_url, alice_id)
    open_chat(alice, bob_id)

    write(alice, "x" * 4097)
    toast = alice.find_element(By.ID, "toast")
    wait_until(alice, lambda b: toast.is_displayed(), "the error")
    write(alice, "short enough")

    assert "body_too_large" in toast.text
    wait_until(alice, lambda b: sorted(ticks(b)) == ["failed", "sent"], "both ticks")
    assert link_of(alice) == "online"
