"""Search bench (--quick): the report's schema, finite numbers, and best-so-far curves that never go down."""

import json
import math

import pytest

from tools.usecases import search_bench as search

PROBLEMS = ("ref4", "autoencoder")  # ref4 carries the fifth-of-the-grid verdict; the autoencoder is the cheapest


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("search") / "sb.json"
    search.main(["--quick", "--problems", *PROBLEMS, "--out", str(out)])
    return out, json.loads(out.read_text())


def _numbers(value):
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return
    if isinstance(value, (int, float)):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _numbers(v)
    elif isinstance(value, list):
        for v in value:
            yield from _numbers(v)


def test_schema_and_files(report):
    out, data = report
    assert data["schema"] == search.SCHEMA
    assert set(data["problems"]) == set(PROBLEMS)
    assert {(s["problem"], s["reconstruct"]) for s in data["summary"]} == {
        (p, m) for p in PROBLEMS for m in (True, False)
    }
    for s in data["summary"]:
        assert set(s["methods"]) == set(search.METHODS)
        assert s["winner"] in search.METHODS
        assert all(len(v["best_after"]) == len(s["checkpoints"]) for v in s["methods"].values())
    assert set(data["fifth"]) == {"True", "False"}
    for f in data["fifth"].values():
        assert f["allowed"] == max(1, f["grid_evaluations"] // 5)
        assert set(f["methods"]) == set(search.STOCHASTIC)
    assert out.with_suffix(".png").stat().st_size > 0
    assert "| problem |" in out.with_suffix(".md").read_text()


def test_every_number_is_finite_and_every_run_found_a_feasible_candidate(report):
    _, data = report
    assert all(math.isfinite(x) for x in _numbers(data))
    for r in data["runs"]:
        assert r["evaluations"] == len(r["curve"]) > 0
        assert any(x is not None for x in r["curve"]), (r["problem"], r["method"], r["reconstruct"])


def test_best_so_far_curves_never_go_down_nor_lose_their_candidate(report):
    _, data = report
    for r in data["runs"]:
        seen = [x for x in r["curve"] if x is not None]
        first = next(i for i, x in enumerate(r["curve"]) if x is not None)
        assert all(x is not None for x in r["curve"][first:])
        assert all(b >= a for a, b in zip(seen, seen[1:])), (r["problem"], r["method"])
        assert seen[-1] == pytest.approx(r["best_seen"])


def test_merging_reports_of_separate_runs_keeps_every_run_and_row(report, tmp_path):
    _, data = report
    half = {
        **data,
        "problems": {"ref4": data["problems"]["ref4"]},
        "config": {**data["config"], "problems": ["ref4"]},
        "runs": [r for r in data["runs"] if r["problem"] == "ref4"],
        "summary": [s for s in data["summary"] if s["problem"] == "ref4"],
    }
    rest = {
        **data,
        "problems": {"autoencoder": data["problems"]["autoencoder"]},
        "config": {**data["config"], "problems": ["autoencoder"]},
        "runs": [r for r in data["runs"] if r["problem"] != "ref4"],
        "summary": [s for s in data["summary"] if s["problem"] != "ref4"],
        "fifth": {},
    }
    merged = search.merge([half, rest])
    assert (
        len(merged.runs) == len(data["runs"])
        and search.json_safe(merged.summary) == data["summary"]
        and set(merged.fifth) == {"True", "False"}
    )
    out = tmp_path / "merged.json"
    search.write(merged, out, search.Console(quiet=True))
    assert json.loads(out.read_text())["summary"] == data["summary"]
