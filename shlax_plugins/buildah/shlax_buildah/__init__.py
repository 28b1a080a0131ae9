"""shlax's buildah backend: each step runs in a working container and is committed as a layer."""
