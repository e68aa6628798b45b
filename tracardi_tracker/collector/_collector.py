"""The in-process handle: start a collector, point a client at it, look at what arrived."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterable
from types import TracebackType
from typing import Any

import attrs

from ._config import DEFAULT_HOST, CollectorConfig
from ._engine import Engine, normalize_type
from ._errors import CollectorError, CollectorStartError, CollectorTimeoutError
from ._faults import FaultController, Faults
from ._server import HTTPServer
from ._state import ProfileRecord, SessionRecord
from ._store import BadRequest, Store, StoredEvent
from ._versions import TracardiVersion

__all__ = ["Collector"]

logger = logging.getLogger("tracardi_tracker.collector")

_POLL_INTERVAL = 0.05


class Collector:
    """A local Tracardi collector served from a daemon thread of this process.

    ::

        with Collector(tracardi_version="0.9", sources=["my-source"]) as collector:
            requests.post(collector.track_url, json=payload)
            assert [e.type for e in collector.wait_for(1)] == ["page-view"]

    The keyword arguments are those of :class:`CollectorConfig`; ``port=0`` (the default)
    picks a free port. :meth:`stop` is idempotent; a stopped collector cannot be restarted.
    """

    def __init__(
        self,
        *,
        host: str = DEFAULT_HOST,
        port: int = 0,
        db: str | None = None,
        tracardi_version: str = "0.9",
        sources: Iterable[str] | None = None,
        disabled_sources: Iterable[str] = (),
        allow_remote: bool = False,
        static_profile_ids: bool = False,
        track_debug: bool = False,
        faults: Faults | None = None,
    ) -> None:
        self._init(
            CollectorConfig(
                host=host,
                port=port,
                db=db,
                tracardi_version=tracardi_version,
                sources=sources,
                disabled_sources=disabled_sources,
                allow_remote=allow_remote,
                static_profile_ids=static_profile_ids,
                track_debug=track_debug,
                faults=faults or Faults(),
            )
        )

    @classmethod
    def from_config(cls, config: CollectorConfig) -> Collector:
        """A collector with these settings (not started)."""
        collector = cls.__new__(cls)
        collector._init(config)
        return collector

    def _init(self, config: CollectorConfig) -> None:
        self.config = config
        self._life = threading.RLock()
        self._state = "new"
        self._store: Store | None = None
        self._engine: Engine | None = None
        self._server: HTTPServer | None = None
        self._listening = False
        self._timer: threading.Timer | None = None
        self._faults = FaultController(on_refuse=self._refuse)
        self._address: tuple[str, int] | None = None

    # -- life cycle -----------------------------------------------------------------------

    def start(self) -> Collector:
        """Open the database and start listening; returns ``self``. A no-op when running.

        :raises CollectorStartError: when the address cannot be bound.
        :raises CollectorError: when the collector was stopped before.
        """
        with self._life:
            if self._state == "running":
                return self
            if self._state == "stopped":
                raise CollectorError("a stopped collector cannot be started again")
            config = self.config
            store = Store(config.db)
            try:
                engine = Engine(config, store, self._faults)
                family = socket.AF_INET6 if ":" in config.host else socket.AF_INET
                try:
                    server = HTTPServer((config.host, config.port), engine, self._faults, family)
                except OSError as error:
                    raise CollectorStartError(
                        f"cannot listen on {config.host}:{config.port}: {error}"
                    ) from error
            except BaseException:
                store.close()
                raise
            self._store, self._engine, self._server = store, engine, server
            self._address = (config.host, server.server_port)
            self._state = "running"
            self._serve()
            if config.faults.active:
                self._faults.set(config.faults)
            logger.info(
                "Tracardi collector (imitating Tracardi %s) listening on %s",
                config.tracardi_version,
                self.url,
            )
            return self

    def stop(self, timeout: float = 2.0) -> None:
        """Stop listening, finish the requests in flight, close the database. Idempotent."""
        with self._life:
            if self._state != "running":
                self._state = "stopped"
                return
            self._state = "stopped"
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            server = self._server
            assert server is not None
            server.stop_listening()
            server.wait_idle(timeout)
            server.close(timeout)
            if self._store is not None:
                self._store.close()
            logger.info("Tracardi collector on %s stopped", self.url)

    def __enter__(self) -> Collector:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _serve(self) -> None:
        server = self._server
        assert server is not None
        server.start(name=f"tracardi-collector-{server.server_port}")
        self._listening = True

    def _refuse(self, seconds: float) -> None:
        """Close the listening socket for ``seconds``, resetting open connections.

        ``seconds <= 0`` ends a refusal in progress at once.
        """
        with self._life:
            if self._state != "running" or self._server is None:
                return
            if seconds <= 0:
                if self._timer is not None:
                    self._timer.cancel()
                    self._timer = None
                    self._resume()
                return
            self._server.refusing = True
            if self._listening:
                self._server.stop_listening()
                self._listening = False
            self._server.drop_connections()
            if self._timer is not None:
                self._timer.cancel()
            self._timer = threading.Timer(seconds, self._resume)
            self._timer.daemon = True
            self._timer.start()

    def _resume(self) -> None:
        """Listen again after refusing connections."""
        with self._life:
            server = self._server
            if self._state != "running" or server is None or self._listening:
                return
            for _ in range(100):
                try:
                    server.rebind()
                    break
                except OSError:
                    time.sleep(0.02)
            else:
                logger.error("could not listen on %s again after refusing connections", self.url)
                return
            server.refusing = False
            self._listening = True
            self._timer = None

    # -- where it listens -----------------------------------------------------------------

    @property
    def running(self) -> bool:
        """Whether :meth:`start` was called and :meth:`stop` was not."""
        return self._state == "running"

    @property
    def host(self) -> str:
        """The address it listens on."""
        return self._bound()[0]

    @property
    def port(self) -> int:
        """The port it listens on (the free port picked when started with ``port=0``)."""
        return self._bound()[1]

    @property
    def url(self) -> str:
        """Its base URL, e.g. ``http://127.0.0.1:8686`` (what a tracker calls the endpoint)."""
        host, port = self._bound()
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{port}"

    @property
    def track_url(self) -> str:
        """``{url}/track``."""
        return self.url + "/track"

    @property
    def version(self) -> TracardiVersion:
        """What the collector imitates."""
        return self._running_engine().version

    def _bound(self) -> tuple[str, int]:
        if self._address is None:
            raise CollectorError("the collector has not been started")
        return self._address

    def _running_engine(self) -> Engine:
        if self._engine is None or self._state != "running":
            raise CollectorError("the collector is not running")
        return self._engine

    # -- what arrived ---------------------------------------------------------------------

    def events(
        self, type: str | None = None, profile: str | None = None, session: str | None = None
    ) -> list[StoredEvent]:
        """Stored events in arrival order, optionally only of one type, profile or session.

        ``type`` is compared in Tracardi's stored form (``"Page View"`` finds ``page-view``).
        """
        store = self._running_engine().store
        return store.events(
            type=normalize_type(type) if type is not None else None,
            profile=profile,
            session=session,
        )

    def bad(self) -> list[BadRequest]:
        """Requests answered with an error (not injected faults), in arrival order."""
        return self._running_engine().store.bad()

    def summary(self) -> dict[str, int]:
        """``{"total": ..., "good": ..., "bad": ...}``, as ``GET /micro/all``."""
        return self._running_engine().summary()

    def reset(self) -> None:
        """Forget every event, rejected request, profile and session (faults stay)."""
        self._running_engine().reset()

    def wait_for(
        self,
        count: int,
        timeout: float = 5.0,
        *,
        type: str | None = None,
        profile: str | None = None,
        session: str | None = None,
    ) -> list[StoredEvent]:
        """Wait until at least ``count`` matching events are stored; return all matching.

        :raises CollectorTimeoutError: if they have not arrived within ``timeout`` seconds.
        """
        engine = self._running_engine()
        wanted = normalize_type(type) if type is not None else None
        deadline = time.monotonic() + timeout
        with engine.stored:
            while True:
                found = engine.store.count_events(type=wanted, profile=profile, session=session)
                if found >= count:
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    arrived = [event.type for event in engine.store.events(limit=20)]
                    raise CollectorTimeoutError(
                        f"expected {count} event(s) (type={wanted!r}, profile={profile!r}, "
                        f"session={session!r}) within {timeout}s, {found} matched; first "
                        f"stored types: {arrived}; rejected requests: {engine.store.count_bad()}"
                    )
                engine.stored.wait(remaining)
        return self.events(type=wanted, profile=profile, session=session)

    def profile(self, profile_id: str) -> ProfileRecord | None:
        """The profile ``profile_id`` names (directly or as a merged id), if known."""
        return self._running_engine().state.profile(profile_id)

    def session(self, session_id: str) -> SessionRecord | None:
        """The session with this id, if known."""
        return self._running_engine().state.session(session_id)

    def add_profile(self, profile_id: str, ids: Iterable[str] = ()) -> ProfileRecord:
        """Create (or extend) a profile that owns ``ids``, as if Tracardi had merged them."""
        return self._running_engine().add_profile(profile_id, tuple(ids))

    # -- faults ---------------------------------------------------------------------------

    @property
    def faults(self) -> Faults:
        """The faults in force."""
        return self._faults.settings

    def set_faults(self, faults: Faults | None = None, **settings: Any) -> Faults:
        """Replace the faults in force (windows and counts start now); returns them.

        Pass a :class:`Faults`, or its fields as keywords: ``set_faults(outage_seconds=0.3)``.
        """
        chosen = attrs.evolve(faults or Faults(), **settings)
        self._faults.set(chosen)
        return chosen

    def clear_faults(self) -> None:
        """Switch every fault off."""
        self._faults.clear()

    def fault_status(self) -> dict[str, Any]:
        """Settings, what is left of them, and counts of faulted requests."""
        return self._faults.status()

    def outage(self, seconds: float, status: int = 503) -> None:
        """Answer ``status`` to every ``/track`` request for ``seconds``."""
        self.set_faults(outage_seconds=seconds, status=status)

    def fail_next(self, count: int, status: int = 503) -> None:
        """Answer ``status`` to the next ``count`` ``/track`` requests."""
        self.set_faults(fail_next=count, status=status)

    def throttle(self, seconds: float = 0.0, *, count: int = 0, retry_after: int = 1) -> None:
        """Answer 429 with ``Retry-After`` for ``seconds`` and/or the next ``count`` requests."""
        self.set_faults(throttle_seconds=seconds, throttle_next=count, retry_after=retry_after)

    def refuse_connections(self, seconds: float) -> None:
        """Close the listening socket for ``seconds`` (open connections are reset)."""
        self.set_faults(refuse_seconds=seconds)

    def __repr__(self) -> str:
        where = self.url if self._address else "not started"
        return f"<Collector {where} tracardi={self.config.tracardi_version} {self._state}>"
