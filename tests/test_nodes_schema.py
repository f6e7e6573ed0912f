"""Every node's V3 schema validates as the host's loader does, and follows the pack's conventions."""

import pytest

from stepwise.nodes import NODES


@pytest.mark.parametrize("node", NODES, ids=lambda n: n.__name__)
def test_schema_validates_like_the_loader(node):
    schema = node.GET_SCHEMA()  # the loader calls this; it validates ids, types and options
    assert schema.node_id.startswith("Stepwise") and schema.category == "stepwise"
    assert schema.description and schema.display_name
    for inp in schema.inputs:
        assert inp.tooltip, f"{schema.node_id}.{inp.id} has no tooltip"
    for out in schema.outputs:
        assert out.tooltip, f"{schema.node_id} output {out.id} has no tooltip"


def test_node_ids_are_unique():
    ids = [n.GET_SCHEMA().node_id for n in NODES]
    assert len(ids) == len(set(ids))
