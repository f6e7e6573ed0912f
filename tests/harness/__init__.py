"""Test and demo harness: a real ComfyUI server, the zoo, and workflow helpers."""
