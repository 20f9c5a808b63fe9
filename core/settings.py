"""Method settings typed as text (``hostcp select --set KEY=VALUE``), read by each setting's type.

``--set learn_phi=False`` used to become the string ``"False"``, which is truthy, so the
ablation was silently not applied. Each value is now read as the type of the setting's
default: HOST-CP's settings are the fields of ``HostCPConfig`` (those of a nested settings
class as ``scale.learn_sample``), a baseline's the keyword arguments of its constructor.
Stored runs keep the settings they were given; :func:`current_settings` reads them back for
a method whose settings have changed since.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import logging
from typing import Any

from core.errors import HostcpError

__all__ = ["current_settings", "method_settings", "parse_settings"]

logger = logging.getLogger(__name__)

_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")


def method_settings(method: str) -> dict[str, Any]:
    """The settings ``--set`` accepts for ``method``: name -> default (its type is the setting's type).

    HOST-CP's are the fields of its config class (``HostCPConfig``), a nested settings class's
    fields under its field's name (``scale.learn_sample``); a baseline's are the keyword
    arguments of its constructor.
    """
    from core.valuation import get_method

    cls = type(get_method(method))
    config_class = getattr(cls, "config_class", None)
    if config_class is not None and dataclasses.is_dataclass(config_class):
        return _fields(config_class(), "")
    params = inspect.signature(cls.__init__).parameters.values()
    return {p.name: p.default for p in params
            if p.name != "self" and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}


def parse_settings(items: list[str], known: dict[str, Any] | None = None) -> dict[str, Any]:
    """``["learn_phi=false", "epochs=3"]`` -> ``{"learn_phi": False, "epochs": 3}``.

    A dotted key sets a nested setting: ``scale.learn_sample=5000`` -> ``{"scale": {"learn_sample": 5000}}``.

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
                _put(config, key, json.loads(value))
            except json.JSONDecodeError:
                _put(config, key, value)
            continue
        if key not in known:
            raise HostcpError(f"--set {key}: no such setting. Valid settings: {', '.join(sorted(known))}.")
        _put(config, key, _typed(key, value.strip(), known[key]))
    return config


def current_settings(method: str, config: dict[str, Any]) -> dict[str, Any]:
    """A stored run's ``config`` as ``method`` takes it today, to run it again.

    A setting the method no longer has (HOST-CP's ablations that lost on the tuning folds:
    ``start``, ``quality_weight``, ``dist_power`` ...) is dropped with a logged warning, so
    an old run can be re-run with today's engine, which has only the path that won; a
    setting that moved into a nested settings class (``learn_sample`` into ``scale``) moves
    with it. The caller decides what to tell the user; nothing here raises for a stale key.
    """
    known = method_settings(method)
    out: dict[str, Any] = {}
    for key, value in config.items():
        nested = {k.split(".", 1)[1] for k in known if k.startswith(f"{key}.")}
        moved = [k for k in known if k.endswith(f".{key}")]
        if key in known:
            out[key] = value
        elif nested and isinstance(value, dict):
            for sub, v in value.items():
                if sub in nested:
                    _put(out, f"{key}.{sub}", v)
                else:
                    logger.warning("Dropped the setting %s.%s=%r of a stored %s run: %s has no such "
                                   "setting now.", key, sub, v, method, method)
        elif len(moved) == 1:
            _put(out, moved[0], value)
        else:
            logger.warning("Dropped the setting %s=%r of a stored %s run: %s has no such setting now.",
                           key, value, method, method)
    return out


def _fields(config: Any, prefix: str) -> dict[str, Any]:
    """``name -> value`` of a dataclass instance, a nested dataclass's fields as ``name.field``."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(config):
        if not f.init:
            continue
        value = getattr(config, f.name)
        if dataclasses.is_dataclass(value):
            out.update(_fields(value, f"{prefix}{f.name}."))
        else:
            out[f"{prefix}{f.name}"] = value
    return out


def _put(config: dict[str, Any], key: str, value: Any) -> None:
    """``config[key] = value``; a dotted key (``scale.learn_sample``) goes into a nested dict."""
    head, dot, rest = key.partition(".")
    if not dot:
        config[key] = value
        return
    inner = config.setdefault(head, {})
    if not isinstance(inner, dict):  # "scale" given whole, then "scale.x": the later one wins
        inner = config[head] = {}
    _put(inner, rest, value)


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
