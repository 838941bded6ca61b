"""Every TensorRT name rtresnet uses exists in both the TensorRT 10.16 and 11.4 Python bindings.

TensorRT cannot be installed here, so the name lists come from the official bindings wheels
(tests/data/trt_api_{10,11}.txt, made by tools/trt_api_names.py). The names the code uses are collected by an AST
walk that follows TensorRT values through the module: the `tensorrt` module alias, everything assigned from
an expression on it (builder, network, config, parser errors, engine, context...), `self.x` attributes holding
them, parameters of module functions they are passed to, and the methods that subclasses of TensorRT classes
override. Any attribute read, written or called on such a value must be a bound TensorRT name.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parent / "data"
TRT_MODULES = (ROOT / "rtresnet/_trt.py", ROOT / "rtresnet/engine/trt.py",
               ROOT / "rtresnet/runtime/trt_runner.py")
# the logger helper module binds few names; the builder and the runner bind dozens
MIN_NAMES = {"_trt.py": 5}


def load_names(major: str) -> frozenset[str]:
    lines = (DATA / f"trt_api_{major}.txt").read_text().splitlines()
    return frozenset(line for line in lines if line and not line.startswith("#"))


def _dotted(node: ast.AST) -> str | None:
    """`x` or `self.x` as a key for tracking; None for anything else."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "self":
        return f"self.{node.attr}"
    return None


class TrtNames:
    """Collect the TensorRT API names a module uses (see the module docstring)."""

    def __init__(self, source: str) -> None:
        self.tree = ast.parse(source)
        self.functions = {n.name: n for n in ast.walk(self.tree) if isinstance(n, ast.FunctionDef)}
        self.tainted: set[str] = set()
        self.modules: set[str] = set()      # names bound to the tensorrt module itself
        self.importers: set[str] = set()    # functions returning the tensorrt module (`import_tensorrt`)
        self.names: set[str] = set()
        self.chains: set[str] = set()       # qualified module attributes: "BuilderFlag.INT8"
        self._find_module_aliases()
        while self._propagate():  # to a fixed point: taint flows through assignments and calls
            pass
        self._collect()

    def _find_module_aliases(self) -> None:
        for fn in self.functions.values():
            for node in ast.walk(fn):
                if isinstance(node, ast.Import) and any(a.name == "tensorrt" for a in node.names):
                    self.importers.add(fn.name)
        for node in ast.walk(self.tree):  # the shared importer of rtresnet/_trt.py
            if isinstance(node, ast.ImportFrom) and node.module == "rtresnet._trt":
                self.importers |= {a.asname or a.name for a in node.names if a.name == "import_tensorrt"}
        for node in ast.walk(self.tree):
            if isinstance(node, ast.Import):
                self.modules |= {a.asname or a.name for a in node.names if a.name == "tensorrt"}
            # `trt = import_tensorrt()`: a call to a function that imports tensorrt (here or in rtresnet._trt)
            if isinstance(node, ast.Assign) and self.is_module(node.value):
                self.modules |= {k for t in node.targets if (k := _dotted(t))}
        self.tainted |= self.modules

    def is_module(self, node: ast.AST) -> bool:
        """`trt` (a name bound to the module) or `import_tensorrt()` (a call returning it)."""
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            return node.func.id in self.importers
        return _dotted(node) in self.modules

    def is_trt(self, node: ast.AST) -> bool:
        if self.is_module(node) or ((key := _dotted(node)) is not None and key in self.tainted):
            return True
        if isinstance(node, ast.IfExp):  # `engine.create_execution_context() if engine is not None else None`
            return self.is_trt(node.body) or self.is_trt(node.orelse)
        if isinstance(node, ast.BoolOp):
            return any(self.is_trt(v) for v in node.values)
        if isinstance(node, ast.Attribute):
            return self.is_trt(node.value)
        if isinstance(node, ast.Call):
            return self.is_trt(node.func)
        return False

    def _propagate(self) -> bool:
        before = len(self.tainted)
        for node in ast.walk(self.tree):
            if isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None and self.is_trt(node.value):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                self.tainted |= {k for t in targets if (k := _dotted(t))}
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in self.functions:
                params = [a.arg for a in self.functions[node.func.id].args.args]
                for param, arg in zip(params, node.args, strict=False):
                    if self.is_trt(arg):
                        self.tainted.add(param)
                        if self.is_module(arg):  # the module itself passed on (`_configure(trt, ...)`)
                            self.modules.add(param)
                for kw in node.keywords:
                    if kw.arg in params and self.is_trt(kw.value):
                        self.tainted.add(kw.arg)
        return len(self.tainted) > before

    def _collect(self) -> None:
        for node in ast.walk(self.tree):
            if isinstance(node, ast.Attribute) and self.is_trt(node.value):
                self.names.add(node.attr)
                parts, base = [node.attr], node.value
                while isinstance(base, ast.Attribute):
                    parts.append(base.attr)
                    base = base.value
                if isinstance(base, ast.Name) and base.id in self.modules and len(parts) > 1:
                    self.chains.add(".".join(reversed(parts)))
            # overrides of TensorRT callbacks (ILogger.log, IProgressMonitor.phase_start...) must be bound names
            if isinstance(node, ast.ClassDef) and any(self.is_trt(b) for b in node.bases):
                self.names |= {f.name for f in node.body if isinstance(f, ast.FunctionDef)}


def used_names(path: Path) -> set[str]:
    return TrtNames(path.read_text()).names


def existing_modules() -> list[Path]:
    return [p for p in TRT_MODULES if p.is_file()]


@pytest.mark.parametrize("major", ["10", "11"])
@pytest.mark.parametrize("module", existing_modules(), ids=lambda p: p.name)
def test_every_tensorrt_name_exists(module, major):
    names = used_names(module)
    assert len(names) >= MIN_NAMES.get(module.name, 10), f"the collector found almost nothing in {module.name}: " \
        f"{sorted(names)}"
    missing = sorted(names - load_names(major))
    assert not missing, f"{module.name} uses names missing from TensorRT {major}.x bindings: {missing}"


def test_collector_sees_the_builder_calls():
    names = used_names(ROOT / "rtresnet/engine/trt.py")
    expected = {"Builder", "create_network", "NetworkDefinitionCreationFlag", "STRONGLY_TYPED", "OnnxParser",
                "parse_from_file", "num_errors", "get_error", "desc", "node", "create_builder_config",
                "set_memory_pool_limit", "WORKSPACE", "builder_optimization_level", "create_optimization_profile",
                "set_shape", "add_optimization_profile", "create_timing_cache", "set_timing_cache",
                "get_timing_cache", "serialize", "combine", "DLA_core", "num_DLA_cores", "GPU_FALLBACK",
                "hardware_compatibility_level", "AMPERE_PLUS", "VERSION_COMPATIBLE", "progress_monitor",
                "phase_start", "step_complete", "phase_finish", "build_serialized_network", "num_inputs", "get_input"}
    assert expected <= names, sorted(expected - names)


REMOVED_API = """
def build(path):
    import tensorrt as trt
    builder = trt.Builder(trt.Logger())
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH))
    config = builder.create_builder_config()
    configure(config, trt)
    return builder.build_engine(network, config)

def configure(cfg, t):
    cfg.max_workspace_size = 1 << 30
    cfg.set_flag(t.BuilderFlag.FP16)
    cfg.int8_calibrator = None
"""


# Removed in TensorRT 10.0 / 11.0 (../shared/notes/tensorrt.md) but whose last part lives on elsewhere in the
# 11.x bindings (DataType.INT8, DataType.FP8...), so the name lists alone cannot catch them.
REMOVED_QUALIFIED = {f"BuilderFlag.{m}" for m in ("FP16", "INT8", "BF16", "FP8", "INT4", "FP4",
                                                  "OBEY_PRECISION_CONSTRAINTS", "PREFER_PRECISION_CONSTRAINTS")} | {
    "NetworkDefinitionCreationFlag.EXPLICIT_BATCH", "IInt8EntropyCalibrator2", "IInt8MinMaxCalibrator",
    "IInt8Calibrator", "QuantizationFlag.CALIBRATE_BEFORE_FUSION"}


@pytest.mark.parametrize("module", existing_modules(), ids=lambda p: p.name)
def test_no_removed_qualified_api(module):
    chains = TrtNames(module.read_text()).chains
    assert chains, f"no qualified tensorrt names found in {module.name}"
    assert not chains & REMOVED_QUALIFIED, sorted(chains & REMOVED_QUALIFIED)


def test_the_check_bites_on_removed_api():
    names = TrtNames(REMOVED_API).names  # also through a helper's parameters
    assert {"max_workspace_size", "FP16", "int8_calibrator", "build_engine", "EXPLICIT_BATCH"} <= names
    assert sorted(names - load_names("11")) == ["EXPLICIT_BATCH", "FP16", "build_engine", "int8_calibrator",
                                                "max_workspace_size"]
    # removed in 10.0 already; the 11.0 removals are still present (deprecated) in 10.16
    assert sorted(names - load_names("10")) == ["build_engine", "max_workspace_size"]
    for name in ("execute_async_v2", "get_binding_index", "num_bindings", "IInt8EntropyCalibrator2",
                 "platform_has_fast_fp16"):
        assert name not in load_names("11")
    # INT8 survives in 11.x as DataType.INT8: the qualified check catches the removed builder flag
    int8 = TrtNames("import tensorrt as trt\ndef f(cfg, t=trt):\n    cfg.set_flag(trt.BuilderFlag.INT8)\n").chains
    assert "INT8" in load_names("11") and int8 & REMOVED_QUALIFIED == {"BuilderFlag.INT8"}
    assert TrtNames(REMOVED_API).chains & REMOVED_QUALIFIED == {"BuilderFlag.FP16",
                                                                "NetworkDefinitionCreationFlag.EXPLICIT_BATCH"}


def test_name_lists_hold_the_shared_api():
    both = load_names("10") & load_names("11")
    assert {"execute_async_v3", "set_tensor_address", "deserialize_cuda_engine", "get_tensor_profile_shape",
            "STRONGLY_TYPED", "SAME_COMPUTE_CAPABILITY", "INT8", "Logger", "Runtime"} <= both


def test_collector_sees_the_runner_and_logger_calls():
    runner = used_names(ROOT / "rtresnet/runtime/trt_runner.py")
    assert {"Runtime", "deserialize_cuda_engine", "set_tensor_address", "execute_async_v3", "set_input_shape",
            "get_tensor_profile_shape", "engine_host_code_allowed"} <= runner, sorted(runner)
    assert {"ILogger", "Severity", "WARNING", "log"} <= used_names(ROOT / "rtresnet/_trt.py")


def test_only_the_trt_modules_import_tensorrt():
    offenders = []
    for path in (ROOT / "rtresnet").rglob("*.py"):
        if path in TRT_MODULES:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            mods = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            if any(m.split(".")[0] in ("tensorrt", "tensorrt_bindings") for m in mods):
                offenders.append(str(path.relative_to(ROOT)))
    assert not offenders


IMPORT_ALL = """
import importlib, pkgutil, sys
sys.modules["tensorrt"] = None   # any `import tensorrt` now raises ImportError
import rtresnet
skip = {"rtresnet.__main__"}  # __main__ runs the CLI; the TensorRT modules import it only when called
done = []
for m in pkgutil.walk_packages(rtresnet.__path__, "rtresnet."):
    if m.name not in skip:
        importlib.import_module(m.name)
        done.append(m.name)
from rtresnet.engine import build_engine
from rtresnet.runtime.guard import check_engine_loadable
print(len(done))
"""


def test_every_module_imports_without_tensorrt():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-c", IMPORT_ALL], capture_output=True, text=True, env=env, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-2000:]
    assert int(r.stdout.strip().splitlines()[-1]) > 10


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="TensorRT is installed here")
def test_without_tensorrt_the_one_message_says_how_to_install():
    from rtresnet._trt import import_tensorrt, logger
    from rtresnet.errors import RtresnetError

    for call in (import_tensorrt, logger):
        with pytest.raises(RtresnetError, match=r"TensorRT is not installed.*pip install 'rtresnet\[gpu\]'.*"
                                                r"onnxruntime engine"):
            call()
