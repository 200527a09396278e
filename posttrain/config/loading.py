"""One loader for every recipe: class defaults < preset < file < CLI flags < `--set`; one dump.

Unknown keys are errors that name the key and suggest the closest valid one.
"""

from __future__ import annotations

import contextlib
import difflib
import json
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from posttrain.errors import ConfigError

C = TypeVar("C", bound=BaseModel)


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
    try:
        text = path.read_text()
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
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
    return ConfigError(f"{source}: {key}: {first['msg']} (got {first.get('input')!r})")


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
    if preset:
        data = _merge(data, _read_preset(preset))
        sources.append(f"preset {preset}")
    if path:
        data = _merge(data, _read_file(path))
        sources.append(str(path))
    if extra:
        data = _merge(data, extra)
    for item in overrides or []:
        data = _merge(data, parse_override(item))
        sources.append("--set")
    try:
        return cls.model_validate(data)
    except ValidationError as err:
        raise _explain(err, cls, " + ".join(sources) or "config") from None


def resumed_config(cfg: C, run_dir: str | Path | None) -> C:
    """The config a resumed run continues with: the run's own config.yaml wins over `cfg`, so the
    continued run is the same run.

    `run_dir` is the directory being resumed; None (not resuming) or one without config.yaml
    (killed before writing it) gives `cfg` back. The saved file goes through `load_config`, so
    its errors name the file and the key.
    """
    if run_dir is None:
        return cfg
    saved = Path(run_dir) / "config.yaml"
    return load_config(type(cfg), path=saved) if saved.exists() else cfg


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
