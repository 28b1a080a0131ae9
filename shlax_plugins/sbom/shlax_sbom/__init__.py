"""shlax-plugin-sbom: what an image holds, from its package managers' own records."""
