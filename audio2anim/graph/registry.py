"""Operator registry: names -> operator classes.

Built-in operators register with the ``@register("name")`` decorator in their own module under
`audio2anim.sources`, `audio2anim.operators` or `audio2anim.sinks`; those packages are scanned on
first lookup. The scan imports every module of them except private ones (a leading underscore:
helpers the operators share, such as ``sinks/_udp.py``) and ``cli`` (a command's module). Third-party packages add operators through the entry-point group
``audio2anim.operators``: each entry point names an `Operator` subclass (registered under the
entry point's name) or a module whose import registers its operators with the decorator.
"""

from __future__ import annotations

import importlib
import pkgutil
from importlib.metadata import entry_points

from .errors import GraphError
from .operator import Operator

BUILTIN_PACKAGES = ("audio2anim.sources", "audio2anim.operators", "audio2anim.sinks")
ENTRY_POINT_GROUP = "audio2anim.operators"

_classes: dict[str, type[Operator]] = {}
_scanned = False


def register(name: str):
    """Class decorator: make an Operator subclass available to graph files as ``name``."""

    def deco(cls: type[Operator]) -> type[Operator]:
        if not (isinstance(cls, type) and issubclass(cls, Operator)):
            raise TypeError(f"@register({name!r}) needs an Operator subclass, got {cls!r}")
        other = _classes.get(name)
        if other is not None and other is not cls:
            raise GraphError(
                f"operator name {name!r} registered twice: {other.__module__}.{other.__name__} "
                f"and {cls.__module__}.{cls.__name__}"
            )
        cls.name = name
        _classes[name] = cls
        return cls

    return deco


def _is_operator_module(name: str) -> bool:
    """Whether the scan imports the module ``name`` of a built-in operator package."""
    return not name.startswith("_") and name != "cli"


def _scan() -> None:
    global _scanned
    if _scanned:
        return
    _scanned = True
    for pkg_name in BUILTIN_PACKAGES:
        pkg = importlib.import_module(pkg_name)
        for info in pkgutil.iter_modules(pkg.__path__):
            if _is_operator_module(info.name):
                importlib.import_module(f"{pkg_name}.{info.name}")
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            obj = ep.load()
        except Exception as e:  # a broken plugin must not hide the built-ins
            raise GraphError(f"entry point {ep.name!r} ({ep.value}) failed to load: {e}") from e
        if isinstance(obj, type) and issubclass(obj, Operator) and obj.name != ep.name:
            register(ep.name)(obj)


def get(name: str) -> type[Operator]:
    _scan()
    try:
        return _classes[name]
    except KeyError:
        raise GraphError(f"unknown op {name!r} (known: {', '.join(sorted(_classes))})") from None


def all_operators() -> dict[str, type[Operator]]:
    _scan()
    return dict(sorted(_classes.items()))
