#!/usr/bin/env python3
"""End-to-end tests of the real Canopy window, driven through tauri-driver and WebKitWebDriver.

Run by scripts/e2e-gui, which starts Xvfb and tauri-driver and prepares a fresh data folder.
Environment:
  CANOPY_APP          path of the app binary (required)
  CANOPY_HOME         the fresh data folder the app uses (required; SmolLM2 is in its models folder)
  CANOPY_E2E_SHOTS    where to save screenshots (default docs/screenshots)
  CANOPY_E2E_FAILURES where to save a screenshot of each failure (default target/e2e-failures)
  CANOPY_E2E_TESTS    comma-separated names of the tests to run, in their usual order (default: all)
  WEBDRIVER_URL       default http://127.0.0.1:4444
"""
import functools
import hashlib
import http.server
import json
import os
import socket
import urllib.request
import pathlib
import shutil
import sys
import tempfile
import threading
import time
import traceback

from hub import Hub, Repo
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.common.options import ArgOptions
from selenium.webdriver.remote.file_detector import UselessFileDetector
from selenium.webdriver.support.ui import Select

APP = os.environ["CANOPY_APP"]
HOME = pathlib.Path(os.environ["CANOPY_HOME"])
SHOTS = pathlib.Path(os.environ.get("CANOPY_E2E_SHOTS", "docs/screenshots"))
FAILURES = pathlib.Path(os.environ.get("CANOPY_E2E_FAILURES", "target/e2e-failures"))
URL = os.environ.get("WEBDRIVER_URL", "http://127.0.0.1:4444")
SMOLLM = HOME / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
QWEN_DRAFT = HOME / "models" / "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
QWEN_TARGET = HOME / "models" / "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
PROMPT = "Name three trees that grow in Europe."
# The app reads HF_ENDPOINT (set by scripts/e2e-gui) at start; the local hub listens there.
HUB_PORT = int(os.environ.get("CANOPY_E2E_HUB_PORT", "0"))


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
    wait_for(lambda: driver.execute_script("return document.body.dataset.shown") == screen, 30, f"the {screen} screen")


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


def sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def test_library_download_from_url(driver):
    """Downloads a model from a local HTTP server, verified by its sha256, and finds it registered."""
    served = pathlib.Path(tempfile.mkdtemp(prefix="canopy-served-"))
    mirror = served / "SmolLM2-mirror.gguf"
    try:
        os.link(SMOLLM, mirror)
    except OSError:
        shutil.copy(SMOLLM, mirror)
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(Quiet, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        go(driver, "library")
        find(driver, "download-source").send_keys(f"http://127.0.0.1:{server.server_port}/{mirror.name}")
        find(driver, "download").click()
        wait_for(lambda: any("sha256" in b for b in banners(driver)), 10, "a URL outside the catalog to need a sha256")
        for close in driver.find_elements(By.CSS_SELECTOR, ".banner-close"):
            close.click()
        find(driver, "download-sha").send_keys(sha256(SMOLLM))
        find(driver, "download").click()
        wait_for(lambda: any("SmolLM2-mirror" in text(r) for r in visible(driver, "model-row")), 120, "the downloaded model")
        no_error_banner(driver)
        assert (HOME / "models" / mirror.name).exists(), "the download is not in the models folder"
        usage = text(find(driver, "library-usage"))
        assert usage.startswith("2 models"), usage
    finally:
        server.shutdown()
        shutil.rmtree(served, ignore_errors=True)
    # Remove it again so that the chat's model list stays as the user set it up.
    row = next(r for r in visible(driver, "model-row") if "SmolLM2-mirror" in text(r))
    row.find_element(By.CSS_SELECTOR, "[data-testid=remove]").click()
    wait_for(lambda: visible(driver, "confirm-remove"), 5, "the remove confirmation")[0].click()
    wait_for(lambda: not any("SmolLM2-mirror" in text(r) for r in visible(driver, "model-row")), 10, "the model to be removed")


def remove_models(driver, names):
    for name in names:
        row = next(r for r in visible(driver, "model-row") if name in text(r))
        row.find_element(By.CSS_SELECTOR, "[data-testid=remove]").click()
        wait_for(lambda: visible(driver, "confirm-remove"), 5, "the remove confirmation")[0].click()
        wait_for(lambda: not any(name in text(r) for r in visible(driver, "model-row")), 10, f"{name} to be removed")


def test_hub_search_and_pair_download(driver):
    """Searches a local hub, lists a repository's files with fit badges, downloads a target with the
    draft offered for it (verified against the listed sha256), and saves and removes a token."""
    assert HUB_PORT, "CANOPY_E2E_HUB_PORT is not set (scripts/e2e-gui sets it with HF_ENDPOINT)"
    target_repo = "bartowski/SmolLM2-1.7B-Instruct-GGUF"
    # Stand-ins: SmolLM2-135M's bytes under the names of the catalog's SmolLM2 pair; an F16 file
    # listed at 8 TB (never downloaded) shows a "too big" badge.
    hub = Hub([
        Repo(target_repo, {"SmolLM2-1.7B-Instruct-Q4_K_M.gguf": (SMOLLM, None),
                           "SmolLM2-1.7B-Instruct-F16.gguf": (None, 8 * 10**12)}),
        Repo("bartowski/SmolLM2-135M-Instruct-GGUF", {"SmolLM2-135M-Instruct-Q4_K_M.gguf": (SMOLLM, None)}),
    ], port=HUB_PORT)
    target, draft = "SmolLM2-1.7B-Instruct-Q4_K_M", "SmolLM2-135M-Instruct-Q4_K_M"
    try:
        go(driver, "library")
        find(driver, "hub-query").send_keys("smollm2")
        find(driver, "hub-search").click()
        repos = wait_for(lambda: len(visible(driver, "hub-repo")) == 2 and visible(driver, "hub-repo"), 20, "two search results")
        next(r for r in repos if r.get_attribute("data-id") == target_repo).click()
        files = wait_for(lambda: len(visible(driver, "hub-file")) == 2 and visible(driver, "hub-file"), 20, "the repository's files")
        fits = {f.get_attribute("data-source").rsplit("/", 1)[-1]: text(f.find_element(By.CSS_SELECTOR, "[data-testid=hub-fit]")) for f in files}
        assert fits["SmolLM2-1.7B-Instruct-F16.gguf"] == "Too big", fits
        assert fits["SmolLM2-1.7B-Instruct-Q4_K_M.gguf"] in ("Fits", "Tight fit"), fits
        groups = [g.get_attribute("data-quant") for g in visible(driver, "hub-group")]
        assert groups == ["Q4_K_M", "F16"], groups
        quant_row = next(f for f in files if target in f.get_attribute("data-source"))
        quant_row.find_element(By.CSS_SELECTOR, ".hub-file-name").click()
        drafts = wait_for(lambda: visible(driver, "hub-draft"), 10, "the drafts offered for the target")
        assert draft.replace("-Q4_K_M", "") in text(drafts[0]), text(drafts[0])
        assert "catalog's pair" in text(drafts[0]), text(drafts[0])
        screenshot(driver, "library-hub")
        drafts[0].find_element(By.CSS_SELECTOR, "[data-testid=hub-download-pair]").click()
        wait_for(lambda: all(any(n in text(r) for r in visible(driver, "model-row")) for n in (target, draft)), 120,
                 "the target and its draft in the library")
        no_error_banner(driver)
        for name in (target, draft):
            assert (HOME / "models" / f"{name}.gguf").exists(), f"{name} is not in the models folder"
        assert any(p.startswith("/cdn/") for p in hub.requests), "nothing was downloaded from the hub"
        wait_for(lambda: visible(driver, "hub-in-library"), 10, "the target marked as in the library")

        find(driver, "hub-token").send_keys("two words")
        find(driver, "hub-token-save").click()
        wait_for(lambda: any("token" in b for b in banners(driver)), 5, "a malformed token to be refused")
        for close in driver.find_elements(By.CSS_SELECTOR, ".banner-close"):
            close.click()
        find(driver, "hub-token").clear()
        find(driver, "hub-token").send_keys("hf_e2eTestToken123")
        find(driver, "hub-token-save").click()
        wait_for(lambda: "token is saved" in text(find(driver, "hub-token-status")), 5, "the token to be saved")
        saved = HOME / "hub-token"
        assert saved.read_text().strip() == "hf_e2eTestToken123"
        assert saved.stat().st_mode & 0o077 == 0, oct(saved.stat().st_mode)
        assert find(driver, "hub-token").get_attribute("value") == "", "the token is shown back"
        find(driver, "hub-token-remove").click()
        wait_for(lambda: "token is saved" not in text(find(driver, "hub-token-status")), 5, "the token to be removed")
        assert not saved.exists()
    finally:
        hub.close()
    remove_models(driver, [target, draft])


def test_chat_streams_a_reply(driver):
    go(driver, "chat")
    target = wait_for(lambda: visible(driver, "target-select"), 10, "the model selector")[0]
    assert "SmolLM2" in text(target) or "smollm" in text(target).lower(), text(target)
    set_max_tokens(driver, 120)
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
    # Where the target ran, in words, from the generation's start event.
    placement = text(find(driver, "status-placement")).strip()
    assert placement, f"no placement in the status bar: {stats}"
    title = text(driver.find_element(By.CSS_SELECTOR, '[data-testid="conversation"] .conv-title'))
    assert title.startswith("Name three trees"), title
    # Colour the reply by provenance for the screenshot.
    toggle = find(driver, "show-sources")
    if not toggle.is_selected():
        toggle.click()
    wait_for(lambda: driver.find_elements(By.CSS_SELECTOR, "[data-testid=message-assistant] .runs"), 5, "the provenance colouring")
    screenshot(driver, "chat-plain")


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
    # The default target was timed, so the profile says where it ran.
    assert text(find(driver, "profile-placement")).startswith("Target placement: "), prediction
    screenshot(driver, "profile-quick")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_local_server(driver):
    """Turns the OpenAI-compatible server on from the settings panel, lists its model, and turns it off."""
    go(driver, "chat")
    if not visible(driver, "settings"):
        find(driver, "toggle-settings").click()
    wait_for(lambda: visible(driver, "server-apply"), 5, "the server settings")
    port = free_port()
    enabled = find(driver, "server-enabled")
    if not enabled.is_selected():
        enabled.click()
    find(driver, "server-port").clear()
    find(driver, "server-port").send_keys(str(port))
    find(driver, "server-key").clear()
    find(driver, "server-key").send_keys("e2e-key")
    find(driver, "server-apply").click()
    address = wait_for(lambda: "http://" in text(find(driver, "server-address")) and text(find(driver, "server-address")), 20,
                       "the server address")
    assert f"http://127.0.0.1:{port}/v1" in address, address
    no_error_banner(driver)
    request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/models", headers={"Authorization": "Bearer e2e-key"})
    with urllib.request.urlopen(request, timeout=10) as response:
        listing = json.load(response)
    assert listing.get("data"), listing
    enabled = find(driver, "server-enabled")
    if enabled.is_selected():
        enabled.click()
    find(driver, "server-key").clear()
    find(driver, "server-apply").click()
    wait_for(lambda: "Not running" in text(find(driver, "server-address")), 20, "the server to stop")
    no_error_banner(driver)
    find(driver, "toggle-settings").click()


def set_settings(driver, **fields):
    if not visible(driver, "settings"):
        find(driver, "toggle-settings").click()
    wait_for(lambda: visible(driver, "setting-max_tokens"), 5, "the settings panel")
    for name, value in fields.items():
        def fill(name=name, value=str(value)):
            # Found again on every try: a field the pane re-rendered meanwhile is detached.
            field = find(driver, f"setting-{name}")
            driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", field)
            field.clear()
            field.send_keys(value)
            return find(driver, f"setting-{name}").get_attribute("value") == value
        wait_for(fill, 10, f"the {name} setting to take {value}")
    find(driver, "save-settings").click()
    find(driver, "toggle-settings").click()


def set_max_tokens(driver, n):
    set_settings(driver, max_tokens=n)


def worker_pids():
    """Process ids of this app's inference workers (children started with --worker for our data folder)."""
    pids = []
    for proc in pathlib.Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            env = (proc / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if len(argv) >= 2 and argv[1] == b"--worker" and f"CANOPY_HOME={HOME}".encode() in env:
            pids.append(int(proc.name))
    return pids


def test_worker_crash_keeps_the_conversation(driver):
    go(driver, "chat")
    find(driver, "search").clear()
    find(driver, "new-chat").click()
    set_max_tokens(driver, 400)
    find(driver, "composer").send_keys("Write a long story about a forest and the animals living in it.")
    find(driver, "send").click()
    wait_for(lambda: driver.execute_script(
        "const m = document.querySelector('[data-testid=message-streaming] .runs'); return m && m.textContent.length > 20;"),
        120, "the reply to start streaming")
    pids = wait_for(worker_pids, 10, "the worker process")
    for pid in pids:
        os.kill(pid, 9)
    wait_for(lambda: any("stopped unexpectedly" in b for b in banners(driver)), 30, "the crash to be reported")
    assert driver.execute_script("return document.body.dataset.ready") == "true", "the window went away"
    reply = wait_for(lambda: visible(driver, "message-assistant"), 10, "the saved partial reply")[0]
    assert "interrupted" in text(reply), text(reply)
    assert len(text(reply)) > 20
    screenshot(driver, "chat-worker-stopped")
    driver.find_element(By.CSS_SELECTOR, "[data-testid=banner-error] .banner-action").click()
    wait_for(lambda: any("restarted" in text(b) for b in find(driver, "banner-info", many=True)), 10, "the restart notice")
    # Regenerate answers the same message again on a new branch, with a fresh worker.
    set_max_tokens(driver, 24)
    find(driver, "regenerate").click()
    wait_for(lambda: driver.execute_script(
        "return !document.querySelector('[data-testid=message-streaming]') &&"
        " !!document.querySelector('[data-testid=message-assistant] [data-testid=branch]');"), 120, "the regenerated branch")
    no_error_banner(driver)
    assert "2/2" in text(find(driver, "branch"))
    # Edit and resend: the edited prompt becomes a sibling of the original, with its own reply.
    find(driver, "edit").click()
    area = wait_for(lambda: visible(driver, "edit-input"), 5, "the edit box")[0]
    area.clear()
    area.send_keys("Write a haiku about moss.")
    find(driver, "edit-send").click()
    wait_for(lambda: driver.execute_script(
        "return !document.querySelector('[data-testid=message-streaming]') &&"
        " !!document.querySelector('[data-testid=message-user] [data-testid=branch]') &&"
        " document.querySelectorAll('[data-testid=message-assistant]').length === 1;"), 120, "the edited branch")
    no_error_banner(driver)
    assert "haiku about moss" in text(find(driver, "message-user"))
    assert "2/2" in text(find(driver, "message-user").find_element(By.CSS_SELECTOR, "[data-testid=branch]"))


def choose(driver, testid, label):
    """Picks `label` in the select `testid`, again if the screen re-rendered it meanwhile."""
    def attempt():
        Select(find(driver, testid)).select_by_visible_text(label)
        return True
    wait_for(attempt, 20, f"{label} to be chosen in {testid}")


def test_speculative_pair(driver):
    """The Qwen2.5-Coder pair: pairing reasons, a profile with a real tree, a reply drafted by the small model."""
    go(driver, "library")
    for path in (QWEN_DRAFT, QWEN_TARGET):
        field = find(driver, "import-path")
        field.clear()
        field.send_keys(str(path))
        find(driver, "import").click()
        wait_for(lambda: any(path.stem in text(r) for r in visible(driver, "model-row")), 30, f"{path.name} in the library")
    target_row = next(r for r in visible(driver, "model-row") if QWEN_TARGET.stem in text(r))
    target_row.find_element(By.CSS_SELECTOR, "[data-testid=inspect]").click()
    wait_for(lambda: visible(driver, "pairings"), 20, "the pairing view")
    wait_for(lambda: "✓" in text(find(driver, "pairings")) and "✕" in text(find(driver, "pairings")), 20,
             "a compatible and a refused draft")
    no_error_banner(driver)
    screenshot(driver, "library-pairing")

    go(driver, "chat")
    find(driver, "new-chat").click()
    choose(driver, "target-select", QWEN_TARGET.stem)
    wait_for(lambda: any(QWEN_DRAFT.stem in text(o) and o.is_enabled()
                         for o in find(driver, "draft-select").find_elements(By.TAG_NAME, "option")), 20, "the compatible draft")
    refused = text(find(driver, "draft-select"))
    assert "SmolLM2" in refused, f"the refused draft is not listed with its reason: {refused}"
    choose(driver, "draft-select", QWEN_DRAFT.stem)
    set_settings(driver, max_tokens=48, plan="tree:16", temperature=0)
    find(driver, "composer").send_keys("Write a Python function that reverses a string.")
    find(driver, "send").click()
    wait_for(lambda: driver.execute_script(
        "return !document.querySelector('[data-testid=message-streaming]') &&"
        " document.querySelectorAll('[data-testid=message-assistant]').length > 0;"), 600, "the speculative reply", interval=0.2)
    no_error_banner(driver)
    stats = text(find(driver, "message-assistant"))
    assert "accepted/step" in stats, stats
    toggle = find(driver, "show-sources")
    if not toggle.is_selected():
        toggle.click()
    wait_for(lambda: driver.find_elements(By.CSS_SELECTOR, "[data-testid=message-assistant] .runs .prov-draft"), 5, "draft-coloured tokens")
    screenshot(driver, "chat")

    go(driver, "profile")
    choose(driver, "profile-target", QWEN_TARGET.stem)
    wait_for(lambda: any(QWEN_DRAFT.stem in text(o) and o.is_enabled()
                         for o in find(driver, "profile-draft").find_elements(By.TAG_NAME, "option")), 20,
             "the compatible draft in the profile")
    choose(driver, "profile-draft", QWEN_DRAFT.stem)
    find(driver, "run-quick").click()
    wait_for(lambda: "done" in find(driver, "step-plan").get_attribute("class") or banners(driver), 600, "the pair profile", interval=0.5)
    no_error_banner(driver)
    assert "tok/s" in text(find(driver, "prediction"))
    # The planner may keep plain decoding when a pass over n tokens costs about n times one pass
    # (a busy CPU); either way the chosen tree is shown.
    tree = find(driver, "chosen-tree")
    assert tree.find_elements(By.CSS_SELECTOR, "svg.tree circle") or "plain decoding" in text(tree), text(tree)
    screenshot(driver, "profile")



def main():
    failures = 0
    first = [test_library_import_and_inspect, test_library_download_from_url, test_hub_search_and_pair_download,
             test_chat_streams_a_reply, test_quick_profile,
             test_local_server]
    second = [test_conversation_survives_restart, test_worker_crash_keeps_the_conversation]
    groups = [first, second]
    if QWEN_DRAFT.exists() and QWEN_TARGET.exists():
        groups.append([test_speculative_pair])
    else:
        print("(the Qwen2.5-Coder pair is not in the models folder: skipping the speculative pair scenario)")
    only = [name for name in os.environ.get("CANOPY_E2E_TESTS", "").split(",") if name]
    if only:
        known = {test.__name__ for group in groups for test in group}
        unknown = [name for name in only if name not in known]
        if unknown:
            print(f"unknown test(s) in CANOPY_E2E_TESTS: {', '.join(unknown)}")
            return 1
        groups = [[test for test in group if test.__name__ in only] for group in groups]
        groups = [group for group in groups if group]
    for group in groups:
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
