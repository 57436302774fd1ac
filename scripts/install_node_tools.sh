#!/usr/bin/env bash
# Install the Node tools the tests use as independent readers into <repo>/.node_tools/
# (no global install): @playcanvas/splat-transform and gltf-validator, pinned. 2.7.1 is the newest release whose
# engines field accepts Node 18/20 (3.x asks for Node >= 22).
# Tests that need it (tests/test_export_splat_transform.py) skip when it is absent.
set -euo pipefail
cd "$(dirname "$0")/.."
SPLAT_TRANSFORM_VERSION=2.7.1
# Khronos glTF validator (tests/test_export_gltf.py)
GLTF_VALIDATOR_VERSION=2.0.0-dev.3.10
command -v npm >/dev/null || { echo "npm not found: install Node.js >= 18 first" >&2; exit 1; }
mkdir -p .node_tools
npm install --prefix .node_tools --no-audit --no-fund --save-exact \
    "@playcanvas/splat-transform@${SPLAT_TRANSFORM_VERSION}" \
    "gltf-validator@${GLTF_VALIDATOR_VERSION}"
.node_tools/node_modules/.bin/splat-transform --version || true
