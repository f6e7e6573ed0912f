"""The server tier: a real ``main.py --cpu`` server (one per session) and the host's web UI in headless Chromium."""

from stepwise_dev.fixtures import full_zoo, server, setup_host, tiny_models, zoo  # noqa: F401

setup_host()
