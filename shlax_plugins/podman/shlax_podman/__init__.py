"""shlax's podman backend: a long-running container as a host; steps through podman exec."""
