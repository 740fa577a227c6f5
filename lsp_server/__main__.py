"""`python -m lsp_server` starts the language server over stdio (`--tcp HOST:PORT` for TCP)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main(["serve", *sys.argv[1:]]))
