"""Run the rendered Kubernetes overlay's pod the way a kubelet would, with podman.

    kubernetes_probes.py RENDERED.yaml IMAGE ISSUER STS_ENDPOINT

From the rendered manifests: the ConfigMap's stsvend.toml is mounted where the Deployment
mounts it, demo secrets where the Secret volume goes, the container's args, user and
read-only root are used as given. Checks that `stsvend check-config` passes on that config
inside the image; that the ports the probes name are the ones the config listens on; that the
Service and Ingress reach only the public port; then starts the pod (ports remapped to free
loopback ports, the IdP and STS pointed at the local components) and sends each probe's
request to its port: all 200. /metrics is not on the public port.
"""
import json
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
import urllib.error
import urllib.request
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def fail(msg):
    sys.exit(f"[kubernetes] FAIL: {msg}")


def ok(msg):
    print(f"[kubernetes] {msg}", file=sys.stderr)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def status(url):
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return None


def main():
    rendered, image, issuer, sts_endpoint = sys.argv[1:5]
    docs = [d for d in yaml.safe_load_all(Path(rendered).read_text()) if d]
    by_kind = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)
    (deployment,) = by_kind["Deployment"]
    (configmap,) = by_kind["ConfigMap"]
    (service,) = by_kind["Service"]
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}

    config_text = configmap["data"]["stsvend.toml"]
    config = tomllib.loads(config_text)
    bind_port = int(config["server"]["bind"].rsplit(":", 1)[1])
    internal_port = int(config["server"]["internal_bind"].rsplit(":", 1)[1])
    if ports.get("http") != bind_port or ports.get("internal") != internal_port:
        fail(f"container ports {ports} differ from the config's bind {bind_port} / internal_bind {internal_port}")
    ok(f"container ports match the config (http {bind_port}, internal {internal_port})")

    probes = {k: container[k]["httpGet"] for k in ("startupProbe", "readinessProbe", "livenessProbe")}
    for name, get in probes.items():
        if get["port"] != "internal":
            fail(f"{name} uses port {get['port']}, want the internal listener")
    for p in service["spec"]["ports"]:
        if p["targetPort"] not in ("http", bind_port):
            fail(f"the Service exposes {p['targetPort']}")
    for ing in by_kind.get("Ingress", []):
        for rule in ing["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                if path["backend"]["service"]["name"] != service["metadata"]["name"] or \
                        path["backend"]["service"]["port"].get("name") != "http":
                    fail("the Ingress must reach the Service's http port only")
    annotations = deployment["spec"]["template"]["metadata"].get("annotations", {})
    if int(annotations.get("prometheus.io/port", 0)) != internal_port:
        fail("prometheus.io/port is not the internal port")
    grace = pod["terminationGracePeriodSeconds"]
    pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    if grace <= pre_stop + config["server"]["shutdown_timeout_seconds"]:
        fail(f"terminationGracePeriodSeconds {grace} <= preStop {pre_stop} + shutdown timeout")
    ok("Service and Ingress reach only the public port; probes and Prometheus use the internal one; grace period covers preStop + shutdown")

    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    config_mount = next(mounts[n] for n, v in volumes.items() if "configMap" in v)
    secret_mount = next(mounts[n] for n, v in volumes.items() if "secret" in v)
    # The pod's emptyDir volumes (revocations.file lives in one): podman gets a folder each.
    empty_dirs = [mounts[n] for n, v in volumes.items() if "emptyDir" in v and n in mounts]
    revocations = config.get("revocations", {}).get("file", "/var/lib/stsvend/revocations.json")
    if not any(revocations.startswith(d.rstrip("/") + "/") for d in empty_dirs):
        fail(f"revocations.file {revocations} is not on a volume the pod mounts")
    args = container["args"]
    if args[args.index("--config") + 1] != f"{config_mount}/stsvend.toml":
        fail("--config does not name the mounted ConfigMap")
    demo = ROOT / "deploy" / "local" / "secrets"
    secret_files = {
        config["oidc"]["client_secret_file"]: demo / "oidc-client-secret",
        config["session"]["key_file"]: demo / "session-key.b64",
    }
    if "cluster" in config:
        secret_files[config["cluster"]["encryption_key_file"]] = demo / "cluster-key.b64"
    if "admin" in config:
        secret_files[config["admin"]["token_file"]] = demo / "admin-token"
    sc = pod["securityContext"]
    user = f"{sc['runAsUser']}:{sc['runAsGroup']}"
    with tempfile.TemporaryDirectory() as tmp:
        cfg_dir, sec_dir = Path(tmp, "config"), Path(tmp, "secrets")
        cfg_dir.mkdir()
        sec_dir.mkdir()
        (cfg_dir / "stsvend.toml").write_text(config_text)
        for path, source in secret_files.items():
            if not path.startswith(secret_mount + "/"):
                fail(f"{path} is not in the Secret volume ({secret_mount})")
            Path(sec_dir, path[len(secret_mount) + 1:]).write_bytes(source.read_bytes())
        for p in [cfg_dir, sec_dir, *cfg_dir.iterdir(), *sec_dir.iterdir()]:
            p.chmod(0o755 if p.is_dir() else 0o644)
        security = container["securityContext"]
        opts = ["--user", user, "--network", "host",
                "-v", f"{cfg_dir}:{config_mount}:ro", "-v", f"{sec_dir}:{secret_mount}:ro"]
        for i, mount in enumerate(empty_dirs):
            folder = Path(tmp, f"empty-{i}")
            folder.mkdir()
            folder.chmod(0o777)
            opts += ["-v", f"{folder}:{mount}"]
        if security.get("readOnlyRootFilesystem"):
            opts.append("--read-only")
        if security.get("allowPrivilegeEscalation") is False:
            opts += ["--security-opt", "no-new-privileges"]
        if security["capabilities"]["drop"] == ["ALL"]:
            opts += ["--cap-drop", "all"]

        check = subprocess.run(["podman", "run", "--rm", *opts, image, "check-config",
                                *args[args.index("--config"):args.index("--config") + 2]],
                               capture_output=True, text=True)
        if check.returncode != 0:
            fail(f"check-config on the ConfigMap's config: {check.stderr.strip()}")
        ok("the ConfigMap's config passes `stsvend check-config` inside the image, with the pod's mounts")

        public, internal = free_port(), free_port()
        env = {
            "STSVEND_SERVER__BIND": f"127.0.0.1:{public}",
            "STSVEND_SERVER__INTERNAL_BIND": f"127.0.0.1:{internal}",
            "STSVEND_SERVER__PUBLIC_URL": f"http://127.0.0.1:{public}",
            "STSVEND_SESSION__SECURE": "false",
            "STSVEND_CORS__ALLOWED_ORIGINS": "[]",
            "STSVEND_OIDC__ISSUER": issuer,
            "STSVEND_STS__ENDPOINT_URL": sts_endpoint,
            "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
        }
        redis = None
        if "cluster" in config:
            # A fleet replica is ready only once it has read the fleet's revocations: give it
            # a Redis of its own on loopback in place of the managed one.
            redis_port = free_port()
            redis = subprocess.Popen(["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1",
                                      "--save", "", "--appendonly", "no"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            env["STSVEND_CLUSTER__REDIS_URL"] = f"redis://127.0.0.1:{redis_port}"
        env_opts = [x for k, v in env.items() for x in ("-e", f"{k}={v}")]
        cid = subprocess.run(["podman", "run", "-d", *opts, *env_opts, image, *args],
                             capture_output=True, text=True, check=True).stdout.strip()
        try:
            port_of = {"internal": internal, "http": public}
            deadline = time.monotonic() + 30
            get = probes["startupProbe"]
            while status(f"http://127.0.0.1:{port_of[get['port']]}{get['path']}") != 200:
                if time.monotonic() > deadline:
                    logs = subprocess.run(["podman", "logs", cid], capture_output=True, text=True)
                    fail(f"startup probe never passed\n{logs.stdout}{logs.stderr}")
                time.sleep(0.1)
            while status(f"http://127.0.0.1:{internal}/readyz") != 200 and time.monotonic() < deadline:
                time.sleep(0.1)
            for name, get in probes.items():
                url = f"http://127.0.0.1:{port_of[get['port']]}{get['path']}"
                code = status(url)
                if code != 200:
                    fail(f"{name} {get['path']} on the {get['port']} port answered {code}")
                ok(f"{name}: GET {get['path']} on the {get['port']} port -> 200")
            if status(f"http://127.0.0.1:{public}/s3credentialsREADME") != 200:
                fail("the Service's port does not serve the README page")
            if status(f"http://127.0.0.1:{public}/metrics") != 404:
                fail("/metrics is served on the public port")
            ok("the Service's port serves /s3credentialsREADME and not /metrics")
            if empty_dirs and not any(Path(tmp, f"empty-{i}", Path(revocations).name).exists()
                                      for i in range(len(empty_dirs))):
                fail(f"no {revocations} in the pod's volume")
            ok(f"revocations kept in the pod's volume ({revocations})")
        finally:
            subprocess.run(["podman", "rm", "-f", "-t", "0", cid], capture_output=True)
            if redis:
                redis.kill()


if __name__ == "__main__":
    main()
