#!/usr/bin/env python3
"""End-to-end tests of the real Canopy window, driven through tauri-driver and WebKitWebDriver.

Run by scripts/e2e-gui, which starts Xvfb and tauri-driver and prepares a fresh data folder.
Environment:
  CANOPY_APP          path of the app binary (required)
  CANOPY_HOME         the fresh data folder the app uses (required; SmolLM2 is in its models folder)
  CANOPY_E2E_SHOTS    where to save screenshots (default docs/screenshots)
  CANOPY_E2E_FAILURES where to save a screenshot of each failure (default target/e2e-failures)
  WEBDRIVER_URL       default http://127.0.0.1:4444
"""
import os
import pathlib
import sys
import time
import traceback

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.common.options import ArgOptions
from selenium.webdriver.remote.file_detector import UselessFileDetector

APP = os.environ["CANOPY_APP"]
HOME = pathlib.Path(os.environ["CANOPY_HOME"])
SHOTS = pathlib.Path(os.environ.get("CANOPY_E2E_SHOTS", "docs/screenshots"))
FAILURES = pathlib.Path(os.environ.get("CANOPY_E2E_FAILURES", "target/e2e-failures"))
URL = os.environ.get("WEBDRIVER_URL", "http://127.0.0.1:4444")
SMOLLM = HOME / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
PROMPT = "Name three trees that grow in Europe."


def start():
    options = ArgOptions()
    options.set_capability("tauri:options", {"application": APP})
    options.set_capability("browserName", "wry")
    driver = webdriver.Remote(command_executor=URL, options=options)
    # Typed paths are text for the app, not files to upload through the driver.
    driver.file_detector = UselessFileDetector()
    driver.set_window_size(1320, 860)
    wait_for(lambda: driver.execute_script("return document.body.dataset.ready") == "true", 30, "the window to start")
    return driver


def wait_for(check, timeout, what, interval=0.1):
    deadline = time.monotonic() + timeout
    last_error = None
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except (StaleElementReferenceException, WebDriverException) as err:
            last_error = err
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}" + (f" ({last_error})" if last_error else ""))


def find(driver, testid, many=False):
    selector = f'[data-testid="{testid}"]'
    return driver.find_elements(By.CSS_SELECTOR, selector) if many else driver.find_element(By.CSS_SELECTOR, selector)


def visible(driver, testid):
    return [e for e in find(driver, testid, many=True) if e.is_displayed()]


def text(element):
    """The element's text content (WebDriver's rendered text drops ellipsised spans in WebKit)."""
    return element.get_attribute("textContent") or ""


def banners(driver):
    return [text(e).rstrip("×") for e in find(driver, "banner-error", many=True)]


def no_error_banner(driver):
    errors = banners(driver)
    assert not errors, f"error banner shown: {errors}"


def screenshot(driver, name, folder=None):
    # Wait two animation frames so the picture shows the current DOM, not the previous frame.
    driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "requestAnimationFrame(() => requestAnimationFrame(() => done(true)));"
    )
    folder = folder or SHOTS
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    driver.save_screenshot(str(path))
    print(f"  saved {path}")


def go(driver, screen):
    find(driver, f"nav-{screen}").click()
    wait_for(lambda: driver.execute_script("return document.body.dataset.screen") == screen, 5, f"the {screen} screen")


def test_library_import_and_inspect(driver):
    go(driver, "library")
    wait_for(lambda: visible(driver, "library-empty"), 10, "the empty library")
    field = find(driver, "import-path")
    field.send_keys("not-a-path.gguf")
    find(driver, "import").click()
    wait_for(lambda: any("absolute" in b for b in banners(driver)), 5, "the bad path to be refused")
    for close in driver.find_elements(By.CSS_SELECTOR, ".banner-close"):
        close.click()
    field.clear()
    field.send_keys(str(SMOLLM))
    find(driver, "import").click()
    rows = wait_for(lambda: visible(driver, "model-row"), 20, "the imported model row")
    assert "SmolLM2" in text(rows[0]) or "smollm" in text(rows[0]).lower(), text(rows[0])
    no_error_banner(driver)
    wait_for(lambda: "general.architecture" in text(find(driver, "metadata")), 20, "the metadata table")
    assert "llama" in text(find(driver, "metadata"))
    screenshot(driver, "library")


def test_chat_streams_a_reply(driver):
    go(driver, "chat")
    target = wait_for(lambda: visible(driver, "target-select"), 10, "the model selector")[0]
    assert "SmolLM2" in text(target) or "smollm" in text(target).lower(), text(target)
    composer = find(driver, "composer")
    composer.send_keys(PROMPT)
    find(driver, "send").click()
    # The reply must arrive in pieces: see the streaming message with some, then more, text.
    seen = []

    def streamed():
        live = driver.execute_script(
            "const m = document.querySelector('[data-testid=message-streaming] .runs');"
            "return m ? m.textContent : null;"
        )
        if live:
            seen.append(len(live))
        done = driver.execute_script(
            "return !document.querySelector('[data-testid=message-streaming]') &&"
            " document.querySelectorAll('[data-testid=message-assistant]').length > 0;"
        )
        if live and len(set(seen)) >= 2 and not getattr(streamed, "shot", False):
            streamed.shot = True
            screenshot(driver, "chat-streaming")
        return done

    wait_for(streamed, 180, "the reply to finish", interval=0.05)
    no_error_banner(driver)
    assert len(set(seen)) >= 2, f"the reply did not stream (lengths seen: {sorted(set(seen))})"
    reply = find(driver, "message-assistant")
    assert text(reply).strip(), "the reply is empty"
    stats = text(find(driver, "stats"))
    assert "tok/s" in stats, stats
    title = text(driver.find_element(By.CSS_SELECTOR, '[data-testid="conversation"] .conv-title'))
    assert title.startswith("Name three trees"), title
    # Colour the reply by provenance for the screenshot.
    toggle = find(driver, "show-sources")
    if not toggle.is_selected():
        toggle.click()
    wait_for(lambda: driver.find_elements(By.CSS_SELECTOR, "[data-testid=message-assistant] .runs"), 5, "the provenance colouring")
    screenshot(driver, "chat")


def test_conversation_survives_restart(driver):
    conversations = wait_for(lambda: visible(driver, "conversation"), 10, "the saved conversation")
    assert any(text(c).startswith("Name three trees") for c in conversations), [text(c) for c in conversations]
    conversations[0].click()
    wait_for(lambda: visible(driver, "message-assistant"), 10, "the saved reply")
    assert PROMPT in text(find(driver, "message-user"))
    assert text(find(driver, "message-assistant")).strip()
    # Search finds it too.
    find(driver, "search").send_keys("Europe")
    hits = wait_for(lambda: visible(driver, "search-hit"), 10, "a search hit")
    assert "Europe" in text(hits[0])
    no_error_banner(driver)


def test_quick_profile(driver):
    go(driver, "profile")
    wait_for(lambda: visible(driver, "run-quick"), 10, "the profile screen")
    find(driver, "run-quick").click()
    wait_for(lambda: "done" in find(driver, "step-plan").get_attribute("class") or banners(driver), 300, "the quick profile", interval=0.5)
    no_error_banner(driver)
    prediction = text(find(driver, "prediction"))
    assert "tok/s" in prediction, prediction
    screenshot(driver, "profile")


def main():
    failures = 0
    first = [test_library_import_and_inspect, test_chat_streams_a_reply, test_quick_profile]
    second = [test_conversation_survives_restart]
    for group in (first, second):
        driver = start()
        try:
            for test in group:
                print(f"- {test.__name__}")
                started = time.monotonic()
                try:
                    test(driver)
                    print(f"  ok ({time.monotonic() - started:.1f}s)")
                except Exception:  # noqa: BLE001 - report every failure and go on
                    failures += 1
                    traceback.print_exc()
                    try:
                        screenshot(driver, test.__name__, FAILURES)
                    except Exception:  # noqa: BLE001
                        pass
        finally:
            driver.quit()
    print("all end-to-end tests passed" if failures == 0 else f"{failures} end-to-end test(s) failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
