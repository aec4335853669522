"""Static checks of the deployment files (no Docker engine here)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def test_compose_services_build_from_files_that_exist() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert compose["services"], "no services"
    for name, service in compose["services"].items():
        build = service.get("build")
        if build is None:
            continue
        context = ROOT / (build if isinstance(build, str) else build.get("context", "."))
        dockerfile = context / ("Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile"))
        assert dockerfile.is_file(), f"{name}: {dockerfile} missing"
        for line in dockerfile.read_text().splitlines():
            if line.startswith("COPY"):
                for src in line.split()[1:-1]:
                    assert (context / src).exists(), f"{name}: COPY source {src} missing"
        assert not service.get("privileged", False)


def test_dockerfile_pins_the_same_torch_as_the_requirements() -> None:
    requirements = (ROOT / "requirements.txt").read_text()
    assert re.search(r"^torch==2\.14\.1$", requirements, re.M)
    assert re.search(r"^torchvision==0\.29\.1$", requirements, re.M)
    assert "requirements.txt" in (ROOT / "Dockerfile").read_text()
