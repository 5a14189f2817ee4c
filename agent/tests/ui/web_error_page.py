"""Opens missing pages of a web role in headless Chromium (Debian: chromium, chromium-driver,
python3-selenium) and checks what a person sees.

Usage: web_error_page.py BUILTIN_URL SITE_404_URL
BUILTIN_URL is a missing page of a site without 404.html: the built-in page must show
"404 Not Found" as title and heading. SITE_404_URL is a missing page of a site with its own
404.html: its heading must show. Prints what it saw; exits non-zero on any failure.
"""

import os
import sys

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By


def main():
    builtin_url, site_url = sys.argv[1:3]
    options = webdriver.ChromeOptions()
    options.binary_location = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(arg)
    service = Service(executable_path=os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver"))
    driver = webdriver.Chrome(service=service, options=options)
    try:
        driver.get(builtin_url)
        heading = driver.find_element(By.TAG_NAME, "h1").text
        print("built-in page:", driver.title, "|", heading)
        if driver.title != "404 Not Found" or heading != "404 Not Found":
            raise AssertionError(f"not the error page: {driver.title!r} {heading!r}")
        link = driver.find_element(By.LINK_TEXT, "Home")
        link.click()
        print("home link leads to:", driver.find_element(By.TAG_NAME, "h1").text)

        driver.get(site_url)
        heading = driver.find_element(By.TAG_NAME, "h1").text
        print("site's own page:", heading)
        if heading != "Nothing here, sorry":
            raise AssertionError(f"not the site's 404.html: {heading!r}")
    finally:
        driver.quit()


if __name__ == "__main__":
    main()
