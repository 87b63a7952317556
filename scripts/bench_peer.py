#!/usr/bin/python3
"""The same batch as scripts/bench.sh gives seedbatch, done the way a user might
write it in Python: read the manifest (PyYAML with its libyaml loader, the fastest
it has), asyncio + aiohttp with one semaphore for concurrency, submit, poll every
POLL seconds, download every output to a file, write one result line per job. No
state, no checks, no retries beyond a small retry on connection errors (keep-alive
races happen under load). Prints CPU seconds and peak RSS as JSON on stdout.

    bench_peer.py BASE_URL KEY MANIFEST CONCURRENCY OUTDIR [POLL_SECONDS]

With a number N in place of MANIFEST the jobs are made in code (j0 .. jN-1, as the
manifest bench.sh writes has them) and no results file is written: the protocol
alone.
"""
import asyncio
import json
import os
import resource
import sys

import aiohttp

MODEL = "bytedance/seedream-v5.0-lite/edit-sequential"


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


async def one_job(session, base, model, job, sem, outdir, poll):
    """Runs one job; returns the names of its output files (None if it failed)."""
    async with sem:
        if isinstance(job, int):  # made in code, as late as the runner made them before it read manifests
            job = {"id": f"j{job}", "prompt": f"bench {job}", "images": [f"http://127.0.0.1/in/{job}.jpg"]}
        body = {"model": model, "prompt": job["prompt"], "images": job["images"],
                "max_images": job.get("max_images", 1), "output_format": job.get("output_format", "jpeg")}
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
                return None
        ext = "jpg" if body["output_format"] == "jpeg" else body["output_format"]
        names = []
        for k, url in enumerate(outs, 1):
            status, data = await call(session, "GET", url)
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


async def main():
    base, key, manifest, conc, outdir = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
    poll = float(sys.argv[6]) if len(sys.argv) > 6 else 0.1
    model, jobs, write_results = load_jobs(manifest)
    os.makedirs(outdir, exist_ok=True)
    sem = asyncio.Semaphore(conc)
    conn = aiohttp.TCPConnector(limit=conc * 2)
    headers = {"Authorization": f"Bearer {key}"}
    async with aiohttp.ClientSession(connector=conn, headers=headers) as session:
        outs = await asyncio.gather(*(one_job(session, base, model, j, sem, outdir, poll) for j in jobs))
    if write_results:
        with open(os.path.join(outdir, "results.jsonl"), "w") as f:
            for j, names in zip(jobs, outs):
                f.write(json.dumps({"id": j["id"], "status": "failed" if names is None else "succeeded",
                                    "outputs": names or []}) + "\n")


if __name__ == "__main__":
    asyncio.run(main())
    ru = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"cpu_s": ru.ru_utime + ru.ru_stime, "peak_rss_kib": ru.ru_maxrss}))
