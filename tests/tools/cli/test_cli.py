"""The command line: one JSON object under --json, one clear line and exit 2 on bad input."""

import json

import pytest
import torch


def test_eval_json_is_exactly_one_object_with_the_return(cli):
    proc = cli("eval", "--episodes", "3", "--seed", "5", "--judge", "fast", "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["seeds"] == [5, 6, 7]
    assert len(result["returns"]) == 3
    assert result["mean"] == pytest.approx(sum(result["returns"]) / 3)
    assert result["min"] <= result["mean"]
    assert "seed 5" in proc.stderr, "the run prints its seed"


def test_default_run_evaluates_the_bundled_controller(tmp_path, cli):
    proc = cli("--episodes", "2", "--quick", "--out", str(tmp_path / "run"), "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert (tmp_path / "run" / "report.json").is_file() and "bench" in result
    assert result["params"] == 3 * 256 + 256 + 256 * 256 + 256 + 256 + 1
    assert set(result["evaluation"]) == {"fast", "gym"}
    assert result["evaluation"]["fast"]["returns"] == pytest.approx(result["evaluation"]["gym"]["returns"], abs=1e-3)


def test_default_run_prints_a_readable_summary(tmp_path, cli):
    proc = cli("--episodes", "2", "--quick", "--out", str(tmp_path / "run"))
    assert proc.returncode == 0, proc.stderr
    assert "closed-loop return" in proc.stdout and "gym" in proc.stdout


def test_unknown_option_is_one_line(cli, assert_one_line_error):
    assert_one_line_error(cli("eval", "--frobnicate"), "--frobnicate")


def test_missing_controller_file_is_one_line(tmp_path, cli, assert_one_line_error):
    missing = tmp_path / "nope.pt"
    assert_one_line_error(cli("eval", "--controller", str(missing)), str(missing), "no such file")


@pytest.mark.parametrize("content", ["text", "foreign-dict", "pickle"])
def test_a_file_that_is_not_a_controller_is_one_line(tmp_path, content, cli, assert_one_line_error):
    path = tmp_path / "bad.pt"
    if content == "text":
        path.write_text("this is not a checkpoint\n")
    elif content == "foreign-dict":
        torch.save({"weights": torch.zeros(3)}, path)
    else:
        # A pickle that weights_only=True refuses: loading it must not run arbitrary code.
        torch.save({"obj": object.__new__(torch.nn.Linear)}, path)
    assert_one_line_error(cli("eval", "--controller", str(path)), str(path))


def test_bad_episode_count_is_one_line(cli, assert_one_line_error):
    assert_one_line_error(cli("eval", "--episodes", "0"), "positive integer")
