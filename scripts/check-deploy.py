#!/usr/bin/env python3
"""Static checks of the docker compose deployment, runnable without a Docker engine.

    scripts/check-deploy.py            # every check; exit 1 naming each problem
    .venv/bin/python -m pytest tests/deploy   # the same checks as tests

What is checked (each function below returns a list of problems, empty when fine):

- docker-compose.yml, interpolated with .env.example the way `docker compose` does it,
  validates against the Compose Specification schema vendored in deploy/schema/, and
  Compose v1 accepts it (no top-level `name:`; the open-file limit from .env);
- host ports, credentials, environment, resource limits and reservations, health check
  timings and named volumes equal the deployment guide's promises (GUIDE below, and the
  guide itself when ../shared/spec/DEPLOYMENT_GUIDE.md is present), and docs/DEPLOYMENT.md
  states the same values;
- every health check calls a tool its image has; every image is pinned to a version;
  restart policies; depends_on on health; bind mounts exist;
- Prometheus's config passes `promtool check config` and scrapes services that exist,
  Grafana's datasources point at them;
- the Dockerfile builds the workspace's `raven` binary, runs it as a non-root user with a
  `raven health` HEALTHCHECK and OCI labels, .dockerignore lets its COPY sources in, and
  Docker 20.10's builders parse it (no `# syntax=`, heredoc or COPY --chmod);
- the image's entrypoint and the InfluxDB init script behave (run with stub binaries).

Needs PyYAML and jsonschema (tests/python/requirements.txt); promtool for the
Prometheus check (scripts/setup-services.sh installs it).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from fnmatch import fnmatch
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
SCHEMA = ROOT / "deploy" / "schema" / "compose-spec.json"
PROMETHEUS = ROOT / "deploy" / "prometheus" / "prometheus.yml"
DATASOURCES = ROOT / "deploy" / "grafana" / "provisioning" / "datasources" / "datasources.yml"
INFLUX_INIT = ROOT / "deploy" / "influxdb" / "init"
DOCS = ROOT / "docs" / "DEPLOYMENT.md"

# --- the deployment guide's promises (/work/shared/spec/DEPLOYMENT_GUIDE.md) ------------

GUIDE = {
    # "Service URLs": service -> host ports (URL table, plus Raven's three)
    "ports": {
        "grafana": [3000],
        "prometheus": [9091],
        "jaeger": [16686],
        "influxdb": [8086],
        "raven": [8080, 9090, 50051],
        "redis": [6379],
    },
    # "Prerequisites": ports that must be free, i.e. every published host port
    "host_ports": {3000, 6379, 8080, 8086, 9090, 9091, 16686, 50051},
    # URL table rows -> (service, host port, credentials)
    "urls": {
        "Grafana Dashboard": ("grafana", 3000, ("raven", "ravens_see_all")),
        "Prometheus": ("prometheus", 9091, None),
        "Jaeger Tracing": ("jaeger", 16686, None),
        "InfluxDB UI": ("influxdb", 8086, ("raven", "ravens_fly_at_dawn")),
        "Health Check": ("raven", 8080, None),
        "Metrics": ("raven", 9090, None),
        "gRPC Server": ("raven", 50051, None),
    },
    # "Environment Variables" of the market data server
    "env": {
        "INFLUXDB_URL": "http://influxdb:8086",
        "INFLUXDB_DATABASE": "market_data",
        "INFLUXDB_USERNAME": "raven",
        "INFLUXDB_PASSWORD": "ravens_fly_at_dawn",
        "REDIS_URL": "redis://redis:6379",
        "SERVER_HOST": "0.0.0.0",
        "SERVER_PORT": "50051",
        "HEALTH_PORT": "8080",
        "METRICS_PORT": "9090",
        "RUST_LOG": "info",
        "RUST_BACKTRACE": "1",
    },
    # "Resource Limits": service -> (cpu limit, memory limit, cpu reserve, memory reserve)
    "resources": {
        "raven": (2.0, "2GB", 1.0, "1GB"),
        "influxdb": (1.0, "1GB", 0.5, "512MB"),
        "redis": (0.5, "512MB", 0.25, "256MB"),
        "prometheus": (0.5, "512MB", 0.25, "256MB"),
        "grafana": (0.5, "512MB", 0.25, "256MB"),
    },
    "resource_rows": {
        "Market Data Server": "raven",
        "InfluxDB": "influxdb",
        "Redis": "redis",
        "Prometheus": "prometheus",
        "Grafana": "grafana",
    },
    # "Volumes"
    "volumes": [
        "influxdb_data",
        "influxdb_config",
        "redis_data",
        "prometheus_data",
        "grafana_data",
        "raven_logs",
        "raven_data",
    ],
    # "Health Checks": start period 30-40 s, interval 30 s, timeout 10 s, retries 3-5
    "health": {"start_period": (30, 40), "interval": 30, "timeout": 10, "retries": (3, 5)},
    "services": {"raven", "influxdb", "redis", "prometheus", "grafana", "jaeger"},
}

# .env.example keys that carry the guide's credentials.
CREDENTIALS = {
    "GRAFANA_ADMIN_USER": "raven",
    "GRAFANA_ADMIN_PASSWORD": "ravens_see_all",
    "INFLUXDB_ADMIN_USERNAME": "raven",
    "INFLUXDB_ADMIN_PASSWORD": "ravens_fly_at_dawn",
    "INFLUXDB_USERNAME": "raven",
    "INFLUXDB_PASSWORD": "ravens_fly_at_dawn",
    "INFLUXDB_DATABASE": "market_data",
}

# Where the credentials arrive in each container.
CREDENTIAL_ENV = {
    "grafana": {"GF_SECURITY_ADMIN_USER": "raven", "GF_SECURITY_ADMIN_PASSWORD": "ravens_see_all"},
    "influxdb": {
        "DOCKER_INFLUXDB_INIT_USERNAME": "raven",
        "DOCKER_INFLUXDB_INIT_PASSWORD": "ravens_fly_at_dawn",
        "INFLUXDB_USERNAME": "raven",
        "INFLUXDB_PASSWORD": "ravens_fly_at_dawn",
        "INFLUXDB_DATABASE": "market_data",
    },
}

# What each pinned image has to run a health check with (verified against the images'
# Dockerfiles: influxdb 2.7 is Debian with the influx CLI and curl; redis has redis-cli;
# prom/prometheus is busybox; grafana/grafana and jaegertracing/all-in-one are Alpine, so
# busybox wget; Raven's image has `raven` and no curl).
IMAGE_TOOLS = {
    "raven": {"raven"},
    "influxdb": {"influx", "curl", "bash", "sh"},
    "redis": {"redis-cli", "sh", "grep"},
    "prom/prometheus": {"wget", "promtool", "sh"},
    "grafana/grafana": {"wget", "curl", "sh"},
    "jaegertracing/all-in-one": {"wget", "sh"},
}

DOC_SECTIONS = [
    "Quick start",
    "Commands",
    "Service URLs",
    "Architecture",
    "Configuration",
    "Resource limits",
    "Data persistence",
    "Backup and restore",
    "Monitoring",
    "Troubleshooting",
    "Production",
    "Scaling",
    "Native stack (no Docker)",
]


# --- helpers ----------------------------------------------------------------------------


def read_env_file(path: Path = ENV_EXAMPLE) -> dict[str, str]:
    """KEY=VALUE lines of a compose .env file (comments and blank lines skipped)."""
    env = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        assert sep, f"{path.name}: not KEY=VALUE: {line!r}"
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        env[key.strip()] = value
    return env


_VAR = re.compile(
    r"\$(?:(?P<esc>\$)|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}"
    r"|(?P<plain>[A-Za-z_][A-Za-z0-9_]*))"
)


class InterpolationError(ValueError):
    pass


def interpolate(value, env: dict[str, str]):
    """Compose's variable interpolation over every string of a loaded YAML document."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def sub(m: re.Match) -> str:
        if m.group("esc"):
            return "$"
        name = m.group("braced") or m.group("plain")
        op, arg = m.group("op"), m.group("arg") or ""
        val = env.get(name)
        unset_or_empty = val is None or (op and op.startswith(":") and val == "")
        if op in (":-", "-"):
            return arg if unset_or_empty else val
        if op in (":?", "?"):
            if unset_or_empty:
                raise InterpolationError(f"{name}: {arg or 'required'}")
            return val
        if op in (":+", "+"):
            return "" if unset_or_empty else arg
        return val or ""

    return _VAR.sub(sub, value)


def compose_variables() -> list[tuple[str, str | None]]:
    """(name, operator) of every variable docker-compose.yml refers to."""
    return [
        (m.group("braced") or m.group("plain"), m.group("op"))
        for m in _VAR.finditer(COMPOSE.read_text())
        if not m.group("esc")
    ]


def load_compose(env: dict[str, str] | None = None) -> dict:
    raw = yaml.safe_load(COMPOSE.read_text())
    return interpolate(raw, read_env_file() if env is None else env)


def duration_seconds(text) -> float:
    """Compose duration ('30s', '1m30s', '500ms') in seconds."""
    text = str(text)
    total, pos = 0.0, 0
    for m in re.finditer(r"(\d+(?:\.\d+)?)(us|ms|s|m|h)", text):
        assert m.start() == pos, f"bad duration {text!r}"
        total += float(m.group(1)) * {"us": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}[m.group(2)]
        pos = m.end()
    assert pos == len(text) and pos > 0, f"bad duration {text!r}"
    return total


def memory_bytes(text) -> int:
    """Compose byte value ('2G', '512M', '1gb') or the guide's ('2GB', '512MB')."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([kmgt]?)b?", str(text).strip().lower())
    assert m, f"bad size {text!r}"
    return int(float(m.group(1)) * 1024 ** " kmgt".index(m.group(2) or " "))


def published_ports(service: dict) -> list[tuple[str | None, int, int]]:
    """(host ip, host port, container port) of a service's `ports`."""
    out = []
    for p in service.get("ports", []):
        if isinstance(p, dict):
            out.append((p.get("host_ip"), int(p["published"]), int(p["target"])))
            continue
        spec = str(p).split("/")[0]
        parts = spec.rsplit(":", 2)
        if len(parts) == 3:
            out.append((parts[0], int(parts[1]), int(parts[2])))
        elif len(parts) == 2:
            out.append((None, int(parts[0]), int(parts[1])))
        else:
            raise AssertionError(f"port {p!r} is not published on a fixed host port")
    return out


def environment(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(e.split("=", 1) if "=" in e else (e, "") for e in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def image_repo(image: str) -> str:
    return image.rsplit(":", 1)[0] if ":" in image.split("/")[-1] else image


# --- the guide and the docs as documents ------------------------------------------------


def guide_path() -> Path | None:
    for p in (
        os.environ.get("RAVEN_DEPLOYMENT_GUIDE"),
        ROOT.parent / "shared" / "spec" / "DEPLOYMENT_GUIDE.md",
    ):
        if p and Path(p).is_file():
            return Path(p)
    return None


def parse_markdown_promises(text: str) -> dict:
    """The URL table, the resource table, the volume list and the environment block of
    a deployment document written in the guide's format."""
    out: dict = {"urls": {}, "resources": {}, "volumes": [], "env": {}, "host_ports": set()}
    for line in text.splitlines():
        m = re.match(r"\|\s*\*\*(.+?)\*\*\s*\|\s*(\S+)\s*\|\s*(.+?)\s*\|", line)
        if m:
            port = int(re.search(r":(\d+)", m.group(2)).group(1))
            cred = re.findall(r"`([^`]+)`", m.group(3))
            out["urls"][m.group(1)] = (port, tuple(cred) if cred else None)
            continue
        m = re.match(
            r"\|\s*([A-Za-z][A-Za-z ]+?)\s*\|\s*([\d.]+)\s*\|\s*(\d+[KMG]B)\s*\|\s*([\d.]+)\s*\|\s*(\d+[KMG]B)\s*\|",
            line,
        )
        if m:
            out["resources"][m.group(1)] = (
                float(m.group(2)),
                m.group(3),
                float(m.group(4)),
                m.group(5),
            )
            continue
        m = re.match(r"- Ports ([\d, ]+) available", line)
        if m:
            out["host_ports"] = {int(p) for p in re.findall(r"\d+", m.group(1))}
    volumes = re.search(r"^### Volumes\n(.*?)(?=^#)", text, re.S | re.M)
    if volumes:
        out["volumes"] = re.findall(r"^- `([a-z_]+)`: ", volumes.group(1), re.M)
    block = re.search(r"### Environment Variables.*?```bash\n(.*?)```", text, re.S)
    if block:
        for line in block.group(1).splitlines():
            m = re.match(r"([A-Z_]+)=(\S*)", line)
            if m:
                out["env"][m.group(1)] = m.group(2)
    return out


def check_document(text: str, name: str, require_prerequisites: bool) -> list[str]:
    """A deployment document states exactly GUIDE's ports, credentials, resources,
    volumes and environment."""
    doc = parse_markdown_promises(text)
    problems = []
    want_urls = {k: (port, cred) for k, (_, port, cred) in GUIDE["urls"].items()}
    if doc["urls"] != want_urls:
        problems.append(f"{name}: URL table {doc['urls']} != {want_urls}")
    want_res = {row: GUIDE["resources"][svc] for row, svc in GUIDE["resource_rows"].items()}
    got_res = {k: v for k, v in doc["resources"].items() if k in want_res}
    if got_res != want_res:
        problems.append(f"{name}: resource table {got_res} != {want_res}")
    if doc["volumes"] != GUIDE["volumes"]:
        problems.append(f"{name}: volumes {doc['volumes']} != {GUIDE['volumes']}")
    if doc["env"] != GUIDE["env"]:
        problems.append(f"{name}: environment {doc['env']} != {GUIDE['env']}")
    if require_prerequisites and doc["host_ports"] != GUIDE["host_ports"]:
        problems.append(f"{name}: prerequisite ports {sorted(doc['host_ports'])} != {sorted(GUIDE['host_ports'])}")
    return problems


# --- checks -----------------------------------------------------------------------------


def check_schema() -> list[str]:
    import jsonschema

    schema = json.loads(SCHEMA.read_text())
    validator_cls = jsonschema.validators.validator_for(schema)
    validator_cls.check_schema(schema)
    try:
        compose = load_compose()
    except InterpolationError as e:
        return [f"docker-compose.yml: .env.example leaves a required variable unset: {e}"]
    return [
        f"docker-compose.yml: {'/'.join(map(str, err.absolute_path)) or '(top)'}: {err.message}"
        for err in validator_cls(schema).iter_errors(compose)
    ]


def check_services() -> list[str]:
    compose = load_compose()
    services = compose.get("services", {})
    if set(services) != GUIDE["services"]:
        return [f"services {sorted(services)} != {sorted(GUIDE['services'])}"]
    return []


def check_compose_versions() -> list[str]:
    """What Compose v1 (Debian's docker-compose 1.29) and hosts with a low open-file
    limit need: no top-level `name:` (v1 rejects it) and a nofile limit that can be
    set from .env (a container cannot get a hard limit above the engine's)."""
    problems = []
    raw = yaml.safe_load(COMPOSE.read_text())
    for key in raw:
        if key not in ("services", "volumes", "networks", "configs", "secrets") and not key.startswith("x-"):
            problems.append(f"docker-compose.yml: top-level `{key}:` is rejected by Compose v1")
    for name, svc in raw.get("services", {}).items():
        nofile = ((svc or {}).get("ulimits") or {}).get("nofile")
        limits = nofile.values() if isinstance(nofile, dict) else [nofile] if nofile is not None else []
        for v in limits:
            if not isinstance(v, str) or "${" not in v:
                problems.append(f"{name}: ulimits nofile {v!r} is fixed; take it from a variable (RAVEN_NOFILE)")
    return problems


def check_ports() -> list[str]:
    problems = []
    services = load_compose()["services"]
    all_host_ports = []
    for name, svc in services.items():
        host_ports = sorted(p[1] for p in published_ports(svc))
        all_host_ports += host_ports
        want = sorted(GUIDE["ports"].get(name, []))
        if host_ports != want:
            problems.append(f"{name}: host ports {host_ports} != the guide's {want}")
    if sorted(all_host_ports) != sorted(GUIDE["host_ports"]):
        problems.append(f"published host ports {sorted(all_host_ports)} != {sorted(GUIDE['host_ports'])}")
    # The container side must be what the process listens on.
    targets = {
        "raven": {8080, 9090, 50051},
        "grafana": {3000},
        "prometheus": {9090},
        "influxdb": {8086},
        "redis": {6379},
        "jaeger": {16686},
    }
    for name, want in targets.items():
        got = {p[2] for p in published_ports(services[name])}
        if got != want:
            problems.append(f"{name}: container ports {sorted(got)} != {sorted(want)}")
    raven_env = environment(services["raven"])
    for var, port in (("SERVER_PORT", 50051), ("HEALTH_PORT", 8080), ("METRICS_PORT", 9090)):
        if raven_env.get(var) != str(port):
            problems.append(f"raven: {var}={raven_env.get(var)!r}, the guide says {port}")
    return problems


def check_environment() -> list[str]:
    problems = []
    services = load_compose()["services"]
    raven_env = environment(services["raven"])
    for key, want in GUIDE["env"].items():
        if raven_env.get(key) != want:
            problems.append(f"raven: {key}={raven_env.get(key)!r}, the guide says {want!r}")
    for svc, wanted in CREDENTIAL_ENV.items():
        env = environment(services[svc])
        for key, want in wanted.items():
            if env.get(key) != want:
                problems.append(f"{svc}: {key}={env.get(key)!r} with .env.example, the guide says {want!r}")
    return problems


def check_env_example() -> list[str]:
    problems = []
    env = read_env_file()
    for key, want in CREDENTIALS.items():
        if env.get(key) != want:
            problems.append(f".env.example: {key}={env.get(key)!r}, the guide says {want!r}")
    text = ENV_EXAMPLE.read_text()
    # Every credential is under a comment telling to change it.
    lines = text.splitlines()
    for i, line in enumerate(lines):
        key = line.split("=", 1)[0]
        if re.search(r"PASSWORD|TOKEN", key) and not line.startswith("#"):
            # The paragraph the setting is in (up to the blank line above it).
            above = []
            for prev in reversed(lines[:i]):
                if not prev.strip():
                    break
                above.append(prev)
            if not any(c.startswith("#") and "CHANGE" in c.upper() for c in above):
                problems.append(f".env.example: no comment telling to change {key}")
    used = {name for name, _ in compose_variables()}
    for name, op in compose_variables():
        if op in (None, ":?", "?") and name not in env:
            problems.append(f"docker-compose.yml needs {name}, which .env.example does not set")
    for key in env:
        # COMPOSE_* settings are Compose's own (the project name), not interpolated.
        if key not in used and not key.startswith("COMPOSE_"):
            problems.append(f".env.example: {key} is not used by docker-compose.yml")
    gitignore = (ROOT / ".gitignore").read_text().split()
    if "/.env" not in gitignore and ".env" not in gitignore:
        problems.append(".gitignore does not keep .env (credentials) out of git")
    return problems


def check_resources() -> list[str]:
    problems = []
    services = load_compose()["services"]
    for name, svc in services.items():
        res = (svc.get("deploy") or {}).get("resources") or {}
        lim, rsv = res.get("limits") or {}, res.get("reservations") or {}
        if not all(k in lim for k in ("cpus", "memory")) or not all(k in rsv for k in ("cpus", "memory")):
            problems.append(f"{name}: deploy.resources needs limits and reservations of cpus and memory")
            continue
        got = (float(lim["cpus"]), memory_bytes(lim["memory"]), float(rsv["cpus"]), memory_bytes(rsv["memory"]))
        if name in GUIDE["resources"]:
            c, m, rc, rm = GUIDE["resources"][name]
            want = (c, memory_bytes(m), rc, memory_bytes(rm))
            if got != want:
                problems.append(f"{name}: resources {got} != the guide's {want}")
        if got[2] > got[0] or got[3] > got[1]:
            problems.append(f"{name}: a reservation exceeds its limit")
    return problems


def check_healthchecks() -> list[str]:
    problems = []
    h = GUIDE["health"]
    for name, svc in load_compose()["services"].items():
        hc = svc.get("healthcheck")
        if not hc or hc.get("disable"):
            problems.append(f"{name}: no health check")
            continue
        test = hc.get("test")
        if isinstance(test, str):
            test = ["CMD-SHELL", test]
        if not test or test[0] not in ("CMD", "CMD-SHELL"):
            problems.append(f"{name}: health check test must be CMD or CMD-SHELL: {test!r}")
            continue
        try:
            interval = duration_seconds(hc["interval"])
            timeout = duration_seconds(hc["timeout"])
            start = duration_seconds(hc["start_period"])
            retries = int(hc["retries"])
        except (KeyError, AssertionError) as e:
            problems.append(f"{name}: health check needs interval, timeout, retries, start_period ({e})")
            continue
        if interval != h["interval"]:
            problems.append(f"{name}: interval {interval}s != {h['interval']}s")
        if timeout != h["timeout"]:
            problems.append(f"{name}: timeout {timeout}s != {h['timeout']}s")
        if not h["start_period"][0] <= start <= h["start_period"][1]:
            problems.append(f"{name}: start_period {start}s outside {h['start_period']}")
        if not h["retries"][0] <= retries <= h["retries"][1]:
            problems.append(f"{name}: retries {retries} outside {h['retries']}")
        # The command must exist inside the image.
        repo = "raven" if name == "raven" else image_repo(svc["image"])
        tools = IMAGE_TOOLS.get(repo)
        if tools is None:
            problems.append(f"{name}: no record of the tools in image {svc['image']}")
            continue
        if test[0] == "CMD":
            used = {Path(test[1]).name}
        else:
            used = {"sh"} | {
                Path(w).name
                for w in re.split(r"[|;&]+", test[1])
                for w in [w.strip().split(" ")[0]]
                if w
            }
        missing = used - tools
        if missing:
            problems.append(f"{name}: health check calls {sorted(missing)}, not in {svc['image']}")
    return problems


def check_images() -> list[str]:
    problems = []
    compose = load_compose()
    pinned = re.compile(r"^[a-z0-9./_-]+:v?\d+\.\d+(\.\d+)?(-[a-z0-9.]+)?$")
    for name, svc in compose["services"].items():
        image = svc.get("image")
        if not image:
            problems.append(f"{name}: no image")
        elif not pinned.match(image) or image.endswith(":latest"):
            problems.append(f"{name}: image {image!r} is not pinned to a version")
    raven = compose["services"]["raven"]
    version = tomllib.loads((ROOT / "Cargo.toml").read_text())["workspace"]["package"]["version"]
    if raven.get("image") != f"raven:{version}":
        problems.append(f"raven: image {raven.get('image')!r}, the workspace version is {version}")
    if (raven.get("build") or {}).get("context") != ".":
        problems.append("raven: must be built from the repository (build.context '.')")
    return problems


def check_volumes_and_mounts() -> list[str]:
    problems = []
    compose = load_compose()
    declared = list((compose.get("volumes") or {}).keys())
    if sorted(declared) != sorted(GUIDE["volumes"]):
        problems.append(f"named volumes {declared} != the guide's {GUIDE['volumes']}")
    used = set()
    for name, svc in compose["services"].items():
        for v in svc.get("volumes", []):
            src = v.get("source") if isinstance(v, dict) else str(v).split(":")[0]
            if src.startswith((".", "/")):
                if not (ROOT / src).exists():
                    problems.append(f"{name}: bind mount {src} does not exist")
            else:
                used.add(src)
                if src not in declared:
                    problems.append(f"{name}: volume {src} is not declared")
    for v in set(declared) - used:
        problems.append(f"volume {v} is declared but no service uses it")
    expect = {
        "raven_data": ("raven", "/var/lib/raven"),
        "raven_logs": ("raven", "/var/log/raven"),
        "influxdb_data": ("influxdb", "/var/lib/influxdb2"),
        "influxdb_config": ("influxdb", "/etc/influxdb2"),
        "redis_data": ("redis", "/data"),
        "prometheus_data": ("prometheus", "/prometheus"),
        "grafana_data": ("grafana", "/var/lib/grafana"),
    }
    for vol, (svc, target) in expect.items():
        mounts = [str(v) for v in compose["services"][svc].get("volumes", [])]
        if not any(m.split(":")[:2] == [vol, target] for m in mounts):
            problems.append(f"{svc}: {vol} is not mounted at {target}")
    return problems


def check_dependencies_and_restart() -> list[str]:
    problems = []
    services = load_compose()["services"]
    for name, svc in services.items():
        if svc.get("restart") not in ("unless-stopped", "always"):
            problems.append(f"{name}: restart policy {svc.get('restart')!r}")
        deps = svc.get("depends_on") or {}
        if isinstance(deps, list):
            problems.append(f"{name}: depends_on must state conditions")
            continue
        for dep, spec in deps.items():
            if dep not in services:
                problems.append(f"{name}: depends on unknown service {dep}")
            elif spec.get("condition") == "service_healthy" and not services[dep].get("healthcheck"):
                problems.append(f"{name}: waits for {dep} to be healthy, which has no health check")
    want = {"raven": {"influxdb", "redis"}, "grafana": {"prometheus", "influxdb"}}
    for name, deps in want.items():
        got = {d for d, s in (services[name].get("depends_on") or {}).items() if s.get("condition") == "service_healthy"}
        if not deps <= got:
            problems.append(f"{name}: must wait for {sorted(deps - got)} to be healthy")
    return problems


def check_observability_wiring() -> list[str]:
    """Prometheus scrapes and Grafana datasources name services and ports that exist."""
    problems = []
    services = load_compose()["services"]
    listening = {
        "raven": {int(environment(services["raven"])["METRICS_PORT"]), 8080, 50051},
        "influxdb": {8086},
        "prometheus": {9090},
        "grafana": {3000},
        "jaeger": {16686, 4317, 14269},
        "redis": {6379},
    }
    prom = yaml.safe_load(PROMETHEUS.read_text())
    for job in prom.get("scrape_configs", []):
        for sc in job.get("static_configs", []):
            for target in sc.get("targets", []):
                host, port = target.rsplit(":", 1)
                if host == "localhost" and job["job_name"] == "prometheus":
                    host = "prometheus"
                if int(port) not in listening.get(host, set()):
                    problems.append(f"prometheus.yml: job {job['job_name']} scrapes {target}, not a service port")
    for rf in prom.get("rule_files", []):
        if not (PROMETHEUS.parent / rf).is_file():
            problems.append(f"prometheus.yml: rule file {rf} does not exist next to it")
    mounts = [str(v) for v in services["prometheus"].get("volumes", [])]
    if "./deploy/prometheus:/etc/prometheus:ro" not in mounts:
        problems.append("prometheus: deploy/prometheus must be mounted at /etc/prometheus")
    ds = yaml.safe_load(DATASOURCES.read_text())
    for d in ds.get("datasources", []):
        m = re.match(r"https?://([^:/]+):(\d+)", d.get("url", ""))
        if not m or int(m.group(2)) not in listening.get(m.group(1), set()):
            problems.append(f"datasources.yml: {d['name']} at {d.get('url')} is no service port")
    genv = environment(services["grafana"])
    for var in re.findall(r"\$\{(\w+)\}", DATASOURCES.read_text()):
        if not genv.get(var):
            problems.append(f"grafana: datasources.yml reads {var}, not in Grafana's environment")
    return problems


def check_promtool() -> list[str]:
    promtool = shutil.which("promtool")
    if not promtool:
        return ["promtool not found (scripts/setup-services.sh installs Debian's prometheus)"]
    r = subprocess.run(
        [promtool, "check", "config", str(PROMETHEUS)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if r.returncode != 0:
        return [f"promtool check config: {r.stdout}{r.stderr}"]
    return []


def dockerfile_instructions(text: str | None = None) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuations joined; heredoc bodies kept in args."""
    lines = (DOCKERFILE.read_text() if text is None else text).splitlines()
    out, i = [], 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        while line.endswith("\\") and i < len(lines):
            nxt = lines[i]
            i += 1
            if nxt.lstrip().startswith("#"):
                continue
            line = line[:-1] + " " + nxt.strip()
        m = re.search(r"<<-?'?\"?(\w+)'?\"?", line)
        body = ""
        if m and line.split()[0].upper() in ("RUN", "COPY"):
            end = m.group(1)
            while i < len(lines) and lines[i] != end:
                body += lines[i] + "\n"
                i += 1
            i += 1
        instr, _, args = line.strip().partition(" ")
        out.append((instr.upper(), args.strip() + ("\n" + body if body else "")))
    return out


def dockerignore_includes(path: str) -> bool:
    """Whether .dockerignore lets `path` (relative) into the build context."""
    patterns = [
        p.strip()
        for p in DOCKERIGNORE.read_text().splitlines()
        if p.strip() and not p.strip().startswith("#")
    ]
    parts = path.strip("/").split("/")
    included = True
    for pat in patterns:
        neg = pat.startswith("!")
        pat = pat[1:] if neg else pat
        pat = pat.strip("/")
        for n in range(1, len(parts) + 1):
            prefix = "/".join(parts[:n])
            if fnmatch(prefix, pat) or (pat.startswith("**/") and fnmatch(prefix.split("/")[-1], pat[3:])):
                included = neg
                break
    return included


def check_dockerfile() -> list[str]:
    problems = []
    ins = dockerfile_instructions()
    args = {}
    for i, a in ins:
        if i == "ARG" and "=" in a:
            k, v = a.split("=", 1)
            args[k] = v.strip('"')
    stages = dockerfile_stages(ins)
    names = {name for name, _, _ in stages}
    if len(stages) < 2:
        problems.append("Dockerfile: not multi-stage")
    for _, base, _ in stages:
        if base in names:
            continue
        image = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), ""), base)
        if not re.search(r":\d|:[a-z]+-slim$|-slim$", image) or image.endswith(":latest"):
            problems.append(f"Dockerfile: base image {image} not pinned")
    # The default target (the last stage) with what it inherits from the stages it is
    # built FROM.
    final = stage_chain(stages, len(stages) - 1)
    root = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), ""), final[0][1].split()[0])
    if "rust" in root:
        problems.append("Dockerfile: the runtime stage is the Rust build image")
    # What Docker 20.10's builders cannot parse, or fetch from a registry first.
    text = DOCKERFILE.read_text()
    if re.search(r"^#\s*syntax\s*=", text, re.M | re.I):
        problems.append("Dockerfile: a `# syntax=` directive makes BuildKit fetch its frontend from a registry")
    for n, a in ins:
        if n in ("COPY", "ADD") and "--chmod" in a.split("\n", 1)[0]:
            problems.append(f"Dockerfile: {n} --chmod is rejected by the legacy builder")
        if n in ("RUN", "COPY") and "\n" in a:
            problems.append(f"Dockerfile: a heredoc in {n}, which Docker 20.10 cannot parse")
    users = [a for n, a in final if n == "USER"]
    if not users or users[-1].split(":")[0] in ("root", "0"):
        problems.append("Dockerfile: the runtime stage must end with a non-root USER")
    hcs = [a for n, a in final if n == "HEALTHCHECK"]
    if not hcs or not re.search(r'"raven",\s*"health"|raven health', hcs[-1]):
        problems.append("Dockerfile: HEALTHCHECK must run `raven health`")
    elif "curl" in hcs[-1] or "wget" in hcs[-1]:
        problems.append("Dockerfile: the health check must not need curl or wget")
    labels = " ".join(a for n, a in final if n == "LABEL")
    for key in ("title", "description", "version", "revision", "created", "licenses", "source"):
        if f"org.opencontainers.image.{key}=" not in labels:
            problems.append(f"Dockerfile: OCI label org.opencontainers.image.{key} missing")
    runs = " ".join(a for n, a in ins if n == "RUN")
    m = re.search(r"cargo build [^&]*--bin (\S+)", runs)
    if not m:
        problems.append("Dockerfile: no `cargo build ... --bin NAME`")
    else:
        bins = set()
        for manifest in (ROOT / "crates").glob("*/Cargo.toml"):
            bins |= {b["name"] for b in tomllib.loads(manifest.read_text()).get("bin", [])}
        if m.group(1) not in bins:
            problems.append(f"Dockerfile: builds --bin {m.group(1)}; the workspace has {sorted(bins)}")
        if "--locked" not in runs:
            problems.append("Dockerfile: cargo build must be --locked")
    for n, a in ins:
        if n != "COPY" or "--from=" in a or "<<" in a:
            continue
        words = [w for w in a.split() if not w.startswith("--")]
        for src in words[:-1]:
            src = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), src)
            # target/: a build's output (the runtime-prebuilt binary), not in a checkout.
            if not src.startswith("target/") and not (ROOT / src).exists():
                problems.append(f"Dockerfile: COPY source {src} does not exist")
            elif not dockerignore_includes(src):
                problems.append(f"Dockerfile: COPY source {src} is excluded by .dockerignore")
    for excluded in ("target", ".env", ".git", ".venv", "data"):
        if dockerignore_includes(excluded):
            problems.append(f".dockerignore lets {excluded} into the build context")
    if not any(n == "ENTRYPOINT" and "raven-entrypoint" in a for n, a in final):
        problems.append("Dockerfile: ENTRYPOINT raven-entrypoint missing")
    # A build argument declared before the first FROM is visible in FROM lines only;
    # a stage must declare it again to use it.
    declared: set[str] = set()
    for n, a in ins:
        if n == "FROM":
            declared = set()
        elif n == "ARG":
            declared.add(a.split("=", 1)[0].strip())
        elif n == "ENV":
            declared |= set(re.findall(r"(?:^|\s)([A-Za-z_]\w*)=", a))
        if n in ("LABEL", "ENV", "COPY", "WORKDIR", "USER", "EXPOSE", "HEALTHCHECK"):
            head = a.split("\n", 1)[0]
            for ref in re.findall(r"\$\{?([A-Za-z_]\w*)", head):
                if ref not in declared:
                    problems.append(f"Dockerfile: {n} uses ${{{ref}}}, not declared in its stage")
    return problems


def dockerfile_stages(ins: list[tuple[str, str]]) -> list[tuple[str, str, list[tuple[str, str]]]]:
    """(name, base, instructions from its FROM on) per stage; unnamed stages by index."""
    stages = []
    for n, a in ins:
        if n == "FROM":
            words = a.split()
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else str(len(stages))
            stages.append((name, words[0], []))
        if stages:
            stages[-1][2].append((n, a))
    return stages


def stage_chain(stages, index: int) -> list[tuple[str, str]]:
    """The instructions that make stage `index`: its ancestors' (FROM another stage), then
    its own."""
    by_name = {name: i for i, (name, _, _) in enumerate(stages)}
    name, base, own = stages[index]
    if base in by_name and by_name[base] < index:
        return stage_chain(stages, by_name[base]) + own
    return own


def entrypoint_script() -> str:
    """The script the Dockerfile installs as raven-entrypoint (COPY from the repo)."""
    for n, a in dockerfile_instructions():
        words = a.split()
        if n == "COPY" and words and words[-1].endswith("/raven-entrypoint") and "--from=" not in a:
            return (ROOT / words[-2]).read_text()
    raise AssertionError("Dockerfile: no COPY of raven-entrypoint")


def _stub(dirpath: Path, name: str, body: str) -> Path:
    p = dirpath / name
    p.write_text("#!/bin/bash\n" + body)
    p.chmod(0o755)
    return p


def check_entrypoint() -> list[str]:
    """The entrypoint's demo switch and log file, with a stub `raven`."""
    problems = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        ep = tmp / "raven-entrypoint"
        ep.write_text(entrypoint_script())
        ep.chmod(0o755)
        stub = _stub(tmp, "raven", 'echo "argv: $*"\necho "stderr line" >&2\n')

        def run(args, **env):
            e = {"PATH": os.environ["PATH"], "RAVEN_BIN": str(stub), **env}
            return subprocess.run([str(ep), *args], capture_output=True, text=True, env=e, timeout=30)

        cases = [
            (["serve"], {}, "argv: serve"),
            (["serve"], {"RAVEN_DEMO": "0"}, "argv: serve"),
            (["serve"], {"RAVEN_DEMO": "1"}, "argv: serve --demo"),
            (["serve", "--config", "x.toml"], {"RAVEN_DEMO": "true"}, "argv: serve --config x.toml --demo"),
            (["health"], {"RAVEN_DEMO": "1"}, "argv: health"),
        ]
        for args, env, want in cases:
            r = run(args, **env)
            if r.returncode != 0 or r.stdout.strip() != want:
                problems.append(f"entrypoint {args} {env}: {r.returncode} {r.stdout!r} {r.stderr!r}, want {want!r}")
        r = run(["serve"], RAVEN_DEMO="maybe")
        if r.returncode != 2:
            problems.append(f"entrypoint: RAVEN_DEMO=maybe must exit 2, got {r.returncode}")
        log = tmp / "logs" / "raven.log"
        for _ in range(2):
            r = run(["serve"], RAVEN_LOG_FILE=str(log))
        # tee may still be writing when the stub has exited.
        for _ in range(50):
            if log.exists() and log.read_text().count("argv: serve") == 2:
                break
            subprocess.run(["sleep", "0.1"])
        text = log.read_text() if log.exists() else ""
        if text.count("argv: serve") != 2 or text.count("stderr line") != 2:
            problems.append(f"entrypoint: RAVEN_LOG_FILE must get stdout and stderr, appended: {text!r}")
        if "argv: serve" not in r.stdout:
            problems.append("entrypoint: with RAVEN_LOG_FILE the log must still reach stdout")
        log.write_text("x" * 2000)
        run(["serve"], RAVEN_LOG_FILE=str(log), RAVEN_LOG_MAX_BYTES="1000")
        if not (tmp / "logs" / "raven.log.1").exists():
            problems.append("entrypoint: a log over RAVEN_LOG_MAX_BYTES must move to .1 at start")
    return problems


def check_influx_init() -> list[str]:
    """The init script is executable and creates the DBRP mapping and the v1 user."""
    problems = []
    scripts = sorted(INFLUX_INIT.glob("*.sh"))
    if not scripts:
        return [f"{INFLUX_INIT}: no init script"]
    for s in scripts:
        if not os.access(s, os.X_OK):
            problems.append(f"{s.relative_to(ROOT)}: not executable (the image runs only executable scripts)")
    env_example = read_env_file()
    compose_env = environment(load_compose()["services"]["influxdb"])
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        calls = tmp / "calls"
        _stub(tmp, "influx", f'printf "%s\\n" "$*" >> {calls}\n')
        env = {
            "PATH": f"{tmp}:{os.environ['PATH']}",
            **compose_env,
            "DOCKER_INFLUXDB_INIT_BUCKET_ID": "0123456789abcdef",
        }
        for s in scripts:
            r = subprocess.run(["bash", str(s)], capture_output=True, text=True, env=env, timeout=30)
            if r.returncode != 0:
                problems.append(f"{s.name}: exit {r.returncode}: {r.stderr}")
        got = calls.read_text().splitlines() if calls.exists() else []
        db, user, pw = (env_example[k] for k in ("INFLUXDB_DATABASE", "INFLUXDB_USERNAME", "INFLUXDB_PASSWORD"))
        org = compose_env["DOCKER_INFLUXDB_INIT_ORG"]
        want_dbrp = f"v1 dbrp create --org {org} --bucket-id 0123456789abcdef --db {db} --rp autogen --default"
        if want_dbrp not in got:
            problems.append(f"influx init: no `{want_dbrp}` in {got}")
        auth = [c for c in got if c.startswith("v1 auth create")]
        if not auth or not all(
            f in auth[0]
            for f in (
                f"--username {user}",
                f"--password {pw}",
                "--read-bucket 0123456789abcdef",
                "--write-bucket 0123456789abcdef",
            )
        ):
            problems.append(f"influx init: v1 auth create for {user} with read+write on the bucket missing: {got}")
    return problems


def check_docs() -> list[str]:
    problems = []
    if not DOCS.is_file():
        return [f"{DOCS.relative_to(ROOT)} missing"]
    text = DOCS.read_text()
    headings = [h.strip() for h in re.findall(r"^#{2,3} (.+)$", text, re.M)]
    for section in DOC_SECTIONS:
        if not any(h.lower().startswith(section.lower()) for h in headings):
            problems.append(f"docs/DEPLOYMENT.md: no section {section!r}")
    problems += check_document(text, "docs/DEPLOYMENT.md", require_prerequisites=True)
    compose = load_compose()
    for svc in compose["services"].values():
        if svc.get("image") and svc["image"] not in text:
            problems.append(f"docs/DEPLOYMENT.md does not name the image {svc['image']}")
    return problems


def check_guide() -> list[str]:
    """GUIDE above is the guide (when the spec is at hand)."""
    path = guide_path()
    if path is None:
        return []
    return check_document(path.read_text(), str(path.name), require_prerequisites=True)


CHECKS = [
    check_schema,
    check_compose_versions,
    check_services,
    check_ports,
    check_environment,
    check_env_example,
    check_resources,
    check_healthchecks,
    check_images,
    check_volumes_and_mounts,
    check_dependencies_and_restart,
    check_observability_wiring,
    check_promtool,
    check_dockerfile,
    check_entrypoint,
    check_influx_init,
    check_docs,
    check_guide,
]


def main() -> int:
    failed = 0
    for check in CHECKS:
        try:
            problems = check()
        except Exception as e:  # a crash is a finding too
            problems = [f"{type(e).__name__}: {e}"]
        status = "ok" if not problems else "FAIL"
        print(f"{status:4} {check.__name__}")
        for p in problems:
            print(f"     - {p}")
        failed += bool(problems)
    print(f"{len(CHECKS) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
