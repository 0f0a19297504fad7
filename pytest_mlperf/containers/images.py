"""Images: the "host" image that runs this machine's own Python in a container, and the identity of an image, which
is recorded with every containerised result (a regression gate on "new container" needs to know which one ran).

No registry can be reached on the development and CI machines, so the host image is not pulled: it is a rootfs of
empty folders and the merged-/usr links (bin, lib, lib64, sbin -> usr/...), imported through the SDK
(`APIClient.import_image_from_data`, which works against podman 4.3.1 and Docker Engine alike), and everything else
comes from read-only bind mounts of the host (`host_mounts`): /usr, the Python install, the venv and this package's
source, at the same paths as outside, so `sys.executable` runs unchanged inside.
"""

from __future__ import annotations

import io
import re
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import docker

if TYPE_CHECKING:
    from .runner import Mount

HOST_REPOSITORY = "localhost/pytest-mlperf-host"
HOST_TAG = "1"  #: bump when the rootfs below changes, so that an older image is not reused
HOST_IMAGE = f"{HOST_REPOSITORY}:{HOST_TAG}"
#: the label that marks an image as ours, with the rootfs layout it was built with
HOST_LABEL = ("pytest-mlperf.image", f"host-{HOST_TAG}")

_DIRS = {"usr": 0o755, "etc": 0o755, "tmp": 0o1777, "proc": 0o555, "sys": 0o555, "dev": 0o755, "root": 0o700}
_DIRS |= {"run": 0o755, "var": 0o755, "home": 0o755, "mnt": 0o755, "work": 0o755}
_LINKS = {"bin": "usr/bin", "lib": "usr/lib", "lib64": "usr/lib64", "sbin": "usr/sbin"}
#: what the host image cannot do without: the dynamic loader's cache (shared libraries outside /usr/lib's defaults)
_HOST_FILES = ("/etc/ld.so.cache",)

#: how a locally built image's "digest" reads: podman gives local images a digest under localhost/, which names
#: no registry; Docker Engine gives them none
LOCAL = "none (built locally)"


@dataclass(frozen=True)
class ImageIdentity:
    """Which image a result ran in: the id is the content hash of its configuration (changes whenever anything in
    the image changes); the repo digest is what a registry serves under a tag (reproducible with `docker pull
    repo@digest`), or LOCAL for an image that came from no registry."""

    reference: str  #: the name the run asked for, e.g. nvcr.io/nvidia/pytorch:24.01-py3
    id: str  #: sha256:...
    repo_digest: str  #: repo@sha256:..., or LOCAL
    tags: tuple[str, ...]


def image_identity(client: docker.DockerClient, image: str) -> ImageIdentity:
    """The identity of `image` as the engine has it (docker.errors.ImageNotFound when it has not)."""
    found = client.images.get(image)
    digests = [d for d in found.attrs.get("RepoDigests") or [] if not d.startswith("localhost/")]
    digest = digests[0] if digests else LOCAL
    return ImageIdentity(reference=image, id=found.id, repo_digest=digest, tags=tuple(found.tags))


def host_image(client: docker.DockerClient) -> str:
    """The name of the host image (HOST_IMAGE), imported on the first call and reused while it carries HOST_LABEL.

    The tag goes in the import's repository argument ("repo:tag", which both engines accept): podman 4.3.1's
    compatible import ignores a separate tag argument and names the image :latest."""
    try:
        if client.images.get(HOST_IMAGE).labels.get(HOST_LABEL[0]) == HOST_LABEL[1]:
            return HOST_IMAGE
    except docker.errors.ImageNotFound:
        pass
    reply = client.api.import_image_from_data(
        _rootfs(), repository=HOST_IMAGE, changes=[f"LABEL {HOST_LABEL[0]}={HOST_LABEL[1]}"]
    )
    ids = re.findall(r"sha256:[0-9a-f]{64}", str(reply))
    image = client.images.get(ids[-1] if ids else HOST_IMAGE)
    if HOST_IMAGE not in image.tags:
        image.tag(HOST_REPOSITORY, HOST_TAG)
    return HOST_IMAGE


def host_mounts(extra: tuple[Path | str, ...] = ()) -> list[Mount]:
    """Read-only bind mounts that make this process's Python usable in the host image at the same paths: /usr, the
    loader cache, the Python install (sys.base_prefix), the venv (sys.prefix), this package's source folder (an
    editable install resolves there) and `extra`. A path inside another one is not mounted twice."""
    from .runner import Mount

    package = Path(__file__).resolve().parent.parent
    wanted = [Path("/usr"), *map(Path, _HOST_FILES), Path(sys.base_prefix), Path(sys.prefix), package]
    wanted += map(Path, extra)
    paths: list[Path] = []
    for path in sorted({Path(p).resolve() for p in wanted if Path(p).exists()}, key=lambda p: len(p.parts)):
        if not any(path.is_relative_to(kept) for kept in paths):
            paths.append(path)
    return [Mount(source=path, target=str(path)) for path in paths]


def _rootfs() -> bytes:
    """A tar of the host image's rootfs: empty folders and the merged-/usr links, owned by root."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, mode in _DIRS.items():
            entry = tarfile.TarInfo(name)
            entry.type, entry.mode = tarfile.DIRTYPE, mode
            tar.addfile(entry)
        for name, target in _LINKS.items():
            entry = tarfile.TarInfo(name)
            entry.type, entry.linkname, entry.mode = tarfile.SYMTYPE, target, 0o777
            tar.addfile(entry)
    return buffer.getvalue()
