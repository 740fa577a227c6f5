"""One model worker thread, fed by a queue where newer work supersedes older work.

llama.cpp is not thread-safe, so every model call runs here, one at a time. Each job has a key
(the document it is for): a new job with the same key drops the one still waiting, and sets the
cancel flag of the one running, which the backend checks between tokens. The event loop only
ever awaits futures; it never blocks on the model.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

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
        self._running: Job | None = None
        self._cv = threading.Condition()
        self._stopped = False
        self._thread = threading.Thread(target=self._loop, name="fimble-model", daemon=True)
        self._thread.start()

    def submit(self, key: str, run: Callable[[threading.Event], Any], *, supersede: bool = True) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        job = Job(key, run, loop.create_future(), loop)
        with self._cv:
            if supersede:
                for old in [j for j in self._pending if j.key == key]:
                    self._pending.remove(old)
                    old.resolve(error=Superseded(key))
                if self._running is not None and self._running.key == key:
                    self._running.cancel.set()
            self._pending.append(job)
            self._cv.notify()
        return job.future

    def cancel(self, future: asyncio.Future[Any]) -> None:
        """Stop the job behind `future`, waiting or running."""
        with self._cv:
            for job in list(self._pending):
                if job.future is future:
                    self._pending.remove(job)
                    job.resolve(error=Superseded(job.key))
            if self._running is not None and self._running.future is future:
                self._running.cancel.set()

    @property
    def busy(self) -> bool:
        with self._cv:
            return self._running is not None or bool(self._pending)

    def stop(self) -> None:
        with self._cv:
            self._stopped = True
            if self._running is not None:
                self._running.cancel.set()
            while self._pending:
                self._pending.popleft().resolve(error=Superseded("shutdown"))
            self._cv.notify()
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        while True:
            with self._cv:
                while not self._pending and not self._stopped:
                    self._cv.wait()
                if self._stopped:
                    return
                job = self._running = self._pending.popleft()
            try:
                job.resolve(job.run(job.cancel))
            except BaseException as exc:  # every failure goes back to the caller
                log.exception("model job %s failed", job.key)
                job.resolve(error=exc)
            finally:
                with self._cv:
                    self._running = None
