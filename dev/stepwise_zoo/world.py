"""The world text-to-image model's host config (the pack's ``models/world_model.py``), for the host's detection.

The pack defines the config class and never registers it; the test harness and the demo do, through this fixture
node, as for the tiny zoo. The module is the pack's own file: taken from the imported pack when there is one, else
loaded by path (it imports only the host).
"""

import importlib.util
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.realpath(__file__))))


def world_model():
    """The pack's ``models/world_model.py`` module."""
    module = sys.modules.get("stepwise.models.world_model") or sys.modules.get("stepwise_zoo_world_model")
    if module is None:
        spec = importlib.util.spec_from_file_location("stepwise_zoo_world_model",
                                                      os.path.join(REPO, "models", "world_model.py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules["stepwise_zoo_world_model"] = module
        spec.loader.exec_module(module)
    return module


def config_class():
    return world_model().config_class()
