"""One loader for every recipe: class defaults < preset < file < CLI flags < `--set`; one dump.

Unknown keys are errors that name the key and suggest the closest valid one.
"""

from __future__ import annotations

import contextlib
import difflib
import json
import logging
import weakref
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from posttrain.errors import ConfigError

C = TypeVar("C", bound=BaseModel)
_log = logging.getLogger(__name__)


def preset_names() -> list[str]:
    return sorted(
        p.name.removesuffix(".yaml")
        for p in resources.files("posttrain.presets").iterdir()
        if p.name.endswith(".yaml")
    )


def _read_preset(name: str) -> dict[str, Any]:
    path = resources.files("posttrain.presets") / f"{name}.yaml"
    if not path.is_file():
        near = difflib.get_close_matches(name, preset_names(), n=1)
        hint = f" (did you mean '{near[0]}'?)" if near else f" (available: {', '.join(preset_names())})"
        raise ConfigError(f"unknown preset '{name}'{hint}")
    return yaml.safe_load(path.read_text()) or {}


def _read_file(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: config file not found")
    if not path.is_file():
        raise ConfigError(f"{path}: is a directory, not a config file (expected a .yaml or .json file)")
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not a text file (byte {exc.start} is not UTF-8)") from exc
    except PermissionError as exc:
        raise ConfigError(f"{path}: cannot read the config file (permission denied)") from exc
    except (yaml.YAMLError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: not valid YAML/JSON: {str(exc).splitlines()[0]}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys, got {type(data).__name__}")
    return data


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def parse_override(text: str) -> dict[str, Any]:
    """`train.learning_rate=1e-4` -> {"train": {"learning_rate": 1e-4}}; values are parsed as YAML."""
    if "=" not in text:
        raise ConfigError(f"--set '{text}': expected key.sub=value")
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    if isinstance(value, str):
        # YAML 1.1 reads 1e-4 as a string; a number is what anyone typing it means.
        with contextlib.suppress(ValueError):
            value = float(value)
    out: dict[str, Any] = {}
    node = out
    parts = key.strip().split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return out


def _check_sections(model: type[BaseModel], data: dict[str, Any], source: str, prefix: str = "") -> None:
    """Refuse a scalar where the schema has a section: merged over a preset, `train: 5` would
    silently drop the preset's whole `train` section (and a flag merged later would hide it)."""
    for name, value in data.items():
        field = model.model_fields.get(name)
        ann = field.annotation if field is not None else None
        if not (isinstance(ann, type) and issubclass(ann, BaseModel)) or value is None:
            continue
        if isinstance(value, str) and name in getattr(model, "scalar_sections", ()):
            continue  # an old flat spelling the schema maps itself, with a note (`model: NAME`)
        if not isinstance(value, dict):
            raise ConfigError(
                f"{source}: '{prefix}{name}' is a section (a mapping of keys such as "
                f"'{prefix}{name}.{next(iter(ann.model_fields))}'), got {value!r}"
            )
        _check_sections(ann, value, source, f"{prefix}{name}.")


def _all_keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    keys = []
    for name, field in model.model_fields.items():
        keys.append(prefix + name)
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            keys.extend(_all_keys(ann, prefix + name + "."))
    return keys


def _explain(err: ValidationError, cls: type[BaseModel], source: str) -> ConfigError:
    first = err.errors()[0]
    key = ".".join(str(p) for p in first["loc"])
    if first["type"] == "extra_forbidden":
        near = difflib.get_close_matches(key, _all_keys(cls), n=1, cutoff=0.5)
        hint = f" (did you mean '{near[0]}'?)" if near else ""
        return ConfigError(f"{source}: unknown key '{key}'{hint}")
    message = first["msg"].removeprefix("Value error, ")
    if isinstance(first.get("input"), dict):  # a section's own check: its message names the keys
        return ConfigError(f"{source}: {key}: {message}")
    return ConfigError(f"{source}: {key}: {message} (got {first.get('input')!r})")


def load_config(
    cls: type[C],
    *,
    preset: str | None = None,
    path: str | Path | None = None,
    overrides: list[str] | None = None,
    extra: dict[str, Any] | None = None,
) -> C:
    """Build a config: class defaults < preset < file < `extra` (CLI flags) < `--set` overrides."""
    data: dict[str, Any] = {}
    sources = []
    layers: list[tuple[str, dict[str, Any]]] = []
    if preset:
        layers.append((f"preset {preset}", _read_preset(preset)))
    if path:
        layers.append((str(path), _read_file(path)))
    if extra:
        layers.append(("flags", extra))
    layers += [("--set", parse_override(item)) for item in overrides or []]
    for source, layer in layers:
        _check_sections(cls, layer, source)
        data = _merge(data, layer)
        if source not in sources:
            sources.append(source)
    try:
        cfg = cls.model_validate(data)
    except ValidationError as err:
        raise _explain(err, cls, " + ".join(sources) or "config") from None
    # What this command asked for beyond the files, for the resume of a run that never trained.
    # Kept beside the config, not in it (a private attribute would break config equality); the
    # entry goes with the config, so a reused id() never finds a stale one.
    _USER_LAYERS[id(cfg)] = (dict(extra or {}), list(overrides or []))
    weakref.finalize(cfg, _USER_LAYERS.pop, id(cfg), None)
    return cfg


_USER_LAYERS: dict[int, tuple[dict[str, Any], list[str]]] = {}


def resumed_config(cfg: C, run_dir: str | Path | None, *, trained: bool = True) -> C:
    """The config a resumed run continues with: the run's own config.yaml wins over `cfg`, so the
    continued run is the same run.

    `run_dir` is the directory being resumed; None (not resuming) or one without config.yaml
    (killed before writing it) gives `cfg` back. The saved file goes through `load_config`, so
    its errors name the file and the key. A run that never `trained` has nothing to stay
    consistent with: the command's flags and `--set` apply over its saved file, and a saved file
    that no longer loads gives way to `cfg` with a warning.
    """
    if run_dir is None:
        return cfg
    saved = Path(run_dir) / "config.yaml"
    if not saved.exists():
        return cfg
    extra, overrides = _USER_LAYERS.get(id(cfg), ({}, []))
    if not trained:
        try:
            return load_config(type(cfg), path=saved, extra=extra, overrides=overrides)
        except ConfigError as err:
            _log.warning("%s; the run never trained, so it starts with this command's config", err)
            return cfg
    if overrides:
        _log.warning("--set ignored: the run has trained, so it continues with its own %s", saved)
    return load_config(type(cfg), path=saved)


def dump_config(cfg: BaseModel, path: Path) -> None:
    """Write the fully resolved config, so any run can be repeated from its own directory."""
    path.write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))


def config_reference(cls: type[BaseModel]) -> str:
    """A markdown table of every key, its default and its help (README's config reference)."""
    defaults = cls().model_dump(mode="json")
    lines = ["| key | default | meaning |", "|---|---|---|"]

    def walk(model: type[BaseModel], values: dict[str, Any], prefix: str) -> None:
        for name, field in model.model_fields.items():
            ann = field.annotation
            if isinstance(ann, type) and issubclass(ann, BaseModel):
                walk(ann, values[name], f"{prefix}{name}.")
            else:
                shown = json.dumps(values[name])
                lines.append(f"| `{prefix}{name}` | `{shown}` | {field.description} |")

    walk(cls, defaults, "")
    return "\n".join(lines) + "\n"
