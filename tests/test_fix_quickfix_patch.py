"""tools/patch_quickfix.py, the fixes the Makefile applies to QuickFIX's source, on small fake source
trees (QuickFIX itself is not downloaded here): each replacement happens exactly once, and a tree
that does not match stops it with one line naming the file, before any file is written."""

from __future__ import annotations

import dataclasses
import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from riskgw.gateway.fix import _settings_text
from riskgw.gateway.fixconfig import demo_fix_config

SCRIPT = Path(__file__).resolve().parents[1] / "tools" / "patch_quickfix.py"
LOCAL = "1.16.0+riskgw.2"
BEFORE, AFTER = b"// what comes before\r\n", b"\n// what comes after\n"  # any bytes stay as they were


def load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("patch_quickfix", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


patch = load()


def fake_tree(root: Path) -> Path:
    """A tree holding each text the script replaces once, between other lines."""
    for r in patch.replacements(LOCAL):
        path = root / r.path
        path.parent.mkdir(parents=True, exist_ok=True)
        assert not path.exists()  # one replacement a file (test_each_replacement_happens_once reads so)
        path.write_bytes(BEFORE + r.old.encode() + AFTER)
    return root


def run(src: Path, version: str = LOCAL) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), str(src), version], capture_output=True, text=True, timeout=60
    )


def snapshot(root: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_each_replacement_happens_once(tmp_path: Path) -> None:
    src = fake_tree(tmp_path / "quickfix-1.16.0")
    done = run(src)
    assert done.returncode == 0, done.stderr
    files = {r.path for r in patch.replacements(LOCAL)}
    assert done.stdout == f"patch_quickfix: QuickFIX {LOCAL}: {len(files)} files patched\n"
    for r in patch.replacements(LOCAL):
        text = (src / r.path).read_bytes()
        assert text == BEFORE + r.new.encode() + AFTER
        assert r.old.encode() not in text or r.old in r.new  # the key's line stays, one more follows it
    assert b"\nversion = 1.16.0+riskgw.2\n" in (src / "setup.cfg").read_bytes()
    again = run(src)  # patched once is patched: a second run finds the old texts gone and says so
    assert again.returncode == 1
    assert "setup.cfg: expected 'version = 1.16.0' once, found it 0 times" in again.stderr


@pytest.mark.parametrize("count", [0, 2])
def test_a_file_that_does_not_match_stops_it_naming_the_file(tmp_path: Path, count: int) -> None:
    src = fake_tree(tmp_path / "quickfix-1.16.0")
    utility = src / "C++" / "Utility.cpp"
    r = next(r for r in patch.replacements(LOCAL) if r.path == "C++/Utility.cpp")
    utility.write_bytes(BEFORE + r.old.encode() * count + AFTER)  # another version: gone, or twice
    before = snapshot(src)
    done = run(src)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.splitlines() == [
        f"patch_quickfix: {utility}: expected 'socket_handle socket_createAcceptor(int port, bool reuse) {{' "
        f"once, found it {count} times: not QuickFIX 1.16.0's source"
    ]
    assert snapshot(src) == before  # the files before it in the list are not written either


def test_a_missing_file_and_another_version_are_one_line_errors(tmp_path: Path) -> None:
    src = fake_tree(tmp_path / "quickfix-1.16.0")
    (src / "C++" / "SessionSettings.h").unlink()
    done = run(src)
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        f"patch_quickfix: {src / 'C++' / 'SessionSettings.h'}: No such file or directory: not a QuickFIX "
        "1.16.0 source tree"
    ]
    done = run(fake_tree(tmp_path / "other"), "1.17.0+riskgw.2")
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        "patch_quickfix: version '1.17.0+riskgw.2': these fixes are for QuickFIX 1.16.0, as 1.16.0+LOCAL"
    ]


def test_the_key_the_build_binds_is_the_one_the_gateway_writes(tmp_path: Path) -> None:
    key = patch.ACCEPT_ADDRESS_KEY_NEW.splitlines()[1].split('"')[1]
    assert key == "SocketAcceptAddress"
    one = demo_fix_config()  # on 127.0.0.1
    text = _settings_text(one, tmp_path, 9878)
    assert f"\n{key}=127.0.0.1\n" in text.split("[SESSION]")[0]  # in [DEFAULT]: every session's port
    every = dataclasses.replace(one, host="0.0.0.0")
    assert key not in _settings_text(every, tmp_path, 9878)  # nothing for an unpatched build to ignore


def test_the_patched_setup_compiles_every_source_once_longest_first_on_every_core(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """setup.py's compile replacement, run against a stand-in compiler: every object is built once
    from its own source, the largest source first, and with more than one core more than one at a
    time."""
    import os
    import threading
    import types

    sizes = {"small.cpp": 10, "wrapper.cpp": 5000, "mid.cpp": 300}
    for name, size in sizes.items():
        (tmp_path / name).write_bytes(b"x" * size)
    started: list[str] = []
    running, most = [0], [0]
    lock = threading.Lock()
    overlap = threading.Event()  # two compiles ran at once

    class Compiler:
        def compile(self, sources: list[str], *args: object) -> list[str]:
            started.append("one at a time")
            return [src[:-4] + ".o" for src in sources]

        # distutils' private compile steps, as setup.py's replacement calls them; what it passes
        # through untouched is typed object
        def _setup_compile(
            self,
            out: str | None,
            macros: object,
            incs: object,
            sources: list[str],
            depends: object,
            extra: object,
        ) -> tuple[object, list[str], object, list[str], dict[str, tuple[str, str]]]:
            build = {src[:-4] + ".o": (src, ".cpp") for src in sources}
            return macros, list(build), extra, ["-I."], build

        def _get_cc_args(self, pp_opts: list[str], debug: bool, before: list[str] | None) -> list[str]:
            return ["-c"]

        def _compile(
            self, obj: str, src: str, ext: str, cc_args: list[str], extra: object, pp_opts: list[str]
        ) -> None:
            with lock:
                started.append(Path(src).name)
                running[0] += 1
                most[0] = max(most[0], running[0])
                if running[0] > 1:
                    overlap.set()
            # with workers to spare, held until another compile runs beside it (a fixed pause could
            # end before a loaded machine started the next worker thread); alone, a short pause
            overlap.wait(10.0 if (os.cpu_count() or 1) > 1 else 0.05)
            with lock:
                running[0] -= 1

    ccompiler = types.ModuleType("distutils.ccompiler")
    ccompiler.CCompiler = Compiler  # type: ignore[attr-defined]
    distutils = types.ModuleType("distutils")
    distutils.ccompiler = ccompiler  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "distutils", distutils)
    monkeypatch.setitem(sys.modules, "distutils.ccompiler", ccompiler)
    r = next(r for r in patch.replacements(LOCAL) if r.path == "setup.py")
    exec(compile(r.new, "setup.py", "exec"), {})  # the block the patch adds, as setup.py runs it
    sources = [str(tmp_path / name) for name in sizes]
    monkeypatch.setattr("os.cpu_count", lambda: 1)  # one at a time: the order they start in
    objects = Compiler().compile(sources)
    assert objects == [src[:-4] + ".o" for src in sources]  # setuptools links them in this order
    assert started == ["wrapper.cpp", "mid.cpp", "small.cpp"] and most[0] == 1
    started.clear()
    monkeypatch.setattr("os.cpu_count", lambda: 4)
    assert Compiler().compile(sources) == objects
    assert sorted(started) == sorted(sizes) and most[0] > 1
    started.clear()
    monkeypatch.delattr(Compiler, "_get_cc_args")  # a setuptools whose compiler lacks its steps
    assert Compiler().compile(sources) == objects and started == ["one at a time"]
