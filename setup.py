"""Build the optional native engine (lstmkit._native._C) when torch and a C++ compiler are present.

Everything else is declared in pyproject.toml. If torch cannot be imported at build time (for example
under pip's build isolation) or the compiler fails, the package installs without the native engine and
runs on the reference path; `lstmkit.backend` reports why.
"""
import glob
import os
import sys

from setuptools import setup

ext_modules, cmdclass = [], {}
sources = sorted(glob.glob(os.path.join("src", "lstmkit", "_native", "csrc", "*.cpp")))
if sources and os.environ.get("LSTMKIT_NO_NATIVE", "0") != "1":
    try:
        from torch.utils.cpp_extension import BuildExtension, CppExtension

        class OptionalBuildExtension(BuildExtension):
            """Compile the engine, but never fail the install because of it."""

            def build_extension(self, ext):
                try:
                    super().build_extension(ext)
                except Exception as exc:  # compiler missing or failing: fall back to reference
                    print(f"lstmkit: native engine not built ({exc}); the reference path will be used",
                          file=sys.stderr)

        ext_modules = [
            CppExtension(
                "lstmkit._native._C",
                sources,
                # -ffast-math lets GCC call glibc's vector expf (libmvec) in the fused gate loops
                extra_compile_args=["-O3", "-march=native", "-fopenmp", "-ffast-math", "-std=c++17"],
                extra_link_args=["-fopenmp"],
            )
        ]
        cmdclass = {"build_ext": OptionalBuildExtension}
    except ImportError:
        print("lstmkit: torch not importable at build time; install with --no-build-isolation "
              "to build the native engine", file=sys.stderr)

setup(ext_modules=ext_modules, cmdclass=cmdclass)
