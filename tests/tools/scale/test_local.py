"""The executor seam without a cluster: order kept, errors named, farm files checked, cells in sweep order."""

from __future__ import annotations

import pytest

from tools.pipeline import choices as pipeline_choices
from tools.scale import (
    EXECUTORS,
    Board,
    Cell,
    Episode,
    LocalExecutor,
    ScaleError,
    batched,
    make_executor,
    parse_farm,
    read_farm,
    run_cells,
    run_on_farm,
    sweep,
)
from tools.scale.executor import chunks

FARM = """
[[board]]
name = "host"
target = "x86_64"
runner = "native"

[[board]]
name = "pi4-1"
target = "cortex-a72"
runner = "ssh://pi@10.0.0.21:2222"

[[board]]
name = "a7-emulated"
target = "cortex-a7"
runner = "qemu"
"""


def test_local_executor_maps_in_order():
    assert LocalExecutor().map(lambda x: x * x, [3, 1, 2]) == [9, 1, 4]


@pytest.mark.parametrize("n, parts", [(10, 3), (3, 8), (1, 1), (12, 4)])
def test_chunks_are_contiguous_nearly_equal_and_keep_every_item(n, parts):
    cut = chunks(list(range(n)), parts)
    assert [x for part in cut for x in part] == list(range(n))
    assert len(cut) == min(n, parts)
    assert max(map(len, cut)) - min(map(len, cut)) <= 1


def test_make_executor_names_the_known_executors_and_refuses_an_address_for_local():
    assert make_executor("local").name == "local"
    with pytest.raises(ScaleError, match="unknown executor 'dask'; known: local, ray"):
        make_executor("dask")
    with pytest.raises(ScaleError, match="only with --executor ray"):
        make_executor("local", address="auto")


def test_batched_objective_scores_a_batch_as_it_scores_each_model():
    objective = batched(lambda m: float(m) * 2.0, LocalExecutor())
    assert objective.batch([1, 2, 3]) == [objective(1), objective(2), objective(3)] == [2.0, 4.0, 6.0]
    assert objective.models_sent == 3


def test_sweep_lists_cells_method_major_and_run_cells_keeps_their_order():
    cells = sweep(["grid", "gd"], [0.5, 0.25], seeds=[0, 1], targets=["x86_64"], episodes=4)
    assert [(c.method, c.keep, c.seed) for c in cells[:3]] == [("grid", 0.5, 0), ("grid", 0.5, 1), ("grid", 0.25, 0)]
    assert len(cells) == 8 and cells[0].options == {"episodes": 4}
    assert run_cells(lambda c: f"{c.method}@{c.keep}/{c.seed}", cells)[-1] == "gd@0.25/1"
    assert Cell("gd", 0.5, 2, "x86_64").to_dict() == {
        "method": "gd",
        "keep": 0.5,
        "seed": 2,
        "target": "x86_64",
        "options": {},
    }


def test_a_farm_file_lists_its_boards_with_their_resources(tmp_path):
    path = tmp_path / "farm.toml"
    path.write_text(FARM)
    farm = read_farm(path)
    assert farm.boards[1] == Board("pi4-1", "cortex-a72", "ssh://pi@10.0.0.21:2222")
    assert farm.resources() == {"board:x86_64": 1.0, "board:cortex-a72": 1.0, "board:cortex-a7": 1.0}
    assert farm.targets() == ["x86_64", "cortex-a72", "cortex-a7"]


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("", "expected one or more [[board]] tables"),
        (
            "[[board]]\nname = 'a'\ntarget = 'x86_64'\n[[board]]\nname = 'a'\ntarget = 'x86_64'\n",
            "board 'a': the name is used twice",
        ),
        ("[[board]]\nname = 'a'\ntarget = 'pdp-11'\n", "board 'a'"),
        (
            "[[board]]\nname = 'a'\ntarget = 'x86_64'\nrunner = 'telnet'\n",
            "runner 'telnet': expected one of native, qemu, auto",
        ),
        ("[[board]]\nname = 'a'\ntarget = 'x86_64'\nrunner = 'ssh://host-without-user'\n", "board 'a'"),
        ("[[board]]\nname = 'a'\ntarget = 'x86_64'\nspeed = 3\n", "unknown key(s) speed"),
        ("[[board]\n", "not TOML"),
    ],
)
def test_a_bad_farm_file_is_refused_naming_the_board(text, fragment):
    with pytest.raises(ScaleError) as err:
        parse_farm(text, "farm.toml")
    assert str(err.value).startswith("farm.toml: ") and fragment in str(err.value)


def test_a_missing_farm_file_is_named(tmp_path):
    with pytest.raises(ScaleError, match="farm file .*nope.toml"):
        read_farm(tmp_path / "nope.toml")


def test_the_command_lines_executor_choices_are_tools_scales():
    assert EXECUTORS == pipeline_choices.EXECUTORS


def test_farm_episodes_with_the_same_index_are_refused_before_ray_starts():
    farm = parse_farm("[[board]]\nname = 'a'\ntarget = 'x86_64'\n", "farm.toml")
    with pytest.raises(ScaleError, match="distinct indexes"):
        run_on_farm(farm, [Episode(0, "x86_64", 0), Episode(0, "x86_64", 1)], lambda board, episode: None)
