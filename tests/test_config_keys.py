"""No dead keys: every leaf of every recipe schema is read in posttrain/.

A key the code never reads is a setting that silently does nothing (TuneConfig once accepted
`data.max_length` and ignored it). The check is static: it parses posttrain/ (config/ aside) and
follows attribute chains from every name bound to a recipe config or one of its sections:
parameters annotated with the class, and local aliases such as `d = cfg.data` or
`lora, tok = cfg.lora, resident.tokenizer`. A section handed over whole counts through the
documented consumers in `_indirect_reads` only.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import textwrap
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest
from pydantic import BaseModel

import posttrain
from posttrain.config import (
    AlignConfig,
    DataSettings,
    DPOConfig,
    DPOSettings,
    ExecutorSettings,
    QuickstartConfig,
    RLHFConfig,
    SEALConfig,
    SearchSpace,
    SFTConfig,
    TuneConfig,
)
from posttrain.config.search_space import HPARAM_NAMES
from posttrain.config.sections import Strict
from posttrain.executors import make_executor
from posttrain.train.args import DPOArgs, SFTArgs, TrainArgs

KeyPath = tuple[str, ...]
SOURCE = Path(posttrain.__file__).parent


def _sections(cls: type[BaseModel], prefix: KeyPath = ()) -> Iterator[tuple[KeyPath, type[BaseModel]]]:
    yield prefix, cls
    for name, field in cls.model_fields.items():
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            yield from _sections(ann, (*prefix, name))


def leaves(cls: type[BaseModel]) -> list[KeyPath]:
    out = []
    for path, section in _sections(cls):
        for name, field in section.model_fields.items():
            ann = field.annotation
            if not (isinstance(ann, type) and issubclass(ann, BaseModel)):
                out.append((*path, name))
    return out


@cache
def _trees() -> list[ast.Module]:
    files = [p for p in SOURCE.rglob("*.py") if "config" not in p.relative_to(SOURCE).parts[:1]]
    return [ast.parse(p.read_text()) for p in files]


def _chain(node: ast.AST) -> tuple[str, KeyPath] | None:
    """`cfg.data.path` -> ("cfg", ("data", "path")); None when the root is not a plain name."""
    attrs: list[str] = []
    while isinstance(node, ast.Attribute):
        attrs.append(node.attr)
        node = node.value
    return (node.id, tuple(reversed(attrs))) if isinstance(node, ast.Name) else None


def _annotation_names(node: ast.AST | None) -> set[str]:
    if node is None:
        return set()
    names = set()
    for sub in ast.walk(node):
        if isinstance(sub, ast.Name):
            names.add(sub.id)
        elif isinstance(sub, ast.Attribute):
            names.add(sub.attr)
        elif isinstance(sub, ast.Constant) and isinstance(sub.value, str) and sub.value.isidentifier():
            names.add(sub.value)  # a quoted forward reference
    return names


def _class_paths(cls: type[BaseModel], recipe_names: tuple[str, ...]) -> dict[str, list[KeyPath]]:
    """Annotation name -> the config paths an object of that type can sit at."""
    out: dict[str, list[KeyPath]] = {name: [()] for name in recipe_names}
    sections = list(_sections(cls))[1:]
    candidates = {t for _, section in sections for t in section.__mro__}
    for kind in candidates:
        if isinstance(kind, type) and issubclass(kind, Strict) and kind is not Strict:
            out[kind.__name__] = [p for p, section in sections if issubclass(section, kind)]
    return out


def accesses(cls: type[BaseModel], recipe_names: tuple[str, ...]) -> tuple[set[KeyPath], set[KeyPath]]:
    """(every path read, the paths whose chain ends there: a section passed on or a method called)."""
    types = _class_paths(cls, recipe_names)
    read: set[KeyPath] = set()
    ends: set[KeyPath] = set()
    for tree in _trees():
        for fn in ast.walk(tree):
            if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            bound: dict[str, list[KeyPath]] = {}
            for arg in [*fn.args.posonlyargs, *fn.args.args, *fn.args.kwonlyargs]:
                for name in _annotation_names(arg.annotation):
                    bound.setdefault(arg.arg, []).extend(types.get(name, []))

            def resolve(node: ast.AST, bound: dict[str, list[KeyPath]] = bound) -> list[KeyPath]:
                found = _chain(node)
                if found is None or found[0] not in bound:
                    return []
                return [(*root, *found[1]) for root in bound[found[0]]]

            for node in ast.walk(fn):  # aliases first: `d = cfg.data` binds d
                if isinstance(node, ast.Assign | ast.NamedExpr):
                    targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                    for target in targets:
                        if isinstance(target, ast.Tuple) and isinstance(node.value, ast.Tuple):
                            pairs = list(zip(target.elts, node.value.elts, strict=False))
                        else:
                            pairs = [(target, node.value)]
                        for name, value in pairs:
                            if isinstance(name, ast.Name) and (paths := resolve(value)):
                                bound[name.id] = paths
            parents = {child: node for node in ast.walk(fn) for child in ast.iter_child_nodes(node)}
            for node in ast.walk(fn):
                if not isinstance(node, ast.Attribute | ast.Name):
                    continue
                for path in resolve(node):
                    read.update(path[:i] for i in range(1, len(path) + 1))
                    if not isinstance(parents.get(node), ast.Attribute):
                        ends.add(path)
    return read, ends


def _is_self_attribute(node: ast.AST) -> bool:
    return isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "self"


def _validated_fields(decorators: list[ast.expr]) -> set[str]:
    """The field names given to `@field_validator("a", "b")`."""
    return {
        arg.value
        for dec in decorators
        if isinstance(dec, ast.Call) and getattr(dec.func, "id", None) == "field_validator"
        for arg in dec.args
        if isinstance(arg, ast.Constant) and isinstance(arg.value, str)
    }


@cache
def _self_reads(kind: type, method: str | None = None) -> set[str]:
    """Fields a config class's own methods read as `self.<name>`, and fields a field validator checks."""
    out: set[str] = set()
    for klass in kind.__mro__:
        if not klass.__module__.startswith("posttrain."):
            continue
        for name, member in vars(klass).items():
            func = getattr(member, "__func__", member)
            if not inspect.isfunction(func) or (method is not None and name != method):
                continue
            tree = ast.parse(textwrap.dedent(inspect.getsource(func)))
            if tree.body and tree.body[0].decorator_list:  # pydantic validators
                # a field validator that refuses values (DPO's `train.packing`) is that key's reader
                out.update(_validated_fields(tree.body[0].decorator_list))
                continue
            out.update(node.attr for node in ast.walk(tree) if _is_self_attribute(node))
    return out


# Train sections reach the trainer by field name: `SFTArgs.from_settings(cfg.train)` takes the keys
# its dataclass has and drops the rest, so a key missing from the args class is never read.
TRAINER_ARGS: dict[tuple[type[BaseModel], KeyPath], type] = {
    (SFTConfig, ("train",)): SFTArgs,
    (DPOConfig, ("train",)): DPOArgs,
    (AlignConfig, ("sft",)): SFTArgs,
    (AlignConfig, ("dpo", "train")): DPOArgs,
    (RLHFConfig, ("train",)): TrainArgs,  # `stage_args`: the shared section, then each stage's own keys
}


def _indirect_reads(cls: type[BaseModel], parent: KeyPath, section: type[BaseModel], field: str) -> bool:
    """Whether a key of a section handed over whole is read by its documented consumer."""
    for (recipe, path), target in TRAINER_ARGS.items():
        if issubclass(cls, recipe) and parent == path:
            return field in {f.name for f in dataclasses.fields(target)}
    if section is ExecutorSettings:  # `open_executor(**cfg.executor.model_dump())`
        return field in inspect.signature(make_executor).parameters
    if section is SearchSpace:  # tuners read each range by name through `SearchSpace.param`
        return field in HPARAM_NAMES
    return False


def unread_keys(cls: type[BaseModel], recipe_names: tuple[str, ...] | None = None) -> list[str]:
    read, ends = accesses(cls, recipe_names or (cls.__name__,))
    sections = dict(_sections(cls))

    def used_by_section(path: KeyPath) -> bool:
        """The section at path[:-1] reads path[-1] itself (its methods, or its documented consumer)."""
        parent, name = path[:-1], path[-1]
        return name in _self_reads(sections[parent]) or _indirect_reads(cls, parent, sections[parent], name)

    dead = []
    for leaf in leaves(cls):
        parent, name = leaf[:-1], leaf[-1]
        if leaf in read or (parent in read and _indirect_reads(cls, parent, sections[parent], name)):
            continue
        # a section passed on whole reads, level by level down to the leaf, what its methods read
        if any(
            leaf[:i] in ends and all(used_by_section(leaf[:j]) for j in range(i + 1, len(leaf) + 1))
            for i in range(len(leaf))
        ):
            continue
        # a method called on the leaf's section reads what that method reads
        if any(end[:-1] == parent and name in _self_reads(sections[parent], end[-1]) for end in ends):
            continue
        dead.append(".".join(leaf))
    return dead


@pytest.mark.parametrize(
    "cls", [SFTConfig, DPOConfig, TuneConfig, AlignConfig, QuickstartConfig, SEALConfig, RLHFConfig]
)
def test_every_key_is_read(cls):
    assert unread_keys(cls) == []


def test_the_check_finds_a_dead_key():
    """TuneConfig's old data section: `max_length` was accepted and never read."""

    class OldTune(TuneConfig):
        data: DataSettings = DataSettings()

    class DeadDPOSettings(DPOSettings):
        reference_free: bool = False  # a plausible key nobody reads

    class WithDeadKey(DPOConfig):
        dpo: DeadDPOSettings = DeadDPOSettings()

    assert unread_keys(OldTune, ("TuneConfig",)) == ["data.max_length"]
    assert unread_keys(WithDeadKey, ("DPOConfig",)) == ["dpo.reference_free"]
