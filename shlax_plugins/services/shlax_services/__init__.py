"""shlax services: the recipe's ``[services.NAME]`` tables run as podman containers, pods and
networks, labelled so shlax finds its own (``shlax up``, ``down``, ``ps``, ``logs``)."""
