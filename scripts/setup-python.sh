#!/usr/bin/env bash
# Creates the Python virtualenv the Python tests use: grpcio, grpcio-tools, pytest for the
# gRPC client test (cryptography: its TLS certificates); PyYAML, jsonschema for the deployment checks (tests/deploy).
# Idempotent: re-running with everything installed costs a second.
set -euo pipefail
venv="${1:-.venv}"
python="${PYTHON:-python3}"
if [ ! -x "$venv/bin/python" ]; then
  "$python" -m venv "$venv"
fi
if ! "$venv/bin/python" -c "import grpc, grpc_tools, pytest, yaml, jsonschema, cryptography" 2>/dev/null; then
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$(dirname "$0")/../tests/python/requirements.txt"
fi
