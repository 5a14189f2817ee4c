"""Drives the topology view in headless Chromium (Debian: chromium, chromium-driver,
python3-selenium).

Usage: view.py VIEW_URL SCREENSHOT_PATH
Loads the view, prints what it drew ("drawn: ..."), then waits for the print client's edge to
turn red (the test makes that client fail once it reads "drawn:"), prints "failing: ...", saves a
screenshot, then clicks the office's host and prints the details panel ("details: ...").
VIEW_FAILING (default print) names another client's service; VIEW_HOST (default office-0)
another host to click.
Exits non-zero on any failure.
"""

import os
import sys
import time

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait


def main():
    url, screenshot = sys.argv[1:3]
    failing = os.environ.get("VIEW_FAILING", "print")
    click = os.environ.get("VIEW_HOST", "office-0")
    options = webdriver.ChromeOptions()
    options.binary_location = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1600,1200"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(executable_path=os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver"))
    driver = webdriver.Chrome(service=service, options=options)
    try:
        wait = WebDriverWait(driver, 30, poll_frequency=0.1)
        driver.get(url)
        wait.until(EC.text_to_be_present_in_element((By.ID, "status"), "HostRoles"))
        counts = driver.execute_script(
            "const n = (s) => document.querySelectorAll(s).length;"
            "return [n('.group'), n('.host'), n('path.edge'), n('path.edge.ok'),"
            " n('path.edge.failing'), n('line.net'), n('.badge[data-role=print]'),"
            " [...document.querySelectorAll('.group')].map(g => g.dataset.id).join(' ')];")
        print("drawn: groups=%d hosts=%d edges=%d ok=%d failing=%d net=%d print-badges=%d ids=%s"
              % tuple(counts), flush=True)
        stroke = driver.execute_script(
            "const e = document.querySelector('path.edge.ok');"
            "return e && getComputedStyle(e).stroke;")
        print("ok-stroke:", stroke, flush=True)

        boxes = ("return Object.fromEntries([...document.querySelectorAll('.host')].map("
                 "h => { const b = h.querySelector('rect').getBBox();"
                 " return [h.dataset.id, [b.x, b.y, b.width, b.height]]; }));")
        before = driver.execute_script(boxes)

        start = time.monotonic()
        edge = wait.until(EC.presence_of_element_located(
            (By.CSS_SELECTOR, 'path.edge.failing[data-service="%s"]' % failing)))
        stroke = driver.execute_script("return getComputedStyle(arguments[0]).stroke;", edge)
        title = driver.execute_script(
            "return arguments[0].querySelector('title').textContent;", edge)
        print("failing: after %.1fs stroke=%s title=%s"
              % (time.monotonic() - start, stroke, title.replace("\n", " | ")), flush=True)

        after = driver.execute_script(boxes)
        moved = [k for k in before if before[k] != after.get(k)]
        print("moved: %d of %d hosts %s" % (len(moved), len(before), moved), flush=True)
        driver.save_screenshot(screenshot)
        print("screenshot:", screenshot, flush=True)

        host = driver.find_element(By.CSS_SELECTOR, '.host[data-id$="/%s"]' % click)
        host.click()
        wait.until(EC.text_to_be_present_in_element((By.ID, "d-roles"), failing))
        wait.until(lambda d: d.find_element(By.ID, "d-events").text.strip() != ""
                   or d.find_element(By.ID, "d-urls").text.strip() != "")
        print("details:", driver.find_element(By.ID, "details").text.replace("\n", " | "),
              flush=True)
        errors = [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]
        if errors:
            raise AssertionError("console errors: %r" % errors)
    finally:
        driver.quit()


if __name__ == "__main__":
    main()
