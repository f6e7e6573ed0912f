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


# Short words that stay lower case inside a Title Case display name.
_MINOR_WORDS = {"a", "an", "and", "as", "at", "by", "for", "in", "of", "on", "or", "the", "to"}


def test_node_display_names_are_unique_title_case_without_a_pack_prefix():
    names = [n.GET_SCHEMA().display_name for n in NODES]
    assert len(names) == len(set(names)), names
    for name in names:
        words = [w for w in name.replace("-", " ").split() if w]
        assert words[0][0].isupper(), name
        for word in words:
            assert word[0].isupper() or word in _MINOR_WORDS, f"{name!r}: {word!r} is not Title Case"
        # the category says it is Stepwise's; only the checkpoint loader names Stepwise checkpoints
        assert not name.startswith("Stepwise"), name


@pytest.mark.parametrize("node", NODES, ids=lambda n: n.__name__)
def test_every_output_is_named(node):
    schema = node.GET_SCHEMA()
    names = []
    for out in schema.outputs:
        # without a display_name the UI labels the socket with its type (MODEL, LATENT, ...), which says nothing
        assert out.display_name, f"{schema.node_id} output {out.id} has no display_name"
        assert out.display_name != out.get_io_type(), f"{schema.node_id} output {out.id} is named by its type"
        assert out.display_name == out.display_name.lower() and " " not in out.display_name, out.display_name
        names.append(out.display_name)
    assert len(names) == len(set(names)), f"{schema.node_id} has two outputs named alike: {names}"
    v1 = node.GET_NODE_INFO_V1()  # what /object_info serves: the names must reach the UI
    assert v1["output_name"] == names


@pytest.mark.parametrize("node", NODES, ids=lambda n: n.__name__)
def test_description_and_tooltips_are_sentences(node):
    schema = node.GET_SCHEMA()
    text = schema.description.strip()
    assert text[0].isupper() and text.endswith(".") and len(text.split()) >= 8, schema.description
    for item in list(schema.inputs) + list(schema.outputs):
        tip = item.tooltip.strip()
        assert tip.endswith((".", ")")) and len(tip.split()) >= 3, f"{schema.node_id}.{item.id}: {tip!r}"


# Defaults that come from the seed documents (/work/shared/seeds/*.md). Each value is quoted where it is stated.
SEED_DEFAULTS = [
    # late-step-artifact-removal.md, inference: `t = repeat(torch.tensor([500]), ...)`, `model.q_sample(x_start=x_T,
    # t=t, ...)`: the image is re-noised to timestep 500 and only the late steps are run.
    ("StepwiseLateStepRefine", "start_t", 500),
    # late-step-artifact-removal.md: "The 500-750 steps could refine the shape of the head, then 750-1000 steps refine
    # the details"; its steps count from the noisy end (training on "500-750" is `torch.randint(250, 500)`), so the
    # shape stage is t 500..250 and the detail stage t 250..0.
    ("StepwiseLateStepRefine", "split_t", 250),
    ("StepwiseSplitSigmasAtTimestep", "timestep", 250),
    # early-step-artifact-estimator.md: "I only trained and tested on just half noisy sample (e.g. 10th step out of 20)".
    ("StepwiseArtifactEarlyReject", "probe", 0.5),
    ("StepwiseArtifactEarlyReject", "steps", 20),
    # diffusion-anagrams-hybrids-sdedit.md, Part 1.6: "Below are 5 images created with a γ value of 7" (CFG).
    ("StepwiseLateStepRefine", "cfg", 7.0),
    ("StepwiseArtifactEarlyReject", "cfg", 7.0),
    # diffusion-anagrams-hybrids-sdedit.md, Part 1.8: one prompt on the image "as is", the other on it "flipped upside
    # down", and the two noise estimates are combined "by averaging them".
    ("StepwiseVisualAnagram", "view_1", "identity"),
    ("StepwiseVisualAnagram", "view_2", "flip_ud"),
    ("StepwiseVisualAnagram", "mode", "average"),
]


@pytest.mark.parametrize("node_id, input_id, seed_value", SEED_DEFAULTS,
                         ids=[f"{n}.{i}" for n, i, _ in SEED_DEFAULTS])
def test_defaults_are_the_seeds_values(node_id, input_id, seed_value):
    schema = next(n.GET_SCHEMA() for n in NODES if n.GET_SCHEMA().node_id == node_id)
    inputs = {i.id: i for i in schema.inputs}
    assert input_id in inputs, f"{node_id} has no input {input_id}"
    assert inputs[input_id].default == seed_value
    v1 = next(n for n in NODES if n.GET_SCHEMA().node_id == node_id).GET_NODE_INFO_V1()
    spec = {**v1["input"]["required"], **v1["input"].get("optional", {})}[input_id]
    assert spec[1]["default"] == seed_value  # and /object_info serves it
