"""`guardrail matrix`: which cells of the parallel-strategy matrices each lane runs, what they cost in device
minutes, which are unsupported and why, and the last stored verdict, efficiency and equivalence of each cell.
Parsing and printing only: the plans are guardrail.matrix's, the stored state guardrail.matrix_status'."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from guardrail import clock
from guardrail.cli.app import DbOption, app, echo_json
from guardrail.errors import InputError


def _last(st: dict | None) -> str:
    if not st:
        return "never run"
    bits = [st["verdict"] or "not checked", f"{st['age_days']:g} d ago on {st['hardware']}"]
    if st["efficiency"] is not None:
        bits.append(f"efficiency {st['efficiency']:.0%}")
    if st["psnr"] is not None:
        bits.append(f"PSNR {st['psnr']:.1f} dB")
    if st["ssim"] is not None:
        bits.append(f"SSIM {st['ssim']:.3f}")
    return ", ".join(bits)


@app.command("matrix")
def matrix_cmd(
    files: Annotated[
        list[Path] | None, typer.Argument(help="Matrix files (default: workloads/matrix/*.yaml).", show_default=False)
    ] = None,
    lane: Annotated[str, typer.Option(help="Lane whose cells are listed: presubmit, nightly, weekly, release.")] = (
        "nightly"
    ),
    fmt: Annotated[str, typer.Option("--format", help="text or json.")] = "text",
    db: DbOption = None,
) -> None:
    """List the parallel-matrix cells LANE runs per family (presubmit: the named cells, nightly: every pair of
    strategy values covered, weekly/release: all), each with its device minutes and, with --db (or $GUARDRAIL_DB),
    its last stored verdict; then the unsupported cells with the reason."""
    import os

    from guardrail.matrix import load_matrices, plan
    from guardrail.matrix_status import cell_status, matrix_doc

    if fmt not in ("text", "json"):
        raise InputError(f"unknown format {fmt!r}; text or json", field="--format")
    loaded = load_matrices(files)
    planned = []
    for path, mx in loaded:
        if lane not in mx.lanes:
            raise InputError(f"no lane {lane!r} (lanes: {', '.join(mx.lanes)})", file=str(path), field="$.lanes")
        planned.append((mx, lane, plan(mx, lane)))
    status = {}
    url = db or os.environ.get("GUARDRAIL_DB")
    if url:
        from guardrail.store.db import session_scope

        names = [p.cell.workload(mx.workload) for mx, _, plans in planned for p in plans]
        with session_scope(url) as s:
            status = cell_status(s, names)
    doc = matrix_doc(planned, status, clock.now())
    if fmt == "json":
        echo_json(doc, indent=1)
        return
    total = 0.0
    for fam in doc["families"]:
        n = len(fam["cells"])
        typer.echo(
            f"{fam['family']} ({fam['workload']}), lane {lane}: {n} cell{'' if n == 1 else 's'} "
            f"({fam['selection']}), {fam['repeats']} repeats each, at most {fam['device_minutes']:g} device minutes"
        )
        labels = [c["cell"] + (f" [{c['name']}]" if c["name"] else "") for c in fam["cells"]]
        width = max(map(len, labels), default=0)  # one column per family, as wide as its longest cell
        for c, label in zip(fam["cells"], labels, strict=True):
            typer.echo(f"  {label:{width}s}  {c['world']} dev  {c['device_minutes']:6g} min  {_last(c['last'])}")
        _echo_unsupported(fam["unsupported"])
        total += fam["device_minutes"]
    typer.echo(f"lane {lane}: at most {total:g} device minutes in all")


def _echo_unsupported(cells: list[dict], shown: int = 4) -> None:
    """Named cells (the users' real cases) one per line; the rest grouped by reason, a few named per group."""
    groups: dict[str, list[str]] = {}
    for c in cells:
        if c["name"]:
            typer.echo(f"  unsupported {c['cell']} [{c['name']}]: {c['reason']}")
        else:
            groups.setdefault(c["reason"], []).append(c["cell"])
    for reason, names in groups.items():
        more = f", +{len(names) - shown} more (--format json lists them)" if len(names) > shown else ""
        n = len(names)
        typer.echo(f"  unsupported, {n} cell{'' if n == 1 else 's'}: {reason}: {', '.join(names[:shown])}{more}")
