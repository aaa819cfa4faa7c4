"""The vendored OCSF schema (tests/fixtures/ocsf, see its PROVENANCE.md) as a JSON Schema for one event class.

The OCSF project publishes its schema in its own dictionary form; its server turns that into JSON Schema for
validation. This does the same for the attributes plmon can emit, so ``jsonschema`` checks every event: required
attributes, value types, closed ``*_id`` enums, nested objects that allow no undeclared key, arrays, and the
profiles the event names in ``metadata.profiles`` (an attribute of another profile is undeclared).
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "ocsf" / "ocsf-1.5.0-detection_finding.json"

_SCALARS = {"boolean_t": {"type": "boolean"}, "float_t": {"type": "number"}, "integer_t": {"type": "integer"},
            "long_t": {"type": "integer"}, "string_t": {"type": "string"}, "json_t": {}}


@cache
def ocsf() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(FIXTURE.read_text(encoding="utf-8"))
    return data


def _type_schema(type_name: str) -> dict[str, Any]:
    types = ocsf()["types"]
    seen = type_name
    while seen not in _SCALARS:
        base = types[seen].get("type")
        if base is None:
            return {}
        seen = base
    schema = dict(_SCALARS[seen])
    regex = types.get(type_name, {}).get("regex")
    if regex and seen == "string_t":
        schema["pattern"] = regex
    return schema


def _attributes(attrs: dict[str, Any], profiles: frozenset[str], defs: dict[str, Any]) -> dict[str, Any]:
    props: dict[str, Any] = {}
    required: list[str] = []
    for name, a in attrs.items():
        if a.get("profile") is not None and a["profile"] not in profiles:
            continue
        if a.get("object_type") == "object":  # the unextended object (``unmapped``): any properties, as OCSF says
            item: dict[str, Any] = {"type": "object"}
        elif a.get("object_type"):
            _object(a["object_type"], profiles, defs)
            item = {"$ref": f"#/$defs/{a['object_type']}"}
        elif a["type"] == "object":
            item = {"type": "object"}
        else:
            item = _type_schema(a["type"])
            if a.get("enum") and item.get("type") == "integer":  # *_id and the class's fixed *_uid values
                item["enum"] = sorted(int(k) for k in a["enum"])
        props[name] = {"type": "array", "items": item} if a.get("is_array") else item
        if a.get("requirement") == "required":
            required.append(name)
    return {"type": "object", "properties": props, "required": sorted(required), "additionalProperties": False}


def _object(name: str, profiles: frozenset[str], defs: dict[str, Any]) -> None:
    if name in defs:
        return
    defs[name] = {}  # placeholder: objects refer to each other
    obj = ocsf()["objects"][name]
    schema = _attributes(obj["attributes"], profiles, defs)
    for rule, names in (obj.get("constraints") or {}).items():
        if rule == "at_least_one":
            schema["anyOf"] = [{"required": [n]} for n in names]
        elif rule == "just_one":
            schema["oneOf"] = [{"required": [n]} for n in names]
    defs[name] = schema


@cache
def class_schema(class_name: str, profiles: frozenset[str]) -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of the OCSF class ``class_name`` with ``profiles`` applied."""
    defs: dict[str, Any] = {}
    schema = _attributes(ocsf()["classes"][class_name]["attributes"], profiles, defs)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema, "$defs": defs}
