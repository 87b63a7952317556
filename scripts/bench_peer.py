#!/usr/bin/python3
"""The same batch as scripts/bench.sh gives seedbatch, done the way a user might
write it in Python: asyncio + aiohttp, one semaphore for concurrency, submit, poll
every POLL seconds, download every output to a file. No state, no retries beyond
a small retry on connection errors (keep-alive races happen under load). Prints
CPU seconds and peak RSS as JSON on stdout.

    bench_peer.py BASE_URL KEY JOBS CONCURRENCY OUTDIR [POLL_SECONDS]
"""
import asyncio
import json
import os
import resource
import sys

import aiohttp


async def call(session, method, url, **kw):
    """One API call returning (status, parsed JSON or bytes), retried on connection errors."""
    for attempt in range(20):
        try:
            async with session.request(method, url, **kw) as r:
                if r.content_type == "application/json":
                    return r.status, await r.json()
                return r.status, await r.read()
        except (aiohttp.ClientError, asyncio.TimeoutError):
            await asyncio.sleep(min(0.05 * 2 ** attempt, 2.0))
    raise RuntimeError(f"{method} {url}: gave up")


async def one_job(session, base, i, sem, outdir, poll):
    async with sem:
        body = {"model": "bytedance/seedream-v5.0-lite/edit-sequential",
                "prompt": f"bench {i}", "images": [f"http://127.0.0.1/in/{i}.jpg"],
                "max_images": 1, "output_format": "jpeg"}
        status, d = await call(session, "POST", f"{base}/model/generateImage", json=body)
        pid = d.get("data", d)["id"]
        while True:
            await asyncio.sleep(poll)
            status, d = await call(session, "GET", f"{base}/model/prediction/{pid}")
            if status in (400, 404):
                continue
            d = d.get("data", {})
            if d.get("status") in ("completed", "succeeded"):
                outs = d.get("outputs") or d.get("output") or []
                outs = [outs] if isinstance(outs, str) else outs
                break
            if d.get("status") in ("failed", "timeout"):
                return 0
        for k, url in enumerate(outs, 1):
            status, data = await call(session, "GET", url)
            with open(os.path.join(outdir, f"j{i}_{k}.jpg"), "wb") as f:
                f.write(data)
        return len(outs)


async def main():
    base, key, n, conc, outdir = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
    poll = float(sys.argv[6]) if len(sys.argv) > 6 else 0.1
    os.makedirs(outdir, exist_ok=True)
    sem = asyncio.Semaphore(conc)
    conn = aiohttp.TCPConnector(limit=conc * 2)
    headers = {"Authorization": f"Bearer {key}"}
    async with aiohttp.ClientSession(connector=conn, headers=headers) as session:
        images = await asyncio.gather(*(one_job(session, base, i, sem, outdir, poll) for i in range(n)))
    with open(os.path.join(outdir, "results.json"), "w") as f:
        json.dump({"jobs": n, "images": sum(images)}, f)


if __name__ == "__main__":
    asyncio.run(main())
    ru = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"cpu_s": ru.ru_utime + ru.ru_stime, "peak_rss_kib": ru.ru_maxrss}))
