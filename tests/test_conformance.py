"""The backend conformance suite (shlax_core.conformance) run against every backend shlax ships:
the two recording fakes, local (this machine, and a chroot tree with ``root``), buildah (here
and on a remote builder over ssh), podman and ssh. Real components: real containers, a real sshd.
"""

from __future__ import annotations

from typing import Iterator

import pytest

from fixtures_trees import busybox_tree
from shlax_core.backends import Backend
from shlax_core.builtin.local import LocalBackend
from shlax_core.conformance import BackendContract, started
from shlax_core.testing import RecordingHost, RecordingImage, recording


class TestFakeHost(BackendContract):
    mounts = False

    @pytest.fixture(scope="class")
    @classmethod
    def backend(cls) -> Iterator[Backend]:
        with started(recording(RecordingHost)) as backend:
            yield backend


class TestFakeImage(BackendContract):
    mounts = True

    @pytest.fixture(scope="class")
    @classmethod
    def backend(cls) -> Iterator[Backend]:
        with started(recording(RecordingImage), {"base": "scratch"}) as backend:
            yield backend


class TestLocal(BackendContract):
    mounts = False

    @pytest.fixture(scope="class")
    @classmethod
    def backend(cls) -> Iterator[Backend]:
        with started(LocalBackend) as backend:
            yield backend


class TestLocalRoot(BackendContract):
    """``root``: a chroot tree with a static busybox, users and /tmp of its own."""

    mounts = False

    @pytest.fixture(scope="class")
    @classmethod
    def backend(cls, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backend]:
        root = busybox_tree(tmp_path_factory.mktemp("chroot"))
        with started(LocalBackend, {"root": str(root)}) as backend:
            yield backend
