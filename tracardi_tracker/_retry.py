"""What is retried and how: one predicate and one tenacity policy.

Retried: connection errors and timeouts, 408, 429 and 5xx answers. Never
retried: 401/406 (source or traffic rejected) and 400/422 (payload rejected).
Waits grow exponentially with full jitter, are bounded, honour ``Retry-After``
and end at once when the owner asks to stop.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

import attrs

from .exceptions import ServerError, TransportError

if TYPE_CHECKING:
    import tenacity

_T = TypeVar("_T")

RETRYABLE_STATUSES = frozenset({408, 429}) | frozenset(range(500, 600))


class RetryableServerError(ServerError):
    """A retryable answer; ``retry_after`` is the server's ``Retry-After`` in seconds."""

    def __init__(self, message: str, *, status: int, retry_after: float | None) -> None:
        super().__init__(message, status=status)
        self.retry_after = retry_after


def _interruptible_sleep(stopper: threading.Event, seconds: float) -> None:
    stopper.wait(seconds)


def is_retryable(error: BaseException) -> bool:
    """True for the failures worth another try: network errors, 408, 429 and 5xx."""
    return isinstance(error, (TransportError, RetryableServerError))


def _check_positive(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if value < 0:
        raise ValueError(f"RetryPolicy.{attribute.name} must not be negative, got {value!r}")


@attrs.frozen(kw_only=True)
class RetryPolicy:
    """How hard an emitter tries before it reports a payload as failed.

    ``attempts`` counts the first try; ``max_elapsed`` bounds the whole effort in
    seconds; waits start near ``initial_wait`` and are capped by ``max_wait``. A
    server's ``Retry-After`` is waited out in full, up to ``max_retry_after``.
    """

    attempts: int = attrs.field(default=5, validator=attrs.validators.ge(1))
    initial_wait: float = attrs.field(default=0.5, validator=_check_positive)
    max_wait: float = attrs.field(default=10.0, validator=_check_positive)
    max_elapsed: float = attrs.field(default=30.0, validator=_check_positive)
    max_retry_after: float = attrs.field(default=300.0, validator=_check_positive)

    @classmethod
    def none(cls) -> RetryPolicy:
        """A policy that tries once and never retries."""
        return cls(attempts=1)

    def wait_for(self, attempt: int, error: BaseException | None) -> float:
        """Seconds to wait after failed try number ``attempt`` (1-based)."""
        retry_after = getattr(error, "retry_after", None)
        backoff = random.uniform(0, min(self.max_wait, self.initial_wait * 2 ** (attempt - 1)))
        if retry_after is not None:
            return min(self.max_retry_after, max(float(retry_after), backoff))
        return backoff

    def call(
        self,
        attempt: Callable[[], _T],
        *,
        stop_event: threading.Event | None = None,
        on_retry: Callable[[BaseException], None] | None = None,
    ) -> _T:
        """Run ``attempt`` under this policy; re-raise the last error when giving up.

        A set ``stop_event`` ends the current wait at once and stops retrying. The first
        try runs outside tenacity: most calls need no retry, and tenacity's machinery
        costs about 20 µs a call (half of what a background sender spends per payload).
        """
        started = time.monotonic()
        try:
            return attempt()
        except Exception as error:
            if self.attempts <= 1 or not is_retryable(error):
                raise
            failed = error
        import tenacity  # here: most processes never retry (it loads concurrent.futures)

        stopper = stop_event or threading.Event()
        if on_retry is not None:
            on_retry(failed)
        _interruptible_sleep(stopper, self.wait_for(1, failed))
        left = self.max_elapsed - (time.monotonic() - started)
        if stopper.is_set() or left <= 0:
            raise failed

        def wait(state: tenacity.RetryCallState) -> float:
            error = state.outcome.exception() if state.outcome else None
            return self.wait_for(state.attempt_number + 1, error)  # after the first try

        def before_sleep(state: tenacity.RetryCallState) -> None:
            if on_retry is not None and state.outcome is not None:
                error = state.outcome.exception()
                if error is not None:
                    on_retry(error)

        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception(is_retryable),
            stop=(
                tenacity.stop_after_attempt(self.attempts - 1)
                | tenacity.stop_after_delay(left)
                | tenacity.stop_when_event_set(stopper)
            ),
            wait=wait,
            sleep=lambda seconds: _interruptible_sleep(stopper, seconds),
            before_sleep=before_sleep,
            reraise=True,
        )
        return retrying(attempt)
