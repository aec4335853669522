"""serve/server.py and serve/archives.py without starting Java: archives, config, clear errors."""

from __future__ import annotations

import json
import os
import time
import zipfile
from pathlib import Path

import pytest

from client import cli
from serve import archives, server


def test_archives_hold_handler_and_config_and_are_rebuilt_only_when_stale(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    [mar] = archives.build_archives(tmp_path, endpoints=("saliency",))
    with zipfile.ZipFile(mar) as z:
        names = set(z.namelist())
        manifest = json.loads(z.read("MAR-INF/MANIFEST.json"))
    assert {"attribution.py", "saliency.model-config.yaml"} <= names  # the attribution family's handler
    assert manifest["model"]["handler"] == "attribution.py" and "serializedFile" not in manifest["model"]
    built = mar.stat().st_mtime_ns
    time.sleep(0.01)
    assert archives.build_archive("saliency", tmp_path) == (mar, False)  # fresh: kept
    # A source newer than the archive (a handler or core edit) triggers a rebuild ...
    monkeypatch.setattr(archives, "sources_mtime", lambda files=None: time.time() + 60)
    assert archives.build_archive("saliency", tmp_path) == (mar, True)
    monkeypatch.undo()
    assert mar.stat().st_mtime_ns > built
    # ... and so does a different model config (the benchmark's batchSize 1).
    assert archives.build_archive("saliency", tmp_path, {"batchSize": 1})[1] is True
    assert "batchSize: 1" in (tmp_path / "saliency.model-config.yaml").read_text()
    assert archives.build_archive("saliency", tmp_path, {"batchSize": 1})[1] is False


def test_generated_config_keeps_the_security_settings(tmp_path: Path) -> None:
    ports = server.Ports(18080, 18081, 18082, 17070, 17071)
    path = server.write_config(tmp_path, ports, tmp_path / "store",
                               extra={"enable_model_api": "true", "disable_token_authorization": "true"})
    props = server.read_properties(path)
    assert props["inference_address"] == "http://127.0.0.1:18080"
    assert props["management_address"] == "http://127.0.0.1:18081"
    assert props["metrics_address"] == "http://127.0.0.1:18082"
    assert props["grpc_inference_port"] == "17070" and props["grpc_management_address"] == "127.0.0.1"
    assert props["enable_model_api"] == "false" and props["disable_token_authorization"] == "false"
    assert props["load_models"] == ",".join(f"{e}.mar" for e in archives.all_endpoints())
    assert {"classify", "saliency", "occlusion", "activations", "filters"} <= set(archives.all_endpoints())
    with pytest.raises(server.ServerError, match="must listen on 127.0.0.1"):
        server.write_config(tmp_path, ports, tmp_path, extra={"management_address": "http://0.0.0.0:8081"})


def test_ports_from_arguments_environment_and_defaults(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    for env, _ in server.PORT_ENV.values():
        monkeypatch.delenv(env, raising=False)
    assert server.Ports.resolve() == server.Ports(8080, 8081, 8082, 7070, 7071)
    monkeypatch.setenv("CONVLENS_INFERENCE_PORT", "9080")
    monkeypatch.setenv("CONVLENS_METRICS_PORT", "9082")
    assert server.Ports.resolve(metrics=9999) == server.Ports(9080, 8081, 9999, 7070, 7071)
    monkeypatch.setenv("CONVLENS_MANAGEMENT_PORT", "eighty")
    with pytest.raises(server.ServerError, match="CONVLENS_MANAGEMENT_PORT"):
        server.Ports.resolve()
    free = server.Ports.free()
    assert len(set(vars(free).values())) == 5


def test_missing_java_is_one_clear_line(tmp_path: Path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(server.ServerError, match="Java 17"):
        server.start(tmp_path / "run", server.Ports.free())
    assert cli.main(["serve", "start", "--run-dir", str(tmp_path / "run")]) == 1
    err = capsys.readouterr().err
    assert "Java 17" in err and "JAVA_HOME" in err and "Traceback" not in err


def test_status_and_stop_without_a_server(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    assert not server.status(tmp_path).running
    assert server.stop(tmp_path) is False
    # A stale server.json (the process is gone) is reported, not trusted.
    (tmp_path / "server.json").write_text(json.dumps({"pid": 999999, "pgid": 999999, "ports": vars(
        server.Ports(1, 2, 3, 4, 5))}))
    assert "stale" in server.status(tmp_path).detail
    assert cli.main(["serve", "status", "--run-dir", str(tmp_path)]) == 3
    assert "not running" in capsys.readouterr().out
    assert cli.main(["serve", "stop", "--run-dir", str(tmp_path)]) == 0
    assert not (tmp_path / "server.json").exists()


def test_a_used_port_is_reported(tmp_path: Path) -> None:
    import socket

    if server.find_java() is None:  # pragma: no cover - Java is part of the test environment
        pytest.fail("Java 17 is required for the integration tests")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        used = s.getsockname()[1]
        ports = server.Ports(used, *list(vars(server.Ports.free()).values())[1:])
        with pytest.raises(server.ServerError, match=f"port {used} .* in use"):
            server.start(tmp_path, ports)


def test_cli_call_needs_key_value_params(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    image = tmp_path / "x.png"
    image.write_bytes(b"not read")
    assert cli.main(["call", "saliency", str(image), "--param", "oops"]) == 2
    assert "KEY=VALUE" in capsys.readouterr().err


def test_cli_call_when_no_server_answers(tmp_path: Path, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("CONVLENS_KEY_FILE", str(tmp_path / "missing.json"))
    monkeypatch.delenv("CONVLENS_TOKEN", raising=False)
    port = server.Ports.free().inference
    image = tmp_path / "x.png"
    image.write_bytes(b"\x89PNG")
    assert cli.main(["call", "classify", str(image), "--url", f"http://127.0.0.1:{port}"]) == 1
    err = capsys.readouterr().err
    assert "no inference key found" in err and "unreachable" in err and "Traceback" not in err
    assert os.environ["CONVLENS_KEY_FILE"].endswith("missing.json")
