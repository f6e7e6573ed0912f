"""The README's measured tables are the JSON the experiments wrote (``make tables``; ``dev/stepwise_dev/tables.py``)."""

import pytest

from stepwise_dev import tables


def test_every_measured_table_in_the_readme_is_built_from_its_results():
    with open(tables.README) as f:
        text = f.read()
    found = tables.blocks(text)
    assert sorted(found) == sorted(tables.TABLES), "a table block is missing from the README"
    for name, build in tables.TABLES.items():
        assert found[name] == build(), f"README table {name!r} differs from eval/results: run make tables"


def test_a_cell_over_several_training_seeds_is_mean_and_spread():
    assert tables._cell([0.25]) == "0.25"
    assert tables._cell([0.1, 0.3, 0.2]) == "0.20 ± 0.20"
    runs = [{"a": {"b": 1.0}, "c": 10.0}, {"a": {"b": 3.0}, "c": 20.0}]
    assert tables._cells(runs, ["a.b", "c"], 1, " dB") == "2.0 ± 2.0 / 15.0 ± 10.0 dB"


def test_world_results_from_different_checkpoints_are_refused():
    one = {"runs": [{"training_seed": 0, "training_steps": 4000}]}
    two = {"runs": [{"training_seed": 0, "training_steps": 4000}, {"training_seed": 1, "training_steps": 4000}]}
    assert tables._same_seeds({"world_t2i.json": two, "world_p2p.json": two}) == two["runs"]
    with pytest.raises(ValueError, match="different checkpoints"):
        tables._same_seeds({"world_t2i.json": two, "world_p2p.json": one})


def test_a_readme_without_a_tables_block_is_refused():
    with pytest.raises(ValueError, match="no block for table"):
        tables.update("# a README without measured tables\n")
