"""The real TF Serving deployment files parse with TF Serving's own protos and agree with each other."""
import http.server
import json
import os
import re
import shutil
import subprocess
import threading
import tomllib
from pathlib import Path

import pytest
import yaml
from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from core import configs
from serving import config as config_lib
from serving.protos import BatchingParameters, MonitoringConfig
from serving.status import ServingError

DEPLOY = Path(configs.PROJECT_ROOT) / "serving" / "deploy"
IMAGE = "tensorflow/serving:2.20.0"
# compose's health check and the readiness probe: the image has bash, not curl; ready with a version AVAILABLE
HEALTH_CHECK = ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/8501 && "
                "printf 'GET /v1/models/letters HTTP/1.0\\r\\n\\r\\n' >&3 && grep -qF '\"state\": \"AVAILABLE\"' <&3"]


def load(name):
    return (DEPLOY / name).read_text()


def test_models_config():
    config = text_format.Parse(load("models.config"), model_server_config_pb2.ModelServerConfig())
    (model,) = config.model_config_list.config
    assert model.name == configs.MODEL_NAME and model.model_platform == "tensorflow"
    assert model.base_path == "/models/letters"
    assert model.model_version_policy.WhichOneof("policy_choice") == "latest"
    assert model.model_version_policy.latest.num_versions == 2
    assert set(model.version_labels) == {"stable", "canary"}
    assert config_lib.load_model_server_config(str(DEPLOY / "models.config")) == config


def test_monitoring_config():
    monitoring = text_format.Parse(load("monitoring.config"), MonitoringConfig())
    assert monitoring.prometheus_config.enable
    assert monitoring.prometheus_config.path == "/monitoring/prometheus/metrics"


def test_batching_config():
    params = text_format.Parse(load("batching.config"), BatchingParameters())
    assert params.max_batch_size.value == 32 and params.num_batch_threads.value >= 1
    assert params.HasField("batch_timeout_micros") and params.max_enqueued_batches.value > 0
    assert config_lib.Batching.from_proto(params).max_batch_size == 32


def server_args(args):
    return dict(arg[2:].split("=", 1) for arg in args)


def check_args(args):
    assert args["model_config_file"] == "/config/models.config"
    assert args["monitoring_config_file"] == "/config/monitoring.config"
    assert args["enable_batching"] == "true" and args["batching_parameters_file"] == "/config/batching.config"
    assert args["allow_version_labels_for_unavailable_models"] == "true"
    assert float(args["file_system_poll_wait_seconds"]) > 0 and float(args["model_config_file_poll_wait_seconds"]) > 0


def test_compose():
    compose = yaml.safe_load(load("docker-compose.yml"))
    service = compose["services"]["letters-serving"]
    assert service["image"] == IMAGE
    assert "127.0.0.1:8501:8501" in service["ports"] and "127.0.0.1:8500:8500" in service["ports"]
    check_args(server_args(service["command"]))
    assert any(v.startswith("../models/letters:/models/letters") for v in service["volumes"])
    # the configs' folder, not single files: a models.config replaced by a rename (letters-releases) is seen
    assert ".:/config:ro" in service["volumes"]
    assert not any(v.split(":")[0].endswith(".config") for v in service["volumes"])
    assert service["healthcheck"]["test"] == ["CMD"] + HEALTH_CHECK


def status_body(state, error_code="OK"):
    return json.dumps({"model_version_status": [{"version": "1", "state": state, "status": {
        "error_code": error_code, "error_message": ""}}]}, indent=1).encode()


def probe(port: int) -> bool:
    """The health check's command, verbatim but for its port, passes."""
    command = [arg.replace("/8501", f"/{port}") for arg in HEALTH_CHECK]
    return subprocess.run(command, timeout=10).returncode == 0


@pytest.mark.parametrize("state, error_code, healthy", [("AVAILABLE", "OK", True), ("END", "OK", False),
                                                        ("LOADING", "OK", False), ("END", "UNAVAILABLE", False)])
def test_the_health_check_passes_only_with_a_version_available(state, error_code, healthy):
    """TF Serving's GET /v1/models/letters is 200 whatever its versions' state (every version END, predict 404):
    the probe reads the state, as the compose and readiness checks run it in the tensorflow/serving image (bash).
    It matches the state exactly ("state": "AVAILABLE", as TF Serving's JSON prints it): UNAVAILABLE anywhere in
    the answer, a status's error code or message, had passed it."""
    class Status(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = status_body(state, error_code) if self.path == "/v1/models/letters" else b""
            self.send_response(200 if body else 404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Status)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        assert probe(server.server_port) == healthy
    finally:
        server.shutdown()
        server.server_close()


def test_the_health_check_reads_the_embedded_servers_model_status(tmp_path):
    """The same command against the embedded server, whose status JSON is printed as TF Serving's: ready while its
    version is AVAILABLE, not once the version's folder is removed (version 1 END, its status OK)."""
    from tests.support import serving as testing

    base = tmp_path / "letters"
    version = testing.publish_version(str(base), 1)
    with testing.start_server(base, file_system_poll_wait_seconds=0.2) as server:
        assert probe(server.port)
        shutil.rmtree(version)
        client = testing.RestClient(server.url)
        testing.wait_for(lambda: testing.statuses(client).get(1, ("",))[0] == "END")
        assert not probe(server.port)


def test_kubernetes_manifests():
    deployment = yaml.safe_load(load("k8s/deployment.yaml"))
    service = yaml.safe_load(load("k8s/service.yaml"))
    configmap = yaml.safe_load(load("k8s/configmap.yaml"))
    assert deployment["kind"] == "Deployment" and service["kind"] == "Service" and configmap["kind"] == "ConfigMap"
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == IMAGE
    check_args(server_args(container["args"]))
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"grpc": 8500, "http": 8501}
    # ready only with a version AVAILABLE, as compose's health check: the status route answers 200 for any state
    compose = yaml.safe_load(load("docker-compose.yml"))["services"]["letters-serving"]
    assert container["readinessProbe"]["exec"]["command"] == compose["healthcheck"]["test"][1:] == HEALTH_CHECK
    assert "httpGet" not in container["readinessProbe"]
    # alive while the server answers, whatever its versions' state: a pod with none AVAILABLE leaves the Service
    assert container["livenessProbe"]["httpGet"] == {"path": "/v1/models/letters", "port": "http"}
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts == {"config": "/config", "models": "/models"}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["config"]["configMap"]["name"] == configmap["metadata"]["name"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= deployment["spec"]["template"]["metadata"][
        "labels"].items()
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert {p["port"]: p["targetPort"] for p in service["spec"]["ports"]} == {8500: "grpc", 8501: "http"}
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/path"] == "/monitoring/prometheus/metrics"


def test_configmap_matches_config_files():
    configmap = yaml.safe_load(load("k8s/configmap.yaml"))
    assert configmap["data"] == {name: load(name) for name in ("models.config", "monitoring.config",
                                                                "batching.config")}


def test_model_configs_the_server_cannot_use_are_refused_naming_the_file(caplog):
    """INVALID_ARGUMENT, as TF Serving's ParseProtoTextFile and ServerCore refuse them; the parser's words are only
    logged, as protobuf's text parser logs them (they had been added to the message, which had no code)."""
    for text, message in (("model_config_list { config { name: 'letters' ", "Invalid protobuf file: 'x.config'"),
                          ("custom_model_config { }", "x.config: custom_model_config is not supported; use "
                                                      "model_config_list")):
        with pytest.raises(ServingError) as caught:
            config_lib.parse_model_server_config(text, "x.config")
        assert (caught.value.code, caught.value.message) == ("INVALID_ARGUMENT", message)
    assert "Error parsing text-format tensorflow.serving.ModelServerConfig: 1:" in caplog.text


def test_a_config_file_that_cannot_be_read_is_tensorflows_io_error(tmp_path):
    """ParseProtoTextFile's status: NOT_FOUND: <path>; No such file or directory (a Python FileNotFoundError
    had been printed: [Errno 2] No such file or directory: '<path>')."""
    missing = str(tmp_path / "nonexistent.config")
    for load_file in (config_lib.load_model_server_config, config_lib.load_monitoring_config,
                      config_lib.load_batching_parameters):
        with pytest.raises(ServingError) as caught:
            load_file(missing)
        assert caught.value.to_string() == f"NOT_FOUND: {missing}; No such file or directory"


def test_model_config_lists_are_validated_as_server_core_validates_them():
    """One entry per model name; base paths absolute or URIs (TF Serving refuses a relative --model_base_path too)."""
    for text, message in (
            ("model_config_list { config { name: 'm' base_path: '/a' } config { name: 'm' base_path: '/b' } }",
             "Illegal to list model m multiple times in config list"),
            ("model_config_list { config { name: 'm' base_path: 'models/m' } }",
             "Expected model m to have an absolute path or URI; got base_path()=models/m"),
            # ServerCore's GetPlatform and CreateStoragePathRoutes: one platform, given once, and one it serves
            ("model_config_list { config { name: 'm' base_path: '/m' } }",
             "Illegal setting neither ModelServerConfig::model_type (deprecated) nor "
             "ModelServerConfig::model_platform, model name is m"),
            ("model_config_list { config { name: 'm' base_path: '/m' model_type: TENSORFLOW "
             "model_platform: 'tensorflow' } }",
             "Illegal setting both ModelServerConfig::model_type (deprecated) and "
             "ModelServerConfig::model_platform, model name is m"),
            ("model_config_list { config { name: 'm' base_path: '/m' model_type: OTHER } }",
             "ModelServerConfig::model_type choice 2 not supported."),
            ("model_config_list { config { name: 'm' base_path: '/m' model_platform: 'onnx' } }",
             "Model m requests unsupported platform onnx")):
        with pytest.raises(ServingError) as caught:
            config_lib.parse_model_server_config(text, "x.config")
        assert (caught.value.code, caught.value.message) == ("INVALID_ARGUMENT", message)
    config_lib.parse_model_server_config("model_config_list { config { name: 'm' base_path: 'file:///srv/m' "
                                         "model_platform: 'tensorflow' } }")   # read as /srv/m
    for uri in ("gs://bucket/m", "s3://bucket/m"):   # TF Serving's Env reads them; this server has no such reader
        with pytest.raises(ServingError) as caught:
            config_lib.parse_model_server_config(f"model_config_list {{ config {{ name: 'm' base_path: '{uri}' "
                                                 "model_platform: 'tensorflow' } }")
        assert (caught.value.code, caught.value.message) == ("INVALID_ARGUMENT", (
            f"Model m's base_path {uri} is a URL: this server reads local paths only (file:///… is read as the "
            "local path); production TF Serving reads gs://, s3:// and other file systems TensorFlow has, or mount "
            "the bucket (Cloud Storage FUSE, say) and give a path in it"))
    config_lib.parse_model_server_config("model_config_list { config { name: 'm' base_path: '/m' "
                                         "model_type: TENSORFLOW } }")   # the deprecated field alone is read
    with pytest.raises(ServingError, match="absolute path or URI; got base_path\\(\\)=serving/models/letters"):
        config_lib.single_model_config("letters", "serving/models/letters")


def test_monitor_cronjob_runs_the_monitor_against_every_serving_pod():
    """Through the load-balanced Service the monitor would read one ready replica's page an hour (each TF Serving
    process counts its own requests): it reads the headless Service's name, which resolves to every serving pod,
    ready or not, and sums their pages (a page that cannot be read, a pod down, is an alarm)."""
    from pipeline.monitor import cli

    cronjob = yaml.safe_load(load("k8s/monitor/monitor-cronjob.yaml"))
    service = yaml.safe_load(load("k8s/headless-service.yaml"))
    deployment = yaml.safe_load(load("k8s/deployment.yaml"))
    assert service["kind"] == "Service" and service["spec"]["clusterIP"] == "None"
    assert service["spec"]["publishNotReadyAddresses"] is True
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert {p["port"]: p["targetPort"] for p in service["spec"]["ports"]} == {8501: "http"}
    assert cronjob["kind"] == "CronJob" and cronjob["apiVersion"] == "batch/v1"
    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid" and cronjob["spec"]["jobTemplate"]["spec"]["backoffLimit"] == 0
    pod = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    (container,) = pod["containers"]
    assert container["command"] == ["letters-monitor"]
    scripts = tomllib.loads((Path(configs.PROJECT_ROOT) / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["letters-monitor"] == "pipeline.monitor.cli:main"
    config, args, extra = cli.parse_args(container["args"])   # every flag is one the monitor takes
    assert args.metrics_url == (f"http://{service['metadata']['name']}:8501"
                                "/monitoring/prometheus/metrics") and extra == []
    assert config.metadata_path.startswith("grpc://") and args.window_seconds == 3600
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert {args.out, config.feedback_dir, os.path.dirname(args.logs)} <= mounts
    claims = {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"]}
    assert set(claims) == {m["name"] for m in container["volumeMounts"]}


def test_monitoring_and_batching_files_that_do_not_parse_are_named_as_tf_serving_names_them(tmp_path):
    import pytest
    for load, text in ((config_lib.load_monitoring_config, 'prometheus_config { enable: true pth: "/x" }'),
                       (config_lib.load_batching_parameters, "max_batch_size { value: 'many' }")):
        path = tmp_path / "bad.config"
        path.write_text(text)
        with pytest.raises(ServingError) as caught:
            load(str(path))
        assert caught.value.to_string() == f"INVALID_ARGUMENT: Invalid protobuf file: '{path}'"


def test_config_files_with_bytes_not_utf8_in_a_comment_are_read_as_tf_serving_reads_them(tmp_path):
    """ParseProtoTextFile hands protobuf's text parser the file's bytes, whose tokenizer skips a # comment to its end
    whatever its bytes: a Latin-1 comment had refused the file ('utf-8' codec can't decode byte 0xe9, naming no
    file), at start and at every poll. Bytes not UTF-8 inside a string value are refused naming the file."""
    comment = "# caf\xe9 cr\xe8me\n".encode("latin-1")
    models = tmp_path / "models.config"
    models.write_bytes(comment + b"model_config_list { config { name: 'letters' base_path: '/srv/letters' "
                       b"model_platform: 'tensorflow' } }  # \xff\n")
    assert config_lib.load_model_server_config(str(models)).model_config_list.config[0].name == "letters"
    batching = tmp_path / "batching.config"
    batching.write_bytes(comment + b"max_batch_size { value: 4 }\n")
    assert config_lib.load_batching_parameters(str(batching)).max_batch_size == 4
    models.write_bytes(b"model_config_list { config { name: 'caf\xe9' base_path: '/srv/letters' } }\n")
    with pytest.raises(ServingError) as caught:
        config_lib.load_model_server_config(str(models))
    assert caught.value.to_string() == f"INVALID_ARGUMENT: Invalid protobuf file: '{models}'"


def pod_specs(node):
    """Every pod spec (a mapping with ``containers``) in a manifest: a Deployment's template, a CronJob's job's."""
    if isinstance(node, dict):
        if "containers" in node:
            yield node
        else:
            for value in node.values():
                yield from pod_specs(value)
    elif isinstance(node, list):
        for value in node:
            yield from pod_specs(value)


def runs_as_non_root(pod, container):
    """The container's settings win over the pod's; a runAsUser given is the user (0 is root)."""
    setting = lambda name: next((context[name] for context in (container.get("securityContext") or {},  # noqa
                                                               pod.get("securityContext") or {})
                                 if name in context), None)
    user = setting("runAsUser")
    return bool(user) if user is not None else bool(setting("runAsNonRoot"))


def test_a_non_root_pod_writing_a_claim_sets_fs_group():
    """A freshly provisioned block volume's top folder is root's, mode 755; Kubernetes gives the pod's group
    ownership of it only when fsGroup is set: without one a non-root pod cannot write to a claim it mounts
    read-write (the monitor's reports: every Job would end 4)."""
    checked = 0
    for path in sorted((DEPLOY / "k8s").rglob("*.yaml")):
        for manifest in yaml.safe_load_all(path.read_text()):
            for pod in pod_specs(manifest):
                claims = {v["name"]: v["persistentVolumeClaim"] for v in pod.get("volumes", [])
                          if "persistentVolumeClaim" in v}
                for container in pod["containers"] + pod.get("initContainers", []):
                    written = [m["mountPath"] for m in container.get("volumeMounts", [])
                               if m["name"] in claims and not m.get("readOnly")
                               and not claims[m["name"]].get("readOnly")]
                    if written and runs_as_non_root(pod, container):
                        checked += 1
                        assert (pod.get("securityContext") or {}).get("fsGroup"), (
                            f"{path.name}: {container['name']} runs as a non-root user and writes {written} "
                            "without the pod's securityContext.fsGroup")
    assert checked   # the monitor's reports claim at least


def applied_folders():
    """The folders serving/README.md applies (``kubectl apply -f FOLDER/``: its *.yaml, not its sub-folders)."""
    readme = (Path(configs.PROJECT_ROOT) / "serving" / "README.md").read_text()
    folders = re.findall(r"^kubectl apply -f (\S+?)/?(?:\s|$)", readme, re.MULTILINE)
    return [Path(configs.PROJECT_ROOT) / folder for folder in folders]


def test_each_applied_folder_defines_the_claims_its_pods_mount_and_holds_no_placeholder():
    """`kubectl apply -f serving/deploy/k8s/` as the README says had applied pods mounting claims defined nowhere
    (serving pods Pending until letters-models existed) and the monitor's CronJob with its image and bucket still
    REGISTRY/letters:TAG and gs://BUCKET: every hourly Job Pending, then failed. The serving folder now defines its
    claim and holds no placeholder; the monitor's folder, applied once its placeholders are filled, defines its own."""
    folders = applied_folders()
    assert [folder.relative_to(DEPLOY).as_posix() for folder in folders] == ["k8s", "k8s/monitor"]
    every = {path for path in (DEPLOY / "k8s").rglob("*.yaml")}
    assert every == {path for folder in folders for path in folder.glob("*.yaml")}   # each file applied by one
    for folder in folders:
        manifests = [m for path in sorted(folder.glob("*.yaml")) for m in yaml.safe_load_all(path.read_text()) if m]
        defined = {m["metadata"]["name"] for m in manifests if m["kind"] == "PersistentVolumeClaim"}
        mounted = {v["persistentVolumeClaim"]["claimName"] for m in manifests for pod in pod_specs(m)
                   for v in pod.get("volumes", []) if "persistentVolumeClaim" in v}
        assert mounted and mounted <= defined, (folder, mounted - defined)
        for claim in (m for m in manifests if m["kind"] == "PersistentVolumeClaim"):
            assert claim["spec"]["accessModes"] and claim["spec"]["resources"]["requests"]["storage"]
    serving = yaml.dump([m for path in (DEPLOY / "k8s").glob("*.yaml") for m in yaml.safe_load_all(path.read_text())])
    assert "REGISTRY" not in serving and "BUCKET" not in serving
