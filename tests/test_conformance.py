"""The backend conformance suite (shlax_core.conformance) run against every backend shlax ships:
the two recording fakes, local (this machine, and a chroot tree with ``root``), buildah (here,
with steps run by shlax in the mounted container or by ``buildah run``, and on a remote builder
over ssh), podman and ssh. Real components: real containers, a real sshd.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from typing import Iterator

import pytest

from conftest import BUSYBOX
from fixtures_hosts import Fleet
from fixtures_registry import LocalRegistry
from fixtures_trees import busybox_tree
from shlax_core.backends import Backend
from shlax_core.builtin.local import LocalBackend
from shlax_core.conformance import BackendContract, ImageLayerContract, started
from shlax_core.plugins import Plugins
from shlax_core.testing import RecordingHost, RecordingImage, recording

#: a user and group for busybox targets, which have only root
ADD_USER = "echo 'nobody:x:65534:65534:nobody:/nonexistent:/bin/sh' >> /etc/passwd; echo 'nogroup:x:65534:' >> /etc/group"


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


@pytest.mark.slow  # chroot(1): root
class TestLocalRoot(BackendContract):
    """``root``: a chroot tree with a static busybox, users and /tmp of its own."""

    mounts = False

    @pytest.fixture(scope="class")
    @classmethod
    def backend(cls, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backend]:
        root = busybox_tree(tmp_path_factory.mktemp("chroot"))
        with started(LocalBackend, {"root": str(root)}) as backend:
            yield backend


def _plugin_backend(kind: str, name: str) -> type[Backend]:
    return Plugins().load(kind, name)


class TestBuildah(BackendContract):
    """Steps run by shlax itself in the mounted working container (a local root build)."""

    mounts = True

    @pytest.fixture(scope="class")
    @classmethod
    def backend(cls, busybox_image: str) -> Iterator[Backend]:
        with started(_plugin_backend("backend", "buildah"), {"base": busybox_image},
                     target=f"contract-{uuid.uuid4().hex[:8]}") as backend:
            assert backend.steps is not None, f"steps go through buildah run here: {backend.direct()}"
            backend.run(["sh", "-c", ADD_USER])
            yield backend


class TestFakeImageLayers(ImageLayerContract):
    @pytest.fixture
    def layer_backend(self) -> Iterator[Backend]:
        with started(recording(RecordingImage), {"base": "scratch"}) as backend:
            yield backend

    @pytest.fixture
    def transfer_repo(self) -> str:
        return "registry.fake/conformance"


class TestBuildahLayers(ImageLayerContract):
    """Layers by key in the local store, and through a real registry (plain HTTP on loopback)."""

    transfer_tls = False

    @pytest.fixture
    def layer_backend(self, busybox_image: str) -> Iterator[Backend]:
        with started(_plugin_backend("backend", "buildah"), {"base": busybox_image},
                     target=f"contract-{uuid.uuid4().hex[:8]}") as backend:
            yield backend

    @pytest.fixture
    def transfer_repo(self, registry: LocalRegistry) -> str:  # noqa: F811
        return f"{registry.host}/shlax-test/contract-{uuid.uuid4().hex[:8]}"


class TestBuildahRun(BackendContract):
    """Steps through ``buildah run`` and copies through ``buildah add``, as on a remote builder,
    rootless or with ``isolation = "oci"`` (SHLAX_BUILDAH_RUN forces it here)."""

    mounts = True

    @pytest.fixture(scope="class")
    @classmethod
    def backend(cls, busybox_image: str) -> Iterator[Backend]:
        old = os.environ.get("SHLAX_BUILDAH_RUN")
        os.environ["SHLAX_BUILDAH_RUN"] = "1"
        try:
            with started(_plugin_backend("backend", "buildah"), {"base": busybox_image},
                         target=f"contract-{uuid.uuid4().hex[:8]}") as backend:
                assert backend.steps is None
                backend.run(["sh", "-c", ADD_USER])
                yield backend
        finally:
            if old is None:
                os.environ.pop("SHLAX_BUILDAH_RUN", None)
            else:
                os.environ["SHLAX_BUILDAH_RUN"] = old


class TestBuildahRemoteBuilder(BackendContract):
    """A buildah target whose buildah runs on another machine (a real sshd with its own store)."""

    mounts = True

    @pytest.fixture(scope="class")
    @classmethod
    def backend(cls, busybox_image: str) -> Iterator[Backend]:
        from fixtures_builders import RUN, STORE, private_builder

        with private_builder() as (fleet, host):
            root, run = host.path(STORE), host.path(RUN)
            root.mkdir(parents=True)
            run.mkdir(parents=True)
            subprocess.run(["buildah", "push", "--quiet", busybox_image,
                            f"containers-storage:[overlay@{root}+{run}]{BUSYBOX}"], check=True, capture_output=True)
            options = {"base": BUSYBOX, "root": STORE, "runroot": RUN,
                       "builder": {"host": "h1", "ssh_config": str(fleet.ssh_config)}}
            with started(_plugin_backend("backend", "buildah"), options,
                         target=f"contract-{uuid.uuid4().hex[:8]}") as backend:
                backend.run(["sh", "-c", ADD_USER])
                yield backend


class TestPodman(BackendContract):
    mounts = False

    @pytest.fixture(scope="class")
    @classmethod
    def backend(cls, busybox_image: str) -> Iterator[Backend]:
        name = f"shlax-test-contract-{uuid.uuid4().hex[:8]}"
        with started(_plugin_backend("backend", "podman"),
                     {"image": busybox_image, "container": name, "remove": True}) as backend:
            backend.run(["sh", "-c", ADD_USER])
            yield backend
        assert subprocess.run(["podman", "container", "exists", name]).returncode != 0


class TestSSH(BackendContract):
    mounts = False

    @pytest.fixture(scope="class")
    @classmethod
    def backend(cls, ssh_fleet: Fleet) -> Iterator[Backend]:  # noqa: F811
        with started(_plugin_backend("backend", "ssh"),
                     {"hosts": ["h4"], "ssh_config": str(ssh_fleet.ssh_config)}) as backend:
            yield backend


class TestSSHBecome(BackendContract):
    """A login user that is not root, switching through sudo (``become``)."""

    mounts = False

    @pytest.fixture(scope="class")
    @classmethod
    def backend(cls, ssh_fleet: Fleet) -> Iterator[Backend]:  # noqa: F811
        with started(_plugin_backend("backend", "ssh"),
                     {"hosts": ["deploy@h3"], "become": True, "ssh_config": str(ssh_fleet.ssh_config)}) as backend:
            yield backend


def test_every_shipped_backend_runs_the_suite() -> None:
    """A backend added to shlax gets a conformance class here."""
    shipped = {"local", "buildah", "podman", "ssh"}
    covered = {name for name in shipped if any(name in cls.__name__.lower() for cls in BackendContract.__subclasses__())}
    assert covered == shipped, shipped - covered
    assert set(Plugins().names("backend")) >= shipped
