"""Static checks of the deployment files: compose, Dockerfiles (hadolint), Kubernetes manifests (kubernetes-validate).

The stack itself is built, started and tested for real by ``make compose-test`` (deploy/compose_test.sh).
"""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
COMPOSE = ROOT / "docker-compose.yml"
GPU_OVERRIDE = ROOT / "compose.gpu.yml"
DOCKERFILES = {"api": ROOT / "deploy" / "api.Dockerfile", "dashboard": ROOT / "deploy" / "dashboard.Dockerfile"}
K8S = ROOT / "deploy" / "kubernetes"
INTERNAL_PORTS = ("8081", "8082", "8085", "7070", "7071")  # management, metrics, TorchServe behind the gate, gRPC


def compose() -> dict[str, Any]:
    return dict(yaml.safe_load(COMPOSE.read_text()))


def k8s_docs() -> list[dict[str, Any]]:
    return [doc for path in sorted(K8S.glob("*.yaml")) if path.name != "kustomization.yaml"
            for doc in yaml.safe_load_all(path.read_text()) if doc]


def tool(name: str) -> str:
    path = BIN / name
    found = str(path) if path.is_file() else shutil.which(name)
    assert found, f"{name} is not installed: it is in requirements-dev.txt (make install)"
    return found


# ---------------------------------------------------------------------- compose


def test_compose_services_build_from_files_that_exist() -> None:
    services = compose()["services"]
    assert {"api", "dashboard"} <= set(services)
    for name, service in services.items():
        assert not service.get("privileged", False), name
        build = service.get("build")
        if build is None:
            continue
        context = ROOT / build.get("context", ".")
        dockerfile = context / build["dockerfile"]
        assert dockerfile in DOCKERFILES.values(), f"{name}: {dockerfile}"
        assert build["args"]["BASE_IMAGE"].endswith("python:3.11-slim}"), "BASE_IMAGE must be configurable"
        for line in dockerfile.read_text().splitlines():
            if line.startswith("COPY") and "--from=" not in line:
                for src in line.split()[1:-1]:
                    assert (context / src).exists(), f"{name}: COPY source {src} missing"


def test_only_the_dashboard_and_the_inference_port_are_published() -> None:
    services = compose()["services"]
    published = {name: s.get("ports", []) for name, s in services.items()}
    assert [p.rsplit(":", 1)[1] for p in published["api"]] == ["8080"]
    assert [p.rsplit(":", 1)[1] for p in published["dashboard"]] == ["8501"]
    assert all(not ports for name, ports in published.items() if name not in ("api", "dashboard"))
    for name, service in services.items():
        assert not service.get("expose"), f"{name} exposes more ports"
        assert service.get("network_mode") != "host", name
    text = COMPOSE.read_text()
    for port in INTERNAL_PORTS:
        assert not re.search(rf"[:\"' ]{port}\b", text), f"port {port} appears in docker-compose.yml"
    for port in published["api"] + published["dashboard"]:
        assert "${CONVLENS_BIND" in port and re.search(r"\$\{CONVLENS_(INFERENCE|DASHBOARD)_PORT:-\d+\}", port)


def test_named_volumes_and_the_shared_key() -> None:
    c = compose()
    assert {"model-store", "api-key", "weights", "datasets", "models"} <= set(c["volumes"])
    api_mounts = {v.split(":")[0]: v for v in c["services"]["api"]["volumes"]}
    assert {"model-store", "api-key", "weights", "datasets", "models"} <= set(api_mounts)
    dash = c["services"]["dashboard"]
    assert [v for v in dash["volumes"] if v.startswith("api-key:")] == ["api-key:/var/lib/convlens-key:ro"]
    assert dash["environment"]["CONVLENS_KEY_FILE"] == "/var/lib/convlens-key/key_file.json"
    assert dash["environment"]["CONVLENS_URL"] == "http://api:8080", "the dashboard reaches the api by service name"
    assert dash["depends_on"]["api"]["condition"] == "service_healthy"


def test_the_models_directory_is_a_writable_volume_and_upload_is_off() -> None:
    """The api finds its models where the volume is mounted; operators (and, when allowed, clients) write there."""
    api = compose()["services"]["api"]
    models_dir = api["environment"]["CONVLENS_MODELS_DIR"]
    assert f"models:{models_dir}" in api["volumes"], "mounted read-write where CONVLENS_MODELS_DIR points"
    assert api["environment"]["CONVLENS_MODEL_UPLOAD"] == "${CONVLENS_MODEL_UPLOAD:-0}", "upload off by default"
    dockerfile = DOCKERFILES["api"].read_text()
    assert f"CONVLENS_MODELS_DIR={models_dir}" in dockerfile and f'"{models_dir}"' in dockerfile
    assert re.search(rf"chown -R convlens:convlens[^&]*{re.escape(models_dir)}", dockerfile), "owned by the api user"


def test_healthchecks_restart_policies_and_hardening() -> None:
    services = compose()["services"]
    for name in ("api", "dashboard"):
        s = services[name]
        assert s["healthcheck"]["test"] == ["CMD", "python3", "/app/deploy/healthcheck.py", name]
        assert s["restart"] in ("unless-stopped", "always", "on-failure")
        assert s["cap_drop"] == ["ALL"] and "no-new-privileges:true" in s["security_opt"]
    # /ping needs the token: the api's check reads the key the api shares.
    check = (ROOT / "deploy" / "healthcheck.py").read_text()
    assert "Authorization" in check and "key_file.json" in check


def test_gpu_reservation_lives_in_the_override_so_cpu_hosts_start() -> None:
    base = COMPOSE.read_text()
    assert "nvidia" not in base and "reservations" not in base
    gpu = yaml.safe_load(GPU_OVERRIDE.read_text())
    devices = gpu["services"]["api"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and devices[0]["capabilities"] == ["gpu"]


def test_weights_fetch_is_an_optional_one_shot_service() -> None:
    fetch = compose()["services"]["weights-fetch"]
    assert fetch["profiles"] == ["weights"], "the stack must start without it"
    assert fetch["restart"] == "no"
    assert fetch["entrypoint"][-2:] == ["weights", "fetch"]
    assert [v.split(":")[0] for v in fetch["volumes"]] == ["weights"]


def test_env_example_names_every_variable_the_compose_files_read() -> None:
    used = set(re.findall(r"\$\{([A-Z_]+)", COMPOSE.read_text() + GPU_OVERRIDE.read_text()))
    documented = {line.split("=", 1)[0] for line in (ROOT / ".env.example").read_text().splitlines()
                  if line and not line.startswith("#")}
    assert {"CONVLENS_INFERENCE_PORT", "CONVLENS_DASHBOARD_PORT", "CONVLENS_WORKERS"} <= used
    assert used <= documented, f"not in .env.example: {sorted(used - documented)}"


def test_podman_compose_accepts_the_files() -> None:
    merged = subprocess.run([tool("podman-compose"), "-f", str(COMPOSE), "-f", str(GPU_OVERRIDE), "config"],
                            capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert merged.returncode == 0, merged.stderr
    config = yaml.safe_load(merged.stdout)
    assert config["services"]["api"]["deploy"]["resources"]["reservations"]["devices"][0]["driver"] == "nvidia"
    assert config["services"]["api"]["ports"] == ["127.0.0.1:8080:8080"]


def test_deployment_files_list_no_endpoint() -> None:
    """Endpoints come from serve/archives.py all_endpoints(): a new one needs no change here."""
    from serve.archives import all_endpoints

    files = [COMPOSE, GPU_OVERRIDE, *DOCKERFILES.values(), *K8S.glob("*.yaml"),
             ROOT / "deploy" / "api" / "entrypoint.py"]
    for path in files:
        text = path.read_text()
        for endpoint in all_endpoints():
            assert not re.search(rf"\b{endpoint}\b", text), f"{path.name} names the endpoint {endpoint!r}"


# ---------------------------------------------------------------------- Dockerfiles


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_dockerfile_is_multi_stage_non_root_and_takes_a_base_image(name: str) -> None:
    text = DOCKERFILES[name].read_text()
    assert text.splitlines()[0].startswith("# syntax=docker/dockerfile:1")
    assert re.search(r"^ARG BASE_IMAGE=python:3\.11-slim$", text, re.M)
    stages = re.findall(r"^FROM (\S+)", text, re.M)
    assert len(stages) >= 2 and all(s == "${BASE_IMAGE}" for s in stages)
    final = text[text.rindex("\nFROM "):]
    users = re.findall(r"^USER (\S+)", final, re.M)
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert "HEALTHCHECK" in final and "requirements.txt" in text


def test_api_image_installs_the_pinned_torch_and_no_dashboard() -> None:
    requirements = (ROOT / "requirements.txt").read_text()
    assert re.search(r"^torch==2\.14\.1$", requirements, re.M)
    assert re.search(r"^torchvision==0\.29\.1$", requirements, re.M)
    for line in requirements.splitlines():
        if line and not line.startswith("#"):
            assert re.match(r"^[A-Za-z0-9_.-]+==[0-9][^ ]*$", line), f"not pinned: {line}"
    api = DOCKERFILES["api"].read_text()
    assert "-r /tmp/requirements-api.txt" in api and "streamlit|plotly" in api
    assert "openjdk-17-jre-headless" in api and "serve.archives" in api


def test_dashboard_image_has_no_torch() -> None:
    text = DOCKERFILES["dashboard"].read_text()
    assert "torch" not in re.sub(r"#.*", "", text)
    copied = [src for line in text.splitlines() if line.startswith("COPY") and "--from=" not in line
              for src in line.split()[1:-1]]
    assert "convlens" not in copied, "only the torch-free core modules the dashboard imports may be copied"
    assert {"convlens/__init__.py", "client", "dashboard"} <= set(copied)


def module_imports(path: Path) -> set[str]:
    """Modules a file imports when it is loaded (module level, including under ``if``/``try``; not inside
    functions, which run only on the code paths that use them): ``from a.b import c`` gives a.b and a.b.c."""
    found: set[str] = set()

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.update([node.module, *(f"{node.module}.{alias.name}" for alias in node.names)])
            elif isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.If | ast.Try):
                visit(node.body + node.orelse + [s for h in getattr(node, "handlers", []) for s in h.body])

    visit(ast.parse(path.read_text()).body)
    return found


def core_modules_loaded_by(folder: str) -> set[str]:
    """Every ``convlens/*.py`` file that loading any module of ``folder`` loads, transitively (relative paths)."""
    def source(module: str) -> Path | None:
        stem = ROOT / module.replace(".", "/")
        return next((p for p in (stem.with_suffix(".py"), stem / "__init__.py") if p.is_file()), None)

    todo = [".".join(p.relative_to(ROOT).with_suffix("").parts) for p in (ROOT / folder).rglob("*.py")]
    seen: set[Path] = set()
    while todo:
        path = source(todo.pop())
        if path is None or path in seen:
            continue
        seen.add(path)
        todo += [m for m in module_imports(path) if m.split(".")[0] in ("convlens", "client", "dashboard")]
    return {str(p.relative_to(ROOT)) for p in seen if p.parts[len(ROOT.parts)] == "convlens"}


def test_dashboard_image_copies_every_core_module_the_dashboard_loads() -> None:
    """A module the dashboard imports but the image lacks is a ModuleNotFoundError on every page in the container
    (it happened: client/http.py imports convlens.outputs while the image copied only convlens/schema.py)."""
    text = DOCKERFILES["dashboard"].read_text()
    copied = {src for line in text.splitlines() if line.startswith("COPY") and "--from=" not in line
              for src in line.split()[1:-1]}
    needed = core_modules_loaded_by("dashboard")
    assert {"convlens/outputs.py", "convlens/schema.py"} <= needed  # the scan does follow client/ into the core
    assert needed - copied == set()
    heavy = {f"{path}: {module}" for path in needed for module in module_imports(ROOT / path)
             if module.split(".")[0] in ("torch", "torchvision", "numpy")}
    assert heavy == set()


def test_hadolint_passes_on_both_dockerfiles() -> None:
    out = subprocess.run([tool("hadolint"), "--no-color", *map(str, DOCKERFILES.values())],
                         capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


def test_hadolint_does_fail_on_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM debian:latest\nRUN cd /tmp && pip install requests\n")
    out = subprocess.run([tool("hadolint"), "--no-color", str(bad)], capture_output=True, text=True, cwd=ROOT,
                         timeout=60)
    assert out.returncode != 0 and "DL3007" in out.stdout


# ---------------------------------------------------------------------- Kubernetes


def test_kubernetes_manifests_validate() -> None:
    files = sorted(str(p) for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")
    out = subprocess.run([tool("kubernetes-validate"), "--strict", "--quiet", *files], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr


def test_kubernetes_validate_does_fail_on_a_broken_manifest(tmp_path: Path) -> None:
    broken = tmp_path / "api.yaml"
    broken.write_text((K8S / "api.yaml").read_text().replace("containerPort: 8080", "containerPortt: 8080"))
    out = subprocess.run([tool("kubernetes-validate"), "--strict", "--quiet", str(broken)], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode != 0


def test_kubernetes_layout() -> None:
    docs = k8s_docs()
    kinds = {(d["kind"], d["metadata"]["name"]) for d in docs}
    assert {("Deployment", "convlens-api"), ("Service", "convlens-api"), ("HorizontalPodAutoscaler", "convlens-api"),
            ("Deployment", "convlens-dashboard"), ("Secret", "convlens-api-key"),
            ("PersistentVolumeClaim", "convlens-weights"), ("PersistentVolumeClaim", "convlens-datasets"),
            ("PersistentVolumeClaim", "convlens-models")} <= kinds
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == sorted(p.name for p in K8S.glob("*.yaml")
                                                        if p.name != "kustomization.yaml")
    by_name = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    api = by_name[("Deployment", "convlens-api")]["spec"]["template"]["spec"]
    container = api["containers"][0]
    assert container["resources"]["requests"]["nvidia.com/gpu"] == container["resources"]["limits"]["nvidia.com/gpu"]
    assert api["securityContext"]["runAsNonRoot"] is True
    assert [p["containerPort"] for p in container["ports"]] == [8080]
    env = {e["name"]: e for e in container["env"]}
    assert "CONVLENS_API_KEY_FILE" in env
    claims = {v["persistentVolumeClaim"]["claimName"] for v in api["volumes"] if "persistentVolumeClaim" in v}
    assert claims == {"convlens-weights", "convlens-datasets", "convlens-models"}
    models = next(v["name"] for v in api["volumes"] if v.get("persistentVolumeClaim", {}).get("claimName")
                  == "convlens-models")
    [mount] = [m for m in container["volumeMounts"] if m["name"] == models]
    assert env["CONVLENS_MODELS_DIR"]["value"] == mount["mountPath"] and not mount.get("readOnly", False)
    assert env["CONVLENS_MODEL_UPLOAD"]["value"] == "0"
    pvc = by_name[("PersistentVolumeClaim", "convlens-models")]["spec"]
    assert pvc["accessModes"] == ["ReadWriteMany"], "every replica serves what any of them added"
    hpa = by_name[("HorizontalPodAutoscaler", "convlens-api")]["spec"]
    assert hpa["scaleTargetRef"]["name"] == "convlens-api" and hpa["maxReplicas"] > hpa["minReplicas"]
    dash = by_name[("Deployment", "convlens-dashboard")]["spec"]["template"]["spec"]["containers"][0]
    dash_env = {e["name"]: e for e in dash["env"]}
    assert dash_env["CONVLENS_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == "convlens-api-key"
    assert dash_env["CONVLENS_URL"]["value"] == "http://convlens-api:8080"
