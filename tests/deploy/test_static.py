"""The docker compose deployment, checked without a Docker engine.

Each test is one check of scripts/check-deploy.py (read its docstring for the list): the
compose file against the Compose schema, the deployment guide's ports, credentials,
limits, health checks and volumes, promtool on the Prometheus config, the Dockerfile, the
image's entrypoint and the InfluxDB init script (with stub binaries), and
docs/DEPLOYMENT.md. `scripts/check-deploy.py` runs the same checks from the command line.
"""

import importlib.util
import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("check_deploy", ROOT / "scripts" / "check-deploy.py")
check_deploy = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(check_deploy)


@pytest.mark.parametrize("check", check_deploy.CHECKS, ids=lambda c: c.__name__.removeprefix("check_"))
def test_deploy(check):
    if check is check_deploy.check_promtool and not shutil.which("promtool") and not os.environ.get("CI"):
        pytest.skip("promtool not installed (scripts/setup-services.sh installs it)")
    if check is check_deploy.check_guide and check_deploy.guide_path() is None:
        pytest.skip("the deployment guide (../shared/spec/DEPLOYMENT_GUIDE.md) is not here")
    problems = check()
    assert not problems, "\n".join(problems)


def test_interpolation_follows_compose():
    env = {"SET": "v", "EMPTY": ""}
    i = check_deploy.interpolate
    assert i("${SET}", env) == "v"
    assert i("$SET/x", env) == "v/x"
    assert i("${UNSET:-d}", env) == "d"
    assert i("${EMPTY:-d}", env) == "d"
    assert i("${EMPTY-d}", env) == ""
    assert i("${SET:+alt}", env) == "alt"
    assert i("$$SET", env) == "$SET"
    with pytest.raises(check_deploy.InterpolationError):
        i("${EMPTY:?needed}", env)


def test_checks_catch_mistakes(monkeypatch, tmp_path):
    """The checks are not vacuous: a compose file that breaks the guide fails them."""
    import yaml

    compose = yaml.safe_load(check_deploy.COMPOSE.read_text())
    compose["services"]["grafana"]["ports"] = ["3001:3000"]
    compose["services"]["redis"]["healthcheck"]["interval"] = "5s"
    compose["services"]["prometheus"]["healthcheck"]["test"] = ["CMD", "curl", "-f", "http://x"]
    compose["services"]["redis"]["image"] = "redis:latest"
    del compose["services"]["influxdb"]["deploy"]
    compose["services"]["raven"]["unknown_key"] = 1
    compose["volumes"].pop("raven_logs")
    compose["name"] = "raven"
    compose["services"]["raven"]["ulimits"]["nofile"] = {"soft": 65536, "hard": 65536}
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(yaml.safe_dump(compose))
    monkeypatch.setattr(check_deploy, "COMPOSE", broken)
    found = {c.__name__: c() for c in (
        check_deploy.check_schema,
        check_deploy.check_compose_versions,
        check_deploy.check_ports,
        check_deploy.check_healthchecks,
        check_deploy.check_images,
        check_deploy.check_resources,
        check_deploy.check_volumes_and_mounts,
    )}
    assert all(found.values()), found


def test_dockerfile_check_catches_what_docker_20_10_rejects(monkeypatch, tmp_path):
    """A `# syntax=` line, a heredoc and COPY --chmod each fail check_dockerfile."""
    text = check_deploy.DOCKERFILE.read_text()
    broken = {
        "syntax": "# syntax=docker/dockerfile:1.7\n" + text,
        "chmod": text.replace("COPY deploy/raven/entrypoint.sh", "COPY --chmod=0755 deploy/raven/entrypoint.sh"),
        "heredoc": text + "\nRUN <<EOF\necho hi\nEOF\n",
    }
    for what, body in broken.items():
        path = tmp_path / f"Dockerfile.{what}"
        path.write_text(body)
        monkeypatch.setattr(check_deploy, "DOCKERFILE", path)
        assert check_deploy.check_dockerfile(), what
