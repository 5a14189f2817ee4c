"""Opens the topology view in headless Chromium while every place to follow it is taken.

Usage: view_busy.py VIEW_URL
Prints "busy: <status line>" once the page says it was turned away, then waits until the page
has drawn the graph after all (the test frees a place once it reads "busy:") and prints
"drawn: groups=N". Exits non-zero on any failure.
"""

import os
import sys

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait


def main():
    url = sys.argv[1]
    options = webdriver.ChromeOptions()
    options.binary_location = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(arg)
    service = Service(executable_path=os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver"))
    driver = webdriver.Chrome(service=service, options=options)
    try:
        driver.get(url)
        try:
            WebDriverWait(driver, 30, poll_frequency=0.1).until(
                EC.text_to_be_present_in_element((By.ID, "status"), "busy"))
        except Exception:
            print("status was:", driver.find_element(By.ID, "status").text, file=sys.stderr)
            raise
        print("busy:", driver.find_element(By.ID, "status").text, flush=True)
        WebDriverWait(driver, 40, poll_frequency=0.2).until(
            lambda d: len(d.find_elements(By.CSS_SELECTOR, ".group")) > 0)
        print("drawn: groups=%d" % len(driver.find_elements(By.CSS_SELECTOR, ".group")),
              flush=True)
    finally:
        driver.quit()


if __name__ == "__main__":
    main()
