"""Tests of the OCI bundle model; `config_schema()` validates documents against the runtime-spec JSON schema."""

from __future__ import annotations

import json
from pathlib import Path

from jsonschema import Draft4Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
SCHEMA_DIR = FIXTURES / "runtime-spec-schema"
RUNTIME_TOOLS_CONFIG = FIXTURES / "runtime-tools-config.json"


def config_schema() -> Draft4Validator:
    """config-schema.json, its relative `$ref`s (defs.json, config-linux.json, ...) served from the same folder."""
    resources = [
        (path.name, Resource.from_contents(json.loads(path.read_text(encoding="utf-8")), default_specification=DRAFT4))
        for path in SCHEMA_DIR.glob("*.json")
    ]
    schema = json.loads((SCHEMA_DIR / "config-schema.json").read_text(encoding="utf-8"))
    return Draft4Validator(schema, registry=Registry().with_resources(resources))
