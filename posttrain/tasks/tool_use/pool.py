"""The function pool: hundreds of invented function specs in tool families, and how values are drawn.

Five fixed tools teach a model their names, not how to read a tool list (issue 13: the SFT model
invented `thm_formula` when only `algebra.quadratic_roots` was offered). The pool gives the
generator (`pool_rows`) many functions across many domains, each with aliases and paraphrases for
masking and several user requests whose slots name its parameters. Families, not functions, are
split between training and evaluation, so held-out families are domains training never saw.

A family file is `posttrain/data/tool_pool/<family>.yaml`; its format is checked on load and any
fault is a DataError naming the file and the field.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path
from typing import Any, Literal

import yaml

from posttrain.errors import DataError

POOL_DIR = Path(__file__).resolve().parents[2] / "data" / "tool_pool"

HELDOUT_FAMILIES = (
    "physics",
    "music",
    "smart_home",
    "real_estate",
    "restaurants",
    "shipping_logistics",
)
"""Families evaluation draws from and training never does: one from each broad area (science,
media, home, property, food, logistics)."""
VALIDATION_FAMILIES = ("hotels", "tax", "astronomy")
"""Families neither training nor evaluation sees: align's DPO gate picks SFT or DPO on them, so
model selection never looks at the families the final figures come from."""

PoolSplit = Literal["train", "heldout", "validation"]

_TYPES = ("string", "integer", "number", "boolean", "array")
_SLOT = re.compile(r"\{([a-z_][a-z0-9_]*)\}")
_CLAUSE = re.compile(r"\[([^\[\]]*)\]")

WORDS: dict[str, tuple[str, ...]] = {
    "city": (
        "Lisbon",
        "Toronto",
        "Nairobi",
        "Osaka",
        "Denver",
        "Krakow",
        "Lima",
        "Auckland",
        "Porto",
        "Seattle",
        "Marseille",
        "Hanoi",
        "Cape Town",
        "Glasgow",
        "Austin",
        "Bergen",
        "Cordoba",
        "Adelaide",
        "Tbilisi",
        "Quebec City",
        "Valencia",
        "Busan",
        "Leeds",
        "Montevideo",
    ),
    "country": (
        "Portugal",
        "Canada",
        "Kenya",
        "Japan",
        "Poland",
        "Peru",
        "New Zealand",
        "Vietnam",
        "Norway",
        "Argentina",
        "Georgia",
        "Chile",
        "Ireland",
        "Morocco",
        "Finland",
        "Mexico",
        "Greece",
        "Ghana",
    ),
    "person": (
        "Maria Lopez",
        "James Okafor",
        "Aiko Tanaka",
        "Liam O'Brien",
        "Priya Raman",
        "Tomas Novak",
        "Grace Mensah",
        "Noah Fischer",
        "Elena Petrova",
        "Omar Haddad",
        "Sofia Rossi",
        "Daniel Kim",
        "Hannah Berg",
        "Lucas Moreau",
        "Amara Diallo",
        "Ben Carter",
    ),
    "currency": ("EUR", "USD", "JPY", "GBP", "CAD", "CHF", "AUD", "SEK", "MXN", "INR"),
    "language": (
        "Spanish",
        "French",
        "German",
        "Japanese",
        "Portuguese",
        "Italian",
        "Korean",
        "Dutch",
        "Polish",
        "Turkish",
        "Swahili",
        "Greek",
    ),
    "company": (
        "Northwind Traders",
        "Bluefin Labs",
        "Acme Robotics",
        "Harbor & Co",
        "Greenleaf Foods",
        "Orbit Analytics",
        "Pinecrest Media",
        "Redstone Energy",
        "Silverline Health",
    ),
    "word": (
        "invoice",
        "bicycle",
        "garden",
        "lantern",
        "notebook",
        "violin",
        "backpack",
        "kettle",
        "window",
        "ladder",
        "blanket",
        "compass",
        "umbrella",
        "mirror",
        "basket",
    ),
    "color": ("red", "blue", "green", "yellow", "purple", "orange", "black", "white", "teal", "grey"),
}
_EMAIL_USERS = ("anna", "j.smith", "m.garcia", "team", "support", "k.ito", "olivia.b", "raj")
_EMAIL_HOSTS = ("example.com", "mail.test", "corp.example.org", "inbox.example.net")


@dataclass(frozen=True)
class PoolParam:
    """One parameter: its JSON schema (type, description, enum, items, default), aliases for
    masking, how its values are drawn, and whether a call may leave it out."""

    name: str
    schema: dict[str, Any]
    aliases: tuple[str, ...]
    values: Any
    optional: bool


@dataclass(frozen=True)
class PoolFunction:
    """One invented function of a family with the requests that call it."""

    family: str
    name: str
    aliases: tuple[str, ...]
    description: str
    paraphrases: tuple[str, ...]
    params: tuple[PoolParam, ...]
    prompts: tuple[str, ...]


@cache
def load_pool(folder: Path = POOL_DIR) -> dict[str, tuple[PoolFunction, ...]]:
    """Every family file under `folder`, checked, by family name (sorted)."""
    families: dict[str, tuple[PoolFunction, ...]] = {}
    seen: dict[str, str] = {}
    for path in sorted(Path(folder).glob("*.yaml")):
        functions = _read_family(path)
        for fn in functions:
            if fn.name in seen:
                raise DataError(
                    str(path), None, f"functions.{fn.name}", f"is also defined in {seen[fn.name]}"
                )
            seen[fn.name] = path.name
        families[path.stem] = functions
    if not families:
        raise DataError(str(folder), None, None, "holds no tool family files (*.yaml)")
    return _unique_aliases(families)


def _unique_aliases(families: dict[str, tuple[PoolFunction, ...]]) -> dict[str, tuple[PoolFunction, ...]]:
    """The families with every alias that another function also uses (as its name or an alias)
    dropped: a masked name must point at one function, and no training name may reach a
    held-out row under a held-out function's mask."""
    functions = [fn for fns in families.values() for fn in fns]
    uses: dict[str, int] = {}
    for fn in functions:
        for name in {fn.name, *fn.aliases}:
            uses[name] = uses.get(name, 0) + 1
    names = {fn.name for fn in functions}

    def keep(fn: PoolFunction) -> PoolFunction:
        aliases = tuple(a for a in fn.aliases if uses[a] == 1 and a not in names)
        return replace(fn, aliases=aliases)

    return {family: tuple(keep(fn) for fn in fns) for family, fns in families.items()}


def pool_functions(split: PoolSplit, folder: Path | None = None) -> list[PoolFunction]:
    """The functions of a split: `HELDOUT_FAMILIES` for "heldout", `VALIDATION_FAMILIES` for
    "validation", all the others for "train"."""
    if split not in ("train", "heldout", "validation"):
        raise ValueError(f'split must be "train", "heldout" or "validation", got {split!r}')
    pool = load_pool(folder or POOL_DIR)
    unseen = {"heldout": HELDOUT_FAMILIES, "validation": VALIDATION_FAMILIES}
    if split == "train":
        return [fn for f, fns in pool.items() if all(f not in u for u in unseen.values()) for fn in fns]
    return [fn for f, fns in pool.items() if f in unseen[split] for fn in fns]


def _read_family(path: Path) -> tuple[PoolFunction, ...]:
    where = str(path)
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        line = getattr(getattr(err, "problem_mark", None), "line", None)
        raise DataError(
            where, None if line is None else line + 1, None, f"is not valid YAML ({err})"
        ) from err
    if not isinstance(doc, dict) or doc.get("family") != path.stem:
        raise DataError(where, None, "family", f"must be {path.stem!r}, the file's name")
    functions = doc.get("functions")
    if not isinstance(functions, list) or not functions:
        raise DataError(where, None, "functions", "must be a non-empty list")
    return tuple(_function(where, path.stem, i, f) for i, f in enumerate(functions))


def _function(where: str, family: str, i: int, raw: Any) -> PoolFunction:
    field = f"functions[{i}]"
    if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
        raise DataError(where, None, field, "must be a mapping with a name")
    field = f"functions.{raw['name']}"
    for key in ("description", "parameters", "prompts"):
        if key not in raw:
            raise DataError(where, None, f"{field}.{key}", "is missing")
    params = raw["parameters"]
    if not isinstance(params, dict) or not params:
        raise DataError(where, None, f"{field}.parameters", "must be a non-empty mapping")
    for name in params:
        _identifier(where, f"{field}.parameters", name)
    parsed = tuple(_param(where, f"{field}.parameters.{name}", name, p) for name, p in params.items())
    aliases = tuple(raw.get("aliases") or ())
    for alias in aliases:
        _identifier(where, f"{field}.aliases", alias)
    prompts = tuple(str(p) for p in raw["prompts"])
    names = {p.name for p in parsed}
    for k, prompt in enumerate(prompts):
        outside = set(_SLOT.findall(_CLAUSE.sub("", prompt)))
        inside = {s for clause in _CLAUSE.findall(prompt) for s in _SLOT.findall(clause)}
        for slot in outside | inside:
            if slot not in names:
                raise DataError(where, None, f"{field}.prompts[{k}]", f"names {{{slot}}}, not a parameter")
        for p in parsed:
            if not p.optional and p.name not in outside:
                raise DataError(where, None, f"{field}.prompts[{k}]", f"does not mention required {p.name!r}")
            if p.optional and p.name in outside:
                raise DataError(
                    where, None, f"{field}.prompts[{k}]", f"mentions optional {p.name!r} outside [...]"
                )
    return PoolFunction(
        family=family,
        name=raw["name"],
        aliases=aliases,
        description=str(raw["description"]).strip(),
        paraphrases=tuple(str(x).strip() for x in raw.get("paraphrases") or ()),
        params=parsed,
        prompts=prompts,
    )


def _param(where: str, field: str, name: str, raw: Any) -> PoolParam:
    if not isinstance(raw, dict) or raw.get("type") not in _TYPES:
        raise DataError(where, None, f"{field}.type", f"must be one of {', '.join(_TYPES)}")
    schema: dict[str, Any] = {"type": raw["type"], "description": str(raw.get("description", "")).strip()}
    if not schema["description"]:
        raise DataError(where, None, f"{field}.description", "is missing")
    if "enum" in raw:
        schema["enum"] = list(raw["enum"])
    if raw["type"] == "array":
        items = raw.get("items")
        if not isinstance(items, dict) or items.get("type") not in _TYPES:
            raise DataError(where, None, f"{field}.items", "must give the items' type")
        schema["items"] = {"type": items["type"]}
    if "default" in raw:
        schema["default"] = raw["default"]
    optional = bool(raw.get("optional", False))
    if raw["type"] == "boolean" and not optional:
        raise DataError(where, None, f"{field}.optional", "a boolean parameter must be optional")
    values = raw.get("values")
    if values is None and "enum" not in raw and raw["type"] != "boolean":
        raise DataError(where, None, f"{field}.values", "is missing (a generator or a list of choices)")
    if isinstance(values, str):
        try:
            draw_value(values, schema, random.Random(0))
        except ValueError as err:
            raise DataError(where, None, f"{field}.values", str(err)) from err
    aliases = tuple(raw.get("aliases") or ())
    for alias in aliases:
        _identifier(where, f"{field}.aliases", alias)
    return PoolParam(name, schema, aliases, values, optional)


def _identifier(where: str, field: str, name: Any) -> None:
    # YAML reads a bare `on`, `no` or `yes` as a boolean: a name must come back as the text written.
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise DataError(where, None, field, f"{name!r} is not a name (letters, digits, _; quote on/no/yes)")


def draw_value(spec: Any, schema: dict[str, Any], rng: random.Random) -> Any:
    """A value for a parameter: from its enum, its list of choices, or a named generator."""
    if schema["type"] == "boolean":
        return True
    if "enum" in schema and spec is None:
        return rng.choice(schema["enum"])
    if isinstance(spec, list):
        return rng.choice(spec)
    if not isinstance(spec, str):
        raise ValueError(f"unknown value generator {spec!r}")
    kind, *args = spec.split()
    if kind == "list":
        if len(args) < 3:
            raise ValueError("list needs GEN [GEN ARGS] MIN MAX")
        gen, lo, hi = " ".join(args[:-2]), int(args[-2]), int(args[-1])
        item_schema = schema.get("items", {"type": "string"})
        out: list[Any] = []
        while len(out) < rng.randint(lo, hi):
            value = draw_value(gen, item_schema, rng)
            if value not in out:
                out.append(value)
        return out
    if kind == "int":
        return rng.randint(int(args[0]), int(args[1]))
    if kind == "float":
        value = round(rng.uniform(float(args[0]), float(args[1])), 2)
        return int(value) if value.is_integer() else value
    simple = {
        "money": lambda: rng.randint(10, 5000),
        "percent": lambda: rng.randint(1, 30) / 2,
        "year": lambda: rng.randint(1990, 2030),
        "date": lambda: f"{rng.choice((2026, 2027))}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
        "time": lambda: f"{rng.randint(6, 21):02d}:{rng.choice((0, 15, 30, 45)):02d}",
        "email": lambda: f"{rng.choice(_EMAIL_USERS)}@{rng.choice(_EMAIL_HOSTS)}",
    }
    if kind in simple:
        value = simple[kind]()
        # 3.0 is written "3" in a request, so the call should say 3 too (JSON cannot tell them apart).
        return int(value) if isinstance(value, float) and value.is_integer() else value
    if kind in WORDS:
        return rng.choice(WORDS[kind])
    raise ValueError(f"unknown value generator {spec!r}")


def value_text(value: Any) -> str:
    """A value as a request mentions it: lists as "a, b and c", booleans as nothing (the words
    around their slot say it), numbers without a trailing ".0"."""
    if isinstance(value, bool):
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, list):
        parts = [value_text(v) for v in value]
        return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    return str(value)


def render_prompt(template: str, args: dict[str, Any]) -> str:
    """The request with its slots filled: a `[...]` clause stays only when every parameter it
    names is among `args`."""

    def clause(m: re.Match[str]) -> str:
        return m.group(1) if all(s in args for s in _SLOT.findall(m.group(1))) else ""

    text = _CLAUSE.sub(clause, template)
    text = _SLOT.sub(lambda m: value_text(args[m.group(1)]), text)
    return re.sub(r"\s+([,.?!])", r"\1", re.sub(r"  +", " ", text)).strip()
