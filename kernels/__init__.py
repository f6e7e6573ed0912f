"""Pure tensor math for Stepwise. Nothing in this package imports ComfyUI.

Each module holds the math of one concern (σ/timestep maps, views, frequency splits, attention edits, ...)
and every public function has a reference test in ``tests/``.
"""
