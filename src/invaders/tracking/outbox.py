"""Tracking that survives the server going away.

Training never talks to the tracking server itself: its metrics, params and tags go into an
`Outbox`, and a background thread sends them in order with MLflow's `log_batch`. While the server
is unreachable the records wait (in memory up to a bound, then in a spill file) and the thread
tries again with a growing pause; training goes on. Each metric keeps the time it was measured,
so a record sent twice (its answer lost in the outage) is stored once: MLflow drops exact
duplicates. A refusal is not an outage: when the server refuses a batch for good (a permission
revoked, a malformed batch, a run that is gone: `store.permanent`), the thread stops sending, says
so once, and keeps every record from that batch on (`refused`). What is still unsent when the run
ends is written to a file (`save_unsent`) that a later run of the stage sends (`read_unsent`).
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from pathlib import Path

from invaders import files
from invaders.errors import first_line
from invaders.tracking.store import permanent, stopped_by

# MLflow's log_batch limits: 1000 metrics, 100 params, 100 tags per request.
LIMITS = {"metrics": 1000, "params": 100, "tags": 100}
MEMORY_LIMIT = 20_000  # records; ~10 MB, a long outage's worth of training metrics
PAUSES = (1, 2, 4, 8, 10)  # seconds between tries while the server is away
RECORDS = "the run's records"


def _now_ms() -> int:
    return int(time.time() * 1000)


class Outbox:
    """Records for one MLflow run, sent in order by a background thread. Needs the tracking URI set."""

    def __init__(self, run_id: str, spill: Path, memory_limit: int = MEMORY_LIMIT, echo=print):
        import mlflow

        self.run_id, self.spill, self.memory_limit, self.echo = run_id, Path(spill), memory_limit, echo
        self._client = mlflow.MlflowClient()
        self._memory: deque[dict] = deque()
        self.spill.unlink(missing_ok=True)  # a killed run's; its records went with it (as those in memory did)
        self._spilled = 0  # records in the spill file, all newer than those in memory
        self._changed = threading.Condition()
        self._draining = False  # close(): send what is left, then stop
        self._stop = threading.Event()  # close()'s wait is over: stop now
        self._down_since: float | None = None
        self.refused: BaseException | None = None  # the refusal that stopped the sending, if one did
        self.sent = 0
        self._thread = threading.Thread(target=self._send_loop, name="tracking-outbox", daemon=True)
        self._thread.start()

    # What training calls: never blocks on the server.
    def log_metrics(self, metrics: dict[str, float], step: int, timestamp: int | None = None) -> None:
        self.put({"kind": "metrics", "step": int(step), "timestamp": timestamp or _now_ms(),
                  "values": {k: float(v) for k, v in metrics.items()}})

    def log_params(self, params: dict) -> None:
        items = sorted((k, str(v)) for k, v in params.items())
        for i in range(0, len(items), LIMITS["params"]):
            self.put({"kind": "params", "values": dict(items[i:i + LIMITS["params"]])})

    def set_tags(self, tags: dict) -> None:
        self.put({"kind": "tags", "values": {k: str(v) for k, v in tags.items()}})

    def put(self, record: dict) -> None:
        with self._changed:
            if self._spilled or len(self._memory) >= self.memory_limit:
                with open(self.spill, "a") as f:
                    f.write(json.dumps(record) + "\n")
                self._spilled += 1
            else:
                self._memory.append(record)
            self._changed.notify()

    @property
    def pending(self) -> int:
        with self._changed:
            return len(self._memory) + self._spilled

    def close(self, wait: float) -> list[dict]:
        """Stop after sending what can be sent within `wait` seconds; returns the unsent records, in order."""
        deadline = time.monotonic() + wait
        with self._changed:
            self._draining = True
            self._changed.notify()
        self._thread.join(max(0.0, deadline - time.monotonic()))
        self._stop.set()
        with self._changed:
            self._changed.notify()
        self._thread.join()  # at most one request's timeout
        with self._changed:
            unsent = list(self._memory) + self._read_spill()
            self._memory.clear()
            self._spilled = 0
        self.spill.unlink(missing_ok=True)
        return unsent

    # The sending thread.
    def _read_spill(self) -> list[dict]:
        if not self._spilled:
            return []
        return [json.loads(line) for line in self.spill.read_text().splitlines()]

    def _refill(self) -> None:
        """Memory is empty: move the oldest spilled records back into it."""
        records = self._read_spill()
        self._memory.extend(records[:self.memory_limit])
        rest = records[self.memory_limit:]
        files.write_text(self.spill, "".join(json.dumps(r) + "\n" for r in rest))
        self._spilled = len(rest)

    def _next_batch(self) -> list[dict] | None:
        with self._changed:
            while not self._memory and not self._spilled and not self._draining and not self._stop.is_set():
                self._changed.wait()
            if self._stop.is_set():
                return None
            if not self._memory and self._spilled:
                self._refill()
            if not self._memory:
                return None  # draining, and everything was sent
            batch, counts = [], dict.fromkeys(LIMITS, 0)
            for record in self._memory:
                kind, n = record["kind"], len(record["values"])
                if batch and counts[kind] + n > LIMITS[kind]:
                    break
                counts[kind] += n
                batch.append(record)
            return batch

    def _send(self, batch: list[dict]) -> None:
        from mlflow.entities import Metric, Param, RunTag

        metrics, params, tags = [], [], []
        for r in batch:
            if r["kind"] == "metrics":
                metrics += [Metric(k, v, r["timestamp"], r["step"]) for k, v in r["values"].items()]
            elif r["kind"] == "params":
                params += [Param(k, v) for k, v in r["values"].items()]
            else:
                tags += [RunTag(k, v) for k, v in r["values"].items()]
        self._client.log_batch(self.run_id, metrics=metrics, params=params, tags=tags, synchronous=True)

    def _send_loop(self) -> None:
        tries = 0
        while (batch := self._next_batch()) is not None:
            try:
                self._send(batch)
            except Exception as exc:  # noqa: BLE001 - whatever the client raises, the records wait
                if permanent(exc):  # sending the same again is refused again: keep it all for a later run
                    self.refused = exc
                    self.echo(f"tracking: {stopped_by(exc, RECORDS)}; keeping them for the next run of the stage,"
                              " training goes on")
                    return
                if self._down_since is None:
                    self._down_since = time.monotonic()
                    reason = first_line(exc, 160)
                    self.echo(f"tracking: the server does not answer ({reason}); keeping records, training goes on")
                self._stop.wait(PAUSES[min(tries, len(PAUSES) - 1)])
                tries += 1
                continue
            with self._changed:
                for _ in batch:
                    self._memory.popleft()
            self.sent += len(batch)
            tries = 0
            if self._down_since is not None:
                self.echo(f"tracking: the server is back after {time.monotonic() - self._down_since:.0f} s;"
                          f" sending the {self.pending + len(batch)} records kept meanwhile")
                self._down_since = None


def save_unsent(path: Path, run_id: str, fingerprint: str, records: list[dict]) -> None:
    """The records a run could not send, for a later run of the stage: a header line, then one record a line."""
    header = {"run_id": run_id, "fingerprint": fingerprint}
    files.write_text(path, "".join(json.dumps(r) + "\n" for r in [header, *records]))


def read_unsent(path: Path) -> tuple[dict, list[dict]] | None:
    """(header, records) saved by `save_unsent`, or None if there is no such file."""
    if not path.is_file():
        return None
    header, *records = [json.loads(line) for line in path.read_text().splitlines()]
    return header, records
