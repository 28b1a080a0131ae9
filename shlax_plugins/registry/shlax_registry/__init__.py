"""shlax beyond one machine: push images, and share the layer and download caches through an OCI registry.

- :mod:`shlax_registry.layers`: hooks that pull missing step layers (``--cache-from``), push new
  ones (``--cache-to``) and push final images (``--push``);
- :mod:`shlax_registry.downloads`: ``shlax cache export/import`` of the apt/pip/npm host caches as
  an OCI artifact of content-addressed blobs, to a registry or a tarball;
- :mod:`shlax_registry.client`: the registry HTTP API v2 over urllib (token and basic auth);
- :mod:`shlax_registry.credentials`: where credentials are found (environment, containers'
  auth.json, Docker's config.json, credential helpers);
- :mod:`shlax_registry.auth`: hands them to the client and to buildah (a private auth file).
"""
