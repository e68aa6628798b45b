"""Per-visitor identity: session rotation, ids adopted from Tracardi, first-payload gate.

A *visitor* is whoever events are about. The tracker's own visitor has no key;
an event whose subject names a ``session_id``, ``profile_id`` or ``user_id`` belongs
to the visitor with that key, so many visitors tracked by one backend never share
a session or a profile.

The gate: Tracardi makes duplicate profiles when several payloads of a brand-new
session arrive before the first is stored (tracardi#652). So the first payload of
each session is sent alone; the ones behind it wait for its answer and then go out
with the profile id Tracardi gave.
"""

from __future__ import annotations

import os
import random
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Hashable

VisitorKey = Hashable

_fork_generation = 0
"""Bumped in a forked child: state copied from the parent is reset before use."""


def _bump_generation() -> None:
    global _fork_generation
    _fork_generation += 1
    _EVENT_IDS.clear()  # the parent hands out the same ones: never reuse them here


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_bump_generation)


class Visitor:
    """The mutable identity state of one visitor; every field is guarded by ``lock``
    (``cond`` is a condition on it, for the first-payload gate)."""

    __slots__ = (
        "_events",
        "_first_in_flight",
        "_fixed_session",
        "_generation",
        "_last_seen",
        "_listed_events",
        "_session_started",
        "_sessions_confirmed",
        "cond",
        "key",
        "lock",
        "profile_alias",
        "profile_id",
        "retired",
        "session_alias",
        "session_id",
    )

    def __init__(self, key: VisitorKey) -> None:
        self.key = key
        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)
        self.profile_id: str | None = None
        self.profile_alias: dict[str, str] = {}
        self.session_id: str | None = None
        self.session_alias: dict[str, str] = {}
        self._fixed_session = False
        self._last_seen = 0.0
        self._session_started = False
        self._sessions_confirmed: set[str] = set()
        self._first_in_flight: str | None = None
        self._generation = _fork_generation
        self._events = 0  # tracked so far, counted by session_for_event
        self._listed_events = 0  # _events when the registry put it at the young end
        self.retired = False
        """Set when the registry lets go of this visitor: whoever cached it asks again."""

    def _check_fork(self) -> None:
        """In a forked child, drop locks and in-flight marks copied from the parent:
        the threads that held them do not exist here."""
        if self._generation != _fork_generation:
            self._generation = _fork_generation
            self.lock = threading.Lock()
            self.cond = threading.Condition(self.lock)
            self._first_in_flight = None

    def session_for_event(
        self, given: str | None, now: float, timeout: float, new_id: Callable[[], str]
    ) -> str:
        """The session an event made at ``now`` belongs to, rotating after ``timeout`` idle."""
        if self._generation != _fork_generation:
            self._check_fork()
        session = self.session_id
        if (
            given is None
            and session is not None
            and (self._fixed_session or now - self._last_seen <= timeout)
        ):  # an ongoing session, the common case, needs no lock: an event racing another
            self._last_seen = now  # thread's keeps the session either of them saw, and
            self._events += 1  # both fields are hints (the idle clock, the registry's)
            return session
        with self.lock:  # the lock itself, not the condition: this runs in every track()
            session = self.session_id
            if given is not None:
                session = given
                self._fixed_session = True
            elif session is None or (not self._fixed_session and now - self._last_seen > timeout):
                session = new_id()
            self.session_id = session
            self._last_seen = now
            self._events += 1
            return session

    def new_session(self, new_id: Callable[[], str]) -> str:
        """Start a new session now."""
        self._check_fork()
        with self.cond:
            self.session_id = new_id()
            self._fixed_session = False
            self._last_seen = time.monotonic()
            return self.session_id

    def begin_send(self, session_id: str, explicit_profile: str | None) -> tuple[str, str | None]:
        """Wait until this session's first payload has its answer (unless this is it).

        Returns the session and profile ids to send, with what Tracardi answered so
        far written in. Every call must be paired with :meth:`end_send`.
        """
        self._check_fork()
        with self.cond:
            while (
                session_id not in self._sessions_confirmed
                and self._first_in_flight is not None
                and self._first_in_flight == session_id
            ):
                self.cond.wait()
            if session_id not in self._sessions_confirmed:
                self._first_in_flight = session_id
            profile: str | None
            if explicit_profile is not None:
                profile = self.profile_alias.get(explicit_profile, explicit_profile)
            else:
                profile = self.profile_id
            return self.session_alias.get(session_id, session_id), profile

    def end_send(
        self,
        session_id: str,
        explicit_profile: str | None,
        answer: tuple[str | None, str | None] | None,
    ) -> None:
        """Adopt the ``(profile id, session id)`` Tracardi answered (``None`` when the
        payload failed) and let the payloads waiting behind it go."""
        self._check_fork()
        with self.cond:
            if answer is not None:
                profile_id, answered_session = answer
                if profile_id is not None:
                    self.profile_id = profile_id
                    if explicit_profile is not None:
                        self.profile_alias[explicit_profile] = profile_id
                sent = self.session_alias.get(session_id, session_id)
                if answered_session is not None and answered_session != sent:
                    self.session_alias[session_id] = answered_session
                    if self.session_id == session_id and not self._fixed_session:
                        self.session_id = answered_session
                self._sessions_confirmed.add(session_id)
                if len(self._sessions_confirmed) > 16:
                    self._sessions_confirmed = {session_id}
            if self._first_in_flight == session_id:
                self._first_in_flight = None
            self.cond.notify_all()

    def ids(self) -> tuple[str | None, str | None]:
        """The visitor's profile id and (adopted) session id now."""
        self._check_fork()
        with self.cond:
            session = self.session_id
            if session is not None:
                session = self.session_alias.get(session, session)
            return self.profile_id, session

    def adopted_session(self, session_id: str | None) -> str | None:
        """The session id Tracardi answered for ``session_id`` (itself if none other)."""
        if session_id is None:
            return None
        self._check_fork()
        with self.cond:
            return self.session_alias.get(session_id, session_id)


def new_session_id() -> str:
    """A fresh uuid4 session id."""
    return str(uuid.uuid4())


_VERSION_MASK = ~(0xF000 << 64) & ~(0xC000 << 48)
_VERSION_BITS = (4 << 76) | (0x8000 << 48)
_ID_BATCH = 256
_BATCH_MASK = int.from_bytes(
    (((1 << 128) - 1) & _VERSION_MASK).to_bytes(16, "big") * _ID_BATCH, "big"
)
_BATCH_BITS = int.from_bytes(_VERSION_BITS.to_bytes(16, "big") * _ID_BATCH, "big")
_EVENT_IDS: list[str] = []
"""Event ids made ahead, taken by :func:`new_event_id`; emptied in a forked child."""


_HEX_AT = [  # (where in the ids' text, where in the hex) of each of an id's 32 digits
    (slice(to + k, None, 37), slice(at + k, None, 32))
    for to, at, digits in ((0, 0, 8), (9, 8, 4), (14, 12, 4), (19, 16, 4), (24, 20, 12))
    for k in range(digits)
]
_IDS_TEMPLATE = b",".join([b"-" * 36] * _ID_BATCH)  # the dashes, and a comma after each id


def make_event_ids(getrandbits: Callable[[int], int] = random.getrandbits) -> list[str]:
    """A batch of random (version 4) UUID strings, from one draw of random bits.

    From the ``random`` module's generator, which is seeded from the OS and reseeded
    in a forked child, so ids never repeat across processes. The texts are laid out
    for the whole batch at once (each of the 32 digit places is one strided copy) and
    cut apart by one ``split``.
    """
    bits = getrandbits(128 * _ID_BATCH) & _BATCH_MASK | _BATCH_BITS
    digits = bits.to_bytes(16 * _ID_BATCH, "big").hex().encode()
    text = bytearray(_IDS_TEMPLATE)
    for to, at in _HEX_AT:
        text[to] = digits[at]
    return text.decode().split(",")


def new_event_id() -> str:
    """A random (version 4) UUID string, cheap on the caller's hot path: taken from a
    pool the background emitter's threads keep filled (see :func:`stock_event_ids`), made in a
    batch here when the pool is empty."""
    pool = _EVENT_IDS
    while True:
        try:
            return pool.pop()
        except IndexError:
            pool.extend(make_event_ids())


def stock_event_ids(at_least: int = 4 * _ID_BATCH) -> None:
    """Fill the event id pool up to ``at_least`` ids, off the callers' path."""
    pool = _EVENT_IDS
    while len(pool) < at_least:
        pool.extend(make_event_ids())


class VisitorRegistry:
    """The visitors one tracker knows, the least recently seen let go past ``capacity``.

    Callers may cache a visitor and skip :meth:`get` while its ``retired`` flag is
    unset, so the order here is refreshed lazily: at eviction, a visitor seen since it
    was last put at the young end gets a second chance instead (an approximate LRU at
    no cost per event).
    """

    def __init__(self, capacity: int = 100_000) -> None:
        self.capacity = capacity
        self._lock = threading.Lock()
        self._visitors: OrderedDict[VisitorKey, Visitor] = OrderedDict()
        self._generation = _fork_generation

    def _check_fork(self) -> None:
        if self._generation != _fork_generation:
            self._generation = _fork_generation
            self._lock = threading.Lock()

    def get(self, key: VisitorKey) -> Visitor:
        """The visitor for ``key``, made on first use, for the event about to be tracked."""
        if self._generation != _fork_generation:
            self._check_fork()
        with self._lock:
            visitors = self._visitors
            visitor = visitors.get(key)
            if visitor is None:
                visitor = visitors[key] = Visitor(key)
                if len(visitors) > self.capacity:
                    self._evict(key)
            else:
                visitors.move_to_end(key)
            visitor._listed_events = visitor._events + 1  # the event this get() is for
            return visitor

    def _evict(self, newest: VisitorKey) -> None:
        """Let go of the visitor seen least recently (under the lock): the oldest in
        order that has had no event since it was put at the young end."""
        visitors = self._visitors
        while True:
            key, oldest = visitors.popitem(last=False)
            if key == newest or oldest._events > oldest._listed_events:
                visitors[key] = oldest  # a second chance, at the young end
                oldest._listed_events = oldest._events
                continue
            oldest.retired = True
            return

    def peek(self, key: VisitorKey) -> Visitor | None:
        """The visitor for ``key`` if known, without making one."""
        self._check_fork()
        with self._lock:
            return self._visitors.get(key)
