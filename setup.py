"""Build script: pure-Python package plus optional Cython builds of the hot paths.

Each module ``_speedups/<name>.py`` is plain Python.  For the compiled build it is
copied to ``build/cython_src/geventp2p/_speedups/_c_<name>.py`` next to ``_c_<name>.pxd`` and cythonized
as ``geventp2p._speedups._c_<name>`` (the single-source scheme gevent uses).

Environment:
  GEVENTP2P_NO_EXTENSIONS=1   skip compiling; the install runs in pure mode
  GEVENTP2P_CYTHON_TRACE=1    compile with line tracing (coverage of compiled code)
  GEVENTP2P_CYTHON_ANNOTATE=1 write cython -a HTML reports into build/cython_src
If Cython or a C compiler is missing, the build warns and installs pure Python only.
"""

from __future__ import annotations

import os
import shutil
import sys
import warnings

from setuptools import setup
from setuptools.command.build_ext import build_ext

HERE = os.path.dirname(os.path.abspath(__file__))
SPEEDUPS = ("varint", "frames", "window", "noiseframes")
GEN_DIR = os.path.join("build", "cython_src")


def _truthy(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def _extensions():
    if _truthy("GEVENTP2P_NO_EXTENSIONS"):
        return []
    try:
        from Cython.Build import cythonize
        from setuptools import Extension
    except ImportError:
        warnings.warn("Cython is not installed: geventp2p installs in pure-Python mode")
        return []
    # The copies live in a package layout (build/cython_src/geventp2p/_speedups/)
    # because Cython finds the augmenting .pxd by the full module name.
    pkg_dir = os.path.join(GEN_DIR, "geventp2p", "_speedups")
    os.makedirs(os.path.join(HERE, pkg_dir), exist_ok=True)
    for d in (os.path.join(GEN_DIR, "geventp2p"), pkg_dir):
        init = os.path.join(HERE, d, "__init__.py")
        if not os.path.exists(init):
            open(init, "w").close()
    exts = []
    for name in SPEEDUPS:
        src = os.path.join(HERE, "_speedups", f"{name}.py")
        pxd = os.path.join(HERE, "_speedups", f"_c_{name}.pxd")
        if not (os.path.exists(src) and os.path.exists(pxd)):
            continue
        dst = os.path.join(pkg_dir, f"_c_{name}.py")
        # Copy only when changed, so cythonize's own timestamp check keeps working;
        # a changed .pxd also re-stamps the .py copy so it is recompiled.
        changed = False
        for a, b in ((src, dst), (pxd, os.path.join(pkg_dir, f"_c_{name}.pxd"))):
            b_abs = os.path.join(HERE, b)
            if not os.path.exists(b_abs) or open(a, "rb").read() != open(b_abs, "rb").read():
                shutil.copyfile(a, b_abs)
                changed = True
        if changed:
            os.utime(os.path.join(HERE, dst))
        macros = [("CYTHON_TRACE", "1"), ("CYTHON_TRACE_NOGIL", "1")] if _truthy("GEVENTP2P_CYTHON_TRACE") else []
        exts.append(Extension(f"geventp2p._speedups._c_{name}", [dst], define_macros=macros))
    directives = {
        "language_level": "3",
        "boundscheck": False,
        "wraparound": False,
        "cdivision": True,
        "infer_types": True,
    }
    if _truthy("GEVENTP2P_CYTHON_TRACE"):
        directives["linetrace"] = True
    return cythonize(
        exts,
        compiler_directives=directives,
        annotate=_truthy("GEVENTP2P_CYTHON_ANNOTATE"),
        quiet=True,
    )


class OptionalBuildExt(build_ext):
    """Build the extensions, but fall back to pure Python if compiling fails."""

    def run(self):
        try:
            super().run()
        except Exception as exc:  # no compiler, missing headers, ...
            self._warn(exc)

    def build_extension(self, ext):
        try:
            super().build_extension(ext)
        except Exception as exc:
            self._warn(exc, ext.name)

    @staticmethod
    def _warn(exc, name="extensions"):
        msg = f"geventp2p: could not compile {name} ({exc}); falling back to pure Python"
        warnings.warn(msg)
        print("WARNING: " + msg, file=sys.stderr)


setup(
    ext_modules=_extensions(),
    cmdclass={"build_ext": OptionalBuildExt},
)
