"""Page weight and open times of a study browser site, in headless Chromium.

Usage: python3 bench/browser_open.py REPORT_DIR [--runs 5]

REPORT_DIR is what `tw report` wrote (it holds index.html and data/). The
script starts chromedriver (TW_CHROMEDRIVER or PATH) with Chromium
(TW_CHROMIUM or PATH), speaks WebDriver over plain HTTP (standard library
only), and measures, median of --runs:

- open:    navigation start -> the first page (cells and tables) rendered;
- cell:    click -> the largest cell's problem list rendered (loads data/c<i>.js);
- problem: click -> the largest problem file rendered (data/c<i>/p<j>.js);
- compare: click -> that problem side by side with another cell.

and the bytes each step loads, plus the whole site's size and file count.
"""

import argparse
import http.client
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Driver:
    def __init__(self, chromium, chromedriver):
        self.port = free_port()
        self.proc = subprocess.Popen([chromedriver, f"--port={self.port}"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 30
        while True:
            try:
                if self.call("GET", "/status")["ready"]:
                    break
            except OSError:
                pass
            if time.time() > deadline:
                raise SystemExit("chromedriver did not start")
            time.sleep(0.1)
        caps = {"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": {
            "binary": chromium,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1400,1000"]}}}}
        self.session = self.call("POST", "/session", caps)["sessionId"]

    def call(self, method, path, body=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        conn.request(method, path, json.dumps(body) if body is not None else None,
                     {"Content-Type": "application/json"})
        value = json.loads(conn.getresponse().read())["value"]
        conn.close()
        if isinstance(value, dict) and "error" in value:
            raise RuntimeError(f"{value['error']}: {value.get('message')}")
        return value

    def s(self, method, path, body=None):
        return self.call(method, f"/session/{self.session}{path}", body)

    def js(self, script):
        return self.s("POST", "/execute/sync", {"script": script, "args": []})

    def wait_ready(self):
        deadline = time.time() + 60
        while self.js("return document.body && document.body.dataset.ready") != "yes":
            if time.time() > deadline:
                raise SystemExit("the page never finished")
            time.sleep(0.01)

    def route_ms(self, hash_):
        """Milliseconds from a hash change to the routed page rendered."""
        self.js("document.body.dataset.ready = 'no'; window.__t0 = performance.now();"
                f"location.hash = {json.dumps(hash_)}; return 0")
        self.wait_ready()
        return self.js("return window.twOpenedMs - window.__t0")

    def close(self):
        try:
            self.s("DELETE", "")
        finally:
            self.proc.kill()


def which(var, names):
    if os.environ.get(var):
        return os.environ[var]
    for n in names:
        p = shutil.which(n)
        if p:
            return p
    raise SystemExit(f"no {names[0]} ({var} or PATH); scripts/setup-browser.sh installs it")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("report_dir")
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    root = os.path.abspath(args.report_dir)
    index = os.path.join(root, "index.html")
    if not os.path.isfile(index):
        raise SystemExit(f"{index}: no site here (give `report` an `instances` input)")
    files, total = 0, 0
    for d, _, names in os.walk(root):
        for n in names:
            files += 1
            total += os.path.getsize(os.path.join(d, n))
    site_bytes = sum(os.path.getsize(os.path.join(root, n)) for n in ("index.html", "browser.js", "browser.css"))
    data = os.path.join(root, "data")
    cells = sorted((n for n in os.listdir(data) if n.endswith(".js")), key=lambda n: int(n[1:-3]))
    cell_sizes = {int(n[1:-3]): os.path.getsize(os.path.join(data, n)) for n in cells}
    big_cell = max(cell_sizes, key=cell_sizes.get)
    problems = os.listdir(os.path.join(data, f"c{big_cell}"))
    sizes = {int(n[1:-3]): os.path.getsize(os.path.join(data, f"c{big_cell}", n)) for n in problems}
    big_problem = max(sizes, key=sizes.get)
    other_cell = 1 if big_cell == 0 and len(cells) > 1 else 0

    d = Driver(which("TW_CHROMIUM", ["chromium", "chromium-browser", "google-chrome"]),
               which("TW_CHROMEDRIVER", ["chromedriver"]))
    try:
        times = {"open": [], "cell": [], "problem": [], "compare": []}
        for _ in range(args.runs):
            # A fresh page each run: nothing cached in the page's own memory.
            d.s("POST", "/url", {"url": "about:blank"})
            start = time.perf_counter()
            d.s("POST", "/url", {"url": "file://" + index})
            d.wait_ready()
            times["open"].append(d.js("return window.twOpenedMs"))
            times["cell"].append(d.route_ms(f"#/cell/{big_cell}"))
            times["problem"].append(d.route_ms(f"#/cell/{big_cell}/p/{big_problem}"))
            key = d.js("return document.querySelector('.problem h3').firstChild.textContent")
            times["compare"].append(d.route_ms(f"#/compare/{big_cell}/{other_cell}/" + key.replace("/", "%2F")))
            del start
    finally:
        d.close()
    med = {k: statistics.median(v) for k, v in times.items()}
    kib = lambda b: f"{b / 1024:,.0f} KiB"
    print(f"site: {files:,} files, {total / 2**20:,.1f} MiB in all; {len(cells)} cells")
    print(f"| step | loads | median ms ({args.runs} runs) |")
    print("|---|---:|---:|")
    print(f"| open index.html | {kib(site_bytes)} (page, script, style) | {med['open']:.0f} |")
    print(f"| open the largest cell (c{big_cell}, {len(problems)} problems) | {kib(cell_sizes[big_cell])} | {med['cell']:.0f} |")
    print(f"| open its largest problem (p{big_problem}) | {kib(sizes[big_problem])} | {med['problem']:.0f} |")
    print(f"| side by side with c{other_cell} | + that cell's index and problem | {med['compare']:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
