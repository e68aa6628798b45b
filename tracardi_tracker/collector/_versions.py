"""What changes between the Tracardi releases the collector can imitate.

Each :class:`TracardiVersion` is one column of the contract's version tables, written as flags
so the rest of the collector asks questions ("does this release keep an unknown profile id?")
instead of comparing version strings.
"""

from __future__ import annotations

import attrs

__all__ = ["DEFAULT_VERSION", "VERSIONS", "TracardiVersion", "get_version"]


@attrs.frozen(kw_only=True)
class TracardiVersion:
    """Behaviour of one Tracardi release line at its ``/track`` endpoint."""

    name: str
    """The short name used on the command line: ``"0.8"``, ``"0.9"`` or ``"1.0"``."""

    covers: str
    """The upstream releases this behaviour was read from."""

    pydantic: str
    """Validation error style: ``"2.3"`` (first failing nested model, short ``loc``, ``url``)
    or ``"2.7"`` (every error, full ``loc``, no ``url``)."""

    rejection_status: int
    """Status for an unknown, disabled or wrong-bridge source and for a bot user agent."""

    new_session_bot_status: int
    """Status when a *new* session's user agent (payload context first) is a bot."""

    keeps_unknown_profile_id: bool
    """Whether a client profile id the server never saw is kept (else a random id is made)."""

    shadow_sessions: bool
    """Whether an existing payload profile wins over the session's owner (1.0 ``shd-`` ids)."""

    reads_entity_extras: bool
    """Whether ``session.metadata``, ``profile.metadata`` and ``profile.ids`` are read."""

    session_is_union: bool
    """Whether ``session`` is ``DefaultEntity | Entity`` (else a plain ``Entity``)."""

    profile_model: str
    """Name of the ``profile`` model in validation errors."""

    gtm_origin_is_bot: bool
    """Whether ``Origin: https://gtm-msr.appspot.com`` counts as bot traffic."""

    accepts_date_only: bool
    """Whether a date without a time (``"2023-01-01"``) is a valid datetime."""

    tenant_in_source_error: bool
    """Whether the unknown-source message names a tenant (1.0.x wording)."""


VERSIONS: dict[str, TracardiVersion] = {
    "0.8": TracardiVersion(
        name="0.8",
        covers="0.8.2 to the 0.9.0-dev snapshot of March 2024 (pydantic 2.3.0)",
        pydantic="2.3",
        rejection_status=401,
        new_session_bot_status=401,
        keeps_unknown_profile_id=False,
        shadow_sessions=False,
        reads_entity_extras=False,
        session_is_union=False,
        profile_model="Entity",
        gtm_origin_is_bot=False,
        accepts_date_only=False,
        tenant_in_source_error=False,
    ),
    "0.9": TracardiVersion(
        name="0.9",
        covers="the 0.9.0 release of June 2024 (pydantic 2.3.0)",
        pydantic="2.3",
        rejection_status=406,
        new_session_bot_status=401,
        keeps_unknown_profile_id=True,
        shadow_sessions=False,
        reads_entity_extras=True,
        session_is_union=True,
        profile_model="PrimaryEntity",
        gtm_origin_is_bot=True,
        accepts_date_only=False,
        tenant_in_source_error=False,
    ),
    "1.0": TracardiVersion(
        name="1.0",
        covers="the 1.0.x maintenance branch of October 2024 (pydantic >= 2.7)",
        pydantic="2.7",
        rejection_status=406,
        new_session_bot_status=406,
        keeps_unknown_profile_id=False,
        shadow_sessions=True,
        reads_entity_extras=True,
        session_is_union=True,
        profile_model="PrimaryEntity",
        gtm_origin_is_bot=True,
        accepts_date_only=True,
        tenant_in_source_error=True,
    ),
}
"""Every release line the collector imitates, by short name."""

DEFAULT_VERSION = "0.9"
"""The release imitated when none is named."""


def get_version(name: str) -> TracardiVersion:
    """Return the behaviour of release line ``name`` (``"0.8"``, ``"0.9"`` or ``"1.0"``).

    :raises ValueError: for any other name.
    """
    try:
        return VERSIONS[name]
    except KeyError:
        known = ", ".join(sorted(VERSIONS))
        raise ValueError(f"unknown Tracardi version {name!r}; choose one of {known}") from None
