"""Opens a WebDAV share in headless Chromium (Debian: chromium, chromium-driver, python3-selenium).

Usage: file_ui.py SHARE_URL USER PASSWORD FILE_NAME DOWNLOAD_DIR
Logs in with HTTP Basic (the credentials in the URL, which Chromium sends in answer to the share's
401 challenge; a headless browser has no login dialog), sees the listing, opens the
collection holding FILE_NAME and clicks its link; waits for the file in DOWNLOAD_DIR. Prints what
it saw; exits non-zero on any failure.
"""

import os
import sys
import time
from urllib.parse import urlsplit, urlunsplit

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait


def main():
    url, user, password, name, downloads = sys.argv[1:6]
    options = webdriver.ChromeOptions()
    options.binary_location = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(arg)
    options.add_experimental_option("prefs", {
        "download.default_directory": downloads,
        "download.prompt_for_download": False,
    })
    service = Service(executable_path=os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver"))
    driver = webdriver.Chrome(service=service, options=options)
    try:
        driver.execute_cdp_cmd("Browser.setDownloadBehavior",
                               {"behavior": "allow", "downloadPath": downloads})
        wait = WebDriverWait(driver, 30, poll_frequency=0.2)

        parts = urlsplit(url)
        with_login = urlunsplit((parts.scheme, f"{user}:{password}@{parts.netloc}",
                                 parts.path, parts.query, parts.fragment))
        driver.get(with_login)
        wait.until(EC.title_contains("Index of"))
        rows = [r.text for r in driver.find_elements(By.CSS_SELECTOR, "table tr")]
        print("listing:", " | ".join(r.replace("\n", " ") for r in rows if r.strip()))

        driver.find_element(By.LINK_TEXT, "docs/").click()
        wait.until(EC.title_contains("/docs/"))
        link = wait.until(EC.element_to_be_clickable((By.LINK_TEXT, name)))
        row = link.find_element(By.XPATH, "./ancestor::tr").text
        print("row:", row.replace("\n", " "))
        link.click()

        target = os.path.join(downloads, name)
        deadline = time.time() + 30
        while time.time() < deadline:
            if os.path.exists(target) and not any(f.endswith(".crdownload") for f in os.listdir(downloads)):
                break
            time.sleep(0.2)
        else:
            raise AssertionError(f"no download of {name}: {os.listdir(downloads)}")
        print("downloaded:", name, os.path.getsize(target), "bytes")
    finally:
        driver.quit()


if __name__ == "__main__":
    main()
