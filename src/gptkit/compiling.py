"""torch.compile with an eager fallback: the compiled callable until it fails once, then eager for good."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class CompiledOrEager:
    """Calls ``compiled`` (None: never compiled) until it raises once, then ``eager`` with the same arguments.

    A compiler that fails (no C++ compiler, an op inductor rejects) fails before running anything, so the
    eager call computes the same result; ``warn`` gets one message naming ``what`` and the error.
    """

    def __init__(
        self, compiled: Callable | None, eager: Callable, what: str, warn: Callable[[str], object]
    ) -> None:
        self.compiled = compiled
        self.eager = eager
        self.what = what
        self.warn = warn

    @property
    def is_compiled(self) -> bool:
        """Whether calls go through the compiled callable (False when not asked for, or after a fallback)."""
        return self.compiled is not None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.compiled is not None:
            try:
                return self.compiled(*args, **kwargs)
            except Exception as error:  # noqa: BLE001 - any compiler failure: go on eagerly
                self.warn(f"torch.compile of {self.what} failed, running eagerly: {first_line(error)}")
                self.compiled = None
        return self.eager(*args, **kwargs)


def first_line(error: Exception) -> str:
    """``Type: first line of the message`` (compiler errors run to pages)."""
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[0] if text else ''}"
