"""The ``podman`` backend: a podman container treated as a host.

The container is created from ``image`` when it does not exist and kept running (``sleep
infinity``), so the next run finds it and checks each step in place, exactly as on an SSH host.
Steps run through ``podman exec``; files travel as a tar stream into ``tar -x`` in the container.
With ``commit``, the container is committed to an image once every step succeeded.

``shlax plan`` changes nothing: when the container does not run yet, checks run in a throw-away
container made from the image, removed afterwards.

On machines where ``podman run`` fails with the default OCI runtime (rlimits above the hard
limits, or cgroups in hybrid mode), the container is created again with ``--runtime runc`` and
ulimits within this machine's hard limits; ``runtime`` and ``run_args`` set this explicitly.
"""

from __future__ import annotations

import resource
import shutil
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

from shlax_core import names, process
from shlax_core.backends import Backend, Become, Mount, Stat
from shlax_core.errors import ShlaxError, StepFailed, Unreachable, Unsupported
from shlax_core.params import doc
from shlax_core.remote import EXTRACT_SCRIPT, STAT_SCRIPT, parse_stat

_RUNTIME_FAULTS = ("setrlimit", "hybrid mode", "cgroup", "OCI runtime error", "permission denied")
_GONE = ("no such container", "is not running", "container state improper", "can only exec into running")


@dataclass
class PodmanParams:
    image: Optional[str] = doc("image to create the container from when it does not exist", None)
    container: Optional[str] = doc("container name; default shlax-TARGET", None)
    commit: Optional[str] = doc("commit the container to this image name after every step succeeded", None)
    remove: bool = doc("remove the container at the end (with `commit`: build an image, keep no container)",
                       False)
    runtime: Optional[str] = doc("OCI runtime for `podman run` (e.g. runc); default: podman's, then runc "
                                 "if that fails on this machine", None)
    run_args: list[str] = doc('more `podman run` arguments, e.g. ["--network", "host"]', default_factory=list)

    def validate(self) -> Any:
        """Every value that reaches a podman command line, checked before anything runs."""
        if self.image is not None:
            problem = names.image_reference(self.image)
            if problem:
                return ("image", problem)
        if self.container is not None:
            problem = names.container(self.container)
            if problem:
                return ("container", problem)
        if self.commit is not None:
            problem = names.image_reference(self.commit, what="image name to commit to")
            if problem is None and "@" in self.commit:
                problem = f"{self.commit!r}: a commit takes a name and an optional :tag, not a @digest"
            if problem:
                return ("commit", problem)
        if self.runtime is not None:
            problem = names.program(self.runtime, what="runtime")
            if problem:
                return ("runtime", problem)
        for arg in self.run_args:
            if not arg.startswith("-") and arg == self.image:
                return ("run_args", "run_args are options for `podman run`; the image goes in `image`")
        return None


def podman(*args: str, check: bool = False, stdin: Optional[bytes] = None) -> process.Exec:
    return process.quiet(["podman", *args], check=check, stdin=stdin)


def fallback_args() -> list[str]:
    """runc with ulimits this machine can grant (its hard limits)."""
    nofile = min(resource.getrlimit(resource.RLIMIT_NOFILE)[1], 1 << 20)
    nproc = resource.getrlimit(resource.RLIMIT_NPROC)[1]
    nproc = 32768 if nproc == resource.RLIM_INFINITY else min(nproc, 32768)
    return ["--runtime", "runc", "--ulimit", f"nofile={nofile}:{nofile}", "--ulimit", f"nproc={nproc}:{nproc}"]


class PodmanBackend(Backend):
    """A podman container, created from an image if absent and kept running."""

    Params = PodmanParams
    supports_become = True

    def __init__(self, target: Any, params: Any, session: Any, label: Optional[str] = None):
        super().__init__(target, params, session, label=label)
        self.name = params.container or f"shlax-{target.name}"
        self._throwaway = False
        self._opened = False

    # -- lifecycle -----------------------------------------------------------------------------
    def state(self, name: str) -> Optional[str]:
        res = podman("container", "inspect", "--format", "{{.State.Status}}", "--", name)
        return res.output.strip() if res.ok else None

    def open(self) -> None:
        if shutil.which("podman") is None:
            raise ShlaxError("the podman backend needs podman", hint="install it: apt-get install podman runc")
        state = self.state(self.name)
        if self.plan and state != "running":
            self.name = f"shlax-plan-{uuid.uuid4().hex[:10]}"
            self._throwaway = True
            self._create()
        elif state == "running":
            pass
        elif state is not None:
            res = podman("start", "--", self.name)
            if not res.ok:
                raise StepFailed(f"cannot start the container {self.name}", argv=["podman", "start", self.name],
                                 returncode=res.returncode, tail=res.tail)
        else:
            self._create()
        self._opened = True

    def _create(self) -> None:
        p = self.params
        if not p.image:
            raise StepFailed(f"the container {self.name} does not exist and the target names no `image` "
                             "to create it from")
        base = ["run", "-d", f"--name={self.name}", f"--label=shlax.target={self.target.name}", "--entrypoint="]
        tries = [[*([f"--runtime={p.runtime}"] if p.runtime else [])]]
        if not p.runtime:
            tries.append(fallback_args())
        res = None
        for extra in tries:
            # run_args are the user's own options; the image comes after `--`: never an option
            argv = [*base, *extra, *p.run_args, "--", p.image, "sleep", "infinity"]
            res = podman(*argv)
            if res.ok:
                return
            podman("rm", "-f", "-t", "0", "--", self.name)
            if not any(f in "\n".join(res.tail) for f in _RUNTIME_FAULTS):
                break
        assert res is not None
        raise StepFailed(f"cannot create the container {self.name} from {p.image}",
                         argv=["podman", *res.argv[1:]], returncode=res.returncode, tail=res.tail)

    def close(self) -> None:
        if self._opened and (self._throwaway or self.params.remove):
            podman("rm", "-f", "-t", "0", "--", self.name)
        self._opened = False

    def complete(self) -> Optional[str]:
        if not self.params.commit:
            return None
        res = podman("commit", "--quiet", "--", self.name, self.params.commit)
        if not res.ok:
            raise StepFailed(f"committing {self.name} to {self.params.commit} failed",
                             argv=["podman", "commit", self.name, self.params.commit],
                             returncode=res.returncode, tail=res.tail)
        return res.output.strip().splitlines()[-1]

    # -- commands and files --------------------------------------------------------------------
    def _exec(self, argv: Sequence[str], *, env: Optional[Mapping[str, str]] = None,
              workdir: Optional[str] = None, user: Optional[str] = None, interactive: bool = False) -> list[str]:
        out = ["podman", "exec"]
        if interactive:
            out.append("-i")
        if user:
            out.append(f"--user={user}")
        if workdir:
            out.append(f"--workdir={workdir}")
        for k, v in (env or {}).items():
            out.append(f"--env={k}={v}")
        return [*out, "--", self.name, *argv]

    def _gone(self, res: process.Exec) -> None:
        if res.returncode in (125, 126, 255) and any(g in "\n".join(res.tail).lower() for g in _GONE):
            raise Unreachable(f"the container {self.name} stopped or disappeared during the step",
                              argv=["podman", "exec", self.name], returncode=res.returncode, tail=res.tail[-5:])

    def run(self, argv: Sequence[str], *, env: Optional[Mapping[str, str]] = None,
            workdir: Optional[str] = None, user: Optional[str] = None,
            mounts: Sequence[Mount] = (), stdin: Optional[bytes] = None,
            check: bool = True, capture: bool = False,
            output: Optional[Callable[[str], None]] = None, become: Optional[Become] = None) -> process.Exec:
        if mounts:  # `podman exec` cannot add mounts to a running container
            raise Unsupported(f"the podman backend cannot lend host folders to a step in the running container "
                              f"{self.name} (asked to mount {', '.join(m.target for m in mounts)})",
                              hint="a long-running container keeps its own download caches; give it volumes "
                                   "with run_args = [\"--volume\", \"SRC:DEST\"] when it is created")
        if user is None and become is not None and become.enabled:
            user = become.user or "root"  # a step's become: `podman exec --user`
        res = process.run(self._exec(argv, env=env, workdir=workdir, user=user, interactive=stdin is not None),
                          stdin=stdin, check=False, capture=capture, output=output, display=argv)
        if not res.ok:
            self._gone(res)
            if check:
                raise StepFailed(f"command exited with code {res.returncode} in {self.name}", argv=list(argv),
                                 returncode=res.returncode, tail=res.tail)
        return res

    def put_archive(self, archive: Path, dest: str, *, owner: Optional[str] = None,
                    paths: Sequence[str] = (), become: Optional[Become] = None) -> None:
        user = (become.user or "root") if become is not None and become.enabled else None
        argv = self._exec(["sh", "-c", EXTRACT_SCRIPT, "sh", dest, owner or "", *paths], interactive=True,
                          user=user)
        with open(archive, "rb") as f:
            proc = subprocess.run(argv, stdin=f, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        if proc.returncode != 0:
            tail = proc.stdout.decode("utf-8", "replace").splitlines()[-20:]
            self._gone(process.Exec(argv, proc.returncode, "", tail))
            raise StepFailed(f"extracting files under {dest} failed in {self.name}",
                             argv=["tar", "-x", "-C", dest], returncode=proc.returncode, tail=tail)

    def stat(self, path: str, become: Optional[Become] = None) -> Stat:
        user = (become.user or "root") if become is not None and become.enabled else None
        res = process.run(self._exec(["sh", "-c", STAT_SCRIPT, "sh", path], user=user), check=False, capture=True)
        if not res.ok:
            self._gone(res)
            raise StepFailed(f"cannot inspect {path} in {self.name}", argv=["stat", path],
                             returncode=res.returncode, tail=res.tail)
        return parse_stat(res.output, path)
