"""`guardrail workloads import-vllm-omni CASE.json... --out DIR`: vLLM-Omni perf cases -> `vllm-omni-serve` workloads.

One workload file per benchmark config (guardrail.vllm_omni_cases), and the configs' per-hardware baselines as
cold-start references in the baselines/reference/ format (guardrail.ingest.reference_import). Every file is read
and checked before anything is written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from guardrail import vllm_omni_cases
from guardrail.cli.app import app
from guardrail.errors import InputError
from guardrail.ingest.reference import ReferenceBaseline, write_reference_yaml
from guardrail.ingest.reference_import import load_reference_baselines
from guardrail.schema import check_document, loads

workloads_app = typer.Typer(help="Workload files made from other projects' test definitions.", no_args_is_help=True)
app.add_typer(workloads_app, name="workloads")

CASES_DIR = "tests/dfx/perf/tests"


@workloads_app.command("import-vllm-omni")
def import_vllm_omni(
    cases: Annotated[list[Path], typer.Argument(help="vLLM-Omni perf case files (tests/dfx/perf/tests/*.json).")],
    out: Annotated[Path, typer.Option("--out", help="Directory for the workload files (one per benchmark config).")],
    references: Annotated[
        Path | None,
        typer.Option(
            "--references", help="Directory for the reference baselines (default: OUT/reference).", show_default=False
        ),
    ] = None,
    lane: Annotated[list[str] | None, typer.Option("--lane", help="Lane(s) the workloads join (repeatable).")] = None,
    repo: Annotated[str, typer.Option("--repo", help="Repository the cases come from.")] = vllm_omni_cases.REPO,
    commit: Annotated[
        str | None, typer.Option("--commit", help="Commit of the case files (cited in every file).")
    ] = None,
    default_hardware: Annotated[
        str, typer.Option("--default-hardware", help="Hardware of a flat baseline block when the marks pin several.")
    ] = "H100",
    timeout_s: Annotated[
        float | None, typer.Option("--timeout-s", help="The workloads' benchmark timeout (default: the spec's).")
    ] = None,
) -> None:
    lanes = lane or ["nightly"]
    ref_dir = references if references is not None else out / "reference"
    plans: list[tuple[Path, dict[str, Any]]] = []
    refs: list[ReferenceBaseline] = []
    for path in cases:
        repo_path = f"{CASES_DIR}/{path.name}"
        data = _resolve_refs(_read(path), path)
        source = {"repo": repo, "path": repo_path, "commit": commit}
        docs = vllm_omni_cases.convert(data, file=str(path), lanes=lanes, source=source, timeout_s=timeout_s)
        for doc in docs:
            plans.append((out / f"{doc['name']}.yaml", doc))
        refs += load_reference_baselines(path, source=repo_path, default_hardware=default_hardware)
    names = [p for p, _ in plans]
    dupes = sorted({str(p) for p in names if names.count(p) > 1})
    if dupes:
        raise InputError(f"two cases make the same workload file: {', '.join(dupes)}", field="CASE")
    out.mkdir(parents=True, exist_ok=True)
    for dest, doc in plans:
        dest.write_text(_header(doc) + yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, width=120))
        series = doc["vllm_omni"]["series"]
        steps = f", {len(series)} sweep steps" if len(series) > 1 else ""
        typer.echo(f"workload  {dest}  (series {series[0]['name']}{steps})")
    for f in write_reference_yaml(refs, ref_dir, repo=repo, commit=commit):
        typer.echo(f"reference {f}")
    typer.echo(f"{len(plans)} workload(s) from {len(cases)} case file(s); {len(refs)} reference value(s)")


def _read(path: Path) -> Any:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read file ({exc.strerror})", file=str(path)) from None
    data = loads(raw, file=str(path))
    problem = check_document(data)
    if problem is not None:
        raise InputError(problem[1], file=str(path), field=problem[0])
    return data


def _resolve_refs(data: Any, path: Path) -> Any:
    """`"benchmark_params": {"$ref": "file.json"}` -> that file's list, relative to the case file, as
    run_diffusion_benchmark.py resolves it."""
    if not isinstance(data, list):
        return data
    for i, case in enumerate(data):
        bp = case.get("benchmark_params") if isinstance(case, dict) else None
        if not (isinstance(bp, dict) and "$ref" in bp):
            continue
        field = f"$[{i}].benchmark_params.$ref"
        if not isinstance(bp["$ref"], str) or not bp["$ref"]:
            raise InputError("expected a file name", file=str(path), field=field)
        target = path.parent / bp["$ref"]
        if not target.is_file():
            raise InputError(f"the file it names does not exist: {target}", file=str(path), field=field)
        case["benchmark_params"] = _read(target)
    return data


def _header(doc: dict[str, Any]) -> str:
    src = doc["vllm_omni"]["source"]
    at = f" @ {src['commit']}" if src.get("commit") else ""
    vo = doc["vllm_omni"]
    return (
        f"# vLLM-Omni perf case {vo['test_name']}, config {vo['benchmark_params']['name']}.\n"
        f"# Source: {src.get('repo')}: {src.get('path')}{at}\n"
        "# Generated by `guardrail workloads import-vllm-omni`; re-import, don't hand-edit.\n"
    )
