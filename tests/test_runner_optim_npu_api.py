"""The NPU path checked against the real API, without an NPU and without importing anything NPU-side.

Reads the Python sources and the op schemas (torch_npu/csrc/aten/*.yaml) inside the torch_npu and mindiesd
wheels (zip files; their wheels need no CANN to be read) and proves that every torch_npu / torch.npu / mindiesd
name the runners call — and the NPU kernels of the attention backends the runners select, called from the
installed diffusers and cache-dit — exists with a signature that binds the call as written.

The wheels come from GUARDRAIL_NPU_WHEELS (a directory):
    pip download --no-deps -d "$GUARDRAIL_NPU_WHEELS" torch_npu==2.14.0 mindiesd==3.1.0
Without it the test is skipped, saying so.
"""

from __future__ import annotations

import ast
import os
import re
import zipfile
from importlib import metadata
from pathlib import Path

import pytest

pytestmark = [pytest.mark.runners]
RUNNERS = Path(__file__).resolve().parent.parent / "runners"
WHEELS = os.environ.get("GUARDRAIL_NPU_WHEELS")


def _wheel(prefix: str) -> zipfile.ZipFile:
    if not WHEELS:
        pytest.skip("GUARDRAIL_NPU_WHEELS is not set (pip download --no-deps torch_npu mindiesd into a directory)")
    found = sorted(Path(WHEELS).glob(f"{prefix}-*.whl"))
    if not found:
        # CI (.ci/run) sets GUARDRAIL_NPU_WHEELS_REQUIRED: there the check must run, not skip
        if os.environ.get("GUARDRAIL_NPU_WHEELS_REQUIRED"):
            pytest.fail(f"no {prefix} wheel in GUARDRAIL_NPU_WHEELS={WHEELS}: the NPU API check cannot run")
        pytest.skip(f"no {prefix} wheel in GUARDRAIL_NPU_WHEELS={WHEELS}")
    return zipfile.ZipFile(found[-1])


@pytest.fixture(scope="module")
def torch_npu_whl() -> zipfile.ZipFile:
    return _wheel("torch_npu")


@pytest.fixture(scope="module")
def mindiesd_whl() -> zipfile.ZipFile:
    return _wheel("mindiesd")


def _tree(zf: zipfile.ZipFile, path: str) -> ast.Module:
    return ast.parse(zf.read(path).decode("utf-8"), filename=path)


def _package_trees(zf: zipfile.ZipFile, package: str) -> dict[str, ast.Module]:
    """Every module directly in one package directory (not its subpackages)."""
    names = [n for n in zf.namelist() if n.startswith(package + "/") and n.endswith(".py")]
    return {n: _tree(zf, n) for n in names if "/" not in n[len(package) + 1 :]}


def _dunder_all(tree: ast.Module) -> set[str]:
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__all__" for t in node.targets):
            return {e.value for e in node.value.elts if isinstance(e, ast.Constant)}  # type: ignore[attr-defined]
    return set()


def _top_level(trees: dict[str, ast.Module], name: str) -> ast.FunctionDef | ast.ClassDef:
    hits = [
        n for t in trees.values() for n in t.body if isinstance(n, (ast.FunctionDef, ast.ClassDef)) and n.name == name
    ]
    assert hits, f"{name} is defined in none of {sorted(trees)}"
    return hits[0]  # type: ignore[return-value]


def _method(cls: ast.ClassDef, name: str) -> ast.FunctionDef | None:
    return next((n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name == name), None)


def _binds(fn: ast.FunctionDef, nargs: int, kwargs: set[str], bound: bool = False) -> str | None:
    """None when a call with nargs positional arguments and these keywords binds to fn's parameters."""
    a = fn.args
    positional = [p.arg for p in a.posonlyargs + a.args][1 if bound else 0 :]
    n_defaults = len(a.defaults)
    required = positional[: len(positional) - n_defaults] if n_defaults else positional
    if nargs > len(positional) and a.vararg is None:
        return f"{fn.name} takes {len(positional)} positional arguments, the call passes {nargs}"
    missing = [p for p in required[nargs:] if p not in kwargs]
    kwonly = [p.arg for p in a.kwonlyargs]
    missing += [p.arg for p, d in zip(a.kwonlyargs, a.kw_defaults, strict=True) if d is None and p.arg not in kwargs]
    if missing:
        return f"{fn.name}: the call leaves {missing} unset"
    unknown = kwargs - set(positional[nargs:]) - set(kwonly)
    if unknown and a.kwarg is None:
        return f"{fn.name} has no parameter(s) {sorted(unknown)}"
    return None


# --- op schemas ------------------------------------------------------------------------------------
def _schemas(zf: zipfile.ZipFile) -> dict[str, list[tuple[str, bool, bool]]]:
    """op name -> [(parameter, has default, keyword-only)] from torch_npu's native-function yaml files."""
    out: dict[str, list[tuple[str, bool, bool]]] = {}
    for n in zf.namelist():
        if not (n.startswith("torch_npu/csrc/aten/") and n.endswith(".yaml")):
            continue
        for m in re.finditer(r"func:\s*([A-Za-z0-9_.]+)\((.*)\)\s*->", zf.read(n).decode("utf-8")):
            params, kwonly = [], False
            for tok in (t.strip() for t in m.group(2).split(",")):
                if tok == "*":
                    kwonly = True
                elif tok:
                    name_default = tok.split()[-1]
                    params.append((name_default.split("=")[0], "=" in name_default, kwonly))
            out.setdefault(m.group(1), params)
    return out


def _schema_binds(params: list[tuple[str, bool, bool]], nargs: int, kwargs: set[str]) -> str | None:
    positional = [p for p in params if not p[2]]
    if nargs > len(positional):
        return f"{nargs} positional arguments for {len(positional)} positional parameters"
    names = {p[0] for p in params}
    if kwargs - names:
        return f"no parameter(s) {sorted(kwargs - names)}"
    unset = [p[0] for i, p in enumerate(params) if not p[1] and (p[2] or i >= nargs) and p[0] not in kwargs]
    return f"required {unset} left unset" if unset else None


def _calls(path: Path, func: str) -> list[tuple[int, set[str]]]:
    """(positional count, keyword names) of every call of `func` in a source file."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Call):
            f = node.func
            name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else None
            if name == func:
                out.append((len(node.args), {k.arg for k in node.keywords if k.arg}))
    return out


def _installed(dist: str, relpath: str) -> Path:
    try:
        return Path(str(metadata.distribution(dist).locate_file(relpath)))
    except metadata.PackageNotFoundError:
        pytest.skip(f"{dist} is not installed")


# --- the names the runners call ---------------------------------------------------------------------
# runners/device.py: torch_npu.npu.* directly, torch.npu.* through Device._mod (torch.npu is torch_npu.npu once
# torch_npu registers it); (name, positional count, keywords) as the runners call them.
NPU_MODULE_CALLS = [
    ("is_available", 0, set()),
    ("device_count", 0, set()),
    ("get_device_name", 1, set()),
    ("synchronize", 0, set()),
    ("reset_peak_memory_stats", 0, set()),
    ("max_memory_allocated", 0, set()),
    ("max_memory_reserved", 0, set()),
    ("empty_cache", 0, set()),
]


def test_every_torch_npu_attribute_the_runners_name_is_checked_here():
    """A new torch_npu.X call in runners/ must be added to this file's checks (else it is unchecked)."""
    seen = set()
    for path in RUNNERS.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute):
                base = node.value
                if isinstance(base.value, ast.Name) and base.value.id == "torch_npu" and base.attr == "npu":
                    seen.add(node.attr)
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("mindiesd"):
                seen.update(f"{node.module}.{a.name}" for a in node.names)
    checked = {n for n, _, _ in NPU_MODULE_CALLS} | {"mindiesd.compilation.MindieSDBackend"}
    assert seen, "the scan found no torch_npu call in runners/: the scan is broken"
    assert seen <= checked, f"unchecked NPU names in runners/: {sorted(seen - checked)}"


def test_torch_npu_registers_torch_npu_and_exports_what_the_device_layer_calls(torch_npu_whl):
    npu = _package_trees(torch_npu_whl, "torch_npu/npu")
    exported = _dunder_all(npu["torch_npu/npu/__init__.py"])
    for name, nargs, kwargs in NPU_MODULE_CALLS:
        assert name in exported, f"torch_npu.npu.__all__ lacks {name}"
        fn = _top_level(npu, name)
        assert isinstance(fn, ast.FunctionDef), f"torch_npu.npu.{name} is not a function"
        assert _binds(fn, nargs, kwargs) is None, _binds(fn, nargs, kwargs)
    # `torch.npu` exists once torch_npu is imported: it registers its npu module as torch's device module
    sources = [torch_npu_whl.read(n).decode("utf-8") for n in torch_npu_whl.namelist() if n.endswith(".py")]
    assert any(re.search(r"_register_device_module\(\s*['\"]npu['\"]\s*,\s*torch_npu\.npu\s*\)", s) for s in sources)


def test_torch_npu_event_takes_enable_timing_and_records_and_times(torch_npu_whl):
    npu = _package_trees(torch_npu_whl, "torch_npu/npu")
    assert "Event" in _dunder_all(npu["torch_npu/npu/__init__.py"])
    event = _top_level(npu, "Event")
    assert isinstance(event, ast.ClassDef)
    ctor = _method(event, "__new__") or _method(event, "__init__")
    assert ctor is not None and _binds(ctor, 0, {"enable_timing"}, bound=True) is None  # Event(enable_timing=True)
    record, elapsed = _method(event, "record"), _method(event, "elapsed_time")
    assert record is not None and _binds(record, 0, set(), bound=True) is None  # ev.record()
    assert elapsed is not None and _binds(elapsed, 1, set(), bound=True) is None  # ev.elapsed_time(later)


@pytest.mark.parametrize(
    ("dist", "source", "op"),
    [
        # diffusers' _native_npu attention backend (set_attention_backend("_native_npu"))
        ("diffusers", "diffusers/models/attention_dispatch.py", "npu_fusion_attention"),
        # cache-dit's _native_npu and _npu_fia backends (cache_dit.set_attn_backend)
        ("cache_dit", "cache_dit/attention/backends/npu.py", "npu_fusion_attention"),
        ("cache_dit", "cache_dit/attention/backends/npu.py", "npu_fused_infer_attention_score"),
    ],
)
def test_the_npu_attention_kernels_exist_and_take_the_calls_as_the_backends_write_them(torch_npu_whl, dist, source, op):
    schemas = _schemas(torch_npu_whl)
    assert op in schemas, f"torch_npu has no op {op}"
    calls = _calls(_installed(dist, source), op)
    assert calls, f"{source} no longer calls {op}: update this test"
    for nargs, kwargs in calls:
        assert _schema_binds(schemas[op], nargs, kwargs) is None, (op, _schema_binds(schemas[op], nargs, kwargs))


def test_mindiesd_compile_backend_is_where_the_runners_import_it(mindiesd_whl):
    init = _tree(mindiesd_whl, "mindiesd/compilation/__init__.py")
    assert "MindieSDBackend" in _dunder_all(init)  # `from mindiesd.compilation import MindieSDBackend`
    cls = _top_level(_package_trees(mindiesd_whl, "mindiesd/compilation"), "MindieSDBackend")
    assert isinstance(cls, ast.ClassDef)
    init_fn = _method(cls, "__init__")
    assert init_fn is None or _binds(init_fn, 0, set(), bound=True) is None  # MindieSDBackend()
    call = _method(cls, "__call__")
    assert call is not None and _binds(call, 2, set(), bound=True) is None  # a torch.compile backend: (gm, inputs)


def test_mindiesd_laser_attention_takes_cache_dits_call(mindiesd_whl):
    assert "attention_forward" in _dunder_all(_tree(mindiesd_whl, "mindiesd/layers/__init__.py"))
    fn = _top_level(_package_trees(mindiesd_whl, "mindiesd/layers/flash_attn"), "attention_forward")
    assert isinstance(fn, ast.FunctionDef)
    calls = _calls(_installed("cache_dit", "cache_dit/attention/backends/npu.py"), "attention_forward")
    assert calls
    for nargs, kwargs in calls:
        assert _binds(fn, nargs, kwargs) is None, _binds(fn, nargs, kwargs)


def test_the_binding_checks_refuse_calls_that_do_not_fit():
    fn = ast.parse("def f(a, b=1, *, c, d=2): pass").body[0]
    assert isinstance(fn, ast.FunctionDef)
    assert _binds(fn, 1, {"c"}) is None
    assert "leaves ['c'] unset" in (_binds(fn, 2, set()) or "")
    assert "takes 2 positional" in (_binds(fn, 3, {"c"}) or "")
    assert "no parameter(s) ['e']" in (_binds(fn, 1, {"c", "e"}) or "")
    schema = [("query", False, False), ("head_num", False, False), ("scale", True, True)]
    assert _schema_binds(schema, 2, {"scale"}) is None
    assert _schema_binds(schema, 1, set()) == "required ['head_num'] left unset"
    assert _schema_binds(schema, 2, {"sacle"}) == "no parameter(s) ['sacle']"
