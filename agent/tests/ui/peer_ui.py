"""Drives a peer's UI in headless Chromium (Debian: chromium, chromium-driver, python3-selenium).

Usage: peer_ui.py UI_URL QUERY HASH UPLOAD_PATH
Searches for QUERY, clicks Download on the result with HASH, waits for the download to reach
"complete" and the file to be listed locally; then uploads UPLOAD_PATH through the form and waits
for it to be listed. Prints what it saw; exits non-zero on any failure.
"""

import os
import sys

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait


def main():
    url, query, digest, upload = sys.argv[1:5]
    options = webdriver.ChromeOptions()
    options.binary_location = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(arg)
    service = Service(executable_path=os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver"))
    driver = webdriver.Chrome(service=service, options=options)
    try:
        wait = WebDriverWait(driver, 30, poll_frequency=0.2)
        driver.get(url)
        wait.until(EC.text_to_be_present_in_element((By.ID, "status"), "Peer "))
        print("status:", driver.find_element(By.ID, "status").text)

        box = driver.find_element(By.ID, "search-q")
        box.send_keys(query)
        driver.find_element(By.ID, "search-button").click()
        button = wait.until(EC.element_to_be_clickable(
            (By.CSS_SELECTOR, f'button.download-button[data-hash="{digest}"]')))
        print("result:", button.find_element(By.XPATH, "./ancestor::tr").text)
        button.click()

        seen = set()

        # The table is redrawn every 500 ms: read the row in one script call, not via elements
        # that may be replaced between two WebDriver commands.
        def progressed(d):
            row = d.execute_script(
                "const r = document.querySelector(`#downloads tr[data-hash='${arguments[0]}']`);"
                "return r && [r.dataset.state, r.querySelector('progress').value, r.innerText];",
                digest)
            if not row:
                return False
            seen.add(row[1])
            return row if row[0] == "complete" else False

        row = wait.until(progressed)
        if len(seen) < 3:
            raise AssertionError(f"the page never showed progress between start and end: {seen}")
        print("download:", row[2].replace("\t", " ").replace("\n", " "),
              "| progress values seen:", sorted(seen))
        wait.until(EC.presence_of_element_located(
            (By.CSS_SELECTOR, f'#files tr[data-hash="{digest}"]')))
        print("listed locally")

        name = os.path.basename(upload)
        driver.find_element(By.ID, "upload-file").send_keys(upload)
        driver.find_element(By.ID, "upload-button").click()
        wait.until(EC.text_to_be_present_in_element((By.ID, "upload-status"), "Shared as"))
        wait.until(EC.presence_of_element_located(
            (By.CSS_SELECTOR, f'#files tr[data-name="{name}"]')))
        print("uploaded:", driver.find_element(By.ID, "upload-status").text)
    finally:
        driver.quit()


if __name__ == "__main__":
    main()
