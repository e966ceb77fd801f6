#!/usr/bin/env python3
"""The UI in a real browser (headless Chromium driven by Selenium).

Starts `loft ui` on a temporary LOFT_HOME, creates a quickstart run of a few
steps from the form, watches its loss chart gain points, reloads and finds
the same points and more, stops and resumes it, queues a second run,
compares the two, asks the chat and gets answers, and checks that no page
made a request to another origin. Saves a screenshot of each page.

usage: tools/ui-browser-test.py LOFT_BINARY [--screenshots DIR]
"""
import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time

from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException, TimeoutException
from selenium.webdriver.support.ui import WebDriverWait

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class UITest:
    def __init__(self, loft, shots):
        self.loft = os.path.abspath(loft)
        self.shots = shots
        os.makedirs(shots, exist_ok=True)
        self.home = tempfile.mkdtemp(prefix="loft-ui-test-")
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.ui = None
        self.driver = None

    # -- setup -------------------------------------------------------------
    def start_ui(self):
        env = dict(os.environ, LOFT_HOME=self.home)
        self.ui_log = open(os.path.join(self.home, "ui.log"), "w")
        self.ui = subprocess.Popen([self.loft, "ui", "--port", str(self.port)], cwd=ROOT, env=env,
                                   stdout=self.ui_log, stderr=subprocess.STDOUT)
        for _ in range(300):
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                if self.ui.poll() is not None:
                    raise SystemExit("loft ui exited: " + open(os.path.join(self.home, "ui.log")).read())
                time.sleep(0.1)
        raise SystemExit("loft ui did not start listening")

    def stop_ui(self):
        if self.ui and self.ui.poll() is None:
            self.ui.terminate()
            self.ui.wait(timeout=20)

    def start_browser(self):
        opts = webdriver.ChromeOptions()
        for a in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1360,1000",
                  "--disable-background-networking", "--disable-component-update", "--disable-default-apps",
                  "--disable-sync", "--no-first-run", "--disable-features=Translate,OptimizationHints,MediaRouter"]:
            opts.add_argument(a)
        for b in ["/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"]:
            if os.path.exists(b):
                opts.binary_location = b
                break
        opts.set_capability("goog:loggingPrefs", {"performance": "ALL"})
        service = None
        if shutil.which("chromedriver"):
            service = webdriver.ChromeService(executable_path=shutil.which("chromedriver"))
        self.driver = webdriver.Chrome(options=opts, service=service)
        self.driver.set_page_load_timeout(120)
        self.requested = []

    def collect_requests(self):
        for entry in self.driver.get_log("performance"):
            msg = json.loads(entry["message"])["message"]
            if msg.get("method") == "Network.requestWillBeSent":
                self.requested.append(msg["params"]["request"]["url"])

    def shot(self, name):
        path = os.path.join(self.shots, name + ".png")
        self.driver.save_screenshot(path)
        print("screenshot", path, flush=True)

    # -- helpers -----------------------------------------------------------
    def get(self, path):
        self.driver.get(self.base + path)
        self.collect_requests()

    def wait(self, what, seconds, cond):
        # A page that reloads itself (the run page does when its run stops)
        # leaves elements found a moment before stale: such a poll is retried,
        # not taken for a timeout.
        try:
            return WebDriverWait(self.driver, seconds, poll_frequency=0.5,
                                 ignored_exceptions=(NoSuchElementException, StaleElementReferenceException)
                                 ).until(lambda d: cond())
        except TimeoutException:
            self.shot("failed-" + re.sub(r"\W+", "-", what))
            print(open(os.path.join(self.home, "ui.log")).read()[-3000:])
            for log in sorted(os.popen(f"ls {self.home}/runs/*/train.log 2>/dev/null").read().split()):
                print("==", log, "\n", open(log).read()[-3000:])
            raise SystemExit(f"timed out waiting for {what}")

    def loss_points(self):
        for _ in range(20):
            try:
                els = self.driver.find_elements(By.CSS_SELECTOR, '[data-chart$="/loss.svg"] polyline[data-series="train loss"]')
                return int(els[0].get_attribute("data-points")) if els else 0
            except StaleElementReferenceException:
                time.sleep(0.5)  # the chart was redrawn or the page reloaded under us
        raise SystemExit("the loss chart kept changing under the test")

    def status(self):
        return self.driver.find_element(By.CSS_SELECTOR, "h1 .badge").text

    def new_run(self, name, steps, extra=None):
        self.get("/new")
        fields = {"name": name, "max_steps": str(steps), "save_steps": "1000", **(extra or {})}
        for key, value in fields.items():
            el = self.driver.find_element(By.ID, "f-" + key)
            el.clear()
            el.send_keys(value)
        self.driver.find_element(By.ID, "check").click()
        self.wait("the config check", 60, lambda: self.driver.find_elements(By.ID, "check-result"))
        result = self.driver.find_element(By.ID, "check-result")
        if "passes" not in result.text:
            errors = [e.text for e in self.driver.find_elements(By.CSS_SELECTOR, ".field-error")]
            raise SystemExit(f"the form did not pass its checks: {result.text} {errors}")
        print("check:", result.text, flush=True)
        self.shot("new-run")
        self.driver.find_element(By.ID, "start").click()
        self.wait("the run page", 30, lambda: "/runs/" in self.driver.current_url)
        self.collect_requests()
        return self.driver.current_url.rsplit("/", 1)[1]

    # -- the test ----------------------------------------------------------
    def run(self):
        self.start_ui()
        self.start_browser()
        first = self.new_run("first", 16)
        print("run", first, flush=True)
        self.wait("the first loss points", 600, lambda: self.loss_points() >= 3)
        seen = self.loss_points()
        print("points before reload:", seen, flush=True)
        self.shot("run-live")
        self.driver.refresh()
        self.collect_requests()
        after = self.loss_points()
        print("points right after reload:", after, flush=True)
        assert after >= seen, f"a reload lost points: {seen} before, {after} after"
        self.wait("more points after the reload", 300, lambda: self.loss_points() > after)

        # Stop (writes a checkpoint), then resume from it.
        self.driver.find_element(By.ID, "stop").click()
        self.wait("the stopped status", 300, lambda: self.status() == "stopped")
        # The page reloads itself once its run stops: the resume button is on the reloaded page.
        self.wait("the resume button", 30, lambda: self.driver.find_elements(By.ID, "resume"))
        stopped_at = self.loss_points()
        print("stopped at", stopped_at, "points", flush=True)
        assert stopped_at < 16, "the run finished before it could be stopped"
        self.shot("run-stopped")
        self.driver.find_element(By.ID, "resume").click()
        self.wait("the resumed run to finish", 900, lambda: self.status() == "done")
        self.driver.refresh()
        final = self.loss_points()
        print("final points:", final, flush=True)
        assert final == 16, f"the resumed run has {final} points, expected 16"
        self.shot("run-done")

        # A second run with another learning rate, then the comparison.
        second = self.new_run("second", 6, {"learning_rate": "2e-4"})
        self.wait("the second run to finish", 600, lambda: self.status() == "done")
        self.get("/")
        self.shot("runs")
        for box in self.driver.find_elements(By.CSS_SELECTOR, 'input[name="runs"]'):
            box.click()
        self.driver.find_element(By.CSS_SELECTOR, "#runs-form button").click()
        self.wait("the comparison", 30, lambda: self.driver.find_elements(By.ID, "config-diff"))
        self.collect_requests()
        series = self.driver.find_elements(By.CSS_SELECTOR, "#compare-charts .chart.wide polyline")
        assert len(series) == 2, f"the overlay has {len(series)} lines"
        diff = self.driver.find_element(By.ID, "config-diff").text
        assert "learning_rate" in diff and "max_steps" in diff, diff
        self.shot("compare")

        # Chat: base and adapter side by side.
        self.get(f"/chat?run={first}")
        self.driver.find_element(By.ID, "ask").click()
        self.wait("both answers", 300, lambda: all("tokens in" in s.text for s in
                                                    self.driver.find_elements(By.CSS_SELECTOR, ".chat-side .info")))
        answers = [a.text for a in self.driver.find_elements(By.CSS_SELECTOR, ".chat-side .answer")]
        print("answers:", answers, flush=True)
        assert all(a.strip() for a in answers), answers
        self.shot("chat")

        self.get(f"/data?run={first}")
        self.wait("the data page", 120, lambda: self.driver.find_elements(By.ID, "truncated-share"))
        assert self.driver.find_elements(By.CSS_SELECTOR, "#row-text mark"), "no trained tokens highlighted"
        self.shot("data")
        self.get("/system")
        self.shot("system")
        self.get(f"/runs/{first}")
        self.shot("run-page")

        self.collect_requests()
        foreign = [u for u in self.requested if not (u.startswith(self.base + "/") or u.startswith("data:"))]
        assert not foreign, f"requests to another origin: {foreign}"
        print(f"{len(self.requested)} requests, all to {self.base}", flush=True)
        print("ui browser test: OK")

    def close(self):
        if self.driver:
            self.driver.quit()
        self.stop_ui()
        # The runs the UI started live in their own sessions and outlive it: stop any left.
        try:
            import signal
            import sqlite3
            db = sqlite3.connect(os.path.join(self.home, "loft.db"))
            for (pid,) in db.execute("SELECT pid FROM run WHERE status = 'running' AND pid IS NOT NULL"):
                # A run still going at the end is a failure to explain: its threads' stacks.
                if shutil.which("gdb"):
                    bt = subprocess.run(["gdb", "-batch", "-p", str(pid), "-ex", "thread apply all bt 12"],
                                        capture_output=True, text=True, timeout=120)
                    print(f"== stacks of run process {pid}\n" + "\n".join(bt.stdout.splitlines()[-150:]), flush=True)
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            db.close()
        except Exception as e:
            print("cleanup:", e)
        shutil.rmtree(self.home, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("loft")
    ap.add_argument("--screenshots", default=os.path.join(ROOT, "outputs", "ui-screenshots"))
    args = ap.parse_args()
    t = UITest(args.loft, args.screenshots)
    try:
        t.run()
    finally:
        t.close()


if __name__ == "__main__":
    main()
