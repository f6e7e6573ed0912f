"""Stepwise: ComfyUI nodes that intervene at chosen steps of the reverse diffusion process.

ComfyUI loads this folder from ``custom_nodes/`` and calls :func:`comfy_entrypoint` (V3 schema). The
pack deliberately defines no ``NODE_CLASS_MAPPINGS``: with one present the host ignores the V3 entrypoint.
Node modules are imported when the host asks for the node list, not at import time, and nothing here
touches the network.

The entry is guarded: imported where ComfyUI is not importable (the host-free tests, tools that only need
``kernels`` and the pure parts of ``models``), the package defines no entrypoint and imports nothing of the host.
"""

try:
    from comfy_api.latest import ComfyExtension, io
except ImportError:  # not running inside ComfyUI: kernels and models stay importable on their own
    pass
else:

    class StepwiseExtension(ComfyExtension):
        async def get_node_list(self) -> list[type[io.ComfyNode]]:
            from .nodes import NODES

            return list(NODES)

    async def comfy_entrypoint() -> StepwiseExtension:
        return StepwiseExtension()
