"""Load test of the REST API: N concurrent clients on loopback against GET run, GET metrics and POST run.

Starts ``robustlit serve`` for each database (SQLite file, and PostgreSQL when reachable), seeds one finished run,
then restarts the API without its job dispatcher so the numbers measure the API and the database alone.
Prints P50/P95/P99 latency, throughput and errors per operation, and the time to the first byte of a report.

    python benchmarks/service_load.py --clients 100 --duration 20
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "service"))

from servicekit import PG_ADMIN, ServiceProcess, bootstrap  # noqa: E402

OPERATIONS = ("GET run", "GET metrics", "POST run")
WEIGHTS = (0.45, 0.45, 0.10)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


async def drive(url: str, key: str, project_id: int, run_id: str, clients: int, duration: float) -> dict:
    results = {op: {"latency": [], "errors": 0, "statuses": {}} for op in OPERATIONS}
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=f"{url}/api/v1", headers=headers, limits=limits, timeout=30) as http:
        deadline = time.monotonic() + duration

        async def client(index: int) -> None:
            step = index
            while time.monotonic() < deadline:
                pick = (step * 0.618034) % 1.0  # spreads the operations by their weights
                step += 1
                op = "GET run" if pick < WEIGHTS[0] else "GET metrics" if pick < WEIGHTS[0] + WEIGHTS[1] else "POST run"
                start = time.perf_counter()
                try:
                    if op == "GET run":
                        response = await http.get(f"/runs/{run_id}")
                    elif op == "GET metrics":
                        response = await http.get(f"/runs/{run_id}/metrics")
                    else:
                        response = await http.post(f"/projects/{project_id}/runs", json={"overrides": ["seed=1"]},
                                                   headers={"Idempotency-Key": uuid.uuid4().hex})
                    status = response.status_code
                except httpx.HTTPError as error:
                    status = type(error).__name__
                elapsed = time.perf_counter() - start
                entry = results[op]
                entry["latency"].append(elapsed)
                entry["statuses"][status] = entry["statuses"].get(status, 0) + 1
                if not (isinstance(status, int) and status < 400):
                    entry["errors"] += 1

        began = time.monotonic()
        await asyncio.gather(*(client(i) for i in range(clients)))
        results["_elapsed"] = time.monotonic() - began
    return results


def report_first_byte(url: str, key: str, run_id: str, repeats: int = 20) -> list[float]:
    times = []
    with httpx.Client(base_url=f"{url}/api/v1", headers={"Authorization": f"Bearer {key}"}, timeout=60) as http:
        for _ in range(repeats):
            start = time.perf_counter()
            with http.stream("GET", f"/runs/{run_id}/report") as response:
                next(response.iter_raw())
                times.append(time.perf_counter() - start)
                assert response.status_code == 200
    return times


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def postgres_database() -> str | None:
    try:
        import psycopg

        name = f"robustlit_bench_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=3) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        return f"{PG_ADMIN.rsplit('/', 1)[0]}/{name}"
    except Exception as error:  # noqa: BLE001 - the benchmark just skips PostgreSQL
        print(f"PostgreSQL skipped: {error}")
        return None


def drop_postgres(url: str) -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')


def bench(database: str, url: str | None, clients: int, duration: float) -> None:
    home = Path(tempfile.mkdtemp(prefix=f"robustlit-bench-{database}-"))
    env = {"ROBUSTLIT_RATE_LIMIT": "100000000", "ROBUSTLIT_PROJECT_QUEUE_LIMIT": "100000000"}
    if url:
        env["ROBUSTLIT_DATABASE_URL"] = url
    server = ServiceProcess(home, env).start()
    try:
        admin = bootstrap(server.url)
        api = admin["api"]
        project = api.post("/projects", json={"name": "bench"}).json()
        run = api.post(f"/projects/{project['id']}/runs", json={"overrides": ["seed=3"]}).json()
        while api.get(f"/runs/{run['id']}").json()["status"] not in ("succeeded", "failed"):
            time.sleep(0.2)
    finally:
        server.stop()
    server.env["ROBUSTLIT_WORKER"] = "0"  # measure the API and database only
    server.start()
    try:
        first_byte = report_first_byte(server.url, admin["key"], run["id"])
        cpu_before = cpu_seconds(server.process.pid)
        results = asyncio.run(drive(server.url, admin["key"], project["id"], run["id"], clients, duration))
        server_cpu = cpu_seconds(server.process.pid) - cpu_before
    finally:
        server.stop()
        if url:
            drop_postgres(url)
    elapsed = results.pop("_elapsed")
    print(f"\n### {database}: {clients} clients, {elapsed:.1f} s")
    print("| operation | requests | req/s | P50 ms | P95 ms | P99 ms | errors |")
    print("|---|---|---|---|---|---|---|")
    total = 0
    for op in OPERATIONS:
        entry = results[op]
        latency = [v * 1000 for v in entry["latency"]]
        total += len(latency)
        print(f"| {op} | {len(latency)} | {len(latency) / elapsed:.0f} | {percentile(latency, 50):.1f} | "
              f"{percentile(latency, 95):.1f} | {percentile(latency, 99):.1f} | {entry['errors']} |")
        if entry["errors"]:
            print(f"  statuses: {entry['statuses']}")
    print(f"server CPU: {server_cpu:.1f} s over {elapsed:.1f} s wall = {server_cpu / max(total, 1) * 1000:.1f} ms "
          f"per request")
    print(f"total {total / elapsed:.0f} req/s; report first byte: median "
          f"{statistics.median(first_byte) * 1000:.1f} ms, max {max(first_byte) * 1000:.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of load per database")
    parser.add_argument("--databases", default="sqlite,postgresql")
    args = parser.parse_args()
    print(f"robustlit service load: {args.clients} clients, {args.duration} s, {os.cpu_count()} CPUs")
    for database in args.databases.split(","):
        if database == "sqlite":
            bench("sqlite", None, args.clients, args.duration)
        elif database == "postgresql":
            url = postgres_database()
            if url:
                bench("postgresql", url, args.clients, args.duration)
        else:
            raise SystemExit(f"unknown database {database!r}; use sqlite and/or postgresql")


if __name__ == "__main__":
    main()
