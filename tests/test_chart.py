"""The Helm chart (charts/verdict), rendered by a real helm: `helm lint --strict` and `helm template`
for the defaults and each switch, every object valid against the Kubernetes OpenAPI schemas
(kubernetes-validate, offline) or the Argo Rollouts CRDs, RBAC equal to the one list of verbs in
strategies/kube/permissions.py, and a values schema that rejects wrong types and unknown keys."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from analyzer.spec import load_analyses
from strategies.kube import permissions
from tests.helm import CHART, HelmError, lint, notes, template
from tests.test_serve_argo import _validate as validate_argo

# The oldest Kubernetes the chart supports (Chart.yaml kubeVersion) and the newest schemas shipped.
KUBERNETES_VERSIONS = ("1.25.0", kubernetes_validate.latest_version())
PG = {"type": "postgresql", "postgresql": {"existingSecret": "verdict-db"}}

# The test matrix of the issue: the defaults and each switch.
SWITCHES: dict[str, dict[str, Any]] = {
    "defaults": {},
    "controller-off": {"controller": {"enabled": False}},
    "strategies-on": {"strategies": {"enabled": True}},
    "replicas-3": {"replicaCount": 3, "store": PG},
    "postgresql": {"store": PG},
    "service-monitor": {"serviceMonitor": {"enabled": True, "labels": {"release": "kps"}}},
    "all-namespaces": {"controller": {"allNamespaces": True}, "strategies": {"enabled": True}},
    "namespace-list": {"controller": {"namespaces": ["shop", "payments"]}},
    "grafana": {"grafana": {"url": "http://grafana.monitoring", "existingSecret": "grafana-token"}},
    "no-token": {"apiToken": {"enabled": False}, "serviceMonitor": {"enabled": True}},
    "sqlite-emptydir": {"store": {"sqlite": {"persistence": {"enabled": False}}}},
}


def _by_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def _one(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = _by_kind(objects, kind)
    assert len(found) == 1, f"{len(found)} {kind} objects"
    return found[0]


def _container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    containers = _one(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return dict(containers[0])


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict[str, Any]]]:
    return {name: template(values) for name, values in SWITCHES.items()}


@pytest.mark.parametrize("switch", sorted(SWITCHES))
def test_helm_lint_strict_passes(switch: str) -> None:
    out = lint(SWITCHES[switch])
    assert "1 chart(s) linted, 0 chart(s) failed" in out


def test_every_rendered_object_is_valid_for_kubernetes_or_argo(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    """Each distinct object of every switch, once (the schemas take a while to load)."""
    seen: set[str] = set()
    for switch, objects in rendered.items():
        kinds = {o["kind"] for o in objects}
        assert {"Deployment", "Service", "ServiceAccount", "ConfigMap"} <= kinds, switch
        for obj in objects:
            same = obj
            if obj["kind"] == "Secret":  # its generated token differs at each render
                same = {**obj, "data": {k: "" for k in obj["data"]}}
            key = json.dumps(same, sort_keys=True)
            if key in seen:
                continue
            seen.add(key)
            if obj["apiVersion"] == "argoproj.io/v1alpha1":
                validate_argo(obj, "cluster-analysis-template-crd.yaml")
            elif obj["apiVersion"] == "monitoring.coreos.com/v1":
                _check_service_monitor(obj, objects)
            else:
                for version in KUBERNETES_VERSIONS:
                    try:
                        kubernetes_validate.validate(obj, version, strict=True)
                    except kubernetes_validate.ValidationError as error:
                        pytest.fail(f"{switch}: {obj['kind']} invalid for {version}: {error}")


def test_the_kubernetes_validation_catches_a_wrong_object() -> None:
    service = _one(template(), "Service")
    service["spec"]["portz"] = service["spec"].pop("ports")
    with pytest.raises(kubernetes_validate.ValidationError, match="portz"):
        kubernetes_validate.validate(service, KUBERNETES_VERSIONS[-1], strict=True)


def _check_service_monitor(monitor: dict[str, Any], objects: list[dict[str, Any]]) -> None:
    """No ServiceMonitor schema is available offline: check its wiring with the Service."""
    service = _one(objects, "Service")
    assert monitor["kind"] == "ServiceMonitor"
    assert monitor["metadata"]["namespace"] == service["metadata"]["namespace"]
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    ports = {p["name"] for p in service["spec"]["ports"]}
    for endpoint in monitor["spec"]["endpoints"]:
        assert endpoint["port"] in ports and endpoint["path"] == "/metrics"
        secrets = {s["metadata"]["name"]: s for s in _by_kind(objects, "Secret")}
        if "authorization" in endpoint:
            credentials = endpoint["authorization"]["credentials"]
            assert endpoint["authorization"]["type"] == "Bearer"
            assert credentials["key"] in secrets[credentials["name"]]["data"]


def test_the_defaults_deploy_a_hardened_web_provider_and_controller(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    objects = rendered["defaults"]
    deployment = _one(objects, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    container = _container(objects)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    context = container["securityContext"]
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert container["resources"]["requests"] and container["resources"]["limits"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    args = container["args"]
    assert args[0] == "serve" and "--watch" in args
    assert _flag_values(args, "--namespace") == ["verdict"]  # the release namespace
    assert "--leader-elect" not in args and not _by_kind(objects, "PodDisruptionBudget")
    assert _flag_values(args, "--store") == ["sqlite:////var/lib/verdict/runs.sqlite"]
    assert _one(objects, "PersistentVolumeClaim")["spec"]["resources"]["requests"]["storage"]
    assert deployment["spec"]["strategy"]["type"] == "Recreate"
    assert "command" not in container  # the image's ENTRYPOINT (see test_chart_image.py)
    service = _one(objects, "Service")
    assert service["spec"]["ports"][0]["targetPort"] == "http"


def _flag_values(args: list[str], flag: str) -> list[str]:
    return [args[i + 1] for i, a in enumerate(args[:-1]) if a == flag]


def test_more_than_one_replica_adds_leader_election_and_a_disruption_budget(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    objects = rendered["replicas-3"]
    args = _container(objects)["args"]
    assert "--leader-elect" in args
    assert _one(objects, "Deployment")["spec"]["replicas"] == 3
    budget = _one(objects, "PodDisruptionBudget")
    assert budget["spec"]["minAvailable"] == 1
    assert budget["spec"]["selector"]["matchLabels"].items() <= (
        _one(objects, "Deployment")["spec"]["template"]["metadata"]["labels"].items()
    )


def test_replicas_without_the_controller_elect_no_leader() -> None:
    objects = template({"replicaCount": 2, "store": PG, "controller": {"enabled": False}})
    assert "--leader-elect" not in _container(objects)["args"]
    assert _rbac(objects) == {}  # no Leases to take
    assert _one(objects, "PodDisruptionBudget")["spec"]["minAvailable"] == 1


def test_the_postgresql_store_url_comes_from_the_secret(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    objects = rendered["postgresql"]
    container = _container(objects)
    assert _flag_values(container["args"], "--store") == ["$(VERDICT_STORE_URL)"]
    env = {e["name"]: e for e in container["env"]}
    assert env["VERDICT_STORE_URL"]["valueFrom"]["secretKeyRef"] == {
        "name": "verdict-db",
        "key": "url",
    }
    assert not _by_kind(objects, "PersistentVolumeClaim")
    assert "strategy" not in _one(objects, "Deployment")["spec"]


def test_grafana_token_and_url_reach_serve(rendered: dict[str, list[dict[str, Any]]]) -> None:
    objects = rendered["grafana"]
    container = _container(objects)
    assert _flag_values(container["args"], "--grafana-url") == ["http://grafana.monitoring"]
    (token_file,) = _flag_values(container["args"], "--grafana-token-file")
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert token_file == f"{mounts['grafana-token']}/token"
    volumes = {
        v["name"]: v for v in _one(objects, "Deployment")["spec"]["template"]["spec"]["volumes"]
    }
    assert volumes["grafana-token"]["secret"]["secretName"] == "grafana-token"


def test_without_token_there_is_no_secret_no_header_and_no_token_file(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    objects = rendered["no-token"]
    assert "--token-file" not in _container(objects)["args"]
    assert not _by_kind(objects, "Secret")
    template_ = _one(objects, "ClusterAnalysisTemplate")
    assert "headers" not in template_["spec"]["metrics"][0]["provider"]["web"]
    assert "api-token" not in {a["name"] for a in template_["spec"]["args"]}
    monitor = _one(objects, "ServiceMonitor")
    assert "authorization" not in monitor["spec"]["endpoints"][0]


def test_the_generated_token_is_what_serve_reads_and_argo_sends(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    objects = rendered["defaults"]
    secret = _one(objects, "Secret")
    token = base64.b64decode(secret["data"]["token"]).decode()
    assert len(token) == 48 and token.isalnum()
    container = _container(objects)
    (token_file,) = _flag_values(container["args"], "--token-file")
    volumes = {
        v["name"]: v for v in _one(objects, "Deployment")["spec"]["template"]["spec"]["volumes"]
    }
    assert volumes["api-token"]["secret"]["secretName"] == secret["metadata"]["name"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert (
        token_file == mounts["api-token"] + "/" + volumes["api-token"]["secret"]["items"][0]["path"]
    )
    args = {a["name"]: a for a in _one(objects, "ClusterAnalysisTemplate")["spec"]["args"]}
    assert args["api-token"]["valueFrom"]["secretKeyRef"] == {
        "name": secret["metadata"]["name"],
        "key": "token",
    }
    service = _one(objects, "Service")
    assert args["verdict-url"]["value"] == (
        f"http://{service['metadata']['name']}.verdict.svc.cluster.local:"
        f"{service['spec']['ports'][0]['port']}"
    )
    assert args["analysis"]["value"] == "checkout"


def test_an_existing_api_token_secret_is_used_and_none_is_generated() -> None:
    objects = template({"apiToken": {"existingSecret": "my-token", "secretKey": "t"}})
    assert not _by_kind(objects, "Secret")
    volumes = {
        v["name"]: v for v in _one(objects, "Deployment")["spec"]["template"]["spec"]["volumes"]
    }
    assert volumes["api-token"]["secret"] == {
        "secretName": "my-token",
        "items": [{"key": "t", "path": "token"}],
    }


# ---- RBAC: equal to strategies/kube/permissions.py for each switch


def test_the_chart_carries_the_permissions_list_of_the_code() -> None:
    carried = (CHART / "files" / "permissions.json").read_text()
    assert json.loads(carried) == json.loads(permissions.as_json()), (
        "charts/verdict/files/permissions.json is stale: regenerate it with "
        "`python -m strategies.kube.permissions > charts/verdict/files/permissions.json`"
    )


def _rules(*groups: tuple[permissions.Rule, ...]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for group in groups:
        for r in group:
            rule = {
                "apiGroups": [r.api_group],
                "resources": list(r.resources),
                "verbs": list(r.verbs),
            }
            if rule not in out:
                out.append(rule)
    return out


def _rbac(objects: list[dict[str, Any]]) -> dict[tuple[str, str, str], list[dict[str, Any]]]:
    """(kind, namespace, name) -> rules of every Role and ClusterRole."""
    return {
        (o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"]): o["rules"]
        for o in objects
        if o["kind"] in ("Role", "ClusterRole")
    }


def _bindings_are_to_the_service_account(objects: list[dict[str, Any]]) -> None:
    roles = _rbac(objects)
    account = _one(objects, "ServiceAccount")["metadata"]
    bindings = [o for o in objects if o["kind"] in ("RoleBinding", "ClusterRoleBinding")]
    assert len(bindings) == len(roles)
    for binding in bindings:
        ref = binding["roleRef"]
        namespace = binding["metadata"].get("namespace", "") if ref["kind"] == "Role" else ""
        assert (ref["kind"], namespace, ref["name"]) in roles
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": account["name"], "namespace": account["namespace"]}
        ]


@pytest.mark.parametrize(
    ("switch", "expected"),
    [
        ("defaults", {("Role", "verdict", "verdict"): _rules(permissions.CONTROLLER)}),
        ("controller-off", {}),
        (
            "strategies-on",
            {
                ("Role", "verdict", "verdict"): _rules(
                    permissions.CONTROLLER, permissions.STRATEGIES
                )
            },
        ),
        (
            "replicas-3",
            {
                ("Role", "verdict", "verdict"): _rules(permissions.CONTROLLER),
                ("Role", "verdict", "verdict-leader-election"): _rules(permissions.LEADER_ELECTION),
            },
        ),
        (
            "all-namespaces",
            {
                ("ClusterRole", "", "verdict"): _rules(
                    permissions.CONTROLLER, permissions.STRATEGIES
                )
            },
        ),
        (
            "namespace-list",
            {
                ("Role", "shop", "verdict"): _rules(permissions.CONTROLLER),
                ("Role", "payments", "verdict"): _rules(permissions.CONTROLLER),
            },
        ),
    ],
)
def test_rbac_rules_equal_the_verbs_the_code_calls(
    rendered: dict[str, list[dict[str, Any]]],
    switch: str,
    expected: dict[tuple[str, str, str], list[dict[str, Any]]],
) -> None:
    objects = rendered[switch]
    assert _rbac(objects) == expected
    _bindings_are_to_the_service_account(objects)
    pod = _one(objects, "Deployment")["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is bool(expected)


def test_strategies_alone_get_their_rules_without_the_controller() -> None:
    objects = template({"controller": {"enabled": False}, "strategies": {"enabled": True}})
    assert _rbac(objects) == {("Role", "verdict", "verdict"): _rules(permissions.STRATEGIES)}
    assert "--watch" not in _container(objects)["args"]


def test_rbac_create_off_renders_no_roles() -> None:
    assert _rbac(template({"rbac": {"create": False}, "strategies": {"enabled": True}})) == {}


# ---- values: the schema, the comments, the chart README


@pytest.mark.parametrize(
    ("values", "complaint"),
    [
        ({"replicaCount": "three"}, "replicaCount"),
        ({"controller": {"enabled": "yes"}}, "enabled"),
        ({"controler": {"enabled": False}}, "controler"),
        ({"store": {"type": "mysql"}}, "type"),
        ({"store": {"sqlite": {"persistence": {"sise": "1Gi"}}}}, "sise"),
        ({"prometheus": {"url": "prometheus:9090"}}, "url"),
        ({"service": {"port": 70000}}, "port"),
        ({"controller": {"namespaces": ["Not_A_Namespace"]}}, "namespaces"),
        ({"analyses": {"x": 3}}, "analyses"),
        ({"apiToken": {"existingSecret": "Not_A_Secret"}}, "existingSecret"),
        ({"serve": {"runTTL": "1 day"}}, "runTTL"),
    ],
)
def test_the_values_schema_rejects_wrong_types_and_unknown_keys(
    values: dict[str, Any], complaint: str
) -> None:
    with pytest.raises(HelmError, match=complaint):
        template(values)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"replicaCount": 2}, "replicaCount > 1 needs store.type=postgresql"),
        ({"store": {"type": "postgresql"}}, "needs store.postgresql.existingSecret"),
        ({"grafana": {"url": "http://grafana"}}, "needs grafana.existingSecret"),
        ({"serve": {"lookBudget": 10}}, "serve.lookBudget must stay under"),
        (
            {"controller": {"allNamespaces": True, "namespaces": ["shop"]}},
            "exclude each other",
        ),
    ],
)
def test_combinations_that_cannot_work_fail_with_a_named_reason(
    values: dict[str, Any], message: str
) -> None:
    with pytest.raises(HelmError, match=message):
        template(values)


def _schema_paths(schema: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    for key, sub in schema.get("properties", {}).items():
        path = f"{prefix}{key}"
        yield path, sub
        yield from _schema_paths(sub, f"{path}.")


def _values_paths(
    values: dict[str, Any], schema: dict[str, Any], prefix: str = ""
) -> Iterator[str]:
    """Paths of values.yaml keys the schema describes (free-form maps count as one value)."""
    for key, value in values.items():
        sub = schema.get("properties", {}).get(key)
        assert sub is not None, f"values.yaml key {prefix}{key} is not in values.schema.json"
        yield f"{prefix}{key}"
        if isinstance(value, dict) and "properties" in sub:
            yield from _values_paths(value, sub, f"{prefix}{key}.")


def test_the_schema_accepts_the_defaults_and_describes_every_value() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    jsonschema.Draft7Validator(schema).validate(values)
    for path, sub in _schema_paths(schema):
        assert sub.get("description"), f"{path} has no description in values.schema.json"
        if sub.get("type") == "object" and "properties" in sub:
            assert sub.get("additionalProperties") is False, f"{path} accepts unknown keys"
    assert schema["additionalProperties"] is False


def test_every_value_is_commented_in_values_yaml() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    text = (CHART / "values.yaml").read_text().splitlines()
    values = yaml.safe_load("\n".join(text))
    documented = set(_values_paths(values, schema))
    # each key line of a described value has a comment line right above it (or a commented parent
    # group line for a group's first key)
    stack: list[tuple[int, str]] = []
    uncommented = []
    for number, line in enumerate(text):
        stripped = line.strip()
        if not stripped or stripped.startswith(("#", "-")) or ":" not in stripped:
            continue
        indent = len(line) - len(line.lstrip())
        key = stripped.split(":", 1)[0]
        while stack and stack[-1][0] >= indent:
            stack.pop()
        path = ".".join([k for _, k in stack] + [key])
        stack.append((indent, key))
        if path not in documented:
            continue
        group = yaml.safe_load(
            stripped.split(":", 1)[1] or "null"
        ) is None and not stripped.endswith(("{}", "[]"))
        above = text[number - 1].strip() if number else ""
        if not above.startswith("#") and not group:
            uncommented.append(path)
    assert not uncommented, f"values without a comment in values.yaml: {uncommented}"


def test_the_chart_readme_documents_every_value_and_the_install() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    readme = (CHART / "README.md").read_text()
    leaves = [
        path for path, sub in _schema_paths(schema) if "properties" not in sub and path != "global"
    ]
    missing = [path for path in leaves if f"`{path}`" not in readme]
    assert not missing, f"values not in charts/verdict/README.md: {missing}"
    assert "helm install verdict charts/verdict" in readme
    for rules in permissions.GROUPS.values():  # the RBAC table lists the rules of the code
        for r in rules:
            resources = ", ".join(f"`{x}`" for x in r.resources)
            group = r.api_group or '""'
            row = f"| `{group}` | {resources} | {', '.join(r.verbs)} |"
            assert row in readme, f"charts/verdict/README.md has no RBAC row {row}"


# ---- what the chart ships besides the Deployment


def test_the_default_analysis_is_the_embedded_one_and_user_analyses_replace_it(
    rendered: dict[str, list[dict[str, Any]]], tmp_path: Path
) -> None:
    embedded = Path(__file__).resolve().parent.parent / "analyzer" / "examples" / "checkout.yaml"
    assert (CHART / "files" / "checkout.yaml").read_text() == embedded.read_text(), (
        "charts/verdict/files/checkout.yaml differs from analyzer/examples/checkout.yaml: copy it"
    )
    (default,) = [
        o
        for o in _by_kind(rendered["defaults"], "ConfigMap")
        if "analyses" in o["metadata"]["name"]
    ]
    assert set(default["data"]) == {"checkout.yaml"}
    given = yaml.safe_load(embedded.read_text())
    given["name"] = "payments"
    text = "name: raw\n" + embedded.read_text().split("\nprometheus:", 1)[1].join(
        ["prometheus:", ""]
    )
    objects = template({"analyses": {"payments": given, "raw.yml": text}})
    (config,) = [o for o in _by_kind(objects, "ConfigMap") if "analyses" in o["metadata"]["name"]]
    assert set(config["data"]) == {"payments.yaml", "raw.yaml"}
    for name, body in config["data"].items():
        (tmp_path / name).write_text(body)
    assert sorted(load_analyses(tmp_path)) == ["payments", "raw"]  # valid analysis files
    args = {a["name"]: a for a in _one(objects, "ClusterAnalysisTemplate")["spec"]["args"]}
    assert args["analysis"]["value"] == "payments"
    checksums = {
        _one(o, "Deployment")["spec"]["template"]["metadata"]["annotations"]["checksum/analyses"]
        for o in (objects, rendered["defaults"])
    }
    assert len(checksums) == 2  # new analyses roll the pods


def test_the_dashboard_configmap_carries_every_dashboard_with_the_sidecar_label(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    (board,) = [
        o
        for o in _by_kind(rendered["defaults"], "ConfigMap")
        if "dashboards" in o["metadata"]["name"]
    ]
    assert board["metadata"]["labels"]["grafana_dashboard"] == "1"
    files = sorted(p.name for p in (CHART / "dashboards").glob("*.json"))
    assert sorted(board["data"]) == files and files
    for name in files:
        assert json.loads(board["data"][name]) == json.loads(
            (CHART / "dashboards" / name).read_text()
        )
    assert json.loads(board["data"]["verdict.json"])["title"].startswith("Verdict")
    off = template({"dashboards": {"enabled": False}})
    assert not [o for o in _by_kind(off, "ConfigMap") if "dashboards" in o["metadata"]["name"]]


def test_the_notes_say_how_to_check_the_install_read_the_token_and_point_a_rollout() -> None:
    text = notes()
    assert "rollout status deployment/verdict" in text and "/readyz" in text
    assert "get secret verdict-api-token" in text and "base64 -d" in text
    assert "templateName: verdict" in text and "verdict.dev/analysis=checkout" in text
    assert "prometheus.url is empty" in text
    given = notes(sets=["prometheus.url=http://prometheus.monitoring:9090"])
    assert "prometheus.url is empty" not in given
    bare = notes({"controller": {"enabled": False}, "analysisTemplate": {"enabled": False}})
    assert "templateName" not in bare and "verdict.dev/analysis" not in bare
    assert "POST http://verdict.verdict.svc.cluster.local:8080/api/v1/verdict" in bare
