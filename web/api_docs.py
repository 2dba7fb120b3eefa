"""The /docs page's content, read from the OpenAPI description FastAPI builds: per operation its parameters and,
for a write, its JSON body field by field with an example. FastAPI's own /docs loads Swagger UI from a CDN."""

from __future__ import annotations

import json
from typing import Any

from markdown_it import MarkdownIt
from markupsafe import Markup

# Our own summaries and descriptions hold `code` spans and no HTML; raw HTML stays text.
_MD = MarkdownIt("commonmark", {"html": False})


def inline_md(text: str) -> Markup:
    return Markup(_MD.renderInline(text or ""))


def operations(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """Every operation: method, path, summary, parameters, the request body's fields and an example body."""
    schemas = spec.get("components", {}).get("schemas", {})
    ops = []
    for path, item in spec["paths"].items():
        for method, op in item.items():
            body = (op.get("requestBody") or {}).get("content", {}).get("application/json", {}).get("schema")
            ops.append(
                {
                    "method": method.upper(),
                    "path": path,
                    "anchor": f"{method}-{path}".replace("/", "-").replace("{", "").replace("}", "").strip("-"),
                    "summary": inline_md(op.get("summary", "")),
                    "description": inline_md(op.get("description", "")) if op.get("description") else None,
                    "params": [
                        {
                            "name": p["name"],
                            "in": p["in"],
                            "required": p.get("required", False),
                            "type": type_of(p.get("schema", {}), schemas),
                            "notes": constraints(p.get("schema", {})),
                            "description": p.get("description") or p.get("schema", {}).get("description") or "",
                        }
                        for p in op.get("parameters", [])
                    ],
                    "body": body_fields(body, schemas) if body else None,
                    "example": json.dumps(example(body, schemas), indent=2, ensure_ascii=False) if body else None,
                    "responses": sorted(
                        [(code, r.get("description", "")) for code, r in op.get("responses", {}).items()]
                        + ([("401", "No valid token (Authorization: Bearer)")] if method != "get" else [])
                    ),
                    "write": method != "get",
                }
            )
    return ops


def _resolve(schema: dict[str, Any], schemas: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    return schemas.get(ref.rsplit("/", 1)[-1], {}) if ref else schema


def _non_null(schema: dict[str, Any]) -> tuple[list[dict[str, Any]], bool]:
    options = schema.get("anyOf")
    if not options:
        return [schema], False
    return [o for o in options if o.get("type") != "null"], any(o.get("type") == "null" for o in options)


def type_of(schema: dict[str, Any], schemas: dict[str, Any]) -> str:
    """A short reading of a JSON schema: `string`, `one of a, b`, `list of integer`, `object`, `X or null`."""
    options, nullable = _non_null(schema)
    parts = []
    for o in options:
        if "$ref" in o:
            parts.append("object")
        elif "enum" in o:
            parts.append("one of " + ", ".join(str(v) for v in o["enum"]))
        elif o.get("type") == "array":
            items = o.get("items") or {}
            parts.append("list of " + (type_of(items, schemas) if items else "anything"))
        else:
            parts.append(o.get("type", "any"))
    text = " or ".join(parts) or "any"
    return text + (" or null" if nullable else "")


def constraints(schema: dict[str, Any]) -> str:
    options, _ = _non_null(schema)
    merged: dict[str, Any] = {k: v for o in options for k, v in o.items()}
    merged.update({k: v for k, v in schema.items() if k == "default"})
    notes = []
    for key, label in (("minimum", "≥"), ("maximum", "≤")):
        if key in merged:
            v = merged[key]
            notes.append(f"{label} {int(v):,}" if float(v).is_integer() else f"{label} {v:g}")
    for key, label, noun in (
        ("minLength", "at least", "character"),
        ("maxLength", "at most", "character"),
        ("minItems", "at least", "item"),
        ("maxItems", "at most", "item"),
    ):
        if key in merged:
            n = merged[key]
            notes.append(f"{label} {n} {noun}{'' if n == 1 else 's'}")
    if "pattern" in merged:
        notes.append(f"matches {merged['pattern']}")
    if "default" in merged:
        notes.append(f"default {json.dumps(merged['default'])}")
    return "; ".join(notes)


def body_fields(schema: dict[str, Any], schemas: dict[str, Any], prefix: str = "") -> list[dict[str, Any]]:
    """The body's fields, nested objects (and lists of objects) one level down as `documents[].name`."""
    obj = _resolve(schema, schemas)
    required = set(obj.get("required", []))
    out = []
    for name, prop in obj.get("properties", {}).items():
        out.append(
            {
                "name": prefix + name,
                "required": name in required,
                "type": type_of(prop, schemas),
                "notes": constraints(prop),
                "description": prop.get("description", ""),
            }
        )
        items = prop.get("items") or {}
        if not prefix and "$ref" in items:
            out.extend(body_fields(items, schemas, prefix=f"{prefix}{name}[]."))
        elif not prefix and "$ref" in prop:
            out.extend(body_fields(prop, schemas, prefix=f"{prefix}{name}."))
    return out


def example(schema: dict[str, Any], schemas: dict[str, Any]) -> Any:
    """A body with every required field filled by a value of its type (the first of an enum)."""
    obj = _resolve(schema, schemas)
    if obj.get("type") == "object" or "properties" in obj:
        req = set(obj.get("required", []))
        return {k: example(v, schemas) for k, v in obj.get("properties", {}).items() if k in req}
    options, _ = _non_null(obj)
    o = options[0] if options else {}
    if "$ref" in o:
        return example(o, schemas)
    if "enum" in o:
        return o["enum"][0]
    if "default" in obj:
        return obj["default"]
    kind = o.get("type")
    if kind == "array":
        return [example(o.get("items") or {}, schemas)]
    return {"integer": 1, "number": 1.0, "boolean": True, "string": "…"}.get(kind or "", {})
