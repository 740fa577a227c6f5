#!/usr/bin/env bash
set -euo pipefail

backup() {
  local src="$1"
  <CURSOR>
}
