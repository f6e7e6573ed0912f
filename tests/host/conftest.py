"""The in-process tier: the real ComfyUI host imported in this process, with the tiny zoo."""

from stepwise_dev.fixtures import full_zoo, server, setup_host, tiny_models, zoo  # noqa: F401

setup_host()
