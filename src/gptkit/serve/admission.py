"""Fair admission: who may join the queue, and which waiting sequence gets the next free engine slot.

Every sequence of a request (prompts x n) counts against ``max_queue``. Requests of several sequences may
fill at most ``BULK_SHARE`` of the queue; the rest is kept for single-sequence requests, so a flood of
large requests cannot answer everyone else with 429. Waiting sequences are kept per request and free
slots go round-robin between requests, so a small request that arrives after a large one starts at the
next free slot instead of after all of the large one.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Hashable
from typing import Any

BULK_SHARE = 0.75  # of max_queue, for requests of more than one sequence


def queue_limit(max_queue: int, sequences: int) -> int:
    """How many sequences may wait once a request of ``sequences`` sequences joins the queue."""
    return max_queue if sequences <= 1 else bulk_limit(max_queue)


def bulk_limit(max_queue: int) -> int:
    """The part of the queue that requests of several sequences may fill (also their largest size)."""
    return max(1, int(max_queue * BULK_SHARE))


class FairQueue:
    """Waiting requests grouped by the submission they belong to, popped round-robin between groups."""

    def __init__(self) -> None:
        self._groups: OrderedDict[Hashable, deque[Any]] = OrderedDict()
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def add(self, group: Hashable, request: Any) -> None:
        self._groups.setdefault(group, deque()).append(request)
        self._size += 1

    def pop(self) -> Any | None:
        """The next request: the head of the group whose turn it is (that group moves to the back)."""
        if not self._groups:
            return None
        group, requests = next(iter(self._groups.items()))
        request = requests.popleft()
        self._size -= 1
        if requests:
            self._groups.move_to_end(group)
        else:
            del self._groups[group]
        return request

    def remove(self, request_id: int) -> bool:
        """Drop a waiting request by id; False when it is not waiting here."""
        for group, requests in self._groups.items():
            for request in requests:
                if request.id == request_id:
                    requests.remove(request)
                    self._size -= 1
                    if not requests:
                        del self._groups[group]
                    return True
        return False

    def clear(self) -> None:
        self._groups.clear()
        self._size = 0
