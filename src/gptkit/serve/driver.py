"""AsyncEngine: one background thread owns the Engine; asyncio handlers submit requests and await events.

The thread calls ``Engine.step()`` in a loop while work exists and sleeps on a ``threading.Event``
otherwise. Handlers never touch the engine: submissions and aborts go through a lock-protected deque
that the thread drains between steps, and each step's events are handed back to the handler's event
loop with ``loop.call_soon_threadsafe`` into an ``asyncio.Queue``. Submitted sequences wait in a
:class:`FairQueue` and reach the engine round-robin between requests as slots free up
(:mod:`gptkit.serve.admission`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from gptkit.engine import Engine, Event, SamplingParams
from gptkit.serve.admission import FairQueue, queue_limit

logger = logging.getLogger("gptkit.serve")


class QueueFull(Exception):
    """Too many sequences are waiting for a slot."""


class EngineFailed(Exception):
    """The engine raised while stepping; the requests it was running were dropped."""


@dataclass
class _Sink:
    """Where one submission's events go: an asyncio queue on the submitting loop."""

    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue

    def put(self, item: Any) -> None:
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody is listening any more
            self.loop.call_soon_threadsafe(self.queue.put_nowait, item)


@dataclass
class RequestStream:
    """The events of a group of engine requests (n choices, several prompts), in the order they happen.

    Iterate it for :class:`Event` objects; it ends when every request finished. ``close()`` (also run
    when iteration stops early) aborts the unfinished ones, freeing their slots.
    """

    driver: AsyncEngine
    request_ids: list[int]
    sink: _Sink
    unfinished: set[int] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.unfinished = set(self.request_ids)

    def __aiter__(self) -> AsyncIterator[Event]:
        return self._events()

    async def _events(self) -> AsyncIterator[Event]:
        try:
            while self.unfinished:
                item = await self.sink.queue.get()
                if isinstance(item, BaseException):
                    raise item
                if item.finished:
                    self.unfinished.discard(item.request_id)
                yield item
        finally:
            self.close()

    def close(self) -> None:
        """Abort every request of the group that has not finished (idempotent)."""
        for request_id in self.unfinished:
            self.driver.abort(request_id)
        self.unfinished.clear()


def _run_call(function: Callable[[], Any], loop: asyncio.AbstractEventLoop, future: asyncio.Future) -> None:
    """Run a function handed over by :meth:`AsyncEngine.call`; its result or exception settles ``future``."""

    def settle(outcome: Any, failed: bool) -> None:
        if not future.done():
            future.set_exception(outcome) if failed else future.set_result(outcome)

    try:
        outcome, failed = function(), False
    except Exception as error:  # the caller's problem, reported to it: the engine goes on
        outcome, failed = error, True
    with contextlib.suppress(RuntimeError):  # a closed loop: nobody is waiting any more
        loop.call_soon_threadsafe(settle, outcome, failed)


class AsyncEngine:
    """Drive an :class:`Engine` from a background thread for many concurrent asyncio clients."""

    def __init__(self, engine: Engine, max_queue: int) -> None:
        self.engine = engine
        self.max_queue = max_queue
        self._inbox: deque[tuple[str, Any, Any]] = (
            deque()
        )  # ("add", request, sink) | ("abort", id, None) | ("call", (fn, loop, future), None)
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._sinks: dict[int, _Sink] = {}  # request id -> sink; engine thread only
        self._fair = FairQueue()  # drained submissions waiting for a slot; engine thread only
        self._pending_adds = 0  # submitted, not yet handed to the engine (inbox + fair queue)
        self._thread: threading.Thread | None = None
        self._stop = False

    # ---- lifecycle --------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the engine thread (no-op when it runs)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="gptkit-engine", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the engine thread after its current step; unfinished requests are aborted."""
        self._stop = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self._thread = None

    # ---- what handlers call -------------------------------------------------------------------------
    def make_request(
        self, prompt: str | Sequence[int], params: SamplingParams, adapter: str | None = None
    ) -> Any:
        """Validate and plan one request (raises GenerationError / ContextLengthError at once)."""
        return self.engine.make_request(prompt, params, adapter)

    @property
    def num_waiting(self) -> int:
        """Sequences waiting for a slot (submitted or queued in the engine)."""
        return self._pending_adds + self.engine.num_waiting

    @property
    def num_running(self) -> int:
        return self.engine.num_running

    def submit(self, requests: Sequence[Any]) -> RequestStream:
        """Queue made requests; their events arrive on the calling event loop. Raises QueueFull."""
        sink = _Sink(asyncio.get_running_loop(), asyncio.Queue())
        with self._lock:
            self._check_room(len(requests))
            for request in requests:
                self._inbox.append(("add", request, sink))
            self._pending_adds += len(requests)
        self._wake.set()
        return RequestStream(self, [r.id for r in requests], sink)

    def _check_room(self, sequences: int) -> None:
        """QueueFull unless ``sequences`` more fit: the free slots, then the queue (see admission)."""
        free = max(self.engine.max_batch_size - self.engine.num_running, 0)
        waiting = self.num_waiting
        limit = queue_limit(self.max_queue, sequences)
        if waiting + sequences - free > limit:
            share = "" if limit == self.max_queue else f"; requests of several sequences may fill {limit}"
            raise QueueFull(
                f"{waiting} sequences are already waiting and this request adds {sequences} "
                f"(max_queue={self.max_queue}{share})"
            )

    async def call(self, function: Callable[[], Any]) -> Any:
        """Run ``function()`` on the engine thread between two steps (the model is never used by two
        threads at once) and return its result or raise its exception."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        with self._lock:
            self._inbox.append(("call", (function, loop, future), None))
        self._wake.set()
        return await future

    def abort(self, request_id: int) -> None:
        """Ask the engine thread to drop a request and free its slot."""
        with self._lock:
            self._inbox.append(("abort", request_id, None))
        self._wake.set()

    # ---- the engine thread --------------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop:
            self._drain_inbox()
            self._admit_fairly()
            if not self.engine.has_unfinished():
                self._wake.wait(timeout=1.0)
                self._wake.clear()
                continue
            self._step()
        self._abort_all()

    def _drain_inbox(self) -> None:
        """Hand submissions to the engine and apply aborts, in the order they came."""
        with self._lock:
            items = list(self._inbox)
            self._inbox.clear()
        for kind, payload, sink in items:
            if kind == "call":
                _run_call(*payload)
            elif kind == "add":
                self._fair.add(id(sink), payload)  # one group per submission
                self._sinks[payload.id] = sink
            else:
                if self._fair.remove(payload):
                    self._handed_over(1)
                else:
                    self.engine.abort(payload)
                self._sinks.pop(payload, None)

    def _admit_fairly(self) -> None:
        """Hand waiting sequences to the engine, round-robin between requests, as its slots free up
        (only as many as there are free slots: the engine admits its own queue first come, first served)."""
        room = self.engine.max_batch_size - self.engine.num_running - self.engine.num_waiting
        handed = 0
        while handed < room and (request := self._fair.pop()) is not None:
            self.engine.enqueue(request)
            handed += 1
        self._handed_over(handed)

    def _handed_over(self, count: int) -> None:
        if count:
            with self._lock:
                self._pending_adds -= count

    def _step(self) -> None:
        """One engine step; events go to their sinks. A failing step drops the running requests."""
        try:
            events = self.engine.step()
        except Exception as error:  # keep serving: fail the requests that were in flight
            logger.exception("engine step failed")
            self._fail_running(error)
            return
        for event in events:
            sink = self._sinks.get(event.request_id)
            if sink is not None:
                sink.put(event)
            if event.finished:
                self._sinks.pop(event.request_id, None)

    def _fail_running(self, error: Exception) -> None:
        """Abort every request in the engine and tell its client."""
        failure = EngineFailed(f"the engine failed: {type(error).__name__}: {error}")
        self._handed_over(len(self._fair))
        self._fair.clear()
        for request_id, sink in list(self._sinks.items()):
            self.engine.abort(request_id)
            sink.put(failure)
        self._sinks.clear()

    def _abort_all(self) -> None:
        """On shutdown: drop what is left and tell the clients."""
        self._drain_inbox()
        self._fail_running(RuntimeError("the server is shutting down"))
