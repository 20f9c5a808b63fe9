"""Method settings typed as text (``hostcp select --set KEY=VALUE``), read by each setting's type.

``--set learn_phi=False`` used to become the string ``"False"``, which is truthy, so the
ablation was silently not applied. Each value is now read as the type of the setting's
default: HOST-CP's settings are the fields of ``HostCPConfig``, a baseline's the keyword
arguments of its constructor.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
from typing import Any

from core.errors import HostcpError

__all__ = ["method_settings", "parse_settings"]

_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")


def method_settings(method: str) -> dict[str, Any]:
    """The settings ``--set`` accepts for ``method``: name -> default (its type is the setting's type).

    HOST-CP's are the fields of its config class (``HostCPConfig``); a baseline's are the
    keyword arguments of its constructor.
    """
    from core.valuation import get_method

    cls = type(get_method(method))
    config_class = getattr(cls, "config_class", None)
    if config_class is not None and dataclasses.is_dataclass(config_class):
        return {f.name: f.default for f in dataclasses.fields(config_class) if f.init}
    params = inspect.signature(cls.__init__).parameters.values()
    return {p.name: p.default for p in params
            if p.name != "self" and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}


def parse_settings(items: list[str], known: dict[str, Any] | None = None) -> dict[str, Any]:
    """``["learn_phi=false", "epochs=3"]`` -> ``{"learn_phi": False, "epochs": 3}``.

    With ``known`` (from :func:`method_settings`) each value is read as its setting's type:
    a bool from ``true``/``false``/``1``/``0`` (any case; ``yes``/``no``, ``on``/``off``),
    an int, a float, or text; a key that is not a setting is refused with the list of
    valid ones. Without it a value is read as JSON, else kept as text.

    Raises:
        HostcpError: a malformed item, an unknown key, or a value of the wrong type.
    """
    config: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise HostcpError(f"--set takes KEY=VALUE (for example --set learn_phi=false); got {item!r}.")
        if known is None:
            try:
                config[key] = json.loads(value)
            except json.JSONDecodeError:
                config[key] = value
            continue
        if key not in known:
            raise HostcpError(f"--set {key}: no such setting. Valid settings: {', '.join(sorted(known))}.")
        config[key] = _typed(key, value.strip(), known[key])
    return config


def _typed(key: str, value: str, default: Any) -> Any:
    """``value`` read as the type of the setting's default (bool, int, float, text)."""
    if isinstance(default, bool):
        if value.lower() in _TRUE + _FALSE:
            return value.lower() in _TRUE
        raise HostcpError(f"--set {key} takes true or false (or 1/0); got {value!r}.")
    kinds = {int: "an integer", float: "a number"}
    for kind, word in kinds.items():
        if type(default) is kind:
            try:
                return kind(value)
            except ValueError as e:
                raise HostcpError(f"--set {key} takes {word}; got {value!r}.") from e
    if isinstance(default, str):
        return value
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value
