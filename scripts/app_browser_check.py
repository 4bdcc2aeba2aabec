"""Drive the diagnosis page (app.py) in headless Chromium: upload photos, wait for the answers, save a screenshot.

  python scripts/app_browser_check.py --url http://127.0.0.1:7861/ --screenshot demo_plots/app.png PHOTO [FILE ...]

Run by scripts/app_browser_check.sh, which installs Chromium, chromedriver (Debian's) and selenium and starts the
app. Fails (exit 1, one line per problem) unless every readable photo gets a reading, top-5 bars and a Grad-CAM
heat map that the browser has drawn, every unreadable file gets its message on the page, and no request of the
page left the app's own host (the page must work offline).
"""
import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

WIDTH = 1280
LOCAL_SCHEMES = ("data", "blob", "about", "chrome", "devtools")


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="+", help="files to upload: photos and, to check the message, unreadable files")
    parser.add_argument("--url", required=True)
    parser.add_argument("--screenshot", required=True)
    parser.add_argument("--expect-problems", type=int, default=0, help="how many of the files are unreadable")
    parser.add_argument("--timeout", type=float, default=180, help="seconds to wait for the answers")
    return parser.parse_args()


def start_browser():
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 f"--window-size={WIDTH},1000", "--hide-scrollbars", "--lang=en-US"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})  # the page's network requests
    return webdriver.Chrome(options=options, service=Service(executable_path=shutil.which("chromedriver")))


def page_state(driver):
    """What the page shows: the readings' text, the drawn heat maps, the problem messages, bar rows."""
    return driver.execute_script("""
        const blocks = selector => [...document.querySelectorAll(selector)];
        const maps = blocks('.block.heat-map img');
        maps.forEach(img => img.loading = 'eager');  // off-screen lazy images would never load
        return {readings: blocks('.block.reading').map(e => e.innerText.trim()).filter(t => t),
                heat_maps: maps.filter(img => img.complete && img.naturalWidth > 0).length,
                problems: blocks('.block.problem').map(e => e.innerText.trim()),
                errors: blocks('.toast-body.error').map(e => e.innerText.trim())};""")


def requests_made(driver):
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


def main():
    args = parse_args()
    app_host = urlparse(args.url).hostname
    paths = [str(Path(path).resolve()) for path in args.files]
    photos = len(paths) - args.expect_problems
    driver = start_browser()
    problems = []
    try:
        driver.get(args.url)
        deadline = time.monotonic() + 60
        while not driver.find_elements(By.CSS_SELECTOR, "#photos input[type=file]"):
            if time.monotonic() > deadline:
                sys.exit(f"{args.url}: the page shows no photo upload after 60 s")
            time.sleep(0.5)
        driver.find_element(By.CSS_SELECTOR, "#photos input[type=file]").send_keys("\n".join(paths))
        deadline = time.monotonic() + args.timeout
        state = page_state(driver)
        while not (len(state["readings"]) >= photos and state["heat_maps"] >= photos
                   and len(state["problems"]) >= args.expect_problems) and not state["errors"]:
            if time.monotonic() > deadline:
                break
            time.sleep(1)
            state = page_state(driver)
        time.sleep(1)  # let the bars' and images' transitions finish before the screenshot
        height = driver.execute_script("return document.documentElement.scrollHeight")
        driver.set_window_size(WIDTH, height + 40)
        time.sleep(0.5)
        Path(args.screenshot).parent.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(args.screenshot)
        if len(state["readings"]) < photos:
            problems.append(f"{len(state['readings'])} of {photos} photo(s) got a reading within {args.timeout:g} s")
        if state["heat_maps"] < photos:
            problems.append(f"{state['heat_maps']} of {photos} heat map(s) drawn")
        if len(state["problems"]) < args.expect_problems:
            problems.append(f"{len(state['problems'])} of {args.expect_problems} unreadable file(s) got a message")
        problems += [f"the page shows an error: {error}" for error in state["errors"]]
        outside = sorted({url for url in requests_made(driver) if urlparse(url).scheme not in LOCAL_SCHEMES
                          and urlparse(url).hostname != app_host})
        problems += [f"the page requested {url}, outside {app_host}" for url in outside]
    finally:
        driver.quit()
    for reading in state["readings"]:
        print("reading: " + " | ".join(line for line in reading.splitlines() if line.strip()))
    for message in state["problems"]:
        print(f"message: {message}")
    print(f"{state['heat_maps']} heat map(s) drawn; screenshot: {args.screenshot}")
    if problems:
        print("\n".join(f"FAILED: {problem}" for problem in problems), file=sys.stderr)
        sys.exit(1)
    print("browser check passed: answers and heat maps shown, no request left " + app_host)


if __name__ == "__main__":
    main()
