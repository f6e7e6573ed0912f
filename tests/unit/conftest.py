"""The host-free tier: the repository imported as the package ``stepwise`` without ComfyUI."""

from stepwise_dev import host

host.pack()
