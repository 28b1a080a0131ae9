"""Deprecated alias of :mod:`shlax_core.downloads` (the download-cache contract moved there).

Kept because third-party cache plugins were told to subclass ``shlax_core.caches.Cache``; it
warns once on import and will be removed in a later release. New code: ``from
shlax_core.downloads import Cache, DownloadCache``.
"""

from __future__ import annotations

import warnings

from shlax_core.downloads import Cache, DownloadCache

__all__ = ["Cache", "DownloadCache"]

warnings.warn("shlax_core.caches is deprecated: import Cache/DownloadCache from shlax_core.downloads",
              DeprecationWarning, stacklevel=2)
