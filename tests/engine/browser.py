#!/usr/bin/python3
"""Opens a page in headless Chromium over the DevTools protocol, the way a person's
browser would (real time, scripts on or off), and prints what expressions evaluate to.

  browser.py URL [--nojs] [--size 1280x4000] [--until EXPR] [--screenshot FILE] [EXPR ...]

--until waits (up to 30 s) for EXPR to be true before the expressions are evaluated,
each printed on its own line as JSON; an expression written "wait:EXPR" is waited for
the same way (printing true, or false after 30 s) before the next. --nojs turns the page's scripts off before it
loads (what a browser with JavaScript disabled shows: <noscript> included); the
expressions still run, from the protocol. Debian's chromium and python3-websocket."""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

import websocket


def main():
    args = sys.argv[1:]
    url, nojs, size, until, shot, exprs = args[0], False, "1280x4000", None, None, []
    i = 1
    while i < len(args):
        a = args[i]
        if a == "--nojs":
            nojs = True
        elif a == "--size":
            i += 1
            size = args[i]
        elif a == "--until":
            i += 1
            until = args[i]
        elif a == "--screenshot":
            i += 1
            shot = args[i]
        else:
            exprs.append(a)
        i += 1
    w, h = (int(x) for x in size.split("x"))
    profile = tempfile.mkdtemp(prefix="sbchrome.")
    proc = subprocess.Popen(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         "--remote-debugging-port=0", "--remote-allow-origins=*", f"--user-data-dir={profile}",
         f"--window-size={w},{h}", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        port = None
        deadline = time.time() + 30
        while time.time() < deadline and port is None:
            line = proc.stderr.readline()
            if not line:
                break
            m = re.search(r"DevTools listening on ws://127\.0\.0\.1:(\d+)/", line)
            if m:
                port = m.group(1)
        if port is None:
            sys.exit("browser.py: chromium did not start")
        req = urllib.request.Request(f"http://127.0.0.1:{port}/json/new?about:blank", method="PUT")
        target = json.load(urllib.request.urlopen(req, timeout=10))
        ws = websocket.create_connection(target["webSocketDebuggerUrl"], timeout=30)
        ids = iter(range(1, 1 << 30))

        def call(method, **params):
            n = next(ids)
            ws.send(json.dumps({"id": n, "method": method, "params": params}))
            while True:
                msg = json.loads(ws.recv())
                if msg.get("id") == n:
                    if "error" in msg:
                        sys.exit(f"browser.py: {method}: {msg['error']}")
                    return msg.get("result", {})

        def evaluate(expr):
            r = call("Runtime.evaluate", expression=expr, returnByValue=True, awaitPromise=True)
            if "exceptionDetails" in r:
                sys.exit(f"browser.py: {expr}: {r['exceptionDetails'].get('exception', {}).get('description')}")
            return r["result"].get("value")

        call("Page.enable")
        call("Emulation.setDeviceMetricsOverride", width=w, height=h, deviceScaleFactor=1, mobile=False)
        if nojs:
            call("Emulation.setScriptExecutionDisabled", value=True)
        call("Page.navigate", url=url)
        def wait(cond):
            deadline = time.time() + 30
            while not evaluate(cond):
                if time.time() > deadline:
                    return False
                time.sleep(0.1)
            return True

        cond = "document.readyState == 'complete'" + (f" && ({until})" if until else "")
        if not wait(cond):
            print(json.dumps({"timeout": cond}))
        for e in exprs:
            print(json.dumps(wait(e[5:]) if e.startswith("wait:") else evaluate(e)))
        if shot:
            import base64
            data = call("Page.captureScreenshot", format="png")["data"]
            with open(shot, "wb") as f:
                f.write(base64.b64decode(data))
        ws.close()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(profile, ignore_errors=True)


if __name__ == "__main__":
    os.environ.setdefault("DBUS_SESSION_BUS_ADDRESS", "disabled:")
    main()
