"""Only here for the optional C accelerator; all metadata lives in pyproject.toml.

`optional=True`: if the extension cannot be compiled, the install still succeeds and
bookengine uses its pure-Python book (same results, slower; see bookengine/book.py).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "bookengine._fastbook",
            ["bookengine/_fastbook.c"],
            optional=True,
            extra_compile_args=["-O2"],
        )
    ]
)
