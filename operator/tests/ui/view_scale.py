"""First paint of the topology view at scale, in headless Chromium (a benchmark's probe, not a
test: nothing is asserted but that the page drew what it was sent).

Usage: view_scale.py VIEW_URL GROUPS
Prints "first-paint-ms: N" (navigation start to the end of the first draw, from the page's
performance marks), "draw-ms: N" (the first draw alone) and "redraw-ms: N" (a redraw of the same
graph, as a resize triggers).
"""

import os
import sys

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.support.ui import WebDriverWait


def main():
    url, groups = sys.argv[1], int(sys.argv[2])
    options = webdriver.ChromeOptions()
    options.binary_location = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1600,1200"):
        options.add_argument(arg)
    service = Service(executable_path=os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver"))
    driver = webdriver.Chrome(service=service, options=options)
    try:
        driver.get(url)
        WebDriverWait(driver, 120, poll_frequency=0.05).until(
            lambda d: d.execute_script("return document.body.dataset.updates") == "1")
        drawn = driver.execute_script("return document.querySelectorAll('.group').length")
        if drawn != groups:
            raise AssertionError("drew %d groups of %d" % (drawn, groups))
        marks = driver.execute_script(
            "const m = performance.getEntriesByName('hostrole-drawn')[0];"
            "const d = performance.getEntriesByName('hostrole-draw')[0];"
            "return [m.startTime, d.duration];")
        redraw = driver.execute_script(
            "const t = performance.now(); window.dispatchEvent(new Event('resize'));"
            "return performance.now() - t;")
        print("first-paint-ms: %.0f" % marks[0])
        print("draw-ms: %.0f" % marks[1])
        print("redraw-ms: %.0f" % redraw)
    finally:
        driver.quit()


if __name__ == "__main__":
    main()
