"""Profiles and sessions, and which ids Tracardi answers with (the contract's §4.2 table).

Tracardi does not always answer with the ids it was sent. This module keeps just enough of
its profile and session tables to give the same answers:

* no profile sent: a new random id (or the session's profile when the session is known);
* a known profile id, or an id merged into a profile (learnt from ``profile.ids`` in 0.9+): the
  owning profile's id;
* an unknown profile id: a new random id in 0.8 and 1.0, the sent id in 0.9 (or always with
  static profile ids);
* a known session owned by profile A while the payload names B: A in 0.8/0.9; in 1.0, if B is
  known, B and a "shadow" session ``shd-<uuid from md5(session id)>``;
* no session id: a new random session id.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable
from typing import Any

import attrs

from ._versions import TracardiVersion

__all__ = ["ProfileRecord", "ProfileSessionState", "Resolution", "SessionRecord", "shadow_id"]

Times = dict[str, Any]


@attrs.frozen(kw_only=True)
class ProfileRecord:
    """A profile the collector knows: its id, merged ids and creation metadata."""

    id: str
    ids: tuple[str, ...] = ()
    """Other ids that now point at this profile (``profile.ids``, Tracardi 0.9+)."""
    metadata: Times | None = attrs.field(default=None, hash=False)
    """``profile.metadata`` (``insert``/``create``/``update``) taken when it was created."""
    created_at: str


@attrs.frozen(kw_only=True)
class SessionRecord:
    """A session the collector knows: its id, owning profile and creation metadata."""

    id: str
    profile_id: str | None
    metadata: Times | None = attrs.field(default=None, hash=False)
    """``session.metadata`` taken when it was created (Tracardi 0.9+)."""
    created_at: str


@attrs.frozen(kw_only=True)
class Resolution:
    """The ids to answer and store with, and the records to write."""

    profile_id: str | None
    session_id: str | None
    profiles: tuple[ProfileRecord, ...] = ()
    sessions: tuple[SessionRecord, ...] = ()


def shadow_id(session_id: str) -> str:
    """Tracardi 1.0's shadow session id: ``shd-`` and a uuid made of md5(session id)."""
    digest = hashlib.md5(session_id.encode("utf-8"), usedforsecurity=False).hexdigest()
    return f"shd-{digest[0:8]}-{digest[8:12]}-{digest[12:16]}-{digest[16:20]}-{digest[20:32]}"


class ProfileSessionState:
    """In-memory profile and session tables with Tracardi's id policy for one version.

    Not thread-safe: the caller serialises :meth:`resolve` and :meth:`apply`.
    """

    def __init__(self, version: TracardiVersion, *, static_profile_ids: bool = False) -> None:
        self.version = version
        self.static_profile_ids = static_profile_ids
        self._profiles: dict[str, ProfileRecord] = {}
        self._aliases: dict[str, str] = {}
        self._sessions: dict[str, SessionRecord] = {}

    def load(self, profiles: Iterable[ProfileRecord], sessions: Iterable[SessionRecord]) -> None:
        """Add records read back from storage."""
        self.apply(Resolution(profile_id=None, session_id=None, profiles=tuple(profiles)))
        for session in sessions:
            self._sessions[session.id] = session

    def clear(self) -> None:
        """Forget every profile and session."""
        self._profiles.clear()
        self._aliases.clear()
        self._sessions.clear()

    def profile(self, profile_id: str) -> ProfileRecord | None:
        """The profile ``profile_id`` names, directly or as a merged id."""
        owner = self.find_profile(profile_id)
        return self._profiles[owner] if owner is not None else None

    def session(self, session_id: str) -> SessionRecord | None:
        """The session with this id, if known."""
        return self._sessions.get(session_id)

    def profiles(self) -> list[ProfileRecord]:
        """Every profile, oldest first."""
        return list(self._profiles.values())

    def sessions(self) -> list[SessionRecord]:
        """Every session, oldest first."""
        return list(self._sessions.values())

    def find_profile(self, profile_id: str) -> str | None:
        """The id of the profile that owns ``profile_id``, if any."""
        if profile_id in self._profiles:
            return profile_id
        return self._aliases.get(profile_id)

    def is_new_session(self, session_id: str | None) -> bool:
        """Whether a request with this session id would open a new session."""
        return not session_id or session_id not in self._sessions

    def resolve(
        self,
        *,
        session_id: str | None,
        session_metadata: Times | None,
        profile_id: str | None,
        profile_metadata: Times | None,
        profile_ids: tuple[str, ...],
        profile_less: bool,
        save_session: bool,
        save_profile: bool,
        now: str,
    ) -> Resolution:
        """Decide the answered ids for one request; nothing changes until :meth:`apply`."""
        version = self.version
        session = self._sessions.get(session_id) if session_id else None
        if not session_id:
            session_id = str(uuid.uuid4())
        owner: str | None = None
        if session is not None and session.profile_id:
            owner = self.find_profile(session.profile_id) or session.profile_id

        profiles: list[ProfileRecord] = []
        answered_profile: str | None = None
        if save_profile and not profile_less:
            requested = self.find_profile(profile_id) if profile_id else None
            if owner is not None:
                answered_profile = owner
                if version.shadow_sessions and requested is not None and requested != owner:
                    answered_profile = requested
                    session_id = shadow_id(session_id)
                    session = self._sessions.get(session_id)
            elif requested is not None:
                answered_profile = requested
            else:
                keep = profile_id and (version.keeps_unknown_profile_id or self.static_profile_ids)
                answered_profile = profile_id if keep and profile_id else str(uuid.uuid4())
                metadata = profile_metadata if version.reads_entity_extras else None
                profiles.append(
                    ProfileRecord(id=answered_profile, metadata=metadata, created_at=now)
                )
            if version.reads_entity_extras and profile_ids:
                record = profiles[0] if profiles else self._profiles.get(answered_profile)
                if record is not None:
                    extra = [alias for alias in profile_ids if alias != record.id]
                    merged = tuple(dict.fromkeys((*record.ids, *extra)))
                    if merged != record.ids:
                        profiles[:] = [attrs.evolve(record, ids=merged)]

        sessions: list[SessionRecord] = []
        if save_session:
            if session is None:
                metadata = session_metadata if version.reads_entity_extras else None
                sessions.append(
                    SessionRecord(
                        id=session_id,
                        profile_id=answered_profile,
                        metadata=metadata,
                        created_at=now,
                    )
                )
            elif session.profile_id is None and answered_profile is not None:
                sessions.append(attrs.evolve(session, profile_id=answered_profile))
        return Resolution(
            profile_id=answered_profile,
            session_id=session_id if save_session else None,
            profiles=tuple(profiles),
            sessions=tuple(sessions),
        )

    def apply(self, resolution: Resolution) -> None:
        """Keep the records of a resolution once they are safely stored."""
        for profile in resolution.profiles:
            self._profiles[profile.id] = profile
            self._aliases.pop(profile.id, None)
            for alias in profile.ids:
                if alias not in self._profiles:
                    self._aliases.setdefault(alias, profile.id)
        for session in resolution.sessions:
            self._sessions[session.id] = session
