"""Load held, nothing lost: the team server under 8 writers, restarted once while they log.

Starts `scripts/mlflow-server.sh --local-postgres DIR` (PostgreSQL, logins) on loopback, adds a writer with
`invaders users add`, and starts `--writers` processes (8). Each opens its own run and logs `--points`
(10 000) metric points through the outbox (`invaders.tracking.outbox.Outbox`, as training does) in bursts
of `--burst` points; once every run has points on the server, the server is stopped (SIGTERM: MLflow and
PostgreSQL) and started again. Then each writer closes its outbox (waiting up to `--wait` s), and the points
are counted in PostgreSQL itself (the `metrics` table, as the local cluster's `mlflow` user; the script
keeps its generated password in DIR/password).

Prints records sent, records stored, records per second (stored / the time from the first point logged to
the last writer's outbox closed) and the longest stall: the longest a log call kept a writer waiting, and
the longest time a writer's outbox delivered nothing while it held records (the restart). Exits 1 if one
record is missing or stored twice. Everything is on 127.0.0.1, every wait bounded.

    make bench-tracking        # or: python benchmarks/tracking_load.py [--writers 8 --points 10000]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ADMIN_PASSWORD, WRITER, WRITER_PASSWORD = "bench-admin-7c1d", "bench-writer", "bench-writer-93ae"
EXPERIMENT = "tracking-load"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, root: Path):
        self.root, self.port, self.starts, self.process = root, free_port(), 0, None
        self.uri = f"http://127.0.0.1:{self.port}"

    def start(self) -> float:
        self.starts += 1
        started = time.monotonic()
        log = open(self.root / f"server-{self.starts}.log", "w")
        self.process = subprocess.Popen(
            ["bash", str(REPO / "scripts" / "mlflow-server.sh"), "--local-postgres", str(self.root / "pg"),
             "--port", str(self.port), "--workers", "2"],
            env={**os.environ, "MLFLOW_AUTH_ADMIN_PASSWORD": ADMIN_PASSWORD}, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True)
        deadline = time.monotonic() + 300
        while True:
            try:
                urllib.request.urlopen(f"{self.uri}/health", timeout=2)
                return time.monotonic() - started
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"the server did not start; see {self.root}/server-{self.starts}.log")
                time.sleep(0.5)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=120)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=30)

    def env(self, user: str, password: str) -> dict[str, str]:
        return {**os.environ, "MLFLOW_TRACKING_URI": self.uri, "MLFLOW_TRACKING_USERNAME": user,
                "MLFLOW_TRACKING_PASSWORD": password}

    def sql(self, query: str) -> list[tuple]:
        """`query` in the server's PostgreSQL, as its `mlflow` user (DIR/password); the port from postmaster.pid."""
        import psycopg

        pg = self.root / "pg"
        port = int((pg / "pgdata" / "postmaster.pid").read_text().splitlines()[3])
        with psycopg.connect(host="127.0.0.1", port=port, user="mlflow", dbname="mlflow", connect_timeout=10,
                             password=(pg / "password").read_text().strip()) as conn:
            return conn.execute(query).fetchall()


def writer(args) -> None:
    """One writer process: a run of its own, `points` metric points through the outbox in bursts; one JSON
    line of what it saw."""
    import mlflow

    from invaders.tracking.outbox import Outbox

    client = mlflow.MlflowClient()
    run_id = client.create_run(client.get_experiment_by_name(EXPERIMENT).experiment_id,
                               run_name=f"writer-{args.index}").info.run_id
    print(json.dumps({"run_id": run_id}), flush=True)
    outbox = Outbox(run_id, Path(args.spill), echo=lambda line: print(line, file=sys.stderr, flush=True))
    quiet, last, stop = [0.0], [outbox.sent, time.monotonic()], threading.Event()

    def watch():  # the longest time records waited with none delivered
        while not stop.wait(0.05):
            now = time.monotonic()
            if outbox.sent != last[0] or not outbox.pending:
                last[:] = [outbox.sent, now]
            quiet[0] = max(quiet[0], now - last[1])

    threading.Thread(target=watch, daemon=True).start()
    longest_call, first = 0.0, time.time()
    for start in range(0, args.points, args.burst):
        for step in range(start, min(start + args.burst, args.points)):
            t = time.perf_counter()
            outbox.log_metrics({"load": float(step)}, step)
            longest_call = max(longest_call, time.perf_counter() - t)
        time.sleep(args.pause)
    unsent = outbox.close(args.wait)
    stop.set()
    print(json.dumps({"run_id": run_id, "sent": outbox.sent, "unsent": len(unsent), "longest_call_s": longest_call,
                      "longest_quiet_s": quiet[0], "first": first, "done": time.time()}), flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writers", type=int, default=8)
    parser.add_argument("--points", type=int, default=10_000, help="metric points per writer")
    parser.add_argument("--burst", type=int, default=500, help="points logged at once, then --pause seconds")
    parser.add_argument("--pause", type=float, default=0.5)
    parser.add_argument("--wait", type=float, default=600, help="seconds a writer's outbox may take to drain")
    parser.add_argument("--writer", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--index", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--spill", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.writer:
        writer(args)
        return 0

    root = Path(tempfile.mkdtemp(prefix="invaders-load-"))
    root.chmod(0o755)  # PostgreSQL runs as the OS user `postgres` when this runs as root
    server = Server(root)
    processes = []
    try:
        print(f"server: started in {server.start():.1f} s ({server.uri})", flush=True)
        (root / "params.yaml").write_text(f"mlflow: {{experiment: {EXPERIMENT}}}\npromote: {{model_name: load-dqn}}\n")
        added = subprocess.run([sys.executable, "-m", "invaders.cli", "users", "add", WRITER, "--role", "writer",
                                "--params", str(root / "params.yaml")], input=WRITER_PASSWORD + "\n", text=True,
                               capture_output=True, env=server.env("admin", ADMIN_PASSWORD), timeout=300)
        if added.returncode:
            raise SystemExit(f"users add failed: {added.stderr}")
        env = {**server.env(WRITER, WRITER_PASSWORD), "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
               "MLFLOW_HTTP_REQUEST_TIMEOUT": "20"}
        for i in range(args.writers):
            processes.append(subprocess.Popen(
                [sys.executable, __file__, "--writer", "--index", str(i), "--points", str(args.points), "--burst",
                 str(args.burst), "--pause", str(args.pause), "--wait", str(args.wait), "--spill",
                 str(root / f"spill-{i}.jsonl")], env=env, stdout=subprocess.PIPE, stderr=open(root / f"writer-{i}.log", "w"),
                text=True))
        run_ids = [json.loads(p.stdout.readline())["run_id"] for p in processes]
        ids = ", ".join(f"'{r}'" for r in run_ids)
        deadline = time.monotonic() + 600
        while len(server.sql(f"SELECT DISTINCT run_uuid FROM metrics WHERE run_uuid IN ({ids})")) < len(run_ids):
            if time.monotonic() > deadline:
                raise SystemExit("the writers' first points never reached the server")
            time.sleep(0.5)
        stored_before = server.sql(f"SELECT count(*) FROM metrics WHERE run_uuid IN ({ids})")[0][0]
        stopped = time.monotonic()
        server.stop()
        print(f"server: stopped with {stored_before} points stored", flush=True)
        time.sleep(5)
        server.start()
        print(f"server: back after {time.monotonic() - stopped:.1f} s", flush=True)
        reports = []
        for p in processes:
            out, _ = p.communicate(timeout=args.wait + 300)
            reports.append(json.loads(out.strip().splitlines()[-1]))
        rows = dict(server.sql(f"SELECT run_uuid, count(*) FROM metrics WHERE run_uuid IN ({ids}) GROUP BY run_uuid"))
        distinct = dict(server.sql(f"SELECT run_uuid, count(DISTINCT step) FROM metrics WHERE run_uuid IN ({ids})"
                                   " GROUP BY run_uuid"))
    finally:
        for p in processes:
            if p.poll() is None:
                p.kill()
        server.stop()
    sent = sum(r["sent"] for r in reports)
    stored = sum(rows.values())
    seconds = max(r["done"] for r in reports) - min(r["first"] for r in reports)
    missing = sum(args.points - distinct.get(r, 0) for r in run_ids)
    twice = sum(rows.get(r, 0) - distinct.get(r, 0) for r in run_ids)
    unsent = sum(r["unsent"] for r in reports)
    print(f"writers: {args.writers} x {args.points} points in bursts of {args.burst}, the server restarted once")
    print(f"records sent: {sent} (unsent at close: {unsent}); records stored (PostgreSQL): {stored}")
    print(f"records per second: {stored / seconds:.0f} ({stored} in {seconds:.1f} s, first point to last outbox closed)")
    print(f"longest stall: a log call {max(r['longest_call_s'] for r in reports) * 1000:.1f} ms; no delivery while"
          f" holding records {max(r['longest_quiet_s'] for r in reports):.1f} s (the restart)")
    print(f"missing: {missing}, stored twice: {twice}")
    subprocess.run(["rm", "-rf", str(root)], check=False)
    return 1 if missing or twice or unsent or stored != args.writers * args.points else 0


if __name__ == "__main__":
    sys.exit(main())
