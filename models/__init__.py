"""Stepwise's networks, checkpoint format, synthetic world and trainer.

The ComfyUI model objects the nodes hand to the host are built from these modules.
"""
