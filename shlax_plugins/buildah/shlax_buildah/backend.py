"""The buildah backend: steps run in a working container; each is committed as a layer.

Layers are images named ``localhost/shlax-cache:<step key>``, so ``buildah images`` shows them and
a lookup of every key of a target is one ``buildah images --json`` call; a rebuild can start from
any of them.

A local build with chroot isolation (as root, or rootless inside ``buildah unshare``) runs its steps itself in the mounted container
(:mod:`shlax_buildah.chroot`) and writes copies straight into it. Per step, buildah is asked
only to commit: the container goes on to the next step (``commit`` without ``--rm``), so a layer
holds the changes of its step and of the earlier steps since the container was made. When those
are big, the commit removes the container and the next one is made from the new layer
(:mod:`shlax_buildah.upper`). Anywhere else (a remote builder, ``isolation = "oci"``)
steps go through ``buildah run`` and ``buildah add``, and the container is made again from each
new layer, so every layer holds only its own step's changes (as ``buildah bud --layers`` does).
The final image is one more commit on the last step's layer: the target's configuration in an
empty layer of its own (see :mod:`shlax_buildah.runconfig` and docs/reproducible.md).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal, Mapping, Optional, Sequence

from shlax_core import buildinfo, inroot, names, process
from shlax_core.backends import Become, ImageBackend, Layer, Mount, Stat, Transfer
from shlax_core.cache import usage
from shlax_core.errors import ShlaxError, StepFailed
from shlax_core.imageconfig import ImageConfig
from shlax_core.params import canonical, doc
from shlax_core.process import Exec
from shlax_core.remote import CHOWN_SCRIPT, STAT_SCRIPT, parse_stat

from shlax_buildah import chroot, isolation, owners, repro, runconfig, store, transfer, upper
from shlax_buildah.cli import Buildah
from shlax_buildah.remote import BuilderSpec, SSHTransport

CACHE_REPO = "localhost/shlax-cache"
#: what a base plugin claims (``debootstrap:bookworm``, a third party's ``SOURCE:ARG``)
_SOURCE = re.compile(r"^[a-z][a-z0-9+.-]*:[^\s]+$")


def _base_problem(base: str) -> Optional[str]:
    """Checked at recipe time: "scratch", an image reference, or SOURCE:ARG for a base plugin."""
    if base == "scratch":
        return None
    from shlax_buildah import debootstrap  # here, not at import: the fast path imports this module

    if base.startswith(debootstrap.PREFIX):
        try:
            debootstrap.parse(base, None, default_mirror=lambda: None)
        except ShlaxError as exc:
            return f"{exc.message} ({exc.hint})" if exc.hint else exc.message
        return None
    if names.image_reference(base, what="base image") is None:
        return None
    if _SOURCE.match(base):
        return None
    return (names.image_reference(base, what="base image") + '; or "scratch", or SOURCE:ARG for a base '  # type: ignore[operator]
            'plugin such as "debootstrap:bookworm"')


@dataclass
class BuildahParams:
    base: str = doc('base image: "scratch", a registry reference, a local image, or "debootstrap:SUITE"')
    image: Optional[str] = doc("name of the final image; default localhost/TARGET:latest", None)
    tags: list[str] = doc('more tags for the final image; "{short_sha}", "{branch}", "latest if default_branch": '
                          "from the git/CI context (docs/ci-tags.md)", default_factory=list)
    config: ImageConfig = doc("image configuration: cmd, entrypoint, env, workdir, user, labels, ports",
                              default_factory=ImageConfig)
    isolation: Optional[Literal["oci", "chroot", "rootless"]] = doc(
        "how buildah isolates steps; default: chosen for this host (chroot where the OCI runtime cannot work)",
        None)
    root: Optional[str] = doc("buildah storage root (--root), for a separate image store", None)
    runroot: Optional[str] = doc("buildah run root (--runroot), with `root`", None)
    builder: Optional[BuilderSpec] = doc(
        'build on another machine over SSH: "user@host[:port]" or a table { host, user, port, identity, become, '
        'host_key_checking, known_hosts, ssh_config, jump, options, connect_timeout }; buildah, its image '
        'store (root/runroot there) and the download caches are the builder\'s', None)

    def validate(self) -> Any:
        """Every value that reaches a buildah command line, checked before anything runs."""
        problem = _base_problem(self.base)
        if problem:
            return ("base", problem)
        if self.image is not None:
            problem = names.image_reference(self.image)
            if problem is None and "@" in self.image:
                problem = f"{self.image!r}: the final image takes a name and an optional :tag, not a @digest"
            if problem:
                return ("image", problem)
        for tag in self.tags:
            problem = buildinfo.template_problem(tag) if buildinfo.is_template(tag) else names.tag(tag)
            if problem:
                return ("tags", problem)
        for key in ("root", "runroot"):
            value = getattr(self, key)
            problem = names.absolute_path(value, what=key) if value is not None else None
            if problem:
                return (key, problem)
        return None


def _top_layer(b: Buildah, image: str) -> tuple[Optional[str], int]:
    """(digest, size) of an image's own top layer, from its manifest (one inspect call)."""
    out = b("inspect", "--type", "image", "--format", "{{.Manifest}}", image, check=False)
    try:
        last = json.loads(out.output)["layers"][-1]
        return str(last["digest"]), int(last["size"])
    except (ValueError, KeyError, IndexError, TypeError):
        return None, 0


def _freeable_parts(b: Buildah) -> Optional[dict[str, dict[str, int]]]:
    """{image ID: {storage layer ID: bytes}} of the layers only cache images use (read from the
    store's index: buildah lists no layers); None when the index cannot be read."""
    from shlax_buildah import store

    usable, root = store.root_of(b.argv0)
    index = store.read_index(root) if usable and b.transport is None else None
    layers = store.read_layers(root) if index is not None else None
    if index is None or layers is None:
        return None
    parts = {i["id"]: store.parts(i["layer"], layers) for i in index}
    pinned: set[str] = set()
    for i in index:
        if not i["names"] or not all(n.startswith(CACHE_REPO + ":") for n in i["names"]):
            pinned.update(parts[i["id"]])
    return {image: {k: v for k, v in p.items() if k not in pinned} for image, p in parts.items()}


def _split_tag(ref: str) -> tuple[str, str]:
    last = ref.rsplit("/", 1)[-1]
    if ":" in last:
        repo, tag = ref.rsplit(":", 1)
        return repo, tag
    return ref, "latest"


def resolve_local(images: Sequence[dict[str, Any]], ref: str, buildah: Buildah) -> Optional[str]:
    """The ID of the local image ``ref`` names: from a store listing we have anyway, else one
    inspect call (short names, partial IDs). The full path and the fast path both ask this."""
    wanted = {ref, f"{ref}:latest", f"localhost/{ref}", f"localhost/{ref}:latest"}
    for image in images:
        if wanted & set(image.get("names") or []) or image["id"] == ref:
            return image["id"]
    return buildah.image_id(ref)


class BuildahBackend(ImageBackend):
    """Build an image with buildah, one cached layer per step."""

    Params = BuildahParams
    supports_become = True
    keeps_layers = True
    transfers_layers = True

    def __init__(self, target: Any, params: BuildahParams, session: Any, label: Optional[str] = None):
        super().__init__(target, params, session, label or target.name)
        # the debootstrap: base source is a hook implementation of this plugin, registered when a
        # buildah target is built (not at import: the fast path imports this module, and no more)
        from shlax_buildah import debootstrap

        pm = session.plugins.pm
        if not pm.is_registered(debootstrap):
            pm.register(debootstrap, name="backend:buildah:debootstrap")
        from shlax_buildah import stepenv  # SOURCE_DATE_EPOCH for every step (docs/reproducible.md)

        if not pm.is_registered(stepenv):
            pm.register(stepenv, name="backend:buildah:stepenv")
        # a remote builder: every buildah command rides its ssh connection (opened in open())
        self.remote = SSHTransport(params.builder, target, session) if params.builder is not None else None
        self.buildah = Buildah(params.root, params.runroot, transport=self.remote)
        self.container: Optional[str] = None
        self.isolation = isolation.choose(params.isolation) if self.remote is None else (params.isolation or "")
        self._images: Optional[list[dict[str, Any]]] = None
        self._base_ref: Optional[str] = None   # the base image's ID ("scratch" for none)
        self._base_name: Optional[str] = None  # the reference it was resolved from
        #: signatures of the host files a base source read to name the base (None: unknown)
        self.base_guards: Optional[dict[str, Any]] = None
        self._adopted: dict[str, str] = {}  # cache names still to give to pulled layers: name -> image
        #: where steps run when the working container is mounted and stepped into directly
        #: (None: through ``buildah run``); see :meth:`direct`
        self.steps: Optional[chroot.StepRoot] = None
        self._base_config: Optional[dict[str, Any]] = None
        #: the mounted working container's own changes (overlay upper folder), when steps run in
        #: it directly and the layout is known: it then goes on after a commit while they are small
        self._upper: Optional[str] = None
        #: image ID -> the cache name a working container is started from: ``buildah from`` writes
        #: the name it was given into the next image (history, base annotation), and a cache name
        #: is the same on every machine, an image's first name is not
        self._cache_name: dict[str, str] = {}

    @classmethod
    def run_under(cls, params: BuildahParams) -> Optional[list[str]]:
        """A non-root user builds inside ``buildah unshare`` (see :mod:`shlax_buildah.rootless`);
        root, a run already inside, and a remote builder need nothing."""
        from shlax_buildah import rootless

        if params.builder is not None or not rootless.needed():
            return None
        error = rootless.problem()
        if error is not None:
            raise error
        exe = shutil.which("buildah")
        if exe is None:
            raise ShlaxError("buildah is not installed", hint="apt-get install buildah (Debian/Ubuntu)")
        return rootless.command(exe)

    # -- names ---------------------------------------------------------------------------------
    def names(self) -> list[str]:
        """The final image's names: its ``image`` and its ``tags``, templates rendered from the
        git/CI context (a template the context does not fill gives no name). Never part of a key."""
        if self.target.feeds and self.params.image is None and not self.params.tags:
            return []  # a stage that only feeds other targets: its image stays in the layer cache
        image = self.params.image or f"localhost/{self.target.name}"
        repo, tag = _split_tag(image)
        templated = any(buildinfo.is_template(t) for t in self.params.tags)
        tags = [buildinfo.render(t, self.session.build_info.source) if buildinfo.is_template(t) else t
                for t in self.params.tags]
        # with templates, an image named without a tag gets no implicit :latest ("latest if
        # default_branch" says when it does), unless no tag applies at all
        first = [tag] if not templated or image.rsplit("/", 1)[-1].count(":") else []
        names = [f"{repo}:{t}" for t in dict.fromkeys([*first, *(t for t in tags if t)])]
        return names or [f"{repo}:{tag}"]

    def labels(self) -> dict[str, str]:
        """The final image's labels: the OCI provenance labels from the git/CI context and the
        pinned epoch, under the target's own ``labels`` (which win)."""
        return {**self.session.build_info.labels(), **self.params.config.labels}

    def config_data(self) -> Any:
        """What the final image's key holds besides its layers: the configuration, the labels
        from the context, and the pinned date the final commit writes."""
        return {**self.params.config.key_data(canonical(self.params.config)), "labels": self.labels(),
                "(created)": self.session.build_info.epoch}

    def log(self, line: str) -> None:
        self.session.reporter.output(line, target=self.target.name, host=self.label, index=0)

    # -- base and layers -----------------------------------------------------------------------
    def images(self, refresh: bool = False) -> list[dict[str, Any]]:
        if self._images is None or refresh:
            self._images = self.buildah.images()
            for name, image in self._adopted.items():  # pulled layers whose cache name is still to give
                self._listed(name, image)
        return self._images

    def base_key(self) -> str:
        base = self.params.base
        if base == "scratch":
            self._base_ref = self._base_name = "scratch"
            self.base_guards = {}
            return "scratch"
        # a base source plugin (debootstrap:..., or a third party's) answers first; a registry
        # or local reference is what no plugin claims. A source that wants unchanged rebuilds to
        # stay on the fast path sets ``base_guards`` (see fastpath_info)
        self.base_guards = None
        ref: Optional[str] = self.session.hook.shlax_base_image(spec=base, backend=self)
        made = ref is not None
        if ref is None:
            ref, self.base_guards = base, {}
        if self.plan:  # a plan pulls and builds nothing: it says what run would do
            image_id = self._local_image(ref)
            if image_id is None:
                how = "build" if made else "pull"
                self.base_note = f"base image {ref} is not in the local store: run will {how} it"
            elif self.session.pull and not made:
                self.session.reporter.emit("info", target=self.target.name,
                                           message=f"--pull: run pulls {ref} again first; its steps stay cached "
                                                   "only if it did not change upstream")
            self._base_ref, self._base_name = image_id, ref
            return image_id
        image_id = None if self.session.pull else self._local_image(ref)
        if image_id is None:
            if self.session.offline:
                raise ShlaxError(f"base image {base!r} is not in the local store and --offline forbids pulling",
                                 where=self.target.where_of("base"), hint=f"run once online, or: buildah pull {base}")
            self.session.reporter.emit("info", message=f"pulling {ref}", target=self.target.name)
            # TLS and credentials from the plugin owning the registry options (shlax-plugin-registry:
            # --no-tls-verify), else as buildah's registries.conf and auth files say
            how = self.session.hook.shlax_transfer(backend=self) or Transfer()
            transfer.pull_base(self.buildah, ref, how, self.log)
            image_id = self.buildah.image_id(ref)
            if image_id is None:
                raise StepFailed(f"pulled {ref} but cannot find it in the store")
        self._base_ref, self._base_name = image_id, ref
        return image_id

    # -- the no-op fast path ---------------------------------------------------------------------
    def fastpath_info(self, image: str, keys: Sequence[str]) -> Optional[dict[str, Any]]:
        """What makes the next unchanged run all cached: the base reference still resolving to
        the same ID (the first key's parent), the host files a base source read to name it, and
        the final image still holding the target's names and the final key's cache name."""
        p = self.params
        if self.remote is not None:
            return None  # a remote store: every run must really run
        if self.base_guards is None:
            return None  # a base source that did not say what its answer depends on
        return {"root": p.root, "runroot": p.runroot, "base": self._base_name, "base_id": self._base_ref,
                "base_guards": self.base_guards, "image": image,
                # a new commit, tag or SOURCE_DATE_EPOCH changes the final image's labels and date
                "context": [str(self.session.recipe_dir or ""), self.session.build_info.fingerprint()],
                "names": [*self.names(), f"{CACHE_REPO}:{keys[-1]}"]}

    @classmethod
    def fastpath_check(cls, records: Sequence[dict[str, Any]]) -> bool:
        stores: dict[tuple[Optional[str], Optional[str]], tuple[Buildah, list[dict[str, Any]]]] = {}
        contexts: dict[str, Any] = {}  # one look at git per recipe folder
        for rec in records:
            if "context" in rec:
                import json
                from pathlib import Path

                from shlax_core import buildinfo

                folder, fingerprint = rec["context"]
                if folder not in contexts:
                    now = buildinfo.of(Path(folder) if folder else None).fingerprint()
                    contexts[folder] = json.loads(json.dumps(now))
                if contexts[folder] != fingerprint:
                    return False
            if rec["base_guards"]:  # a base source's host files (imported only then: kept cheap)
                from shlax_core.filestate import signature

                if any(signature(path) != sig for path, sig in rec["base_guards"].items()):
                    return False
            where = (rec["root"], rec["runroot"])
            if where not in stores:
                b = Buildah(*where)
                stores[where] = (b, b.images())
            b, images = stores[where]
            final = next((i for i in images if i["id"] == rec["image"]), None)
            if final is None or not set(rec["names"]) <= set(final.get("names") or []):
                return False  # the full path would re-tag (or rebuild)
            if rec["base"] != "scratch" and resolve_local(images, rec["base"], b) != rec["base_id"]:
                return False  # the recipe's own base reference names another image now
        return True

    def _local_image(self, ref: str) -> Optional[str]:
        return resolve_local(self.images(), ref, self.buildah)

    def lookup(self, keys: Sequence[str], *, fresh: bool = False) -> dict[str, str]:
        wanted = {f"{CACHE_REPO}:{k}": k for k in keys}
        found = {}
        for image in self.images(refresh=fresh):
            for name in image.get("names") or []:
                if name in wanted:
                    found[wanted[name]] = image["id"]
                    self._cache_name.setdefault(image["id"], name)
        if found and not self.plan:  # a plan changes nothing, layer use times included
            usage.touch(found)
        return found

    # -- the layer-transfer protocol (shlax-plugin-registry) -------------------------------------
    def pull_layer(self, key: str, ref: str, how: Transfer) -> str:
        image = transfer.pull(self.buildah, ref, how)
        self._adopt(key, image)
        return image

    def push_layer(self, key: str, image: str, ref: str, how: Transfer) -> None:
        transfer.push_layer(self.buildah, image, ref, how)

    def push_image(self, name: str, ref: str, how: Transfer) -> str:
        return transfer.push_image(self.buildah, name, ref, how, self.log)

    def _adopt(self, key: str, image: str) -> None:
        """Take ``image`` (just pulled from a layer cache) as the layer for ``key``. Its cache name
        is given with the next ``buildah tag`` (the final image's, usually: one call instead of
        two), or at :meth:`close` when the build stops before that."""
        name = f"{CACHE_REPO}:{key}"
        self._adopted[name] = image
        self._listed(name, image)

    def _listed(self, name: str, image: str) -> None:
        """Put ``name`` on ``image`` in the in-memory listing."""
        images = self.images()
        entry = next((i for i in images if i["id"] == image), None)
        if entry is None:
            images.append({"id": image, "names": [name]})
        elif name not in (entry.get("names") or []):
            entry["names"] = [*(entry.get("names") or []), name]

    def _tag_adopted(self) -> None:
        pending, self._adopted = self._adopted, {}
        by_image: dict[str, list[str]] = {}
        for name, image in pending.items():
            by_image.setdefault(image, []).append(name)
        for image, names in by_image.items():
            self.buildah("tag", "--", image, *names, check=False)

    # -- the working container -----------------------------------------------------------------
    def direct(self) -> Optional[str]:
        """Why steps go through ``buildah run`` here, or None when shlax runs them itself in the
        mounted container: a local root build whose isolation is chroot, or left to shlax."""
        if self.remote is not None:
            return "a remote builder"
        chosen = self.params.isolation or os.environ.get("BUILDAH_ISOLATION") or "chroot"
        if chosen != "chroot":
            return f"isolation {chosen!r} asks for buildah's OCI runtime"
        if os.environ.get("SHLAX_BUILDAH_RUN"):
            return "SHLAX_BUILDAH_RUN is set"
        return chroot.available()

    def start(self, image: Optional[str], *, bare: bool = False) -> None:
        """``bare``: ``image`` was just committed from a container with the base's configuration."""
        source = image or self._base_ref or "scratch"
        name = f"shlax-{self.target.name}-{os.urandom(4).hex()}"
        self.container = name  # known before it exists: an interrupt during `from` still removes it
        claim = getattr(self, "_claim", None)
        if claim is not None:  # and a kill: the owner record names it first
            claim.container(name)
        self._facts = None  # type: ignore[assignment]
        self._rootfs: Optional[str] = None
        self._made: list[str] = []
        self.steps = None
        self._upper = None
        self._carried = False
        if source in self._adopted.values():  # pulled from a layer cache: named first, then started by name
            for cache, image_id in self._adopted.items():
                self._cache_name.setdefault(image_id, cache)
            self._tag_adopted()
        self.buildah("from", "--pull=never", f"--name={name}", "--",
                     self._cache_name.get(source) or self._base_name_of(source))
        if image is not None and not bare and image != self._base_ref:
            self._reset_config(image)
        if self.direct() is None:
            self._rootfs = self.buildah("mount", "--", name).output.strip()
            self.steps = chroot.StepRoot(self._rootfs, self._tmp, self.base_config(), container=name)
            self._upper = upper.of(self._rootfs)

    def start_env(self, name: str) -> Optional[str]:
        """The base image's environment, as its steps get it (buildah's PATH when it sets none):
        every step layer carries the base's configuration, so this is what a step starts with."""
        for item in self.base_config().get("Env") or []:
            key, _, value = item.partition("=")
            if key == name:
                return value
        return chroot.DEFAULT_PATH if name == "PATH" else None

    def _base_name_of(self, source: str) -> str:
        """The base as the recipe names it (a reference, not a store's ID) when ``source`` is it."""
        if source == self._base_ref and self._base_name and self._base_name != "scratch" \
                and self.remote is None and resolve_local(self.images(), self._base_name, self.buildah) == source:
            return self._base_name
        return source

    def base_config(self) -> dict[str, Any]:
        """The base image's run configuration: every step layer carries it, steps run with it."""
        if self._base_config is None:
            base = self._base_ref
            self._base_config = {} if base in (None, "scratch") else self._image_config(base or "")
        return self._base_config

    def _image_config(self, image: str) -> dict[str, Any]:
        usable, root = store.root_of(self.buildah.argv0) if self.remote is None else (False, None)
        config = store.image_config(root, image) if usable else None
        if config is None:
            out = self.buildah("inspect", "--type", "image", "--", image)
            data = json.loads(out.output)
            config = (data.get("OCIv1") or {}).get("config") or {}
            health = ((data.get("Docker") or {}).get("config") or {}).get("Healthcheck")
            if health:  # only a Docker-format image has one
                config = {**config, "Healthcheck": health}
        return config

    def _reset_config(self, image: str) -> None:
        """A layer that was also a final image carries the target's configuration: set the new
        working container back to the base's before anything is committed from it."""
        args = runconfig.reset_args(runconfig.normal(self._image_config(image)),
                                    runconfig.normal(self.base_config()))
        if args:
            self.buildah("config", *args, "--", self.container or "")

    # -- mount points ---------------------------------------------------------------------------
    # `buildah run -v` creates a missing mount point (an empty file or folder) in the container,
    # and a commit would keep it. Mount points that did not exist before are removed again before
    # each commit, so nothing of a lent cache, not even its empty folder, reaches a layer.

    def _note_mountpoints(self, mounts: Sequence[Mount]) -> None:
        if not mounts or os.geteuid() != 0:
            return
        if self._rootfs is None:
            self._rootfs = self.buildah("mount", self.container or "").output.strip()
        for m in mounts:
            target = path = m.target.rstrip("/")
            top = None  # the highest missing component: buildah creates it and what is below
            while path not in ("", "/") and not os.path.lexists(self._rootfs + path):
                top, path = path, os.path.dirname(path)
            if top is not None:
                self._made.append((target, top))

    def _drop_mountpoints(self) -> None:
        """Remove the empty files and folders buildah made for mounts, from each mount point up to
        the highest folder it had to create; anything not empty is left alone."""
        if self.steps is not None:
            self.steps.drop_mountpoints()
        root = getattr(self, "_rootfs", None)
        for target, top in sorted(set(getattr(self, "_made", [])), key=lambda t: -len(t[0])):
            path = target
            while True:
                full = root + path
                try:
                    if os.path.isdir(full) and not os.path.islink(full):
                        os.rmdir(full)
                    elif os.path.lexists(full) and os.lstat(full).st_size == 0:
                        os.unlink(full)
                except OSError:
                    break
                if path == top:
                    break
                path = os.path.dirname(path)
        self._made = []

    def _remove_container(self) -> bool:
        """Remove the working container; False when buildah could not (a later sweep retries)."""
        if self.container:
            name, self.container = self.container, None
            return self.buildah("rm", "--", name, check=False).ok
        return True

    def open(self) -> None:
        self._tmp = ""
        if self.remote is not None:
            self.remote.open(self.buildah.argv0)
            self.isolation = self.isolation or self.remote.isolation()
            return
        # what killed runs left (SIGKILL, crash, power cut) goes first, and is reported; a plan
        # changes nothing: it only says what the run will remove
        for line in self.clean_orphans(dry_run=self.plan):
            self.session.reporter.emit("warning", message=line, target=self.target.name)
        # buildah's own temporary files (``buildahNNN`` folders for run, add, commit) go in a
        # folder of ours, removed at close: a buildah stopped by an interrupt cannot leave them
        # in /var/tmp. Beside /var/tmp (or $TMPDIR), not in /tmp, which may be a small tmpfs.
        # The owner record names it before it exists, so a kill at any moment leaves it findable.
        self._claim = owners.Claim(self.params.root, self.params.runroot)
        tmp = os.path.join(os.environ.get("TMPDIR") or "/var/tmp", owners.TMP_PREFIX + os.urandom(6).hex())
        self._claim.folder(tmp)
        os.mkdir(tmp, 0o700)
        self._tmp = tmp
        self.buildah.env = {**os.environ, "TMPDIR": self._tmp}

    def close(self) -> None:
        removed = False
        try:
            if self._adopted:  # the build stopped before the final tag: keep what was pulled
                self._tag_adopted()
            if self.remote is not None:
                self.remote.stop()  # a step an interrupt left running there holds the container
            removed = self._remove_container()
        finally:
            if self.remote is not None:
                self.remote.close()
            tmp, self._tmp = getattr(self, "_tmp", None), None
            if tmp:
                shutil.rmtree(tmp, ignore_errors=True)
            claim = getattr(self, "_claim", None)
            if claim is not None and removed:
                claim.release()

    @classmethod
    def clean_orphans(cls, dry_run: bool = False) -> list[str]:
        """Remove the working containers and temporary folders of shlax processes that were
        killed before their cleanup (never those of a live one); one line per process."""

        def remove(record: dict[str, Any], name: str) -> bool:
            b = Buildah(record.get("root"), record.get("runroot"))
            if dry_run:
                return b("inspect", "--type", "container", "--", name, check=False).ok
            return b("rm", "--", name, check=False).ok

        return owners.sweep(remove, dry_run=dry_run)

    def run(self, argv: Sequence[str], *, env: Optional[Mapping[str, str]] = None,
            workdir: Optional[str] = None, user: Optional[str] = None,
            mounts: Sequence[Mount] = (), stdin: Optional[bytes] = None,
            check: bool = True, capture: bool = False,
            output: Optional[Callable[[str], None]] = None, become: Optional[Become] = None) -> Exec:
        if self.container is None:
            raise RuntimeError("buildah backend: run() before start()")
        if user is None and become is not None and become.enabled:
            user = become.user or "root"  # a step's become: that user inside the container
        if self.steps is not None:
            wrapped = self.steps.argv(argv, env=env, workdir=workdir, user=user, mounts=mounts)
            return process.run(wrapped, output=output, check=check, capture=capture, display=argv, stdin=stdin)
        args = ["run", f"--isolation={self.isolation}"]
        for key, value in (env or {}).items():
            args.append(f"--env={key}={value}")
        if workdir:
            args.append(f"--workingdir={workdir}")
        if user:
            args.append(f"--user={user}")
        if self.remote is not None:  # the builder's own cache folders; small files uploaded
            mounts = self.remote.mounts(mounts)
        else:
            self._note_mountpoints(mounts)
        for m in mounts:
            args.append(f"--volume={m.source}:{m.target}:{'ro' if m.readonly else 'rw'}")
        args += [self.container, "--", *argv]
        try:
            return self.buildah.stream(args, output=output, check=check, capture=capture, display=argv,
                                       stdin=stdin)
        except StepFailed as exc:
            problem = isolation.runtime_failure(exc.tail)
            if problem:
                raise ShlaxError(
                    f"buildah cannot run containers with isolation {self.isolation!r} here: {problem}",
                    where=self.target.where_of("isolation"),
                    hint='set isolation = "chroot" in the target (or BUILDAH_ISOLATION=chroot)') from None
            raise

    def put_archive(self, archive: Path, dest: str, *, owner: Optional[str] = None,
                    paths: Sequence[str] = (), become: Optional[Become] = None) -> None:
        # `buildah add` writes into the container's root as root: become changes nothing here.
        # It extracts a local tar archive keeping its members' owners: its --chown does not
        # reach what an archive holds, so the owner is applied afterwards
        if self.steps is not None:  # the container is mounted here: written in place, confined
            try:
                inroot.extract(str(archive), self.steps.root, dest, chown=True)
            except inroot.PathError as exc:
                raise StepFailed(f"cannot write under {dest}: {exc.message}", argv=["tar", "-x", "-C", dest]) \
                    from None
            except OSError as exc:
                raise StepFailed(f"cannot write under {dest}: {exc.strerror} ({exc.filename})",
                                 argv=["tar", "-x", "-C", dest]) from None
        elif self.remote is None:
            self.buildah("add", "--", self.container or "", str(archive), dest)
        else:
            remote = self.remote.upload(archive, "archive.tar")
            try:
                self.buildah("add", "--", self.container or "", remote, dest)
            finally:
                self.remote.remove(remote)
        if owner and paths:
            self._chown(owner, list(paths))

    def _chown(self, owner: str, paths: list[str]) -> None:
        """``chown -h`` in the container. Here as root, through the mounted root folder (names from
        the image's own tables, paths confined to it: no tool needed in the image); otherwise with
        the image's own chown."""
        if self.remote is None and os.geteuid() == 0:
            if self._rootfs is None:
                self._rootfs = self.buildah("mount", self.container or "").output.strip()
            try:
                inroot.chown(self._rootfs, owner, paths)
            except inroot.PathError as exc:
                raise StepFailed(f"cannot give {owner} the copied files: {exc.message}",
                                 argv=["chown", "-h", owner, *paths[:3]]) from None
            return
        for i in range(0, len(paths), 500):  # keep each command line short
            self.run(["sh", "-c", CHOWN_SCRIPT, "sh", owner, *paths[i:i + 500]], capture=True)

    def stat(self, path: str, become: Optional[Become] = None) -> Stat:
        out = self.run(["sh", "-c", STAT_SCRIPT, "sh", path], check=False, capture=True, become=become)
        if not out.ok:
            raise StepFailed(f"cannot inspect {path} in the working container", argv=["stat", path],
                             returncode=out.returncode, tail=out.tail)
        return parse_stat(out.output, path)

    # -- commits -------------------------------------------------------------------------------
    def commit(self, key: str, meta: Mapping[str, str]) -> str:
        assert self.container is not None
        name = f"{CACHE_REPO}:{key}"
        self._drop_mountpoints()
        # the mounted container goes on to the next step while what it holds of its own is small
        # (one process a step: the commit); after a big step, --rm and a container made from the
        # new layer, so later layers do not repeat its files (see shlax_buildah.upper). Layers are
        # dated LAYER_EPOCH (docs/reproducible.md)
        keep = self._upper is not None and not upper.big(self._upper)
        out = self.buildah("commit", *repro.commit_args(buildinfo.LAYER_EPOCH), "--quiet",
                           *(() if keep else ("--rm",)), "--", self.container, name)
        image_id = out.output.strip().splitlines()[-1]
        usage.touch([key], image=image_id, **{k: v for k, v in meta.items() if k in ("target", "step")})
        self._cache_name[image_id] = name
        self._last_layer, self._carried = image_id, keep
        if keep:
            self._facts = None  # type: ignore[assignment]  # read again after a step, as in a new container
        else:
            self.container = None
            self.start(image_id, bare=True)
        return image_id

    # -- copies from other images (stages) -------------------------------------------------------
    def image_of(self, ref: str) -> Optional[str]:
        image_id = self._local_image(ref)
        if image_id is None and not self.plan:
            if self.session.offline:
                raise ShlaxError(f"image {ref!r} is not in the local store and --offline forbids pulling",
                                 hint=f"run once online, or: buildah pull {ref}")
            self.session.reporter.emit("info", message=f"pulling {ref}", target=self.target.name)
            verify = self.session.options.get("tls_verify", True) and self.params.tls_verify
            self.buildah.stream(["pull", f"--tls-verify={str(bool(verify)).lower()}", "--", ref], output=self.log)
            image_id = self.buildah.image_id(ref)
            if image_id is None:
                raise StepFailed(f"pulled {ref} but cannot find it in the store")
        return image_id

    def copy_from(self, image: str, sources: Sequence[str], dest: str, *, owner: Optional[str] = None,
                  mode: Optional[str] = None) -> None:
        """``buildah copy --from`` a container of ours made from ``image``: named before it exists
        and in the owner record, so a failure, an interrupt or a kill never leaves it behind."""
        assert self.container is not None
        name = f"shlax-{self.target.name}-from-{os.urandom(4).hex()}"
        claim = getattr(self, "_claim", None)
        if claim is not None:
            claim.add_container(name)
        try:
            self.buildah("from", "--pull=never", f"--name={name}", "--", image)
            args = ["copy", "--quiet", f"--from={name}"]
            if owner:
                args.append(f"--chown={owner}")
            if mode:
                args.append(f"--chmod={mode}")
            self.buildah(*args, "--", self.container, *sources, dest)
        finally:
            if self.buildah("rm", "--", name, check=False).ok and claim is not None:
                claim.drop_container(name)

    def merges_last_step(self) -> bool:
        """Never: the last step is committed as a layer like every other (dated
        ``LAYER_EPOCH``), and the configuration on top of it, dated with the pinned epoch, in an
        empty layer of its own. A configuration change (a label, a new commit's date) then
        rebuilds only that commit, and gives the image a build from scratch gives
        (docs/reproducible.md)."""
        return False

    def finish(self, key: str, meta: Mapping[str, str], also: Sequence[str] = ()) -> str:
        assert self.container is not None
        if getattr(self, "_carried", False):
            # the configuration layer holds nothing: not the small steps the container carried
            # (a configuration-only rebuild starts from the last layer too: the same image)
            self._remove_container()
            self.start(self._last_layer, bare=True)
        config = self.config_args()
        if config:
            self.buildah("config", *config, "--", self.container)
        c: ImageConfig = self.params.config
        if c.healthcheck is not None and c.image_format == "oci":
            self.session.reporter.emit("warning", target=self.target.name, message=(
                "HEALTHCHECK is not supported for OCI image format and will be ignored: the healthcheck of "
                "config is left out of the image (leave config.format unset, or set it to \"docker\", to keep it)"))
        name = f"{CACHE_REPO}:{key}"
        self._drop_mountpoints()
        out = self.buildah("commit", *repro.commit_args(self.session.build_info.epoch), "--quiet", "--rm",
                           f"--format={c.image_format}", "--", self.container, name)
        self.container = None
        image_id = out.output.strip().splitlines()[-1]
        if also:
            usage.touch(also, image=image_id, target=meta.get("target"), step="last step")
        usage.touch([key], image=image_id, target=meta.get("target"), step="image")
        self.tag(image_id, extra=[f"{CACHE_REPO}:{k}" for k in also], new=True)
        return image_id

    def config_args(self) -> list[str]:
        c: ImageConfig = self.params.config
        args: list[str] = []
        if c.entrypoint is not None:
            args.append(f"--entrypoint={json.dumps(c.entrypoint)}")
        if c.cmd is not None:
            args.append(f"--cmd={json.dumps(c.cmd)}")
        for k, v in c.env.items():
            args.append(f"--env={k}={v}")
        if c.workdir:
            args.append(f"--workingdir={c.workdir}")
        if c.user:
            args.append(f"--user={c.user}")
        for k, v in self.labels().items():
            args.append(f"--label={k}={v}")
        for port in c.ports:
            args.append(f"--port={port}")
        if c.healthcheck is not None:
            args += runconfig.healthcheck_args(c.healthcheck.argv, c.healthcheck.interval, c.healthcheck.timeout,
                                               c.healthcheck.start_period, c.healthcheck.retries)
        elif c.image_format == "docker":
            # a Docker-format base's check, which step layers (OCI) do not carry up to here
            inherited = runconfig.normal(self.base_config())["healthcheck"]
            if inherited is not None:
                args += runconfig.healthcheck_args(inherited["test"], inherited["Interval"], inherited["Timeout"],
                                                   inherited["StartPeriod"], inherited["Retries"])
        if c.stop_signal is not None:
            args.append(f"--stop-signal={c.stop_signal}")
        for volume in c.volumes:
            args.append(f"--volume={volume}")
        return args

    def tag(self, image: str, extra: Sequence[str] = (), new: bool = False) -> None:
        """Give ``image`` the target's names (and ``extra`` ones) in one call, skipping names it
        already has; ``new``: just committed, so it has none yet."""
        have: set[str] = set()
        if not new:
            for entry in self.images():
                if entry["id"] == image:
                    have = set(entry.get("names") or [])
        adopted = [n for n, i in self._adopted.items() if i == image]
        have -= set(adopted)  # known to the in-memory listing, not yet to the store
        missing = list(dict.fromkeys(n for n in [*adopted, *extra, *self.names()] if n not in have))
        if missing:
            self.buildah("tag", "--", image, *missing)
            for n in adopted:
                self._adopted.pop(n, None)
        if self._adopted:
            self._tag_adopted()

    # -- cache maintenance (shlax cache ls / prune) --------------------------------------------
    @classmethod
    def list_layers(cls) -> list[Layer]:
        """Every ``localhost/shlax-cache:KEY`` name in the store, made under any SHLAX_CACHE_DIR.

        ``size`` is the layer's own bytes (what its working container changed), not the image's: a cache image
        holds its parents too, and counting them again for every child overstated the cache
        several times. ``layer`` identifies the storage layer, so two names of one image (the
        last step and the final image) count once. When the store's index can be read, ``parts``
        are the storage layers (ID -> bytes) that pruning this image could free: those no image
        with another name (a user's image, a base) also uses; two cache images share their
        parents' parts."""
        try:
            b = Buildah()
            images = b.images(details=True)  # creation times: buildah's own listing
        except ShlaxError:
            return []
        usable, root = store.root_of(b.argv0)
        index = store.read_index(root) if usable and b.transport is None else None
        layers = store.read_layers(root) if index is not None else None
        top = {i["id"]: i.get("layer") for i in index or []}
        # when each image came into the store: its own `created` is pinned (docs/reproducible.md)
        stored = store.stored_times(root, [i["id"] for i in images]) if index is not None else {}
        freeable = _freeable_parts(b) if layers is not None else None
        rows = []
        for image in images:
            cache = [n for n in image.get("names") or [] if n.startswith(CACHE_REPO + ":")]
            if not cache:
                continue
            if layers is not None and top.get(image["id"]) in layers:
                layer = top[image["id"]]
                size = layers[layer][1]
            else:  # not a store layout we read: the last layer of the image's manifest
                layer, size = _top_layer(b, image["id"])
            for name in cache:
                row = Layer(key=name.split(":", 1)[1], image=image["id"], name=name, size=size,
                            layer=layer or image["id"], created=stored.get(image["id"]) or image.get("created"))
                if freeable is not None:
                    row["parts"] = freeable.get(image["id"], {})
                rows.append(row)
        return rows

    @classmethod
    def remove_layers(cls, names: Sequence[str]) -> None:
        """Remove cache tags; an image that is also a user's final image keeps its other names."""
        b = Buildah()
        for name in names:
            b("rmi", "--", name, check=False)
