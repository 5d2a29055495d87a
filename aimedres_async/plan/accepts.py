"""What each config check accepts, said in words beside the check itself: the config reference's
generated tables (docs/reference/config.md) are written from these, so they cannot go stale."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


def accepts(text: str) -> Callable[[F], F]:
    """Mark a check with what it accepts, in words."""

    def mark(check: F) -> F:
        setattr(check, "accepts", text)  # noqa: B010 (a function attribute mypy does not know)
        return check

    return mark


def accepted(check: Callable[..., Any]) -> str:
    """What a check accepts, in words; "" for a check that does not say."""
    return str(getattr(check, "accepts", ""))
