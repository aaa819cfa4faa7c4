"""OCSF event validation from the registry: the ``ocsf-json-schema`` wheel (a test extra, installed from PyPI by
``make install-test``; nothing of OCSF's schema is kept in this tree).

That wheel ships the compiled schema the OCSF project serves for each version (``/export/schema``, 1.5.0 among
them, Apache-2.0) and turns a class into a JSON Schema (draft 2020-12) the way the OCSF server's JSON-schema export
does, so ``jsonschema`` checks every event as a consumer such as Security Lake would: required attributes, value
types and their patterns and ranges, closed enums (``*_id``, and ``class_uid``/``type_uid`` fixed to the class's own
values), nested objects that allow no undeclared key (only the bare ``object`` type of ``unmapped`` is open), the
``at_least_one``/``just_one`` constraints, and only the profiles listed (an attribute of another profile is
undeclared).
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from typing import Any

import jsonschema
from ocsf_json_schema import OcsfJsonSchemaEmbedded, get_ocsf_schema, get_packaged_versions

from plmon.monitor.reports.ocsf import OCSF_VERSION


@cache
def ocsf(version: str = OCSF_VERSION) -> dict[str, Any]:
    """The compiled OCSF schema of ``version`` as the wheel ships it (read once: it is 3 MB of JSON)."""
    data: dict[str, Any] = get_ocsf_schema(version)
    return data


@cache
def class_schema(class_name: str, profiles: frozenset[str], version: str = OCSF_VERSION) -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of the OCSF class ``class_name`` with ``profiles`` applied, every object it
    reaches embedded under ``$defs``."""
    schema: dict[str, Any] = OcsfJsonSchemaEmbedded(ocsf(version)).get_class_schema(class_name, sorted(profiles))
    return schema


@cache
def _validator(class_name: str, profiles: frozenset[str], version: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(class_schema(class_name, profiles, version))


def event_errors(event: Mapping[str, Any]) -> list[str]:
    """Why ``event`` is not valid OCSF (empty when it is), judged as a consumer judges it: against the class its
    ``class_uid`` names, in the schema version its ``metadata.version`` names, with the profiles its
    ``metadata.profiles`` lists, so an event cannot pass by claiming what the tests did not check."""
    meta = event.get("metadata")
    meta = meta if isinstance(meta, Mapping) else {}
    version = meta.get("version")
    if version not in get_packaged_versions():
        return [f"metadata.version: {version!r} is not a published OCSF version"]
    try:
        class_name = OcsfJsonSchemaEmbedded(ocsf(version)).lookup_class_name_from_uid(event.get("class_uid"))
    except ValueError:
        return [f"class_uid: {event.get('class_uid')!r} is not an OCSF {version} class"]
    listed = meta.get("profiles")
    profiles = frozenset(p for p in listed if isinstance(p, str)) if isinstance(listed, list) else frozenset()
    return [f"{'/'.join(map(str, e.absolute_path)) or '(event)'}: {e.message}"
            for e in _validator(class_name, profiles, version).iter_errors(event)]
