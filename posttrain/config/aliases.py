"""Old spellings of config keys (seed 001/003 flat names) renamed to today's key paths.

A recipe lists `{old: new}` key paths; its `model_validator(mode="before")` calls
`rename_aliases`, so YAML files, `--set` and the CLI's seed-style flags all accept them. Each
rename prints one `note:` line on stderr, so old commands keep running while telling the user
the new spelling. A value mapping (`AliasValue`) covers the few seed switches whose meaning
changed shape (`use_curriculum: true` is `rl.curriculum: score`, `fp16: true` is
`model.dtype: float16`).
"""

from __future__ import annotations

import difflib
import json
import sys
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from posttrain.config.loading import _merge, parse_override
from posttrain.errors import ConfigError


@dataclass(frozen=True)
class AliasValue:
    """An alias whose value changes on the way: `convert(old value)`; `DROP` means set nothing."""

    path: str
    convert: Callable[[Any], Any]


DROP = object()
Alias = str | AliasValue


def _target(alias: Alias) -> str:
    return alias if isinstance(alias, str) else alias.path


def _pop(data: dict[str, Any], path: list[str]) -> tuple[bool, Any]:
    node = data
    for part in path[:-1]:
        node = node.get(part)
        if not isinstance(node, dict):
            return False, None
    if path[-1] not in node:
        return False, None
    return True, node.pop(path[-1])


def _has(data: dict[str, Any], path: list[str]) -> bool:
    node: Any = data
    for part in path:
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def _put(data: dict[str, Any], path: list[str], value: Any) -> None:
    node = data
    for part in path[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"'{'.'.join(path)}': '{part}' is a section, not a value")
    node[path[-1]] = value


def _copy(data: dict[str, Any]) -> dict[str, Any]:
    return {k: _copy(v) if isinstance(v, dict) else v for k, v in data.items()}


def note(old: str, new: str) -> None:
    print(f"note: '{old}' is deprecated; use '{new}'", file=sys.stderr)


def rename_aliases(data: Any, aliases: dict[str, Alias]) -> Any:
    """`data` with every old key path moved to its new one; a key set twice is an error.

    Runs before validation; every alias found prints a deprecation note on stderr.
    """
    if not isinstance(data, dict):
        return data
    data = _copy(data)
    renamed: dict[str, str] = {}  # new path -> the old spelling that set it
    for old, alias in aliases.items():
        found, value = _pop(data, old.split("."))
        if not found:
            continue
        new = _target(alias)
        note(old, new)
        if isinstance(alias, AliasValue):
            value = alias.convert(value)
            if value is DROP:
                continue
        if new in renamed or _has(data, new.split(".")):
            other = renamed.get(new, new)
            raise ConfigError(f"'{old}' and '{other}' both set '{new}'; choose one")
        renamed[new] = old
        _put(data, new.split("."), value)
    return data


# ----------------------------------------------------------------- seed-style command-line flags


def _field(cls: type[BaseModel], path: list[str]) -> Any:
    """The annotation at a key path of `cls`, or None when there is no such key."""
    model: Any = cls
    ann: Any = None
    for part in path:
        if not (isinstance(model, type) and issubclass(model, BaseModel)) or part not in model.model_fields:
            return None
        ann = model.model_fields[part].annotation
        model = ann
    return ann


def _is_bool(ann: Any) -> bool:
    return ann is bool or bool in typing.get_args(ann)


def _is_text(ann: Any) -> bool:
    args = typing.get_args(ann) or (ann,)
    return str in args


def flags_to_overrides(
    args: list[str],
    cls: type[BaseModel],
    aliases: dict[str, Alias],
    command: str,
    over: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Seed-style flags a command did not declare (`--sft_epochs 2`, `--run_sft`, `--no_X`) as config keys.

    A flag is an old key of `aliases` or a top-level key of `cls`, snake_case as in the seeds;
    on/off keys take no value and have a `--no_` form. Returns a nested dict in today's key
    paths (a deprecation note per old spelling), so it merges over a preset written in them;
    `over` (the command's declared shortcut flags, nested) goes on top. Anything else is a
    ConfigError naming the flag.
    """
    out: dict[str, Any] = {}
    known = sorted(aliases) + sorted(cls.model_fields)
    i = 0
    while i < len(args):
        token = args[i]
        i += 1
        if not token.startswith("--") or len(token) == 2:
            raise ConfigError(f"posttrain {command}: unexpected argument '{token}'")
        name, eq, raw = token[2:].partition("=")
        negated = False
        if name not in aliases and name not in cls.model_fields and name.startswith("no_"):
            name, negated = name[3:], True
        alias = aliases.get(name)
        ann = _field(cls, _target(alias).split(".")) if alias is not None else _field(cls, [name])
        if ann is None or (alias is None and isinstance(ann, type) and issubclass(ann, BaseModel)):
            near = difflib.get_close_matches(name, known, n=1)
            hint = f" (did you mean '--{near[0]}'?)" if near else " (see --help; any key works with --set)"
            raise ConfigError(f"posttrain {command}: no such option '{token}'{hint}")
        takes_no_value = _is_bool(ann) or (isinstance(alias, AliasValue) and _is_bool_switch(alias))
        if negated or (takes_no_value and not eq):
            if not takes_no_value:
                raise ConfigError(f"posttrain {command}: '{token}' needs a value, not the --no_ form")
            out[name] = not negated
            continue
        if not eq:
            if i >= len(args):
                raise ConfigError(f"posttrain {command}: '{token}' needs a value")
            raw = args[i]
            i += 1
        _put(out, name.split("."), raw if _is_text(ann) else _parse(raw))
    return _merge(rename_aliases(out, aliases), over or {})


def rename_overrides(items: list[str] | None, aliases: dict[str, Alias]) -> list[str] | None:
    """`--set old_key=v` items rewritten to today's key paths (with the note), so they override a
    preset written in those paths instead of clashing with it."""
    if not items:
        return items
    out = []
    for item in items:
        key, eq, raw = item.partition("=")
        if not eq or key.strip() not in aliases:
            out.append(item)
            continue
        renamed = rename_aliases(_nest(key.strip(), _parse(raw)), aliases)
        out += [f"{path}={json.dumps(value)}" for path, value in _leaves(renamed)]
    return out


def _nest(path: str, value: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    _put(out, path.split("."), value)
    return out


def _leaves(data: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out = []
    for key, value in data.items():
        if isinstance(value, dict) and value:
            out += _leaves(value, f"{prefix}{key}.")
        else:
            out.append((prefix + key, value))
    return out


def _is_bool_switch(alias: AliasValue) -> bool:
    """An AliasValue that turns a seed on/off switch into another value (use_curriculum, fp16)."""
    return getattr(alias.convert, "switch", False)


def switch(convert: Callable[[bool], Any]) -> Callable[[Any], Any]:
    """Mark a converter as taking a seed on/off flag (`--fp16`, no value)."""
    convert.switch = True  # type: ignore[attr-defined]
    return convert


def _parse(raw: str) -> Any:
    return parse_override(f"value={raw}")["value"]
