#!/usr/bin/env python3
"""Small JSON/HTTP helpers for scripts/stack/*.sh (standard library only).

  influx-counts URL DB USER PASSWORD BEFORE_NS   points per measurement with time < BEFORE_NS (JSON)
  prom-stats URL UNIX_TIME                       series, and up/raven_ready samples of the hour before UNIX_TIME (JSON)
  prom-query URL QUERY                           instant query; prints the first value or nothing
  manifest DIR PARTS_DIR KEY=VALUE...            writes DIR/manifest.json: KEY=VALUE pairs, every
                                                 PARTS_DIR/*.json as a component, every file of DIR
                                                 with size and sha256
  verify-files DIR                               every file listed in DIR/manifest.json has its size and sha256
  get FILE PATH                                  prints the JSON value at PATH (a.b.c) of FILE
  same A B                                       exit 0 when JSON texts A and B are equal, else prints both
  compose-services                               the services of a `docker compose config` (JSON, or YAML
                                                 when PyYAML is there) on stdin that run: scale and
                                                 deploy.replicas not 0; one per line
"""
import base64
import hashlib
import json
import os
import sys
import urllib.parse
import urllib.request


def http_json(url, data=None, headers=None):
    req = urllib.request.Request(url, data=data, headers=headers or {})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.load(resp)


def influx_query(url, db, user, password, q):
    body = urllib.parse.urlencode({"db": db, "q": q, "epoch": "ns"}).encode()
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if user:
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    out = http_json(url.rstrip("/") + "/query", body, headers)
    result = out["results"][0]
    if "error" in result:
        raise SystemExit(f"influx query failed: {q}: {result['error']}")
    return result.get("series", [])


def influx_counts(url, db, user, password, before_ns):
    counts = {}
    for series in influx_query(url, db, user, password, "SHOW MEASUREMENTS"):
        for (name,) in series.get("values", []):
            q = f'SELECT count(*) FROM "{name}" WHERE time < {int(before_ns)}'
            total = 0
            for s in influx_query(url, db, user, password, q):
                for row in s.get("values", []):
                    # one column per field; every point of Raven's schema has every field
                    total = max([total] + [v for v in row[1:] if isinstance(v, int)])
            counts[name] = total
    return counts


def prom_query(url, query, at=None):
    params = {"query": query}
    if at is not None:
        params["time"] = str(at)
    out = http_json(url.rstrip("/") + "/api/v1/query?" + urllib.parse.urlencode(params))
    res = out["data"]["result"]
    return float(res[0]["value"][1]) if res else None


def prom_stats(url, at):
    series = prom_query(url, 'count({__name__=~".+"})', at) or 0
    # every scrape of every target leaves one `up` sample
    scrapes = prom_query(url, "sum(count_over_time(up[1h]))", at) or 0
    ready = prom_query(url, "sum(count_over_time(raven_ready[1h]))", at) or 0
    return {"time": int(at), "series": int(series), "up_samples_last_hour": int(scrapes),
            "raven_ready_samples_last_hour": int(ready)}


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def list_files(root):
    files = []
    for dirpath, _, names in os.walk(root):
        for n in sorted(names):
            p = os.path.join(dirpath, n)
            rel = os.path.relpath(p, root)
            if rel == "manifest.json" or os.path.islink(p):
                continue
            files.append({"path": rel, "bytes": os.path.getsize(p), "sha256": sha256(p)})
    return sorted(files, key=lambda f: f["path"])


def compose_services(text):
    try:
        config = json.loads(text)
    except ValueError:
        import yaml  # Compose v1 prints YAML only; it depends on PyYAML itself

        config = yaml.safe_load(text)
    running = []
    for name, svc in (config.get("services") or {}).items():
        replicas = ((svc or {}).get("deploy") or {}).get("replicas")
        if int((svc or {}).get("scale", 1)) != 0 and (replicas is None or int(replicas) != 0):
            running.append(name)
    return running


def coerce(v):
    try:
        return json.loads(v)
    except ValueError:
        return v


def main(argv):
    if len(argv) < 2:
        raise SystemExit(__doc__)
    cmd, args = argv[1], argv[2:]
    if cmd == "influx-counts":
        print(json.dumps(influx_counts(*args), sort_keys=True))
    elif cmd == "prom-stats":
        print(json.dumps(prom_stats(args[0], int(float(args[1]))), sort_keys=True))
    elif cmd == "prom-query":
        v = prom_query(args[0], args[1])
        if v is not None:
            print(v)
    elif cmd == "manifest":
        root, parts = args[0], args[1]
        manifest = {}
        for kv in args[2:]:
            k, _, v = kv.partition("=")
            manifest[k] = coerce(v)
        comps = {}
        for n in sorted(os.listdir(parts)):
            if n.endswith(".json"):
                with open(os.path.join(parts, n)) as f:
                    comps[n[:-5]] = json.load(f)
        manifest["components"] = comps
        manifest["files"] = list_files(root)
        with open(os.path.join(root, "manifest.json"), "w") as f:
            json.dump(manifest, f, indent=2, sort_keys=True)
            f.write("\n")
    elif cmd == "verify-files":
        root = args[0]
        with open(os.path.join(root, "manifest.json")) as f:
            listed = {e["path"]: e for e in json.load(f)["files"]}
        bad = []
        for e in listed.values():
            p = os.path.join(root, e["path"])
            if not os.path.isfile(p):
                bad.append(f"missing {e['path']}")
            elif os.path.getsize(p) != e["bytes"] or sha256(p) != e["sha256"]:
                bad.append(f"changed {e['path']}")
        for b in bad:
            print(b, file=sys.stderr)
        if bad:
            raise SystemExit(1)
        print(f"{len(listed)} files, sizes and sha256 as in the manifest")
    elif cmd == "get":
        with open(args[0]) as f:
            v = json.load(f)
        for k in args[1].split("."):
            v = v.get(k) if isinstance(v, dict) else None
        if v is None:
            raise SystemExit(1)
        print(v if isinstance(v, str) else json.dumps(v, sort_keys=True))
    elif cmd == "compose-services":
        print("\n".join(compose_services(sys.stdin.read())))
    elif cmd == "same":
        a, b = json.loads(args[0]), json.loads(args[1])
        if a != b:
            print(f"  expected {json.dumps(a, sort_keys=True)}\n  found    {json.dumps(b, sort_keys=True)}")
            raise SystemExit(1)
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
