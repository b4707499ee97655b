"""The one part of formarket built from C: the collectors' usage lines read into columns
(formarket.usage.lines says why). Optional: where it cannot be built, the same files are read
in Python, to the same result, more slowly. Everything else is in pyproject.toml."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "formarket.usage._lines",
            ["src/formarket/usage/_lines.c"],
            extra_compile_args=["-O3"],
            optional=True,
        )
    ]
)
