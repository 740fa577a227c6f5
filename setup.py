"""Builds the C tokenizer (native/_bpe.c) and the cancel flag's reader (native/_cancel.c).
Everything else is in pyproject.toml.

The Unicode table the pre-tokenizers read is generated here, at build time, from the building
Python's `unicodedata` (native/gen_unicode.py); it is never checked in.
"""

import subprocess
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


class BuildWithUnicodeTable(build_ext):
    def run(self) -> None:
        generated = Path(self.build_temp) / "native-include"
        subprocess.run([sys.executable, str(Path(__file__).parent / "native" / "gen_unicode.py"), str(generated)],
                       check=True)
        for ext in self.extensions:
            ext.include_dirs.append(str(generated))
        super().run()


setup(
    ext_modules=[Extension("native._bpe", ["native/_bpe.c"], extra_compile_args=["-O3", "-std=c99", "-Wall"]),
                 Extension("native._cancel", ["native/_cancel.c"], extra_compile_args=["-O2", "-std=c11", "-Wall"])],
    cmdclass={"build_ext": BuildWithUnicodeTable},
)
