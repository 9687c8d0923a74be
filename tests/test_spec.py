"""The analysis file: the documented keys keep working, bad files give named, readable errors."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from analyzer.durations import parse_seconds
from analyzer.spec import SpecError, load_analyses, load_analysis, parse_analysis
from metrics.source import MetricKind
from tests.helpers import EXAMPLE, example_analysis, write_analysis


def test_design_example_file_loads_with_every_documented_key() -> None:
    spec = load_analysis(EXAMPLE)
    assert spec.name == "checkout"
    assert spec.prometheus.url == "http://127.0.0.1:9090"
    assert spec.canary == {"destination_service_name": "checkout-canary"}
    assert spec.interval == 30.0
    assert spec.alpha == 0.05
    error, latency, success = spec.metrics
    assert error.max_bad_rate() == pytest.approx(0.005)
    assert error.compare is not None and error.compare.tolerance == 0.5
    assert error.compare.margin == 0.001 and error.critical
    assert latency.kind is MetricKind.HISTOGRAM and latency.latency_threshold() == pytest.approx(
        0.5
    )
    assert success.higher_is_better and success.max_bad_rate() == pytest.approx(0.005)
    assert spec.steps == [5, 10, 50, 100]


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("500ms", 0.5), ("1m30s", 90), ("2h", 7200), (15, 15), ("1.5s", 1.5)],
)
def test_durations_as_users_write_them(text: object, seconds: float) -> None:
    assert parse_seconds(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["3x", "", "-1s", "s30", "30 parsecs", True])
def test_bad_durations_are_rejected(text: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_seconds(text)


def _error(data: dict[str, object]) -> str:
    with pytest.raises(SpecError) as info:
        parse_analysis(data, "a.yaml")
    return str(info.value)


def test_unknown_key_is_named() -> None:
    data = example_analysis()
    data["metrics"][0]["tolerence"] = 1  # type: ignore[index]
    assert "a.yaml: metrics[0].tolerence: unknown key" in _error(data)


def test_missing_key_is_named() -> None:
    data = example_analysis()
    del data["canary"]
    assert "a.yaml: canary: required key is missing" in _error(data)


def test_bad_interval_names_the_key() -> None:
    data = example_analysis()
    data["interval"] = "soon"
    assert "interval: expected a duration" in _error(data)


def test_bad_latency_slo_names_the_key() -> None:
    data = example_analysis()
    data["metrics"][1]["slo"] = {"max": "fast"}  # type: ignore[index]
    assert "metrics[1]: slo.max: expected a duration" in _error(data)


def test_rate_out_of_range_is_rejected() -> None:
    data = example_analysis()
    data["metrics"][0]["slo"] = {"max": 5}  # type: ignore[index]
    assert "slo.max: a rate must lie between 0 and 1" in _error(data)


def test_percent_rates_are_accepted() -> None:
    data = example_analysis()
    data["metrics"][0]["slo"] = {"max": "0.5%"}  # type: ignore[index]
    assert parse_analysis(data).metrics[0].max_bad_rate() == pytest.approx(0.005)


def test_metric_without_checks_is_rejected() -> None:
    data = example_analysis()
    data["metrics"][2] = {"name": "success-rate", "template": "istio-success-rate"}  # type: ignore[index]
    assert "nothing to check" in _error(data)


def test_wrong_direction_for_success_rate_is_explained() -> None:
    data = example_analysis()
    data["metrics"][2]["compare"] = {"direction": "increase"}  # type: ignore[index]
    assert "use direction: decrease" in _error(data)


def test_alpha_out_of_range_is_rejected() -> None:
    data = example_analysis()
    data["alpha"] = 1.5
    assert "alpha" in _error(data)


def test_duplicate_metric_names_are_rejected() -> None:
    data = example_analysis()
    data["metrics"][1]["name"] = "error-rate"  # type: ignore[index]
    assert "metric names must be unique: error-rate" in _error(data)


def test_bad_label_name_in_matchers_is_rejected() -> None:
    data = example_analysis()
    data["canary"] = {"bad-label": "x"}
    assert "invalid label name 'bad-label'" in _error(data)


def test_custom_queries_need_a_selector_placeholder() -> None:
    data = example_analysis()
    data["metrics"][0] = {  # type: ignore[index]
        "name": "errors",
        "query": {"total": "http_requests_total", "bad": 'http_requests_total{code="500"}'},
        "slo": {"max": 0.01},
    }
    assert "no {{ selector }} placeholder" in _error(data)


def test_custom_histogram_query_in_milliseconds() -> None:
    data = example_analysis()
    data["metrics"][1] = {  # type: ignore[index]
        "name": "latency",
        "query": {"buckets": "http_ms_bucket{ {{ selector }} }", "unit": "ms"},
        "quantile": 0.95,
        "slo": {"max": "250ms"},
    }
    metric = parse_analysis(data).metrics[1]
    assert metric.metric_query.unit_seconds == 0.001
    assert metric.effective_quantile == 0.95


def test_placeholders_in_matchers_are_filled_and_required() -> None:
    data = copy.deepcopy(example_analysis())
    data["canary"] = {"rollouts_pod_template_hash": "{{ canaryHash }}"}
    spec = parse_analysis(data)
    assert spec.placeholders() == {"canaryHash"}
    canary, _ = spec.matchers({"canaryHash": "6d4f8"})
    assert canary == {"rollouts_pod_template_hash": "6d4f8"}
    with pytest.raises(SpecError, match="needs values for canaryHash"):
        spec.matchers({})


def test_invalid_yaml_reports_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("name: x\nmetrics: [\n")
    with pytest.raises(SpecError, match=r"not valid YAML \(line"):
        load_analysis(path)


def test_invalid_yaml_reports_the_line_and_column_of_the_pure_python_parser(tmp_path: Path) -> None:
    # analysis files are read through libyaml when PyYAML has it; the error names the same place
    import yaml

    text = "name: x\nmetrics:\n  - name: a\n     bad: [\n"
    path = tmp_path / "broken.yaml"
    path.write_text(text)
    with pytest.raises(yaml.YAMLError) as pure:
        yaml.safe_load(text)
    mark = pure.value.problem_mark  # type: ignore[attr-defined]
    with pytest.raises(SpecError) as ours:
        load_analysis(path)
    assert f"(line {mark.line + 1}, column {mark.column + 1})" in str(ours.value)


def test_every_shipped_yaml_file_reads_as_the_pure_python_parser_reads_it() -> None:
    import yaml

    from analyzer.spec import safe_load_yaml

    root = Path(__file__).resolve().parent.parent
    files = [*root.glob("analyzer/examples/*.yaml"), *root.glob("examples/**/*.yaml")]
    single = 0
    for file in files:
        text = file.read_text(encoding="utf-8")
        documents = list(yaml.safe_load_all(text))
        if len(documents) == 1:  # an analysis file is one document
            assert safe_load_yaml(text) == documents[0], file
            single += 1
    assert single >= 5


def test_missing_file_is_a_spec_error(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="cannot read the analysis file"):
        load_analysis(tmp_path / "nope.yaml")


def test_folder_of_analyses_by_name(tmp_path: Path) -> None:
    data = example_analysis()
    write_analysis(tmp_path / "a.yaml", data)
    other = dict(data, name="payments")
    write_analysis(tmp_path / "b.yml", other)
    assert set(load_analyses(tmp_path)) == {"checkout", "payments"}
    write_analysis(tmp_path / "c.yaml", data)
    with pytest.raises(SpecError, match="used by another file"):
        load_analyses(tmp_path)


def test_decision_keys_default_to_the_documented_values() -> None:
    spec = parse_analysis(example_analysis())
    assert spec.beta == 0.10 and spec.pre_run_window == 3600.0
    compare = spec.metrics[0].compare
    assert compare is not None
    assert compare.effective_promote_tolerance == pytest.approx(1.5 * compare.tolerance)


def test_decision_keys_as_users_write_them() -> None:
    data = example_analysis()
    data.update({"beta": 0.05, "preRunWindow": "2h"})
    data["metrics"][0]["compare"]["promoteTolerance"] = 1.0  # type: ignore[index]
    spec = parse_analysis(data)
    assert spec.beta == 0.05 and spec.pre_run_window == 7200.0
    assert spec.metrics[0].compare is not None
    assert spec.metrics[0].compare.effective_promote_tolerance == 1.0


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"beta": 0}, "beta"),
        ({"beta": 1.5}, "beta"),
        ({"preRunWindow": "-5m"}, "preRunWindow"),
    ],
)
def test_bad_decision_keys_are_named(change: dict[str, object], key: str) -> None:
    data = example_analysis()
    data.update(change)
    with pytest.raises(SpecError, match=key):
        parse_analysis(data)


def test_promote_tolerance_below_the_tolerance_is_explained() -> None:
    data = example_analysis()
    data["metrics"][0]["compare"]["promoteTolerance"] = 0.2  # type: ignore[index]
    with pytest.raises(SpecError, match="promoteTolerance must be at least tolerance"):
        parse_analysis(data)
