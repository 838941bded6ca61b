"""Derive the TensorRT Python API name lists used by tests/test_trt_api_surface.py.

TensorRT cannot be installed on this project's machines, but the official bindings wheels are on the registry.
Their pybind11 module (``tensorrt_bindings/tensorrt.so``) keeps every bound class, method, property and enum
member name as a C string; this script downloads both wheels, pulls those strings out (like ``strings``) and
adds the names the wheel's ``__init__.py`` defines in Python (``nptype``, ``volume``...). Only the derived
plain-text lists are committed, never the wheels.

    python tools/trt_api_names.py                     # writes tests/data/trt_api_10.txt and trt_api_11.txt
    python tools/trt_api_names.py --wheel-dir /tmp/w  # reuse wheels downloaded earlier

The linker merges a string into the tail of a longer one ("INT8" lives inside "UINT8", "Logger" inside
"ILogger"), so plain ``strings`` misses such names. The code reaches them with RIP-relative ``lea`` instructions
pointing into the middle of the longer string; scanning ``.text`` for those targets recovers exactly the tails that
are referenced, without admitting every suffix of every string (which would let removed names slip through).
"""

from __future__ import annotations

import argparse
import ast
import re
import struct
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

WHEELS = {"10": "tensorrt-cu12-bindings==10.16.1.11", "11": "tensorrt-cu13-bindings==11.4.0.106"}
PLATFORM_ARGS = ["--only-binary=:all:", "--platform", "manylinux_2_28_x86_64", "--python-version", "3.11"]
IDENTIFIER = re.compile(rb"[A-Za-z_][A-Za-z0-9_]{1,}")
ROOT = Path(__file__).resolve().parents[1]


def download(spec: str, dest: Path) -> Path:
    dist, version = spec.split("==")
    pattern = f"{dist.replace('-', '_')}-{version}-*.whl"
    found = sorted(dest.glob(pattern))
    if not found:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", *PLATFORM_ARGS, "-d", str(dest), spec],
                       check=True)
        found = sorted(dest.glob(pattern))
    if not found:
        raise SystemExit(f"pip download of {spec} produced no wheel matching {pattern} in {dest}")
    return found[0]


def elf_sections(blob: bytes) -> dict[str, tuple[int, int, int]]:
    """Section name -> (virtual address, file offset, size) of a little-endian ELF64 file."""
    if blob[:4] != b"\x7fELF" or blob[4] != 2:
        raise SystemExit("the bindings module is not an ELF64 shared object")
    (shoff,) = struct.unpack_from("<Q", blob, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", blob, 0x3A)
    headers = [struct.unpack_from("<IIQQQQIIQQ", blob, shoff + i * shentsize) for i in range(shnum)]
    names_at = headers[shstrndx][4]

    def name(off: int) -> str:
        return blob[names_at + off:blob.index(b"\0", names_at + off)].decode()

    return {name(h[0]): (h[3], h[4], h[5]) for h in headers}


def c_strings(blob: bytes) -> set[str]:
    """Identifier strings of ``.rodata``: whole NUL-terminated strings plus the tails that code points into."""
    sections = elf_sections(blob)
    ro_addr, ro_off, ro_size = sections[".rodata"]
    tx_addr, tx_off, tx_size = sections[".text"]
    rodata, text = blob[ro_off:ro_off + ro_size], blob[tx_off:tx_off + tx_size]
    names, starts, pos = set(), set(), 0
    for chunk in rodata.split(b"\0"):
        starts.add(pos)
        pos += len(chunk) + 1
        if IDENTIFIER.fullmatch(chunk):
            names.add(chunk.decode())
    # lea r64, [rip + disp32]: REX.W (0x48/0x4c), 0x8d, ModRM with mod=00 rm=101; target = next insn + disp32.
    for m in re.finditer(rb"[\x48\x4c]\x8d[\x05\x0d\x15\x1d\x25\x2d\x35\x3d]", text):
        (disp,) = struct.unpack_from("<i", text, m.start() + 3)
        target = tx_addr + m.start() + 7 + disp - ro_addr
        if 0 < target < ro_size and target not in starts:
            tail = rodata[target:rodata.index(b"\0", target)]
            if IDENTIFIER.fullmatch(tail):
                names.add(tail.decode())
    return names


def python_names(source: str) -> set[str]:
    """Top-level functions, classes and assignments of the wheel's __init__.py."""
    names = set()
    for node in ast.parse(source).body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return names


def wheel_names(wheel: Path) -> set[str]:
    with zipfile.ZipFile(wheel) as zf:
        members = zf.namelist()
        so = [m for m in members if m.endswith("/tensorrt.so") or re.search(r"/tensorrt\.[^/]*\.so$", m)]
        if not so:
            raise SystemExit(f"{wheel.name} has no tensorrt*.so module")
        names = c_strings(zf.read(so[0]))
        init = [m for m in members if m.count("/") == 1 and m.endswith("/__init__.py")]
        for m in init:
            names |= python_names(zf.read(m).decode())
    return names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wheel-dir", type=Path, help="folder with (or for) the downloaded wheels")
    parser.add_argument("--out-dir", type=Path, default=ROOT / "tests" / "data")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        wheel_dir = args.wheel_dir or Path(tmp)
        wheel_dir.mkdir(parents=True, exist_ok=True)
        for major, spec in WHEELS.items():
            names = wheel_names(download(spec, wheel_dir))
            out = args.out_dir / f"trt_api_{major}.txt"
            header = f"# identifiers bound by {spec} (tensorrt_bindings), derived by tools/trt_api_names.py\n"
            out.write_text(header + "".join(f"{n}\n" for n in sorted(names)))
            print(f"{out}: {len(names)} names")
    return 0


if __name__ == "__main__":
    sys.exit(main())
