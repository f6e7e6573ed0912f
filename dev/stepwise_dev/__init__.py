"""Stepwise's development package: the real host set up in-process, a real ComfyUI server, the browser driver,
the zoo and demo model recipes, and workflow helpers.

Shared by the tests, ``scripts/``, ``bench/`` and ``eval/`` (each puts ``dev/`` on ``sys.path``); never part of
the shipped pack, and it never imports from ``tests/``.
"""
