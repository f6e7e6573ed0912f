"""Test fixture custom node: teaches the host's model detection the tiny zoo models.

The Stepwise test harness and demo put this folder beside the pack in a throwaway ``custom_nodes``; it adds
no nodes. It is never part of the shipped pack.
"""

from comfy_api.latest import ComfyExtension, io

from .tiny import register

register()


class StepwiseZooFixture(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return []


async def comfy_entrypoint() -> StepwiseZooFixture:
    return StepwiseZooFixture()
