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


def schema(name: str) -> Draft4Validator:
    """A schema of the folder, its relative `$ref`s (defs.json, config-linux.json, ...) served from the same folder."""
    resources = [
        (path.name, Resource.from_contents(json.loads(path.read_text(encoding="utf-8")), default_specification=DRAFT4))
        for path in SCHEMA_DIR.glob("*.json")
    ]
    document = json.loads((SCHEMA_DIR / name).read_text(encoding="utf-8"))
    return Draft4Validator(document, registry=Registry().with_resources(resources))


def config_schema() -> Draft4Validator:
    return schema("config-schema.json")


def state_schema() -> Draft4Validator:
    return schema("state-schema.json")
