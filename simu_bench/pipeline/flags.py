"""Command-line flags generated from a dataclass's field metadata, as HfArgumentParser reads TRL's configs.

A field becomes a flag when its metadata is `flag(...)` (see `simu_bench.pipeline.plan.Plan`). From
the fields this module makes, for one command (`run`, `tune` or `eval`):

- the parser's arguments (`add_flags`): ``--name-with-dashes``, its type from the annotation
  (``int``, ``float``, ``Path``, ``str``; ``bool`` is a switch), its help, metavar, choices and
  default, in the order of the fields;
- the checked values (`values_from`): each flag's text goes through its `parse`, then its
  `check`, both of which raise `UserError` with the flag's name;
- the canonical command line (`command_line`): every flag that differs from its default (and
  the `always` ones), in the order of the fields; it is written into the run store;
- the run identity entries (`identity`): fields with ``identity="section.key"`` go into each
  run's hashed config; a field that is not `identity_always` is hashed only when it differs
  from its default, so run stores made before the flag existed keep their hashes.

A field's spelling, meaning and checks are the same in every command that has it; `per` changes
only what must differ (a default, a help line, `required`). A renamed flag lists its old name in
`renamed`, which is refused with one line that names the new one.
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from typing import Any, Callable

from simu_bench.errors import UserError

COMMANDS = ("run", "tune", "eval", "frontier")
KEY = "flag"  # the field metadata key


def flag(help: str, *, commands: tuple[str, ...] = COMMANDS, name: str | None = None, metavar: str | None = None,
         default: Any = dataclasses.MISSING, parse: Callable | None = None, check: Callable | None = None,
         choices: tuple | None = None, repeat: bool = False, always: bool = False, identity: str | None = None,
         identity_always: bool = False, methods_only: bool = False, per: dict | None = None,
         renamed: dict[str, str] | None = None) -> dict:
    """Field metadata that makes a field a flag.

    help: the flag's help line. commands: the commands that have it. name: the flag, if not
    ``--`` + the field name with dashes. default: the flag's default as typed on the command
    line (e.g. "all"), if not the field's default; a function of no arguments is called for it.
    parse(text, flag): the typed value of the text. check(value, flag): raise `UserError` for a
    bad value (not called for None). repeat: the flag may be given many times (a tuple of texts).
    always: written into the command line even at its default. identity: "section.key" of the
    run's hashed config; identity_always: hashed even at its default (settings hashed before
    this module existed); methods_only: not in the reference run's identity.
    per: {command: {"default"|"help"|"required": ...}}. renamed: {command: old flag}, refused
    with a line that names the new flag.
    """
    return {KEY: dict(help=help, commands=commands, name=name, metavar=metavar, default=default, parse=parse,
                      check=check, choices=choices, repeat=repeat, always=always, identity=identity,
                      identity_always=identity_always, methods_only=methods_only, per=per or {},
                      renamed=renamed or {})}


@dataclasses.dataclass(frozen=True)
class Spec:
    """One field's flag in one command."""

    field: dataclasses.Field
    kind: type  # int, float, str, Path or bool
    options: dict

    @property
    def flag(self) -> str:
        return self.options["name"] or "--" + self.field.name.replace("_", "-")

    @property
    def default(self) -> Any:
        """The default as argparse holds it (the text form where the field has a `parse`)."""
        if self.options["repeat"]:
            return []
        if callable(self.options["default"]):  # read when the parser is built
            return self.options["default"]()
        if self.options["default"] is not dataclasses.MISSING:
            return self.options["default"]
        return None if self.field.default is dataclasses.MISSING else self.field.default


def specs(cls, command: str) -> list[Spec]:
    """The flags of `command` among `cls`'s fields, in field order."""
    hints = typing.get_type_hints(cls)
    found = []
    for item in dataclasses.fields(cls):
        options = item.metadata.get(KEY)
        if options is None or command not in options["commands"]:
            continue
        options = {**options, **options["per"].get(command, {})}
        found.append(Spec(item, _kind(hints[item.name], options), options))
    return found


def _kind(hint, options: dict) -> type:
    if options["parse"] is not None or options["repeat"]:
        return str  # the text goes to `parse`
    kinds = [arg for arg in typing.get_args(hint) if arg is not type(None)] or [hint]
    return kinds[0]


def add_flags(parser: argparse.ArgumentParser, cls, command: str) -> None:
    """`cls`'s flags for `command`, in field order."""
    for spec in specs(cls, command):
        options, kwargs = spec.options, {"dest": spec.field.name, "help": spec.options["help"]}
        if spec.kind is bool:
            kwargs["action"] = "store_true"
        else:
            kwargs.update(type=spec.kind, default=spec.default, metavar=options["metavar"])
            if options["repeat"]:
                kwargs["action"] = "append"
            if options["choices"]:
                kwargs.update(choices=options["choices"], metavar=options["metavar"] or "|".join(options["choices"]))
        if options.get("required"):
            kwargs["required"] = True
        parser.add_argument(spec.flag, **kwargs)
        if command in options["renamed"]:
            parser.add_argument(options["renamed"][command], dest=f"renamed_{spec.field.name}",
                                help=argparse.SUPPRESS)


def values_from(cls, args: argparse.Namespace, command: str) -> dict:
    """The parsed and checked value of each of `cls`'s flags for `command`, by field name."""
    values = {}
    for spec in specs(cls, command):
        old = spec.options["renamed"].get(command)
        if old and getattr(args, f"renamed_{spec.field.name}", None) is not None:
            raise UserError(f"{old} is now {spec.flag} (the same flag in run, tune and eval); "
                            f"write {spec.flag} {getattr(args, f'renamed_{spec.field.name}')}")
        value = getattr(args, spec.field.name)
        if spec.options["repeat"]:
            value = tuple(value)
        elif spec.options["parse"] is not None and value is not None:
            value = spec.options["parse"](value, spec.flag)
        if spec.options["check"] is not None and value is not None:
            spec.options["check"](value, spec.flag)
        values[spec.field.name] = value
    return values


def command_words(cls, args: argparse.Namespace, command: str) -> list[str]:
    """The flags of `args` as typed words: those that differ from their defaults, and the `always` ones."""
    words = []
    for spec in specs(cls, command):
        value = getattr(args, spec.field.name)
        if value is None or (value == spec.default and not spec.options["always"]):
            continue
        if spec.kind is bool:
            words.append(spec.flag)
        elif spec.options["repeat"]:
            words += [word for item in value for word in (spec.flag, str(item))]
        else:
            words += [spec.flag, f"{value:g}" if isinstance(value, float) else str(value)]
    return words


def identity(cls, plan, method_run: bool) -> dict[str, Any]:
    """The hashed settings of `plan`: {"section.key": value} (tuples as lists)."""
    found = {}
    for item in dataclasses.fields(cls):
        options = item.metadata.get(KEY)
        if options is None or options["identity"] is None or (options["methods_only"] and not method_run):
            continue
        value = getattr(plan, item.name)
        if options["identity_always"] or value != item.default:
            found[options["identity"]] = list(value) if isinstance(value, tuple) else value
    return found


def positive(what: str, example: int) -> Callable[[int, str], None]:
    """A check: a whole number of at least 1 ("--flag 0: expected a positive number of WHAT, e.g. EXAMPLE")."""
    def check(value: int, name: str) -> None:
        if value < 1:
            raise UserError(f"{name} {value}: expected a positive {what}, e.g. {example}")
    return check
