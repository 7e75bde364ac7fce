"""A headless Chromium for end-to-end tests of the web page, driven with
W3C WebDriver through Debian's chromedriver (plain HTTP and JSON: no
client library). Blocking: call it from a thread while the reactor serves."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from typing import Any

from tests.support.servers import free_port

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
ELEMENT = "element-6066-11e4-a52e-4f735466cecf"
# As the machine's probe starts it: no sandbox (tests may run as root), no
# GPU, and none of the background traffic a closed network refuses.
CHROMIUM_ARGS = (
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--autoplay-policy=no-user-gesture-required",
    "--window-size=1280,800", "--mute-audio",
)


class WebDriverError(Exception):
    pass


def unavailable() -> str | None:
    """Why no browser test can run here, or None."""
    for program in (CHROMIUM, CHROMEDRIVER):
        if not os.access(program, os.X_OK):
            return (f"{program} is missing: `make test` installs Debian's chromium and "
                    "chromium-driver where it can (apt-get, as root)")
    return None


PORT_ATTEMPTS = 3


class Browser:
    """One chromedriver process and one headless Chromium session;
    ``time_zone`` (an IANA name) is the browser's own (TZ in its environment)."""

    def __init__(self, timeout: float = 30.0, time_zone: str | None = None) -> None:
        self.timeout = timeout
        self.environment = dict(os.environ)
        if time_zone is not None:
            self.environment["TZ"] = time_zone
        self.profile = tempfile.mkdtemp(prefix="recsvc-chromium-")
        self.log_path = os.path.join(self.profile, "chromedriver.log")
        self.session: str | None = None
        self.driver: subprocess.Popen | None = None
        try:
            # The free port may be taken before chromedriver binds it (other
            # tests open many connections): then it exits, and another is tried.
            for attempt in range(PORT_ATTEMPTS):
                self._start_driver()
                if self._wait_ready(last=attempt == PORT_ATTEMPTS - 1):
                    break
            value = self._call("POST", "/session", {"capabilities": {"alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": {
                    "binary": CHROMIUM,
                    "args": [*CHROMIUM_ARGS, f"--user-data-dir={self.profile}/profile"],
                },
            }}})
            self.session = value["sessionId"]
            self._call("POST", self._path("/timeouts"), {"script": int(timeout * 1000)})
        except BaseException:
            self.close()
            raise

    def _start_driver(self) -> None:
        port = free_port()
        self.base = f"http://127.0.0.1:{port}"
        self.driver = subprocess.Popen(
            [CHROMEDRIVER, f"--port={port}", "--allowed-ips=127.0.0.1",
             f"--log-path={self.log_path}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=self.environment)

    def _wait_ready(self, last: bool) -> bool:
        """True once chromedriver answers; False if it exited (and this is
        not the ``last`` attempt). Raises WebDriverError."""
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                if self._call("GET", "/status").get("ready"):
                    return True
            except (OSError, WebDriverError):
                pass
            if self.driver.poll() is not None and not last:
                return False
            if time.monotonic() > deadline or self.driver.poll() is not None:
                raise WebDriverError("chromedriver did not start")
            time.sleep(0.05)

    def _path(self, path: str) -> str:
        return f"/session/{self.session}{path}"

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode("utf-8")
        request = urllib.request.Request(self.base + path, data=data, method=method,
                                         headers={"content-type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout + 10) as response:
                return json.load(response).get("value")
        except urllib.error.HTTPError as error:
            value = json.load(error).get("value") or {}
            raise WebDriverError(f"{value.get('error')}: {str(value.get('message'))[:500]}") from None

    def go(self, url: str) -> None:
        self._call("POST", self._path("/url"), {"url": url})

    def run(self, script: str, *args: Any) -> Any:
        """A script's return value (a function body; ``arguments`` are args)."""
        return self._call("POST", self._path("/execute/sync"),
                          {"script": script, "args": list(args)})

    def run_async(self, script: str, *args: Any) -> Any:
        """An async script's result: it calls ``arguments[arguments.length - 1]``."""
        return self._call("POST", self._path("/execute/async"),
                          {"script": script, "args": list(args)})

    def find(self, css: str) -> dict[str, str]:
        element = self._call("POST", self._path("/element"),
                             {"using": "css selector", "value": css})
        return {ELEMENT: element[ELEMENT]}

    def click(self, element: dict[str, str]) -> None:
        self._call("POST", self._path(f"/element/{element[ELEMENT]}/click"), {})

    def type(self, element: dict[str, str], text: str) -> None:
        self._call("POST", self._path(f"/element/{element[ELEMENT]}/value"), {"text": text})

    def set_window(self, width: int, height: int) -> None:
        """The window's size, as a phone's (400 px) or a desktop's."""
        self._call("POST", self._path("/window/rect"), {"width": width, "height": height})

    def screenshot(self) -> bytes:
        return base64.b64decode(self._call("GET", self._path("/screenshot")))

    def close(self) -> None:
        try:
            if self.session is not None:
                self._call("DELETE", self._path(""))
        except (OSError, WebDriverError):
            pass
        finally:
            self.session = None
            if self.driver is not None:
                self.driver.terminate()
                try:
                    self.driver.wait(10)
                except subprocess.TimeoutExpired:
                    self.driver.kill()
                    self.driver.wait()
            shutil.rmtree(self.profile, ignore_errors=True)


def wait_for_search(row: str) -> str:
    """A script for `Browser.run_async` that resolves, once the page's
    search is done (or failed, or after 15 s), with ``row`` (a JavaScript
    expression of the row's ``tr``) for each row of the results."""
    return _WAIT_FOR_SEARCH.replace("ROW", row)


_WAIT_FOR_SEARCH = """
const done = arguments[arguments.length - 1], until = Date.now() + 15000;
(function wait() {
  const state = document.body.dataset.searchState;
  if (state === "done" || state === "error" || Date.now() > until) {
    done([...document.querySelectorAll("#results tbody tr")].map(tr => ROW));
  } else setTimeout(wait, 50);
})();
"""
