"""A fast, conservative JSON Schema check derived from the `fhir.resources` R4B models.

Validating with the pydantic models costs about 0.4 ms per resource, most of it
in Python-level validators of every nested element. This module walks the same
model classes once and writes a JSON Schema per resource type, compiled with
`jsonschema_rs` (Rust), that accepts a resource only when the models would:

- each element is an object whose properties are exactly the model's fields
  (by their JSON name; unknown keys are refused, as the models forbid extras);
- required elements and choice groups (`value[x]`: at most one, or exactly one
  when required) follow the models' `element_required`, `one_of_many` metadata;
- primitives carry the models' own constraints: the pattern and length
  constraints pydantic derives for strings, integer ranges, and for the types
  with semantic checks (dates, instants, times, urls, uuids, base64) a format
  whose checker runs the very `fhir_core` type on the value.

The schema is deliberately stricter where that is simpler: JSON `null`,
`contained` resources of types outside `CONTAINED_TYPES`, `fhir_comments`, and
the models' lax coercions (`"5"` for an integer, `"yes"` for a boolean) all
fail the fast check. A resource that fails it is not
refused here: `fhir_validation` then runs the pydantic models, which give the
verdict and name the element. So the fast check only ever saves work; it never
changes what is accepted (tests/shared/test_fhir_schema.py checks both ways).
"""

from __future__ import annotations

import threading
import types
import typing
from collections.abc import Callable
from functools import cache
from typing import Any

import jsonschema_rs
from fhir.resources.R4B import get_fhir_model_class
from fhir_core.types import FhirBase, FhirElementOrResourceBase
from pydantic import TypeAdapter, ValidationError
from pydantic.fields import FieldInfo

#: fhir_core primitive markers whose values need more than a pattern (calendar, url ...).
_SEMANTIC = frozenset({"Date", "DateTime", "Instant", "Time", "Url", "UuidVersion", "Base64Binary"})
#: Markers whose constraints pydantic's own JSON Schema states fully.
_PLAIN = frozenset(
    {"String", "Code", "Id", "Uri", "Canonical", "Markdown", "Oid", "Integer", "UnsignedInt",
     "PositiveInt", "Xhtml"}
)  # fmt: skip

#: Contained resources the fast check knows (others go to the models): those Synthea
#: and the official examples put in `contained`.
CONTAINED_TYPES = (
    "Medication", "ServiceRequest", "CareTeam", "Condition", "Coverage", "Organization",
    "Practitioner", "Patient", "Location", "Device", "Substance",
)  # fmt: skip


def _unwrap(annotation: Any) -> tuple[Any, bool]:
    """(item type, is a list) of a field annotation: strips Optional and List."""
    is_list = False
    while True:
        origin = typing.get_origin(annotation)
        if origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(annotation) if a is not type(None)]
            if len(args) != 1:
                return None, is_list
            annotation = args[0]
        elif origin in (list, typing.List):  # noqa: UP006 - fhir.resources spells typing.List
            is_list = True
            annotation = typing.get_args(annotation)[0]
        else:
            return annotation, is_list


class _SchemaBuilder:
    """Writes `$defs` for every element type reachable from one resource type."""

    def __init__(self) -> None:
        self.defs: dict[str, Any] = {}
        self.formats: dict[str, Callable[[str], bool]] = {}
        #: One format per primitive annotation: its checker runs exactly that type.
        self._format_names: dict[Any, str] = {}

    def element(self, model: Any) -> dict[str, str]:
        name = model.__name__
        if name not in self.defs:
            self.defs[name] = {}  # placeholder: recursive types refer back to it
            self.defs[name] = self._object(model)
        return {"$ref": f"#/$defs/{name}"}

    def _object(self, model: Any) -> dict[str, Any]:
        properties: dict[str, Any] = {}
        required: list[str] = []
        choices: dict[str, list[str]] = {}
        choice_required: set[str] = set()
        for field in model.model_fields.values():
            key = field.alias or ""
            extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
            if key.startswith("_"):
                properties[key] = self._primitive_extension(field)
                continue
            if not extra.get("element_property"):
                continue  # fhir_comments: left to the models
            properties[key] = self._field(field)
            if field.is_required() or extra.get("element_required"):
                required.append(key)
            group = extra.get("one_of_many")
            if isinstance(group, str):
                choices.setdefault(group, []).append(key)
                if extra.get("one_of_many_required"):
                    choice_required.add(group)
        resource_type = getattr(model, "__resource_type__", None)
        if model.has_resource_base() and isinstance(resource_type, str):
            properties["resourceType"] = {"const": resource_type}
            required.append("resourceType")
        schema: dict[str, Any] = {
            "type": "object",
            "properties": properties,
            "additionalProperties": False,
        }
        if required:
            schema["required"] = required
        dependent: dict[str, Any] = {}
        any_of: list[Any] = []
        for group, members in choices.items():
            for member in members:
                others = [{"required": [m]} for m in members if m != member]
                if others:
                    dependent[member] = {"not": {"anyOf": others}}
            if group in choice_required:
                any_of.append({"anyOf": [{"required": [m]} for m in members]})
        if dependent:
            schema["dependentSchemas"] = dependent
        if any_of:
            schema["allOf"] = any_of
        return schema

    def _primitive_extension(self, field: FieldInfo) -> Any:
        """`_birthDate`: an id and extensions (the models want at least one: we want both)."""
        item, is_list = _unwrap(field.annotation)
        if not (isinstance(item, type) and issubclass(item, FhirBase)):
            return False
        model = item.get_model_klass()
        if "PrimitiveExtension" not in self.defs:
            self.defs["PrimitiveExtension"] = {
                "type": "object",
                "properties": {
                    "id": self._field(model.model_fields["id"]),
                    "extension": self._field(model.model_fields["extension"]),
                },
                "required": ["extension"],
                "additionalProperties": False,
            }
        ref = {"$ref": "#/$defs/PrimitiveExtension"}
        # In a list, null keeps an extension in line with its value (the models allow it).
        return {"type": "array", "items": {"anyOf": [{"type": "null"}, ref]}} if is_list else ref

    def _contained(self) -> Any:
        """A nested resource of one of `CONTAINED_TYPES`, checked as that type."""
        if "Contained" not in self.defs:
            self.defs["Contained"] = {}
            self.defs["Contained"] = {
                "type": "object",
                "required": ["resourceType"],
                "properties": {"resourceType": {"enum": list(CONTAINED_TYPES)}},
                "allOf": [
                    {
                        "if": {"properties": {"resourceType": {"const": name}}},
                        "then": self.element(get_fhir_model_class(name)),
                    }
                    for name in CONTAINED_TYPES
                ],
            }
        return {"$ref": "#/$defs/Contained"}

    def _field(self, field: FieldInfo) -> Any:
        item, is_list = _unwrap(field.annotation)
        schema = self._item(item)
        return {"type": "array", "items": schema} if is_list else schema

    def _item(self, item: Any) -> Any:
        if item is bool:
            return {"type": "boolean"}
        if isinstance(item, type) and issubclass(item, FhirElementOrResourceBase):
            # A nested resource of any type (`contained`): the models dispatch on resourceType.
            return self._contained() if item.get_model_klass().__name__ == "Resource" else False
        if isinstance(item, type) and issubclass(item, FhirBase):
            return self.element(item.get_model_klass())
        if typing.get_origin(item) is typing.Annotated:
            return self._primitive(item)
        return False  # nothing the fast check can vouch for

    def _primitive(self, annotation: Any) -> Any:
        _, *markers = typing.get_args(annotation)
        kinds = {type(m).__name__ for m in markers}
        if "Decimal" in kinds:
            return {"type": "number"}
        semantic = kinds & _SEMANTIC
        if semantic:
            name = self._format_names.get(annotation)
            if name is None:
                name = f"fhir-{min(semantic)}-{len(self.formats)}"
                self._format_names[annotation] = name
                self.formats[name] = _checker(annotation)
            return {"type": "string", "format": name}
        if kinds & _PLAIN:
            return _plain_schema(annotation)
        return False


@cache
def _plain_schema(annotation: Any) -> dict[str, Any]:
    """The pattern, length and range constraints pydantic derives for a primitive."""
    schema: dict[str, Any] = TypeAdapter(annotation).json_schema()
    schema.pop("format", None)
    return schema


def _checker(annotation: Any) -> Callable[[str], bool]:
    """A format check that runs the fhir_core type itself on one value."""
    adapter: TypeAdapter[Any] = TypeAdapter(annotation)

    def check(value: str) -> bool:
        try:
            adapter.validate_python(value)
        except (ValidationError, ValueError, TypeError):
            return False
        return True

    return check


#: One builder per process (element types are shared by every resource type's schema),
#: and the compiled checks. The lock matters: a half-built `$defs` entry is `{}`, which
#: would accept anything if another thread compiled it.
_builder = _SchemaBuilder()
_validators: dict[str, Any] = {}
_lock = threading.Lock()


def fast_validator(resource_type: str) -> Any:
    """The compiled schema check for one resource type (built once per process)."""
    validator = _validators.get(resource_type)
    if validator is None:
        with _lock:
            validator = _validators.get(resource_type)
            if validator is None:
                root = _builder.element(get_fhir_model_class(resource_type))
                schema: dict[str, Any] = {
                    "$schema": "https://json-schema.org/draft/2020-12/schema",
                    **root,
                    "$defs": _builder.defs,
                }
                validator = jsonschema_rs.validator_for(
                    schema, formats=_builder.formats, validate_formats=True
                )
                _validators[resource_type] = validator
    return validator


def passes_fast_check(resource: dict[str, Any], resource_type: str) -> bool:
    """True only if the models would accept `resource` (False proves nothing)."""
    return bool(fast_validator(resource_type).is_valid(resource))
