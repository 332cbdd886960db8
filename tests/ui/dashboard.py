"""dashboard.py - drives the taskmill dashboard in headless Chromium (Selenium + chromedriver).

Called by test_dashboard.sh with the server's URL, three tokens (ADMIN, and the users ALICE and
BOB), alice's tasks (FAILED_ID failed, BATCH_ID a batch), a long clip (LONG_FILE) it submits
as alice with curl once the admin's page is open (LONG_ID then), a clip for
bob's upload (UPLOAD_FILE) and a folder for screenshots (SHOTS). Prints ok:/FAIL: lines like the
shell tests and exits 1 when a check failed. Every wait is for a condition, with a deadline.
"""
import json
import os
import subprocess
import sys
import time
import urllib.request

from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

URL = os.environ["URL"]
ADMIN, ALICE, BOB = os.environ["ADMIN"], os.environ["ALICE"], os.environ["BOB"]
FAILED_ID, BATCH_ID = os.environ["FAILED_ID"], os.environ["BATCH_ID"]
LONG_FILE = os.environ["LONG_FILE"]
LONG_ID = ""
UPLOAD_FILE, SHOTS = os.environ["UPLOAD_FILE"], os.environ["SHOTS"]
failures = 0


def ok(what):
    print("ok: " + what, flush=True)


def fail(what):
    global failures
    failures += 1
    print("FAIL: " + what, flush=True)


def check(what, cond):
    (ok if cond else fail)(what)
    return cond


def api(method, path, token):
    """The server's answer as (status, JSON body or None), straight from the API."""
    req = urllib.request.Request(URL + path, method=method,
                                 headers={"Authorization": "Bearer " + token})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def wait_for(what, fn, seconds=60):
    """Polls fn until it returns something true; that value, or None after a failed check."""
    deadline = time.monotonic() + seconds
    last_error = None
    while time.monotonic() < deadline:
        try:
            v = fn()
            if v:
                ok(what)
                return v
        except WebDriverException as e:  # an element redrawn between two reads
            last_error = e.msg
        time.sleep(0.2)
    fail(what + " (not within %d s%s)" % (seconds, "; " + str(last_error) if last_error else ""))
    return None


def submit_long():
    """alice submits the long clip with curl (preset medium: some ten to twenty seconds of
    encoding here, for the page to watch); sets LONG_ID."""
    global LONG_ID
    out = subprocess.run(["curl", "-s", "-S", "-w", "\n%{http_code}", "-H",
                          "Authorization: Bearer " + ALICE, "-F",
                          "task_type=convert_video_to_libx265", "-F", "priority=high", "-F",
                          'params={"preset":"medium"}', "-F", "file_data=@" + LONG_FILE,
                          URL + "/v1/tasks"], capture_output=True, text=True, check=False)
    body, _, status = out.stdout.rpartition("\n")
    if not check("alice submits the long clip with curl: 201 (%s)" % status, status == "201"):
        sys.exit(1)  # without its id every later look would be at nothing
    LONG_ID = json.loads(body)["id"]


def browser(width=1280, height=1000):
    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--no-first-run", "--window-size=%d,%d" % (width, height)):
        opts.add_argument(a)
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)


def shot(d, name):
    d.save_screenshot(os.path.join(SHOTS, name + ".png"))


def visible(d, css):
    els = d.find_elements(By.CSS_SELECTOR, css)
    return els[0] if els and els[0].is_displayed() else None


def row(d, table, task):
    """The row of task in table, or None."""
    els = d.find_elements(By.CSS_SELECTOR, '#%s tr[data-task="%s"]' % (table, task))
    return els[0] if els else None


def login(d, token):
    d.get(URL + "/")
    wait_for("the page asks for a token", lambda: visible(d, "#login"), 20)
    d.find_element(By.ID, "token").send_keys(token)
    d.find_element(By.CSS_SELECTOR, "#login-form button").click()
    return wait_for("the dashboard opens with the token", lambda: visible(d, "#main"), 20)


def refreshed_after(d, t0):
    """Waits for a redraw that began after t0 (ms since the epoch): what it shows is fresh."""
    return wait_for("the page redraws",
                    lambda: int(d.find_element(By.TAG_NAME, "body").get_attribute(
                        "data-refreshed") or 0) > t0 + 100, 20)


def admin_view():
    d = browser()
    try:
        d.get(URL + "/")
        check("GET / is the dashboard", d.title == "taskmill")
        wait_for("without a token the page asks for one", lambda: visible(d, "#login"), 20)
        shot(d, "login")
        d.find_element(By.ID, "token").send_keys("not-a-token")
        d.find_element(By.CSS_SELECTOR, "#login-form button").click()
        wait_for("a wrong token is refused", lambda: "refused" in (
            visible(d, "#login-error").text if visible(d, "#login-error") else ""), 20)
        check("  and the dashboard stays closed", not visible(d, "#main"))

        login(d, ADMIN)
        wait_for("the admin sees the workers", lambda: visible(d, "#workers-section"), 10)
        check("  and the throughput", visible(d, "#throughput-section") is not None)
        submit_long()

        # the long clip, converting: its slot with a progress bar, fps, ETA and memory
        # The API is asked just before each look at the row: when the row shows the clip busy,
        # the state the API gave a moment before is what the page must agree with.
        api_state = {}

        def running():
            api_state["st"], api_state["task"] = api("GET", "/v1/tasks/" + LONG_ID, ADMIN)
            r = row(d, "workers", LONG_ID)
            if not r:
                return None
            bar = r.find_element(By.TAG_NAME, "progress")
            cells = [c.text for c in r.find_elements(By.TAG_NAME, "td")]
            return r if float(bar.get_attribute("value")) > 0 and cells[6] and cells[8] else None
        r = wait_for("the worker slot shows the long clip with progress, fps and memory",
                     running, 60)
        if r:
            cells = [c.text for c in r.find_elements(By.TAG_NAME, "td")]
            print("   slot row: " + " | ".join(cells))
            check("  its ETA is shown", cells[7] != "")
            check("  and what its pool runs", "video" in cells[1])
            state = (api_state.get("task") or {}).get("state")
            check("  while the API says it is in progress (%s)" % state,
                  api_state.get("st") == 200 and state == "in_progress")
            shot(d, "admin-running")
        check("the waiting counts are shown by priority band",
              visible(d, "#band-high .n") is not None and visible(d, "#band-low .n") is not None)

        # when it is done: in the last finished attempts, with wall, CPU and peak memory
        def finished():
            r = row(d, "finished", LONG_ID)
            if not r:
                return None
            cells = [c.text for c in r.find_elements(By.TAG_NAME, "td")]
            return cells if cells[3] == "done" and cells[4] and cells[5] and cells[6] else None
        cells = wait_for("the finished long clip is listed with wall, CPU and peak memory",
                         finished, 180)
        if cells:
            print("   attempt row: " + " | ".join(cells))
        st, t = api("GET", "/v1/tasks/" + LONG_ID, ADMIN)
        check("  and the API agrees it is done", st == 200 and t["state"] == "done")
        wait_for("the throughput chart counts it", lambda: sum(
            int(g.get_attribute("data-done")) for g in
            d.find_elements(By.CSS_SELECTOR, "#chart g[data-done]")) >= 2, 20)
        wait_for("the batch is listed with its progress",
                 lambda: d.find_elements(By.CSS_SELECTOR, '#batches tr[data-batch="%s"] progress'
                                         % BATCH_ID), 20)
        shot(d, "admin-finished")

        # the failed clip: its error, and a retry button that retries it
        r = wait_for("the failed clip is listed", lambda: row(d, "failed", FAILED_ID), 20)
        if r:
            check("  with its error code", "input_unreadable" in r.text or "decode_error" in r.text)
            def attempts():
                return len(api("GET", "/v1/tasks/" + FAILED_ID, ADMIN)[1]["history"])
            before = attempts()
            r.find_element(By.CSS_SELECTOR, "button.retry").click()
            wait_for("Retry runs it again (%d finished attempts, then more)" % before,
                     lambda: attempts() > before, 60)

        # drain and resume
        d.find_element(By.ID, "drain").click()
        wait_for("Drain drains the server", lambda: api("GET", "/v1/status", ADMIN)[1]["draining"])
        wait_for("  the page says so", lambda: visible(d, "#draining")
                 and d.find_element(By.ID, "drain").text == "Resume", 20)
        d.find_element(By.ID, "drain").click()
        wait_for("Resume resumes it",
                 lambda: api("GET", "/v1/status", ADMIN)[1]["draining"] is False)

        # the token lives in this tab's session storage only
        check("the token is in sessionStorage",
              d.execute_script("return sessionStorage.getItem('taskmill-token')") == ADMIN)
        check("  not in localStorage", d.execute_script("return localStorage.length") == 0)
        check("  nor in a cookie", d.execute_script("return document.cookie") == "")

        # a phone-sized screen: nothing wider than the screen
        d.set_window_size(390, 844)
        t0 = d.execute_script("return Date.now()")
        refreshed_after(d, t0)
        width = d.execute_script("return [document.documentElement.scrollWidth, "
                                 "document.documentElement.clientWidth]")
        check("on a 390 px wide screen the page is no wider than the screen (%s)" % width,
              width[0] <= width[1])
        shot(d, "admin-phone")
    finally:
        d.quit()


def user_view(name, token, mine, theirs, upload):
    """A user's page: shows only that token's tasks (mine), never another's (theirs)."""
    d = browser()
    try:
        login(d, token)
        wait_for(name + "'s page is a user's: no workers, no throughput",
                 lambda: d.find_element(By.TAG_NAME, "body").get_attribute("data-role") == "user"
                 and not visible(d, "#workers-section") and not visible(d, "#throughput-section"),
                 10)
        if upload:
            Select(d.find_element(By.ID, "upload-type")).select_by_value(
                "convert_video_to_libx265")
            d.find_element(By.ID, "upload-file").send_keys(UPLOAD_FILE)
            d.find_element(By.ID, "upload-submit").click()
            task = wait_for("the upload form creates a task", lambda: d.find_element(
                By.ID, "upload-result").get_attribute("data-task"), 30)
            if task:
                st, t = api("GET", "/v1/tasks/" + task, token)
                check("  which the API shows to %s with the file's name (%s)"
                      % (name, t and t.get("file_name")),
                      st == 200 and t["file_name"] == os.path.basename(UPLOAD_FILE))
                mine = mine + [task]
                wait_for("  it is done", lambda: api("GET", "/v1/tasks/" + task, token)[1][
                    "state"] == "done", 120)
        for task in mine:
            wait_for("%s's page shows %s's task %s" % (name, name, task[:8]),
                     lambda: task[:8] in d.find_element(By.ID, "main").text, 20)
        t0 = d.execute_script("return Date.now()")
        refreshed_after(d, t0)
        source = d.page_source
        for task in theirs:
            check("%s's page never shows the other user's task %s" % (name, task[:8]),
                  task not in source and task[:8] not in source)
        shot(d, "user-" + name)
        return mine
    finally:
        d.quit()


def main():
    admin_view()
    st, _ = api("GET", "/v1/tasks/" + LONG_ID, BOB)
    check("bob's token cannot read alice's task: 404 (%d)" % st, st == 404)
    bob = user_view("bob", BOB, [], [LONG_ID, FAILED_ID, BATCH_ID], True)
    user_view("alice", ALICE, [LONG_ID, FAILED_ID, BATCH_ID], bob, False)
    d = browser()
    try:
        d.get(URL + "/")
        wait_for("a new browser session asks for the token again", lambda: visible(d, "#login"), 20)
    finally:
        d.quit()
    print("dashboard.py: %d failed" % failures)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
