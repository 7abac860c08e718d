"""A Griffe extension for the API reference: a function made by a call at import is documented as
the function it is.

The public ``pqdm`` functions (``mtasklite_like.processes``, ``.threads``, ``.ray``,
``.pqdm.processes``, ``.pqdm.threads``) are each one line, ``pqdm = for_backend(template, backend)``:
the signature is written once, in the template (``mtasklite_like._dropins.pqdm``), and each module's
function is that signature with the module's defaults and docstring. Read from the source, such a
line is an attribute. For a module attribute assigned from a call whose first argument is a
function (the template) and whose value at run time is a function, this extension documents a
function instead: the parameters of its run-time signature, with the template's annotations and
default expressions (as written in the source) where the run-time default is the template's, and
the run-time docstring.

Used by mkdocs.yml (``plugins: mkdocstrings: ... extensions``).
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

import griffe


class RuntimeFunctions(griffe.Extension):
    """Turn ``name = factory(template, ...)`` attributes whose run-time value is a function into
    that function (see the module docstring)."""

    def on_package(self, *, pkg: griffe.Module, loader: griffe.GriffeLoader, **kwargs: Any) -> None:
        for module in _modules(pkg):
            for name, member in list(module.members.items()):
                if member.is_alias or not member.is_attribute:
                    continue
                function = _as_function(module, name, member, loader)
                if function is not None:
                    module.set_member(name, function)


def _modules(module: griffe.Module) -> list[griffe.Module]:
    found = [module]
    for member in module.members.values():
        if not member.is_alias and member.is_module:
            found.extend(_modules(member))
    return found


def _as_function(
    module: griffe.Module, name: str, attribute: Any, loader: griffe.GriffeLoader
) -> griffe.Function | None:
    value = attribute.value
    if not isinstance(value, griffe.ExprCall) or not value.arguments:
        return None
    first = value.arguments[0]
    if not isinstance(first, griffe.ExprName):
        return None
    try:
        template = loader.modules_collection.get_member(first.canonical_path)
    except (KeyError, ValueError, griffe.AliasResolutionError):
        return None
    if not isinstance(template, griffe.Function):
        return None
    runtime = getattr(importlib.import_module(module.path), name, None)
    if not inspect.isfunction(runtime):
        return None
    template_signature = inspect.signature(
        getattr(importlib.import_module(template.module.path), template.name)
    )
    parameters = []
    for p in inspect.signature(runtime).parameters.values():
        static = template.parameters[p.name]
        if p.default is p.empty:
            default = None
        elif p.default is template_signature.parameters[p.name].default:
            default = static.default  # as the source writes it
        else:
            default = repr(p.default)
        parameters.append(
            griffe.Parameter(p.name, annotation=static.annotation, kind=static.kind, default=default)
        )
    function = griffe.Function(
        name,
        lineno=attribute.lineno,
        endlineno=attribute.endlineno,
        parameters=griffe.Parameters(*parameters),
        returns=template.returns,
    )
    doc = inspect.getdoc(runtime)
    if doc:
        function.docstring = griffe.Docstring(
            doc,
            parent=function,
            parser=loader.docstring_parser,
            parser_options=loader.docstring_options,
        )
    return function
