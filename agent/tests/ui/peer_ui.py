"""Drives a peer's UI in headless Chromium (Debian: chromium, chromium-driver, python3-selenium).

Usage: peer_ui.py UI_URL QUERY HASH UPLOAD_PATH
Searches for QUERY, clicks Download on the result with HASH, waits until the page shows the
download part done (the test pauses its source meanwhile: "partial:" on stdout), then "complete"
and the file listed locally (and first, the printer another peer offers, from the known-peers
table: "printer:" lines); then uploads UPLOAD_PATH through the form and waits
for it to be listed; then sets an upload rate in the limits form and checks the API has it.
Prints what it saw; exits non-zero on any failure.
"""

import json
import os
import sys
import urllib.request

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
        # A peer that offers its host's printer: listed with where to reach it.
        wait.until(EC.text_to_be_present_in_element((By.ID, "peers"), "ipp://"))
        for printer in driver.find_elements(By.CSS_SELECTOR, "#peers ul.printers li"):
            print("printer:", printer.text)

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
        def row_now(d):
            row = d.execute_script(
                "const r = document.querySelector(`#downloads tr[data-hash='${arguments[0]}']`);"
                "return r && [r.dataset.state, r.querySelector('progress').value,"
                " r.querySelector('progress').max, r.innerText];",
                digest)
            if row:
                seen.add(row[1])
            return row

        def api_done():
            with urllib.request.urlopen(url.rstrip("/") + "/api/downloads", timeout=5) as r:
                for d in json.load(r):
                    if d["hash"] == digest:
                        return d["chunksDone"]
            return None

        # The test pauses the only source part-way (SIGSTOP), so the download cannot move on
        # until the page has shown where it stands: a running download, part done, the same
        # count the API reports.
        def partial(d):
            row = row_now(d)
            if not row or row[0] != "running" or not 0 < row[1] < row[2]:
                return False
            return row if row[1] == api_done() else False

        row = wait.until(partial)
        print(f"partial: {row[1]:g}/{row[2]:g} chunks shown while the source is paused", flush=True)

        row = wait.until(lambda d: (r := row_now(d)) and r[0] == "complete" and r)
        if row[1] != row[2]:
            raise AssertionError(f"complete, but the bar shows {row[1]} of {row[2]}")
        print("download:", row[3].replace("\t", " ").replace("\n", " "),
              "| progress values seen:", sorted(seen), flush=True)
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

        # Sharing limits: the form shows what is in force; a new upload rate applies at once.
        wait.until(EC.text_to_be_present_in_element((By.ID, "limits-message"), "In force:"))
        box = driver.find_element(By.ID, "limit-upload")
        box.clear()
        box.send_keys("512")
        driver.find_element(By.ID, "limits-button").click()
        wait.until(EC.text_to_be_present_in_element(
            (By.ID, "limits-message"), "Applied: upload 512.0 KiB/s"))
        with urllib.request.urlopen(url.rstrip("/") + "/api/limits", timeout=5) as r:
            limits = json.load(r)
        if limits["uploadBytesPerSecond"] != 512 * 1024:
            raise AssertionError(f"the form applied {limits}")
        print("limits:", driver.find_element(By.ID, "limits-message").text)
    finally:
        driver.quit()


if __name__ == "__main__":
    main()
