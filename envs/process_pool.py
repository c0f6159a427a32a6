"""Worker processes that apply a function to items under an outer deadline per item.

Used by the verifier to run math-verify, whose own timeouts rely on SIGALRM (main thread only) and
cannot interrupt a computation stuck in C. Each worker is a separate process on its own main
thread; the parent sends it a chunk of items, the worker streams back one result per item, and the
parent kills any worker that spends longer than the deadline on one item, records that item as
``"timeout"`` and hands the rest of its chunk to a fresh worker. A worker that dies (a crash, or
the memory limit) costs only its current item, recorded as ``"crashed"``.

Workers are fresh interpreters (``python -c``) talking over ``multiprocessing.connection`` pipes.
Unlike multiprocessing's ``spawn`` and ``forkserver`` start methods they never re-import the
caller's ``__main__`` (so a training script without an ``if __name__ == "__main__"`` guard is not
re-run in every worker), and unlike ``fork`` they never copy the caller's threads, so ``map``
works from any thread. Workers start lazily on the first ``map`` and are reused across calls; their
start-up time is not charged to any item. Calls from several threads are serialised. ``close()``
stops the workers; it also runs when the pool is garbage collected and at interpreter exit.
POSIX only (pipes passed by file descriptor).
"""

from __future__ import annotations

import collections
import dataclasses
import importlib
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
import weakref
from multiprocessing.connection import Connection, wait
from typing import Any, Callable, Literal, Optional, Sequence

Status = Literal["ok", "error", "timeout", "crashed"]


@dataclasses.dataclass(frozen=True)
class ItemResult:
    """The outcome of one item: ``value`` is the return value (``"ok"``) or the error's text."""

    status: Status
    value: Any = None


@dataclasses.dataclass
class PoolStats:
    """Counters over the pool's lifetime."""

    items: int = 0
    timeouts: int = 0
    crashes: int = 0
    workers_started: int = 0


def _limit_memory(megabytes: int) -> None:
    try:
        import resource

        limit = megabytes * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    except (ImportError, ValueError, OSError):  # not supported here (e.g. macOS): no limit
        pass


def _worker_main(
    read_fd: int, write_fd: int, preload: Sequence[str], memory_limit_mb: Optional[int]
) -> None:
    """Entry point of a worker process: import ``preload``, then serve chunks until told to stop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    inbox, outbox = Connection(read_fd, writable=False), Connection(write_fd, readable=False)
    try:
        if memory_limit_mb is not None:
            _limit_memory(memory_limit_mb)
        for module in preload:
            importlib.import_module(module)
    except BaseException:
        outbox.send(("failed", traceback.format_exc()))
        return
    outbox.send(("ready", os.getpid()))
    while True:
        try:
            message = inbox.recv()
        except (EOFError, OSError):
            return
        if message is None:
            return
        function, chunk = message
        for index, item in chunk:
            try:
                result: tuple[Any, ...] = (index, "ok", function(item))
            except Exception as error:  # reported, the worker lives on
                result = (index, "error", f"{type(error).__name__}: {error}")
            outbox.send(result)


_WORKER_COMMAND = (
    "import sys; from ngrpo_rl.envs.process_pool import _worker_main; "
    "_worker_main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[4:], "
    "int(sys.argv[3]) if sys.argv[3] != 'none' else None)"
)


class _Worker:
    """One worker process, its pipes, and the chunk it is working on."""

    def __init__(self, preload: Sequence[str], memory_limit_mb: Optional[int]) -> None:
        to_child_read, to_child_write = os.pipe()
        from_child_read, from_child_write = os.pipe()
        environment = dict(os.environ)
        # The worker must import what the caller imports (ngrpo_rl, the mapped function's module).
        environment["PYTHONPATH"] = os.pathsep.join(path for path in sys.path if path)
        limit = "none" if memory_limit_mb is None else str(memory_limit_mb)
        try:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    _WORKER_COMMAND,
                    str(to_child_read),
                    str(from_child_write),
                    limit,
                    *preload,
                ],
                pass_fds=(to_child_read, from_child_write),
                stdin=subprocess.DEVNULL,
                env=environment,
                close_fds=True,
            )
        finally:
            os.close(to_child_read)
            os.close(from_child_write)
        self.outbox = Connection(to_child_write, readable=False)
        self.connection = Connection(from_child_read, writable=False)
        self.started_at = time.monotonic()
        self.ready = False
        self.chunk: collections.deque[tuple[int, Any]] = collections.deque()
        self.last_progress = 0.0

    def send(self, message: Any) -> None:
        self.outbox.send(message)

    def stop(self, grace: float = 0.5) -> None:
        """Asks the worker to exit, then kills it if it has not within ``grace`` seconds."""
        try:
            self.outbox.send(None)
        except (OSError, ValueError):
            pass
        try:
            self.process.wait(grace)
        except subprocess.TimeoutExpired:
            pass
        self.kill()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(5.0)
        self.outbox.close()
        self.connection.close()


def _stop_all(workers: list[_Worker], owner_pid: int) -> None:
    if os.getpid() != owner_pid:  # a forked copy of the owner: the workers are not its own
        return
    while workers:
        workers.pop().stop()


class DeadlinePool:
    """A small pool of worker processes with a deadline per item.

    Args:
        num_workers: number of worker processes (started lazily, on the first ``map``).
        preload: modules every worker imports before it counts as ready (start-up time is not
            charged to any item's deadline).
        memory_limit_mb: address-space limit of each worker (None: unlimited); an item that
            exceeds it crashes its worker and is recorded as ``"crashed"``.
        startup_timeout: seconds a worker may take to start before the pool gives up.
        max_chunk: most items sent to a worker at once (fewer round trips, same per-item deadline).
    """

    def __init__(
        self,
        num_workers: int,
        *,
        preload: Sequence[str] = (),
        memory_limit_mb: Optional[int] = None,
        startup_timeout: float = 120.0,
        max_chunk: int = 32,
    ) -> None:
        if num_workers < 1:
            raise ValueError(f"num_workers must be at least 1, got {num_workers}")
        self.num_workers = num_workers
        self.preload = tuple(preload)
        self.memory_limit_mb = memory_limit_mb
        self.startup_timeout = startup_timeout
        self.max_chunk = max_chunk
        self.stats = PoolStats()
        self._workers: list[_Worker] = []
        self._lock = threading.Lock()
        self._closed = False
        self.owner_pid = os.getpid()
        self._finalizer = weakref.finalize(self, _stop_all, self._workers, self.owner_pid)

    def map(
        self, function: Callable[[Any], Any], items: Sequence[Any], *, deadline: float
    ) -> list[ItemResult]:
        """Applies ``function`` to each item in the workers; one ``ItemResult`` per item, in order.

        ``function`` must be picklable by reference (a module-level function). An item whose call
        runs longer than ``deadline`` seconds is ``"timeout"``; its worker is replaced.
        """
        if deadline <= 0:
            raise ValueError(f"deadline must be positive, got {deadline}")
        if not items:
            return []
        with self._lock:
            if self._closed:
                raise RuntimeError("this DeadlinePool is closed")
            if os.getpid() != self.owner_pid:
                raise RuntimeError(
                    "this DeadlinePool belongs to the process that created it, not to a forked "
                    "copy; create a new Verifier (or pool) in this process"
                )
            return self._map(function, list(items), deadline)

    def close(self) -> None:
        """Stops all workers; the pool cannot be used afterwards."""
        with self._lock:
            self._closed = True
            self._finalizer()

    def __enter__(self) -> "DeadlinePool":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    # -- the scheduling loop ------------------------------------------------------------------

    def _chunks(self, count: int) -> collections.deque[collections.deque[int]]:
        size = max(1, min(self.max_chunk, -(-count // (4 * self.num_workers))))
        return collections.deque(
            collections.deque(range(start, min(start + size, count)))
            for start in range(0, count, size)
        )

    def _start_worker(self) -> _Worker:
        worker = _Worker(self.preload, self.memory_limit_mb)
        self._workers.append(worker)
        self.stats.workers_started += 1
        return worker

    def _replace(self, worker: _Worker) -> None:
        worker.kill()
        self._workers.remove(worker)
        self._start_worker()

    def _map(
        self, function: Callable[[Any], Any], items: list[Any], deadline: float
    ) -> list[ItemResult]:
        try:
            return self._schedule(function, items, deadline)
        except BaseException:
            # An error or Ctrl-C mid-call: workers still holding items are in an unknown state.
            for worker in [worker for worker in self._workers if worker.chunk]:
                self._replace(worker)
            raise

    def _schedule(
        self, function: Callable[[Any], Any], items: list[Any], deadline: float
    ) -> list[ItemResult]:
        results: list[Optional[ItemResult]] = [None] * len(items)
        pending = self._chunks(len(items))
        while len(self._workers) < self.num_workers:
            self._start_worker()
        failed_starts = 0

        def finish(worker: _Worker, status: Status, value: Any) -> None:
            index, _ = worker.chunk.popleft()
            results[index] = ItemResult(status, value)
            self.stats.items += 1

        def give_up(worker: _Worker) -> None:
            """Requeues the worker's unfinished items and replaces it by a fresh worker."""
            if worker.chunk:
                pending.appendleft(collections.deque(index for index, _ in worker.chunk))
                worker.chunk.clear()
            self._replace(worker)

        while pending or any(worker.chunk for worker in self._workers):
            for worker in list(self._workers):  # hand chunks to idle workers
                if worker.ready and not worker.chunk and pending:
                    if worker.process.poll() is not None:  # died while idle: no item is charged
                        give_up(worker)
                        continue
                    worker.chunk = collections.deque(
                        (index, items[index]) for index in pending.popleft()
                    )
                    worker.last_progress = time.monotonic()
                    try:
                        worker.send((function, list(worker.chunk)))
                    except (OSError, ValueError):  # it died while idle: no item is charged
                        give_up(worker)

            # Sleep until a result, a worker's ready signal, or the nearest deadline.
            watched = {w.connection: w for w in self._workers if w.chunk or not w.ready}
            due = [
                w.last_progress + deadline if w.chunk else w.started_at + self.startup_timeout
                for w in watched.values()
            ]
            timeout = max(0.0, min(due) - time.monotonic()) if due else None
            for connection in wait(list(watched), timeout):
                worker = watched[connection]
                try:
                    message = connection.recv()
                except (EOFError, OSError):
                    message = ("died", "the worker process exited")
                if message[0] == "ready":
                    worker.ready = True
                    failed_starts = 0
                elif not worker.ready:  # "failed" or "died" while starting
                    failed_starts += 1
                    if failed_starts >= 3:
                        raise RuntimeError(
                            "the pool's worker processes fail to start; last error:\n" + message[1]
                        )
                    give_up(worker)
                elif message[0] == "died":  # crashed mid-chunk: only its current item is lost
                    finish(worker, "crashed", "the worker process died")
                    self.stats.crashes += 1
                    give_up(worker)
                else:
                    index, status, value = message
                    assert worker.chunk and worker.chunk[0][0] == index, "results out of order"
                    finish(worker, status, value)
                    worker.last_progress = time.monotonic()

            now = time.monotonic()
            for worker in list(self._workers):
                if worker.chunk and now - worker.last_progress >= deadline:
                    finish(worker, "timeout", f"no result within {deadline:g} s")
                    self.stats.timeouts += 1
                    give_up(worker)
                elif not worker.ready and now - worker.started_at >= self.startup_timeout:
                    raise RuntimeError(
                        f"a worker process did not start within {self.startup_timeout:g} s"
                    )
        assert all(result is not None for result in results)
        return results  # type: ignore[return-value]
