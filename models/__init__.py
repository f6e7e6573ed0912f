"""Stepwise's networks, checkpoint format, data readers and synthetic world (the trainers, which build on them, are
the package ``trainers/``; nothing here imports it).

The ComfyUI model objects the nodes hand to the host are built from these modules.
"""
