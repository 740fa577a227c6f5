"""One model worker thread, fed by a queue where newer work supersedes older work.

llama.cpp is not thread-safe, so every model call runs here, one at a time. Each job has a key
(the document it is for): a new job with the same key drops the one still waiting, and sets the
cancel flag of the one running, which the backend checks between tokens (and llama.cpp within a
batch of prompt tokens, for requests). The event loop only
ever awaits futures; it never blocks on the model.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from native.cancel import CancelFlag

log = logging.getLogger(__name__)


class Superseded(Exception):
    """A newer request for the same document took this one's place."""


@dataclass
class Job:
    key: str
    run: Callable[[threading.Event], Any]
    future: asyncio.Future[Any]
    loop: asyncio.AbstractEventLoop
    cancel: threading.Event = field(default_factory=threading.Event)
    resume: bool = False  # an idle job that is run again later when preempted
    quiet_s: float = 0.0  # an idle job waits for this long without other work

    def resolve(self, result: Any = None, error: BaseException | None = None) -> None:
        def settle() -> None:
            if self.future.done():
                return
            if error is not None:
                self.future.set_exception(error)
            else:
                self.future.set_result(result)

        self.loop.call_soon_threadsafe(settle)


class ModelWorker:
    def __init__(self) -> None:
        self._pending: deque[Job] = deque()
        # Work worth doing only while nothing else waits (warming the KV cache), by key; a newer
        # idle job with the same key replaces the older, and any real job preempts a running one.
        self._idle: dict[str, Job] = {}
        self._running: Job | None = None
        self._running_idle = False
        self._last_activity = time.monotonic()  # the last submit or end of a real job
        self._cv = threading.Condition()
        self._stopped = False
        self._thread = threading.Thread(target=self._loop, name="fimble-model", daemon=True)
        self._thread.start()

    def submit(self, key: str, run: Callable[[threading.Event], Any], *, supersede: bool = True) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        # A request's cancel can stop llama.cpp within a batch (native.CancelFlag).
        job = Job(key, run, loop.create_future(), loop, cancel=CancelFlag())
        with self._cv:
            self._last_activity = time.monotonic()
            if supersede:
                for old in [j for j in self._pending if j.key == key]:
                    self._pending.remove(old)
                    old.resolve(error=Superseded(key))
                if self._running is not None and self._running.key == key:
                    self._running.cancel.set()
            if self._running is not None and self._running_idle:
                self._running.cancel.set()
            self._pending.append(job)
            self._cv.notify()
        return job.future

    def submit_idle(self, key: str, run: Callable[[threading.Event], Any], *,
                    resume: bool = False, quiet_s: float = 0.0, stop_at_once: bool = False) -> asyncio.Future[Any]:
        """Run `run` when the worker has nothing else to do, and has had nothing for `quiet_s`
        seconds; the latest job for `key` wins, and later idle jobs run first (the place just
        edited before a document's warm-up) and preempt a running one. A preempted job with
        `resume` runs again when all else is done. (A long warm-up started between keystrokes
        would only be preempted again: it waits for the user to pause.)

        `stop_at_once`: its cancel stops its model call within it (native.CancelFlag with `idle`),
        for work whose prompt the next request evaluates anyway (the place just edited: a request
        follows the edit by a few milliseconds, and would otherwise wait for the call). Other idle
        work's cancel is a plain Event: a preempted call runs to its end and what it evaluated
        stays (a document's or a whole window's prompt, evaluated a pause at a time)."""
        loop = asyncio.get_running_loop()
        cancel = CancelFlag(idle=True) if stop_at_once else threading.Event()
        job = Job(key, run, loop.create_future(), loop, cancel=cancel, resume=resume, quiet_s=quiet_s)
        with self._cv:
            self._last_activity = time.monotonic()
            old = self._idle.pop(key, None)
            if old is not None:
                old.resolve(error=Superseded(key))
            if self._running is not None and self._running_idle:
                self._running.cancel.set()
            self._idle[key] = job
            self._cv.notify()
        return job.future

    def drop_idle(self, key: str) -> None:
        """Forget the idle job for `key`, waiting or running (a closed document's warm-up)."""
        with self._cv:
            job = self._idle.pop(key, None)
            if job is not None:
                job.resolve(error=Superseded(key))
            if self._running is not None and self._running_idle and self._running.key == key:
                self._running.resume = False
                self._running.cancel.set()

    def cancel(self, future: asyncio.Future[Any]) -> None:
        """Stop the job behind `future`, waiting or running."""
        with self._cv:
            for job in list(self._pending):
                if job.future is future:
                    self._pending.remove(job)
                    job.resolve(error=Superseded(job.key))
            if self._running is not None and self._running.future is future:
                self._running.cancel.set()

    def stop(self) -> None:
        with self._cv:
            self._stopped = True
            if self._running is not None:
                self._running.cancel.set()
            while self._pending:
                self._pending.popleft().resolve(error=Superseded("shutdown"))
            for job in self._idle.values():
                job.resolve(error=Superseded("shutdown"))
            self._idle.clear()
            self._cv.notify()
        self._thread.join(timeout=5)

    def _next_idle(self) -> str:
        """The newest idle job whose quiet time has passed."""
        quiet = time.monotonic() - self._last_activity
        return next(k for k in reversed(self._idle) if self._idle[k].quiet_s <= quiet)

    def _idle_wait(self) -> float | None:
        """0.0 when an idle job may start now, else how long to wait (None: until notified)."""
        if not self._idle:
            return None
        quiet = time.monotonic() - self._last_activity
        return max(0.0, min(job.quiet_s for job in self._idle.values()) - quiet)

    def _loop(self) -> None:
        while True:
            with self._cv:
                while not self._stopped and not self._pending and (wait := self._idle_wait()) != 0.0:
                    self._cv.wait(wait)
                if self._stopped:
                    return
                self._running_idle = not self._pending
                job = self._pending.popleft() if self._pending else self._idle.pop(self._next_idle())
                self._running = job
            try:
                result, error = job.run(job.cancel), None
            except BaseException as exc:  # every failure goes back to the caller
                log.exception("model job %s failed", job.key)
                result, error = None, exc
            with self._cv:
                if (error is None and job.resume and job.cancel.is_set() and job.key not in self._idle
                        and not self._stopped):
                    # Preempted: last in line again, with the same future.
                    self._idle = {job.key: Job(job.key, job.run, job.future, job.loop, resume=True,
                                               quiet_s=job.quiet_s), **self._idle}
                else:
                    job.resolve(result, error)
                if not self._running_idle:
                    self._last_activity = time.monotonic()
                self._running = None
                self._running_idle = False
