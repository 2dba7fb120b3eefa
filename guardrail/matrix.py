"""The parallel-strategy matrix: per pipeline family, which strategies and degrees exist, which cells each lane
runs, and what they cost in device minutes.

A matrix file (workloads/matrix/*.yaml, schema `guardrail.matrix/v1`) names a base workload, the values each axis
takes (the parallel degrees `ulysses`, `ring`, `cfg`, `tp`, `vae_patch`, the weight sharding `hsdp`, the `cache`
and the `compile` of the transformer's repeated blocks), and per strategy the library that implements it for the
family or why none does. A cell is one value per axis; its world size is the product of the transformer's degrees
(ulysses, ring, cfg, tp), or the VAE's patches where those need more ranks (VAE patches and hsdp are spread over the
same ranks). It is `unsupported` when it asks for a strategy no library implements (the reason is the file's), for
more devices than `max_world`, or for VAE patches that do not divide its ranks. Lanes pick cells:

- `all` (weekly, release): every supported cell;
- `pairwise` (nightly): a covering array of strength 2 over the supported cells, i.e. every pair of values of two
  axes that some supported cell has is in at least one chosen cell (the standard combinatorial-testing
  reduction: most interaction faults involve two factors), chosen greedily (the cell covering the most uncovered
  pairs first; ties: fewer devices, then the order of the product), deterministic;
- `named` (presubmit): the named cells (e.g. the vLLM-Omni perf cases) that are supported.

Every lane runs the single-device cell too: scaling efficiency and output equivalence are judged against it.
Device minutes of a cell: `minutes_per_run` x world size x the lane's repeats, the bound for a run whose
parallel part does not speed up (model load, warm-up and compile dominate short CI runs).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from guardrail.errors import InputError
from guardrail.yaml_files import read_yaml, validated

MATRIX_DIR = Path(__file__).resolve().parents[1] / "workloads" / "matrix"
SCHEMA = "guardrail.matrix/v1"
DEGREES = ("ulysses", "ring", "cfg", "tp", "vae_patch")  # parallel degrees
# The transformer's degrees multiply into the world size; the VAE's patches and the weight sharding (hsdp) are
# spread over the same ranks (vLLM-Omni's ulysses2+cfg2+vae_patch4 runs on 4 devices).
MULTIPLIED = ("ulysses", "ring", "cfg", "tp")
STRATEGIES = (*DEGREES, "hsdp")
AXES = (*STRATEGIES, "cache", "compile")
# `compile` takes the workload option's values (runners.spec.Options.compile): regional torch.compile of the
# transformer's repeated blocks, the way the optimised-pipelines work (docs/runners.md, "Optimisations") applies it
COMPILERS = ("none", "inductor", "mindiesd")
CACHES = ("none", "cache_dit")
Selection = Literal["all", "pairwise", "named"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Support(_Strict):
    """How a strategy is implemented for the family: a library and its API, or why no library does it."""

    library: str | None = None  # e.g. "diffusers 0.42.1", "cache-dit 1.5"
    api: str | None = None  # the call that applies it
    unsupported: str | None = None  # the reason no library implements it for this family

    @model_validator(mode="after")
    def _one_of(self) -> Support:
        if (self.library is None) == (self.unsupported is None):
            raise ValueError("give either library (with api) or unsupported (the reason)")
        return self


class Lane(_Strict):
    cells: Selection
    repeats: int = Field(default=2, ge=1, le=50)


class Matrix(_Strict):
    schema_: Literal["guardrail.matrix/v1"] = Field(alias="schema")
    family: str = Field(min_length=1, max_length=100)
    workload: str = Field(min_length=1, max_length=200)  # the base workload (workloads/NAME.yaml)
    # the workload whose options (full and tiny) a cell with `cache: cache_dit` runs with: the pinned cache workload,
    # whose schedule caches at the synthetic scale; absent: the base's options with `cache: cache_dit`
    cache_workload: str | None = Field(default=None, min_length=1, max_length=200)
    # else the cache-dit settings (`options.cache_config`) of a cache cell at full and at tiny scale (the tiny
    # transformers have 1-4 blocks: cache-dit's default of 8 compute blocks does not fit them)
    cache_config: dict[str, Any] = Field(default_factory=dict)
    tiny_cache_config: dict[str, Any] = Field(default_factory=dict)
    minutes_per_run: float = Field(gt=0, le=10_000)  # device minutes of one single-device run
    max_world: int = Field(default=8, ge=1, le=1024)
    axes: dict[str, list[Any]]
    support: dict[str, Support] = Field(default_factory=dict)
    named: dict[str, dict[str, Any]] = Field(default_factory=dict)
    lanes: dict[str, Lane]

    @field_validator("axes")
    @classmethod
    def _axes(cls, axes: dict[str, list[Any]]) -> dict[str, list[Any]]:
        for name, values in axes.items():
            if name not in AXES:
                raise ValueError(f"unknown axis {name!r} (known: {', '.join(AXES)})")
            if not values or len(set(map(str, values))) != len(values):
                raise ValueError(f"axis {name!r} needs distinct values")
            if name in DEGREES and not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in values):
                raise ValueError(f"axis {name!r}: degrees are integers >= 1")
            if name == "hsdp" and not all(isinstance(v, bool) for v in values):
                raise ValueError("axis 'hsdp': values are true/false")
            if name == "cache" and not set(values) <= set(CACHES):
                raise ValueError(f"axis 'cache': values are {', '.join(CACHES)}")
            if name == "compile" and not set(values) <= set(COMPILERS):
                raise ValueError(f"axis 'compile': values are {', '.join(COMPILERS)}")
        return axes

    @model_validator(mode="after")
    def _consistent(self) -> Matrix:
        for name in self.support:
            if name not in STRATEGIES:
                raise ValueError(f"support: unknown strategy {name!r}")
        for name, cell in self.named.items():
            for axis, value in cell.items():
                if axis not in AXES:
                    raise ValueError(f"named cell {name!r}: unknown axis {axis!r}")
                if axis in self.axes and value not in self.axes[axis]:
                    raise ValueError(f"named cell {name!r}: {axis}={value!r} is not among the axis's values")
        return self


def _default(axis: str) -> Any:
    return False if axis == "hsdp" else "none" if axis in ("cache", "compile") else 1


@dataclass(frozen=True)
class Cell:
    """One combination: a value per axis (axes the matrix leaves out take their neutral value)."""

    values: tuple[tuple[str, Any], ...]  # in AXES order
    name: str | None = None  # a named cell's name

    @classmethod
    def of(cls, values: Mapping[str, Any], name: str | None = None) -> Cell:
        return cls(tuple((a, values.get(a, _default(a))) for a in AXES), name)

    def get(self, axis: str) -> Any:
        return dict(self.values)[axis]

    @property
    def world(self) -> int:
        """The product of the transformer's degrees, or the VAE's patches where they need more ranks."""
        out = 1
        for d in MULTIPLIED:
            out *= int(self.get(d))
        return max(out, int(self.get("vae_patch")))

    @property
    def single_device(self) -> bool:
        return self.world == 1

    @property
    def tag(self) -> str:
        """e.g. "ulysses2+vae_patch2+cache_dit+compile_inductor"; "single" for the single-device cell."""
        parts = [f"{d}{self.get(d)}" for d in DEGREES if int(self.get(d)) > 1]
        if self.get("hsdp"):
            parts.append("hsdp")
        if self.get("cache") != "none":
            parts.append(str(self.get("cache")))
        if self.get("compile") != "none":
            parts.append(f"compile_{self.get('compile')}")
        return "+".join(parts) or "single"

    def workload(self, base: str) -> str:
        """The workload name the cell's results are stored under."""
        return base if self.tag == "single" else f"{base}@{self.tag}"

    def pairs(self, axes: Sequence[str]) -> set[tuple[str, Any, str, Any]]:
        v = dict(self.values)
        return {(a, repr(v[a]), b, repr(v[b])) for a, b in itertools.combinations(axes, 2)}


@dataclass(frozen=True)
class CellPlan:
    cell: Cell
    supported: bool
    reason: str  # why not, or the libraries that implement it
    device_minutes: float


def _why_unsupported(m: Matrix, cell: Cell) -> str | None:
    for s in STRATEGIES:
        value = cell.get(s)
        used = bool(value) if s == "hsdp" else int(value) > 1
        if used:
            support = m.support.get(s)
            if support is None:
                return f"{s}: the matrix names no library for it"
            if support.unsupported:
                return f"{s}: {support.unsupported}"
    transformer_ranks = math.prod(int(cell.get(d)) for d in MULTIPLIED)
    if 1 < transformer_ranks < int(cell.get("vae_patch")):
        # runners.parallel: the transformer's mesh (diffusers, cache-dit) must span every rank of the job
        return f"vae_patch {cell.get('vae_patch')} spans more ranks than the transformer's {transformer_ranks}"
    if int(cell.get("vae_patch")) > 1 and cell.world != int(cell.get("vae_patch")):
        # cache-dit, the one library with VAE patch parallelism, decodes the tiles over every rank of the job
        return f"vae_patch {cell.get('vae_patch')} is not the job's {cell.world} ranks (its tiles go to every rank)"
    if int(cell.get("vae_patch")) > 2:
        # runners.parallel.VAE_RELAY_RACE: cache-dit 1.5.3 relays the VAE's result to ranks 2.. before it is filled
        return "vae_patch above 2: cache-dit 1.5.3 relays the VAE's result to ranks 2 and up before it is filled"
    if cell.get("hsdp") and cell.world < 2:
        return "hsdp shards the weights over the job's ranks: it needs a parallel degree > 1"
    if cell.get("hsdp") and cell.get("compile") != "none":
        # runners.parallel.HSDP_WITH_COMPILE: diffusers' regional compile looks for block classes FSDP2 renames
        return "hsdp with compile: diffusers' regional compile finds no block under FSDP2's renamed classes"
    if cell.world > m.max_world:
        return f"needs {cell.world} devices, more than the matrix's max_world {m.max_world}"
    return None


def _how(m: Matrix, cell: Cell) -> str:
    used = [s for s in STRATEGIES if (bool(cell.get(s)) if s == "hsdp" else int(cell.get(s)) > 1)]
    libs = [f"{s}: {m.support[s].library} ({m.support[s].api})" for s in used]
    if cell.get("compile") != "none":  # the runner's option (runners.options.apply_compile)
        libs.append(f"compile: {cell.get('compile')}, regional (diffusers' compile_repeated_blocks)")
    return "; ".join(libs) or "single device"


def cells(m: Matrix) -> list[Cell]:
    """The full product of the axes, in the file's order (named cells keep their names)."""
    names = {Cell.of(v).values: n for n, v in m.named.items()}
    axes = [a for a in AXES if a in m.axes]
    out = []
    for combo in itertools.product(*(m.axes[a] for a in axes)):
        c = Cell.of(dict(zip(axes, combo, strict=True)))
        out.append(Cell(c.values, names.get(c.values)))
    known = {c.values for c in out}
    out += [Cell.of(v, n) for n, v in m.named.items() if Cell.of(v).values not in known]
    return out


def pairwise(candidates: Sequence[Cell], axes: Sequence[str]) -> list[Cell]:
    """A greedy covering array of strength 2: cells of `candidates` until every pair of values of two `axes` that
    some candidate has is covered. Deterministic: the most new pairs first, then fewer devices, then order."""
    uncovered: set[tuple[str, Any, str, Any]] = set()
    for c in candidates:
        uncovered |= c.pairs(axes)
    chosen: list[Cell] = []
    rest = list(candidates)
    while uncovered:
        best = max(range(len(rest)), key=lambda i: (len(rest[i].pairs(axes) & uncovered), -rest[i].world, -i))
        cell = rest.pop(best)
        uncovered -= cell.pairs(axes)
        chosen.append(cell)
    return chosen


def plan(m: Matrix, lane: str) -> list[CellPlan]:
    """The cells `lane` runs (the single-device reference first), then the unsupported cells it would have run,
    each with its reason and device minutes."""
    if lane not in m.lanes:
        raise KeyError(lane)
    spec = m.lanes[lane]
    every = cells(m)
    supported = [c for c in every if _why_unsupported(m, c) is None]
    axes = [a for a in AXES if a in m.axes and len(m.axes[a]) > 1]
    if spec.cells == "all":
        chosen = supported
    elif spec.cells == "pairwise":
        chosen = pairwise(supported, axes)
    else:
        chosen = [c for c in supported if c.name]
    single = [c for c in supported if c.single_device and c.get("cache") == "none" and c.get("compile") == "none"]
    chosen = single[:1] + [c for c in chosen if c not in single[:1]]
    out = [CellPlan(c, True, _how(m, c), m.minutes_per_run * c.world * spec.repeats) for c in chosen]
    if spec.cells == "named":
        refused = [c for c in every if c.name and _why_unsupported(m, c)]
    else:
        refused = [c for c in every if _why_unsupported(m, c)]
    out += [CellPlan(c, False, _why_unsupported(m, c) or "", 0.0) for c in refused]
    return out


def parallel_mapping(cell: Cell) -> dict[str, Any]:
    """The workload `parallel:` mapping a cell runs with ({} for a world-1 job; hsdp only when on)."""
    out: dict[str, Any] = {d: int(cell.get(d)) for d in DEGREES if int(cell.get(d)) > 1}
    if cell.get("hsdp"):
        out["hsdp"] = True
    return out


def find_cell(name: str, matrices: Sequence[tuple[Path, Matrix]] | None = None) -> tuple[Matrix, Cell, str | None]:
    """The matrix and cell a workload name `BASE@TAG` names (the tag's parts in any order: `vae_patch2+ulysses2`),
    and why the cell is unsupported (None when it runs). An unknown base or tag raises InputError on --workload."""
    base, _, tag = name.partition("@")
    want = set(tag.split("+"))
    for path, m in matrices if matrices is not None else load_matrices():
        if m.workload != base:
            continue
        for c in cells(m):
            if set(c.tag.split("+")) == want:
                return m, c, _why_unsupported(m, c)
        examples = ", ".join(c.workload(base) for c in cells(m)[1:4])
        raise InputError(f"no cell {tag!r} in the {m.family} matrix ({path.name}; e.g. {examples})", field="--workload")
    raise InputError(f"no parallel matrix has the base workload {base!r} (workloads/matrix/*.yaml)", field="--workload")


def load_matrix(path: Path) -> Matrix:
    return validated(Matrix, read_yaml(path, "matrix"), path)


def load_matrices(paths: Iterable[Path] | None = None) -> list[tuple[Path, Matrix]]:
    files = sorted(paths) if paths else sorted(MATRIX_DIR.glob("*.yaml"))
    return [(p, load_matrix(p)) for p in files]
