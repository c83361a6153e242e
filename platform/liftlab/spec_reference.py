"""The spec reference page, ``docs/spec.md``, generated from the pydantic models so it cannot drift.

:func:`render` walks :class:`liftlab.specs.ExperimentSpec` and every model reachable from its
fields (the ``source`` union's forms included), and the metric catalogue: the top-level keys of a
``metrics/*.yaml`` file (the ``dict[str, Model]`` fields of :class:`liftlab.catalogue.Catalogue`)
and the models they hold. Each model gets a section: its class docstring (first paragraph) and a
table of its fields in declaration order — key, type, default, constraints and description.

Descriptions are the fields' attribute docstrings as the code writes them: the ``#:`` comment
lines right above a field (Sphinx's convention), a trailing ``#:`` comment on its line, or a
string literal right after it; pydantic never sees these, so they are read from the source with
:mod:`ast` and :mod:`tokenize`. A field without one falls back to ``Field(description=...)``.

``python -m liftlab.spec_reference`` prints the page, ``--write`` writes ``docs/spec.md``,
``--check`` exits 1 when the file is out of date (``tests/test_spec_reference.py`` checks the same).
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import functools
import inspect
import io
import json
import re
import sys
import tokenize
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import annotated_types
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from liftlab import catalogue, config, specs

#: The generated page, relative to the repository root.
DOC = Path("docs") / "spec.md"
#: How to regenerate the page (printed in its header and by the drift test).
COMMAND = ".venv/bin/python -m liftlab.spec_reference --write"

#: Regular expressions shown by name in the constraints column (defined once in the legend).
PATTERNS: dict[str, str] = {
    specs.IDENTIFIER: "identifier",
    specs.QUALIFIED: "schema.name",
    next(m.pattern for m in get_args(specs.EnvVar)[1].metadata if getattr(m, "pattern", None)): "env var name",
}
PATTERN_MEANINGS = {
    "identifier": "a lower-case SQL identifier",
    "schema.name": "a schema-qualified table or view name",
    "env var name": "the name of an environment variable holding a `postgresql://` URL (never the URL itself)",
}
#: How plain Python types read in a YAML file.
SIMPLE_TYPES = {str: "str", int: "int", float: "float", bool: "bool", type(None): "null"}


# ---------------------------------------------------------------------------------------- comments
def _attribute_docs(cls: type) -> dict[str, str]:
    """Field → attribute docstring of the fields ``cls`` itself declares (see the module docstring)."""
    try:
        source = inspect.getsource(cls)
    except (OSError, TypeError):
        return {}
    return _attribute_docs_of_source(inspect.cleandoc(source) if source[:1].isspace() else source)


@functools.lru_cache(maxsize=None)
def _attribute_docs_of_source(source: str) -> dict[str, str]:
    comments: dict[int, tuple[str, bool]] = {}  # line → (text after "#:", alone on its line)
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT and tok.string.startswith("#:"):
            alone = tok.line[: tok.start[1]].strip() == ""
            comments[tok.start[0]] = (tok.string[2:].strip(), alone)
    body = ast.parse(source).body[0].body
    out: dict[str, str] = {}
    for i, stmt in enumerate(body):
        if not (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)):
            continue
        above: list[str] = []
        line = stmt.lineno - 1
        while line in comments and comments[line][1]:
            above.insert(0, comments[line][0])
            line -= 1
        trailing = [comments[n][0] for n in range(stmt.lineno, stmt.end_lineno + 1)
                    if n in comments and not comments[n][1]]
        after = []
        if i + 1 < len(body) and isinstance(body[i + 1], ast.Expr) and isinstance(body[i + 1].value, ast.Constant) \
                and isinstance(body[i + 1].value.value, str):
            after = [" ".join(inspect.cleandoc(body[i + 1].value.value).split())]
        text = " ".join(part for part in [*above, *trailing, *after] if part)
        if text:
            out[stmt.target.id] = text
    return out


def field_docs(cls: type) -> dict[str, str]:
    """Field → description, inherited fields included (a subclass's own comment wins)."""
    out: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if klass.__module__.startswith("liftlab."):
            out.update(_attribute_docs(klass))
    return out


def _first_paragraph(text: str | None) -> str:
    if not text:
        return ""
    return " ".join(inspect.cleandoc(text).split("\n\n")[0].split())


# ------------------------------------------------------------------------------------------ types
def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _models_in(tp: Any) -> list[type[BaseModel]]:
    """The models an annotation mentions, in order (``list[Variant]``, ``A | B | None`` …)."""
    if _is_model(tp):
        return [tp]
    if get_origin(tp) is Literal:
        return []
    out: list[type[BaseModel]] = []
    for arg in get_args(tp):
        out += [m for m in _models_in(arg) if m not in out]
    return out


def _type_parts(tp: Any) -> list[tuple[str, Any]]:
    """An annotation as ("code", text) and ("model", cls) pieces, for :func:`_join_parts`."""
    origin, args = get_origin(tp), get_args(tp)
    if origin is Annotated:
        return _type_parts(args[0])
    if _is_model(tp):
        return [("model", tp)]
    if tp is Any:
        return [("code", "any")]
    if origin is Literal:
        return [("code", " | ".join(json.dumps(value) for value in args))]
    if origin in (Union, types.UnionType):
        parts: list[tuple[str, Any]] = []
        for i, arg in enumerate(args):
            parts += ([("code", " | ")] if i else []) + _type_parts(arg)
        return parts
    if origin in (list, tuple, set, frozenset, dict):
        parts = [("code", f"{origin.__name__}[")]
        for i, arg in enumerate(args):
            parts += ([("code", ", ")] if i else []) + _type_parts(arg)
        return [*parts, ("code", "]")]
    if tp in SIMPLE_TYPES:
        return [("code", SIMPLE_TYPES[tp])]
    if isinstance(tp, type):
        return [("code", tp.__name__)]  # e.g. date (YYYY-MM-DD in YAML)
    raise TypeError(f"spec_reference: cannot render the type {tp!r}")


def anchor(model: type) -> str:
    """The heading anchor of a model's section (GitHub: the heading, lower-cased)."""
    return model.__name__.lower()


def _join_parts(parts: list[tuple[str, Any]]) -> str:
    out, code = [], ""
    for kind, value in parts:
        if kind == "code":
            code += value
            continue
        if code:
            out.append(f"`{code}`")
            code = ""
        out.append(f"[`{value.__name__}`](#{anchor(value)})")
    if code:
        out.append(f"`{code}`")
    return "".join(out)


def render_type(tp: Any) -> str:
    """A readable type: ``list[str]``, ``"file" | "table"``, model names linked to their section."""
    return _join_parts(_type_parts(tp))


def _number(value: Any) -> str:
    return json.dumps(value)


def _constraint_texts(metadata: list[Any]) -> list[str]:
    out: list[str] = []
    lengths: dict[str, Any] = {}
    for item in metadata:
        if isinstance(item, FieldInfo):
            out += _constraint_texts(item.metadata)
        elif isinstance(item, annotated_types.Gt):
            out.append(f"> {_number(item.gt)}")
        elif isinstance(item, annotated_types.Ge):
            out.append(f"≥ {_number(item.ge)}")
        elif isinstance(item, annotated_types.Lt):
            out.append(f"< {_number(item.lt)}")
        elif isinstance(item, annotated_types.Le):
            out.append(f"≤ {_number(item.le)}")
        elif isinstance(item, annotated_types.MinLen):
            lengths["min"] = item.min_length
        elif isinstance(item, annotated_types.MaxLen):
            lengths["max"] = item.max_length
        elif getattr(item, "pattern", None):
            label = PATTERNS.get(item.pattern)
            out.append(label if label else f"pattern `{item.pattern}`")
        else:
            out.append(str(item))
    if lengths:
        low, high = lengths.get("min"), lengths.get("max")
        out.insert(0, f"length {low}" if low == high else f"length {low}–{high}" if low is not None and high is not None
                   else f"length ≥ {low}" if low is not None else f"length ≤ {high}")
    return out


def _nested_constraints(tp: Any, where: str, out: dict[str, list[str]]) -> None:
    origin, args = get_origin(tp), get_args(tp)
    if origin is Annotated:
        out.setdefault(where, []).extend(t for t in _constraint_texts(list(args[1:])) if t not in out.get(where, []))
        _nested_constraints(args[0], where, out)
    elif origin in (Union, types.UnionType):
        for arg in args:
            _nested_constraints(arg, where, out)
    elif origin in (list, tuple, set, frozenset):
        for arg in args:
            _nested_constraints(arg, f"{where}each item" if not where else f"{where}'s item", out)
    elif origin is dict:
        _nested_constraints(args[0], f"{where}each key" if not where else f"{where}'s key", out)
        _nested_constraints(args[1], f"{where}each value" if not where else f"{where}'s value", out)


def constraints(info: FieldInfo) -> str:
    """The validation bounds of a field: ``> 0, ≤ 1``, ``length ≥ 2``, ``each item: identifier`` …"""
    groups: dict[str, list[str]] = {"": _constraint_texts(list(info.metadata))}
    _nested_constraints(info.annotation, "", groups)
    parts = [", ".join(texts) if not where else f"{where}: {', '.join(texts)}"
             for where, texts in groups.items() if texts]
    if isinstance(info.discriminator, str):
        parts.append(f"the form is chosen by `{info.discriminator}`")
    return "; ".join(parts)


# ------------------------------------------------------------------------------------------ text
def _markdown(text: str) -> str:
    """Docstring/comment text (reST-flavoured) as Markdown: ````x```` → ```x```, :mod:`x` → ```x```,
    ``<`` escaped outside code (else Markdown takes ``<metric>`` for an HTML tag)."""
    text = re.sub(r":[a-z]+:`~?\.?([^`]+)`", r"``\1``", text)
    pieces = re.split(r"(``.+?``|`[^`]+`)", text)
    return "".join(
        f"`{piece[2:-2]}`" if piece.startswith("``") else piece if piece.startswith("`") else piece.replace("<", r"\<")
        for piece in pieces
    )


def _markdown_block(text: str) -> str:
    """A whole docstring as Markdown, fenced code blocks left as they are."""
    out, fenced = [], False
    for line in inspect.cleandoc(text).splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
            out.append(line)
        else:
            out.append(line if fenced else _markdown(line))
    return "\n".join(out)


def _cell(text: str) -> str:
    return text.replace("|", r"\|").replace("\n", " ")


def _default(info: FieldInfo | dataclasses.Field, required: bool) -> str:
    if required:
        return "required"
    if isinstance(info, FieldInfo):
        value = info.get_default(call_default_factory=True)
    else:
        value = info.default_factory() if info.default_factory is not dataclasses.MISSING else info.default
    return f"`{json.dumps(value, ensure_ascii=False, default=str)}`"


# ------------------------------------------------------------------------------------------ walk
@dataclasses.dataclass
class _Walk:
    models: list[type[BaseModel]] = dataclasses.field(default_factory=list)
    #: model → (parent model, field) that hold it, in discovery order.
    used_in: dict[type, list[tuple[type, str]]] = dataclasses.field(default_factory=dict)
    #: (model, field) pairs that are the tag of a discriminated union: required in the YAML.
    tags: set[tuple[type, str]] = dataclasses.field(default_factory=set)

    def visit(self, model: type[BaseModel]) -> None:
        if model in self.models:
            return
        self.models.append(model)
        for name, info in model.model_fields.items():
            children = _models_in(info.annotation)
            for child in children:
                self.used_in.setdefault(child, []).append((model, name))
                if isinstance(info.discriminator, str):
                    self.tags.add((child, info.discriminator))
            for child in children:
                self.visit(child)


def catalogue_file_keys() -> dict[str, tuple[Any, type[BaseModel]]]:
    """Top-level key of a ``metrics/*.yaml`` file → (its type, the model of its entries): the
    ``dict[str, Model]`` fields of :class:`liftlab.catalogue.Catalogue`."""
    hints = typing.get_type_hints(catalogue.Catalogue)
    out = {}
    for item in dataclasses.fields(catalogue.Catalogue):
        tp = hints[item.name]
        if get_origin(tp) is dict and _is_model(get_args(tp)[1]):
            out[item.name] = (tp, get_args(tp)[1])
    return out


# ---------------------------------------------------------------------------------------- render
def _table(rows: list[tuple[str, str, str, str, str]]) -> list[str]:
    lines = ["| key | type | default | constraints | description |", "|---|---|---|---|---|"]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return lines


def _model_section(model: type[BaseModel], walk: _Walk, intro: str = "") -> list[str]:
    docs = field_docs(model)
    lines = [f"### {model.__name__}", ""]
    summary = _first_paragraph(model.__dict__.get("__doc__"))
    for text in (intro, _markdown(summary) if summary else ""):
        if text:
            lines += [text, ""]
    parents = walk.used_in.get(model, [])
    if parents:
        where = ", ".join(f"[`{p.__name__}`](#{anchor(p)})`.{name}`" for p, name in parents)
        lines += [f"Used in: {where}.", ""]
    rows = []
    for name, info in model.model_fields.items():
        key = info.alias or name
        required = info.is_required() or (model, name) in walk.tags
        default = "required (selects the form)" if (model, name) in walk.tags else _default(info, required)
        rows.append((f"`{key}`", render_type(info.annotation), default, constraints(info),
                     _markdown(docs.get(name) or info.description or "")))
    return [*lines, *_table(rows), ""]


def _catalogue_section(walk: _Walk) -> list[str]:
    docs = field_docs(catalogue.Catalogue)
    fields = {f.name: f for f in dataclasses.fields(catalogue.Catalogue)}
    rows = []
    for key, (tp, _) in catalogue_file_keys().items():
        rows.append((f"`{key}`", render_type(tp), _default(fields[key], False), "each key: identifier",
                     _markdown(docs.get(key, ""))))
    intro = ("The top level of a catalogue file (`metrics/*.yaml`); the entries of every file are merged "
             "(a name declared twice is an error).")
    return ["### Catalogue", "", intro, "", *_table(rows), ""]


def _legend() -> list[str]:
    lines = [
        "Reading the tables: **key** is the YAML key; **type** uses `str`, `int`, `float`, `bool`, `date` "
        "(`YYYY-MM-DD`), `null` (the key may be left out or set to `null`), `list[…]` (a YAML sequence), "
        "`dict[…, …]` (a YAML mapping), `\"a\" | \"b\"` (one of these strings), and links to nested blocks; "
        "**default** is the value taken when the key is absent, or *required*; **constraints** are the bounds "
        "validation enforces. Named patterns:",
        "",
    ]
    for pattern, label in PATTERNS.items():
        lines.append(f"* {label} — {PATTERN_MEANINGS.get(label, 'see the pattern')}: `{pattern}`")
    lines += ["", "Checks that involve several keys (a metric that must exist in the catalogue, a baseline "
              "that must be a variant …) are not in the tables; `liftlab validate` runs them all and names "
              "the file and key of every problem.", ""]
    return lines


def render() -> str:
    """The whole reference page (Markdown), from the models alone: same code, same page."""
    spec_walk = _Walk()
    spec_walk.visit(specs.ExperimentSpec)
    cat_walk = _Walk()
    file_keys = catalogue_file_keys()
    for key, (_, model) in file_keys.items():
        cat_walk.used_in.setdefault(model, []).append((catalogue.Catalogue, key))
        cat_walk.visit(model)
    names = [m.__name__ for m in [*spec_walk.models, *cat_walk.models, catalogue.Catalogue]]
    if len(set(names)) != len(names):
        raise ValueError(f"spec_reference: two models share a name (one section each): {sorted(names)}")

    lines = [
        "# Spec reference: experiment specs and the metric catalogue",
        "",
        f"<!-- Generated by `{COMMAND}` — do not edit by hand. -->",
        "",
        "This page is **generated** from the pydantic models in `platform/liftlab/specs.py` and "
        "`platform/liftlab/catalogue.py` (descriptions are the fields' `#:` comments), so it says exactly "
        "what the loader accepts. Do not edit it by hand: change the models or their comments, then regenerate:",
        "",
        "```bash",
        COMMAND,
        "```",
        "",
        "`tests/test_spec_reference.py` fails when this page and the models disagree.",
        "",
        "Contents:",
        "",
        "* [Experiment specs](#experiment-specs-experimentsyaml) (`experiments/*.yaml`): "
        + ", ".join(f"[{m.__name__}](#{anchor(m)})" for m in spec_walk.models),
        "* [Metric catalogue](#metric-catalogue-metricsyaml) (`metrics/*.yaml`): "
        + ", ".join(f"[{m.__name__}](#{anchor(m)})" for m in [catalogue.Catalogue, *cat_walk.models]),
        "",
        *_legend(),
        "## Experiment specs (`experiments/*.yaml`)",
        "",
        _markdown_block(specs.__doc__ or ""),
        "",
    ]
    for model in spec_walk.models:
        intro = "The top level of a spec file." if model is specs.ExperimentSpec else ""
        lines += _model_section(model, spec_walk, intro)
    lines += ["## Metric catalogue (`metrics/*.yaml`)", "", _markdown_block(catalogue.__doc__ or ""), ""]
    lines += _catalogue_section(cat_walk)
    for model in cat_walk.models:
        lines += _model_section(model, cat_walk)
    return "\n".join(lines).rstrip("\n") + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m liftlab.spec_reference",
                                     description="Print the spec reference page (docs/spec.md), generated from the models.")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true", help=f"write {DOC} instead of printing it")
    mode.add_argument("--check", action="store_true", help=f"exit 1 if {DOC} differs from the models")
    args = parser.parse_args(argv)
    text = render()
    path = config.REPO_ROOT / DOC
    if args.write:
        path.write_text(text, encoding="utf-8", newline="\n")
        print(f"wrote {path}", file=sys.stderr)
    elif args.check:
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current != text:
            print(f"{path} is out of date; regenerate it with: {COMMAND}", file=sys.stderr)
            return 1
    else:
        sys.stdout.buffer.write(text.encode("utf-8"))
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
