"""The sandbox on a real file system: races with a link swapped in, random paths, and root configuration."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apps.files import operations
from apps.files.config import FilesSettings
from apps.files.glob import Glob
from apps.files.sandbox import Sandbox, StartupError
from apps.kit import CallerError, ServerError
from tests.support.files_corpus import INSIDE, SECRET, build_tree, outside_state


@pytest.fixture
def volume(tmp_path: Path) -> Path:
    build_tree(tmp_path)
    return tmp_path


def open_sandbox(make_settings, base: Path, roots: str = '{"data": "rw"}') -> Sandbox:
    return Sandbox.open(make_settings(FilesSettings, FILES_PATH=str(base), FILES_ROOTS=roots))


class Swapper:
    """Flip `data/swap` between a real directory and a link to `outside/` as fast as the kernel allows."""

    def __init__(self, base: Path):
        self.root = base / "data"
        self.real = base / "data" / "swap-real"
        self.real.mkdir()
        (self.real / "secret.txt").write_text(INSIDE)
        self.link = base / "data" / "swap-link"
        self.link.symlink_to("../outside")
        os.rename(self.real, self.root / "swap")
        self.stop = threading.Event()
        self.flips = 0
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        root_fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY)
        spare = "swap-link"
        try:
            while not self.stop.is_set():
                # atomically exchange the real directory and the link under the name `swap`
                os.rename("swap", "swap-tmp", src_dir_fd=root_fd, dst_dir_fd=root_fd)
                os.rename(spare, "swap", src_dir_fd=root_fd, dst_dir_fd=root_fd)
                os.rename("swap-tmp", spare, src_dir_fd=root_fd, dst_dir_fd=root_fd)
                self.flips += 1
        finally:
            os.close(root_fd)

    def __enter__(self) -> Swapper:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join()


def test_a_link_swapped_in_between_check_and_open_never_lets_a_read_out(make_settings, volume):
    sandbox = open_sandbox(make_settings, volume)
    served, refused = 0, 0
    deadline = time.monotonic() + 60
    with Swapper(volume) as swapper:
        # at least 3000 reads, and on until the swapper has flipped often (it shares the GIL with the reads)
        while served + refused < 3000 or (swapper.flips <= 100 and time.monotonic() < deadline):
            try:
                answer = operations.read_file(sandbox, sandbox.locate(None, "swap/secret.txt"), 0, 1024).answer
            except CallerError:
                refused += 1
                continue
            assert SECRET not in answer["text"]
            served += 1
    sandbox.close()
    assert swapper.flips > 100 and served > 0 and refused > 0  # the race was really run both ways


def test_a_link_swapped_in_never_lets_a_write_out(make_settings, volume):
    sandbox = open_sandbox(make_settings, volume)
    before = outside_state(volume)
    written = 0
    deadline, i = time.monotonic() + 60, 0
    with Swapper(volume) as swapper:
        while i < 1500 or (swapper.flips <= 100 and time.monotonic() < deadline):
            i += 1
            try:
                operations.write_file(sandbox, sandbox.locate(None, f"swap/planted-{i}.txt"), b"x", "replace")
                written += 1
            except CallerError:
                pass
    sandbox.close()
    assert outside_state(volume) == before  # nothing appeared or changed outside the root
    assert swapper.flips > 100 and written > 0


INSIDE_NAMES = ["ok.txt", "sub", "inner.txt", "link-out", "secret-link", "parent-link", "root-parent", "etc-link"]
PIECES = st.sampled_from(
    [*INSIDE_NAMES, "..", ".", "", "outside", "secret.txt", "data", "data_evil", "%2e%2e", "\u2215", "\uff0e\uff0e"]
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    pieces=st.lists(st.one_of(PIECES, st.text(max_size=12)), max_size=12),
    absolute=st.booleans(),
)
def test_random_paths_never_resolve_outside_the_root(make_settings, tmp_path_factory, pieces, absolute):
    """Whatever the string, it is refused or names something whose inode lives under the root."""
    base = VOLUME.get("base")
    if base is None:
        base = tmp_path_factory.mktemp("volume")
        build_tree(base)
        VOLUME.update(base=base, inodes=inodes_under(base / "data"))
    sandbox = open_sandbox(make_settings, base)
    path = ("/" + str(base / "data") + "/" if absolute else "") + "/".join(pieces)
    try:
        target = sandbox.locate(None, path)
        if target.path.parts:
            with sandbox.parent(target) as fd:
                info = sandbox.entry(fd, target)
            identity = None if info is None else (info.st_dev, info.st_ino)
        else:
            info = os.fstat(target.root.fd)
            identity = (info.st_dev, info.st_ino)
        assert identity is None or identity in VOLUME["inodes"], path
        if info is not None and os.path.isfile(base / "data" / target.path.text):
            text = operations.read_file(sandbox, target, 0, 4096).answer.get("text", "")
            assert SECRET not in text
    except (CallerError, ServerError):
        pass
    finally:
        sandbox.close()


VOLUME: dict[str, object] = {}


def inodes_under(root: Path) -> set[tuple[int, int]]:
    """Every entry under the root, links not followed (a link's own inode, never its target's)."""
    found = {(root.stat().st_dev, root.stat().st_ino)}
    for directory, names, files in os.walk(root, followlinks=False):
        for name in names + files:
            info = os.lstat(os.path.join(directory, name))
            found.add((info.st_dev, info.st_ino))  # a hard link's content is checked by reading it
    return found


def test_roots_that_are_the_same_directory_or_nested_are_refused(make_settings, tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "alias").symlink_to("a")
    nested = f'{{"a": {{"mode": "ro", "path": "{tmp_path}/a"}}, "b": {{"mode": "rw", "path": "{tmp_path}/a/b"}}}}'
    with pytest.raises(StartupError, match="root 'b' is inside root 'a'"):
        open_sandbox(make_settings, tmp_path, nested)
    same = f'{{"a": {{"path": "{tmp_path}/a"}}, "alias": {{"path": "{tmp_path}/alias"}}}}'
    with pytest.raises(StartupError, match="same directory"):
        open_sandbox(make_settings, tmp_path, same)


def test_missing_roots_are_created_unless_nothing_may_be_written(make_settings, tmp_path):
    sandbox = open_sandbox(make_settings, tmp_path, '{"fresh": "rw", "empty": "ro"}')
    assert (tmp_path / "fresh").is_dir() and (tmp_path / "empty").is_dir()
    assert not sandbox.roots["empty"].writable
    sandbox.close()
    with pytest.raises(StartupError, match="root 'gone'"):
        Sandbox.open(
            make_settings(FilesSettings, FILES_PATH=str(tmp_path), FILES_ROOTS='{"gone": "rw"}', FILES_READ_ONLY="1")
        )
    assert not (tmp_path / "gone").exists()


def test_an_absolute_path_through_the_roots_real_path_is_served(make_settings, tmp_path):
    """A root configured through a link is also reachable by its real path (and only inside it)."""
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "f.txt").write_text(INSIDE)
    (tmp_path / "via").symlink_to("real")
    sandbox = open_sandbox(make_settings, tmp_path, f'{{"docs": {{"path": "{tmp_path}/via"}}}}')
    for path in (f"{tmp_path}/via/f.txt", f"{tmp_path}/real/f.txt"):
        assert operations.read_file(sandbox, sandbox.locate(None, path), 0, 100).answer["text"] == INSIDE
    sandbox.close()


# --- issue 17, item 10 ------------------------------------------------------------------------------------
def test_a_replaced_file_keeps_its_permission_bits_but_never_setuid_or_setgid(make_settings, tmp_path):
    sandbox = open_sandbox(make_settings, tmp_path)
    tool = tmp_path / "data" / "tool.sh"
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o6755)  # setuid and setgid, as a planted or mistaken file might be
    operations.write_file(sandbox, sandbox.locate(None, "tool.sh"), b"#!/bin/sh\necho replaced\n", "replace")
    assert tool.stat().st_mode & 0o7777 == 0o755


def test_a_search_deeper_than_its_depth_cap_says_so(make_settings, tmp_path):
    deep = tmp_path / "data"
    for level in range(operations.MAX_SEARCH_DEPTH + 3):
        deep = deep / f"d{level}"
    deep.mkdir(parents=True)
    (deep / "needle.txt").write_text("x")
    sandbox = open_sandbox(make_settings, tmp_path)
    done = operations.search_files(sandbox, sandbox.locate(None, ""), Glob("needle.txt"), 10, 100_000, 5)
    assert done.answer["matches"] == [] and done.answer["truncated"] is True
    assert "deeper than 64 levels were not searched" in done.answer["note"]


def test_a_search_reads_no_more_entries_than_its_budget(make_settings, tmp_path, monkeypatch):
    """A directory is read an entry at a time: a search with a budget of 100 entries does not first read a
    directory of 20,000 (it did, and only then applied the budget)."""
    crowded = tmp_path / "data" / "crowded"
    crowded.mkdir(parents=True)
    for i in range(20_000):
        (crowded / f"f{i:05}").touch()
    read = 0
    real_scandir = os.scandir

    def counting_scandir(fd):
        def entries():
            nonlocal read
            with real_scandir(fd) as it:
                for entry in it:
                    read += 1
                    yield entry

        class Counting:
            def __init__(self):
                self.inner = entries()

            def __iter__(self):
                return self

            def __next__(self):
                return next(self.inner)

            def close(self):
                self.inner.close()

        return Counting()

    sandbox = open_sandbox(make_settings, tmp_path)
    monkeypatch.setattr(operations.os, "scandir", counting_scandir)
    done = operations.search_files(sandbox, sandbox.locate(None, ""), Glob("*.none"), 10, 100, 5)
    assert done.answer["truncated"] is True and "looked at 100 entries" in done.answer["note"]
    assert read <= 102


@pytest.mark.parametrize(
    "name",
    [
        ".aws/credentials",
        ".netrc",
        ".kube/config",
        ".docker/config.json",
        "infra/terraform.tfstate",
        ".git-credentials",
        "certs/client.p12",
        "home/.ssh/authorized_keys",
        ".pgpass",
        "deep/er/.npmrc",
    ],
)
def test_the_usual_credential_files_are_denied_by_default(make_settings, tmp_path, name):
    path = tmp_path / "data" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("aws_secret_access_key = x")
    sandbox = open_sandbox(make_settings, tmp_path)
    with pytest.raises(CallerError, match=r"denied|not found|not allowed"):
        operations.read_file(sandbox, sandbox.locate(None, name), 0, 100)
    found = operations.search_files(sandbox, sandbox.locate(None, ""), Glob("**"), 1000, 10_000, 5)
    assert not [m for m in found.answer["matches"] if m.endswith(path.name)]
