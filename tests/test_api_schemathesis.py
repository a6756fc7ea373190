"""Property-based requests from the served OpenAPI schema (schemathesis) against the real
server, signed in as a supervisor (the role that may call the most): no answer is a 5xx."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from .api_fixtures import ApiServer


@pytest.mark.slow
def test_no_request_from_the_schema_gets_a_server_error(api_server: ApiServer, tmp_path: Path) -> None:
    schemathesis = Path(sys.executable).parent / "schemathesis"
    result = subprocess.run(
        [str(schemathesis), "run", f"{api_server.base_url}/api/v1/openapi.json",
         "--header", f"Authorization: Bearer {api_server.tokens['supervisor']}",
         "--checks", "not_a_server_error", "--max-examples", "12", "--seed", "20261126",
         "--max-time", "100", "--request-timeout", "30", "--report", "junit",
         "--report-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=600, check=False, cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "SCHEMATHESIS_TELEMETRY": "false"},
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    assert "No issues found" in output or " passed" in output, output[-3000:]
