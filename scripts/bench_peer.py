#!/usr/bin/python3
"""The same batch as scripts/bench.sh gives seedbatch, done the way a user might
write it in Python: read the manifest (PyYAML with its libyaml loader, the fastest
it has), asyncio + aiohttp with one semaphore for concurrency, submit, poll every
POLL seconds, download every output to a file, write one result line per job. No
state, no checks, no retries beyond a small retry on connection errors (keep-alive
races happen under load). Prints CPU seconds and peak RSS as JSON on stdout.

    bench_peer.py BASE_URL KEY MANIFEST CONCURRENCY OUTDIR [POLL_SECONDS [RATE]]

With a number N in place of MANIFEST the jobs are made in code (j0 .. jN-1, as the
manifest bench.sh writes has them) and no results file is written: the protocol
alone. With RATE, API calls are spaced to at most RATE a second (as a user would,
to stay under an account's limit), and local reference images (paths relative to the
manifest) are uploaded once each (uploadMedia) before the jobs that use them.
"""
import asyncio
import json
import os
import resource
import sys

import aiohttp

MODEL = "bytedance/seedream-v5.0-lite/edit-sequential"


class Limiter:
    """Spaces calls to at most `rate` a second (none when rate is 0)."""
    def __init__(self, rate):
        self.gap = 1.0 / rate if rate > 0 else 0.0
        self.next = 0.0

    async def take(self):
        if not self.gap:
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        at = max(now, self.next)
        self.next = at + self.gap
        if at > now:
            await asyncio.sleep(at - now)


LIMIT = Limiter(0)


async def call(session, method, url, api=True, **kw):
    """One API call returning (status, parsed JSON or bytes), retried on connection errors."""
    for attempt in range(20):
        if api:
            await LIMIT.take()
        try:
            async with session.request(method, url, **kw) as r:
                if r.content_type == "application/json":
                    return r.status, await r.json()
                return r.status, await r.read()
        except (aiohttp.ClientError, asyncio.TimeoutError):
            await asyncio.sleep(min(0.05 * 2 ** attempt, 2.0))
    raise RuntimeError(f"{method} {url}: gave up")


async def one_job(session, base, model, job, sem, outdir, poll):
    """Runs one job; returns the names of its output files (None if it failed)."""
    async with sem:
        if isinstance(job, int):  # made in code, as late as the runner made them before it read manifests
            job = {"id": f"j{job}", "prompt": f"bench {job}", "images": [f"http://127.0.0.1/in/{job}.jpg"]}
        body = {"model": model, "prompt": job["prompt"], "images": job["images"],
                "max_images": job.get("max_images", 1), "output_format": job.get("output_format", "jpeg")}
        while True:
            status, d = await call(session, "POST", f"{base}/model/generateImage", json=body)
            if status != 429:
                break
        pid = d.get("data", d)["id"]
        while True:
            await asyncio.sleep(poll)
            status, d = await call(session, "GET", f"{base}/model/prediction/{pid}")
            if status in (400, 404, 429):
                continue
            d = d.get("data", {})
            if d.get("status") in ("completed", "succeeded"):
                outs = d.get("outputs") or d.get("output") or []
                outs = [outs] if isinstance(outs, str) else outs
                break
            if d.get("status") in ("failed", "timeout"):
                return None
        ext = "jpg" if body["output_format"] == "jpeg" else body["output_format"]
        names = []
        for k, url in enumerate(outs, 1):
            status, data = await call(session, "GET", url, api=False)
            names.append(f"{job['id']}_{k}.{ext}")
            with open(os.path.join(outdir, names[-1]), "wb") as f:
                f.write(data)
        return names


def load_jobs(arg):
    """(model, jobs, whether to write results) from a manifest, or N jobs made in code."""
    if arg.isdigit():
        return MODEL, range(int(arg)), False
    import yaml
    with open(arg) as f:
        m = yaml.load(f, Loader=yaml.CSafeLoader)
    defaults = m.get("defaults") or {}
    return m.get("model", MODEL), [{**defaults, **j} for j in m["jobs"]], True


UPLOADS = {}


async def upload(session, base, path):
    """The URL of a local file, uploaded once (uploadMedia, multipart field "file")."""
    if path not in UPLOADS:
        UPLOADS[path] = asyncio.ensure_future(_upload(session, base, path))
    return await UPLOADS[path]


async def _upload(session, base, path):
    with open(path, "rb") as f:
        data = f.read()
    while True:
        form = aiohttp.FormData()
        form.add_field("file", data, filename=os.path.basename(path))
        status, d = await call(session, "POST", f"{base}/model/uploadMedia", data=form)
        if status != 429:
            d = d.get("data", d)
            return d.get("download_url") or d["url"]


async def with_urls(session, base, job, root):
    """The job with its local images replaced by their uploaded URLs."""
    if isinstance(job, int):
        return job
    urls = []
    for img in job["images"]:
        urls.append(img if "://" in img else await upload(session, base, os.path.join(root, img)))
    return {**job, "images": urls}


async def main():
    global LIMIT
    base, key, manifest, conc, outdir = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
    poll = float(sys.argv[6]) if len(sys.argv) > 6 else 0.1
    LIMIT = Limiter(float(sys.argv[7]) if len(sys.argv) > 7 else 0)
    model, jobs, write_results = load_jobs(manifest)
    root = os.path.dirname(os.path.abspath(manifest)) if write_results else "."
    os.makedirs(outdir, exist_ok=True)
    sem = asyncio.Semaphore(conc)
    conn = aiohttp.TCPConnector(limit=conc * 2)
    headers = {"Authorization": f"Bearer {key}"}
    async with aiohttp.ClientSession(connector=conn, headers=headers) as session:
        async def run(j):
            return await one_job(session, base, model, await with_urls(session, base, j, root), sem, outdir, poll)
        outs = await asyncio.gather(*(run(j) for j in jobs))
    if write_results:
        with open(os.path.join(outdir, "results.jsonl"), "w") as f:
            for j, names in zip(jobs, outs):
                f.write(json.dumps({"id": j["id"], "status": "failed" if names is None else "succeeded",
                                    "outputs": names or []}) + "\n")


if __name__ == "__main__":
    asyncio.run(main())
    ru = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"cpu_s": ru.ru_utime + ru.ru_stime, "peak_rss_kib": ru.ru_maxrss}))
