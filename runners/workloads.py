"""Workload files: read and validate one (or a directory of them) before anything runs, and pick a lane's.

A bad file is refused with one line naming the file and the field (InputError, exit code 2).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from guardrail.errors import InputError
from guardrail.yaml_files import read_yaml
from runners.geometry import check_geometry
from runners.spec import LANES, SCALES, FieldError, Generation, WorkloadSpec


def _field_of(loc: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in loc) or "$"


def load_workload(path: str | Path) -> WorkloadSpec:
    p = Path(path)
    data = read_yaml(p, "workload")
    if not isinstance(data, dict):
        raise InputError("expected a mapping at the top level", file=str(p))
    if "tiny" in data and isinstance(data["tiny"], dict) and isinstance(data["tiny"].get("generation"), dict):
        # tiny.generation is a partial override: check its keys against the full model here
        for key in data["tiny"]["generation"]:
            if key not in Generation.model_fields:
                raise InputError("unknown key", file=str(p), field=f"tiny.generation.{key}")
    try:
        spec = WorkloadSpec.model_validate(data)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        ctx_err = (err.get("ctx") or {}).get("error")
        if isinstance(ctx_err, FieldError):
            raise InputError(ctx_err.message, file=str(p), field=ctx_err.field) from None
        loc = tuple(x for x in err["loc"] if not (isinstance(x, str) and x.startswith("function-")))
        msg = {"extra_forbidden": "unknown key", "missing": "required field is missing"}.get(err["type"], err["msg"])
        raise InputError(msg.removeprefix("Value error, "), file=str(p), field=_field_of(loc)) from None
    if spec.name != p.stem:
        raise InputError(f"name {spec.name!r} differs from the file name {p.stem!r}", file=str(p), field="name")
    for scale in SCALES:
        for field, msg in check_geometry(spec, scale):
            raise InputError(msg, file=str(p), field=field)
    return spec


def default_workloads_dir() -> Path:
    env = os.environ.get("GUARDRAIL_WORKLOADS_DIR")
    return Path(env) if env else Path(__file__).resolve().parent.parent / "workloads"


def load_all(directory: str | Path | None = None) -> dict[str, tuple[Path, WorkloadSpec]]:
    """Every workload file in the directory, all validated (the first bad one raises)."""
    d = Path(directory) if directory else default_workloads_dir()
    if not d.is_dir():
        raise InputError("workloads directory does not exist", file=str(d))
    out: dict[str, tuple[Path, WorkloadSpec]] = {}
    for f in sorted(d.glob("*.yaml")):
        spec = load_workload(f)
        out[spec.name] = (f, spec)
    return out


def cell_workload(name: str, allw: dict[str, tuple[Path, WorkloadSpec]]) -> tuple[Path, WorkloadSpec]:
    """A parallel-matrix cell named `BASE@TAG` (guardrail.matrix) as a workload: the base workload with the cell's
    `parallel:` mapping, for a cache cell the matrix's `cache_workload` options (else the base's with the
    matrix's `cache_config`/`tiny_cache_config`, cache on), and for a compile cell `compile:` set on those.
    Written to a file of its own, since every process of a job reads its workload from a file; refused (exit 2)
    when the matrix says no library runs it."""
    import tempfile

    import yaml

    from guardrail.matrix import find_cell, parallel_mapping

    m, cell, why = find_cell(name)
    if why is not None:
        raise InputError(f"cell {name!r} is unsupported: {why}", field="--workload")
    if m.workload not in allw:
        raise InputError(f"the {m.family} matrix's base workload {m.workload!r} is not a workload", field="--workload")
    _, base = allw[m.workload]
    doc = base.model_dump(mode="json", by_alias=True, exclude_none=True)
    doc["name"] = name = cell.workload(m.workload)  # the tag in the matrix's order: one series per cell
    if not cell.single_device or cell.get("hsdp"):
        doc["parallel"] = parallel_mapping(cell)
    if cell.get("cache") == "cache_dit":
        if m.cache_workload is not None:
            if m.cache_workload not in allw:
                msg = f"the matrix's cache_workload {m.cache_workload!r} is not a workload"
                raise InputError(msg, field="--workload")
            src = allw[m.cache_workload][1]
            full, tiny = src.options, src.tiny.options or src.options
        else:
            full = base.options.model_copy(update={"cache_config": m.cache_config or base.options.cache_config})
            tiny = (base.tiny.options or base.options).model_copy(update={"cache_config": m.tiny_cache_config})
        doc["options"] = {**full.model_dump(mode="json"), "cache": "cache_dit"}
        doc.setdefault("tiny", {})["options"] = {**tiny.model_dump(mode="json"), "cache": "cache_dit"}
    if cell.get("compile") != "none":  # on top of whatever options the cell has (the cache's included)
        doc["options"] = {**doc.get("options", {}), "compile": cell.get("compile")}
        if doc.get("tiny", {}).get("options") is not None:
            doc["tiny"]["options"] = {**doc["tiny"]["options"], "compile": cell.get("compile")}
    path = Path(tempfile.mkdtemp(prefix="guardrail-cell-")) / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path, load_workload(path)


def select(
    lane: str, names: list[str] | None = None, directory: str | Path | None = None
) -> list[tuple[Path, WorkloadSpec]]:
    if lane not in LANES:
        raise InputError(f"unknown lane {lane!r}; known: {', '.join(LANES)}", field="--lane")
    allw = load_all(directory)
    if names:
        for n in names:
            if "@" in n and n not in allw:
                allw[n] = cell_workload(n, allw)
        missing = [n for n in names if n not in allw]
        if missing:
            raise InputError(f"unknown workload {missing[0]!r}; known: {', '.join(allw)}", field="--workload")
        return [allw[n] for n in names]
    chosen = [v for v in allw.values() if lane in v[1].lanes]
    if not chosen:
        raise InputError(f"no workload is in lane {lane!r}", field="--lane")
    return chosen
