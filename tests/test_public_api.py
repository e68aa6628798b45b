"""The public surface: what is exported, the exception tree, typing marker."""

from __future__ import annotations

import importlib.resources

import tracardi_tracker
from tracardi_tracker import exceptions


def test_all_lists_exactly_the_public_names_and_is_sorted() -> None:
    public = {name for name in vars(tracardi_tracker) if not name.startswith("_")}
    modules = {
        name for name in public if type(getattr(tracardi_tracker, name)).__name__ == "module"
    }
    assert sorted(tracardi_tracker.__all__) == tracardi_tracker.__all__
    assert public - modules == set(tracardi_tracker.__all__) - {"__version__"}


def test_every_public_name_has_a_docstring() -> None:
    missing = [
        name
        for name in tracardi_tracker.__all__
        if name != "__version__" and not (getattr(tracardi_tracker, name).__doc__ or "").strip()
    ]
    assert missing == []


def test_every_exception_is_rooted_in_tracker_error() -> None:
    errors = [getattr(exceptions, name) for name in exceptions.__all__]
    assert all(issubclass(error, exceptions.TrackerError) for error in errors)
    assert issubclass(exceptions.InvalidEventError, ValueError)
    assert issubclass(exceptions.ConfigurationError, ValueError)
    for name in ("SourceRejectedError", "PayloadRejectedError", "ServerError", "TransportError"):
        assert issubclass(getattr(exceptions, name), exceptions.DeliveryError)


def test_package_ships_py_typed() -> None:
    assert importlib.resources.files("tracardi_tracker").joinpath("py.typed").is_file()
