"""Apply riskgw's fixes to an extracted QuickFIX 1.16.0 source tree before its wheel is built.

    python tools/patch_quickfix.py SRC LOCAL_VERSION    # e.g. SRC=.../quickfix-1.16.0, 1.16.0+riskgw.2

The Makefile's QuickFIX rule runs it (a fresh machine has Python and a C++ compiler, not `patch`).

1. ThreadedSocketConnection.cpp: the exception a malformed first message on a connection raises
   (looking up its session parses it) escapes the connection's thread and ends the process; patched,
   the connection is dropped as for an unknown session.
2. The threaded acceptor binds to the session settings' `SocketAcceptAddress` (a host name or a
   dotted IPv4 address, resolved as QuickFIX resolves SocketConnectHost), INADDR_ANY when it is not
   set. 1.16 has no such key (SessionSettings.h defines SOCKET_ACCEPT_PORT only; the name is
   QuickFIX/J's) and socket_createAcceptor takes a port only. As with the port's other socket
   settings, the first session of a port decides. The single-threaded SocketAcceptor (SocketServer)
   still binds INADDR_ANY.
3. setup.cfg: the local version, so a patched build is told apart (importlib.metadata).
4. setup.py: the extension's sources compile on every core, longest first. setuptools compiles one
   extension's sources one after another, and QuickFIX is one extension of ~70 files (the 6 MB SWIG
   wrapper alone about a minute at -O1): on 2 cores the build takes about half the time. The objects
   are the same; only their order of compilation changes. It uses setuptools' compiler's own steps
   (_setup_compile, _get_cc_args, _compile); a setuptools without them compiles as before.

Each replacement is an exact string that must occur exactly once in its file; when one does not
(another QuickFIX version), nothing is written and the script ends with a one-line message naming
the file.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

UPSTREAM = "1.16.0"


@dataclass(frozen=True)
class Replacement:
    path: str  # relative to the source tree
    old: str
    new: str


class PatchError(Exception):
    """The source tree is not the QuickFIX these replacements were written for."""


SET_SESSION_OLD = """\
      if (!setSession(msg)) {
"""
SET_SESSION_NEW = """\
      // riskgw: a malformed first message costs its connection, not the process
      bool found = false;
      try {
        found = setSession(msg);
      } catch (std::exception &) {
      }
      if (!found) {
"""

ACCEPT_ADDRESS_KEY_OLD = """\
const char SOCKET_ACCEPT_PORT[] = "SocketAcceptPort";
"""
ACCEPT_ADDRESS_KEY_NEW = """\
const char SOCKET_ACCEPT_PORT[] = "SocketAcceptPort";
const char SOCKET_ACCEPT_ADDRESS[] = "SocketAcceptAddress"; // riskgw: the acceptor's bind address
"""

CREATE_ACCEPTOR_DECL_OLD = """\
socket_handle socket_createAcceptor(int port, bool reuse = false);
"""
CREATE_ACCEPTOR_DECL_NEW = """\
socket_handle socket_createAcceptor(int port, bool reuse = false, const char *host = 0);
"""

CREATE_ACCEPTOR_OLD = """\
socket_handle socket_createAcceptor(int port, bool reuse) {
  socket_handle socket = ::socket(PF_INET, SOCK_STREAM, 0);
  if (socket == INVALID_SOCKET_HANDLE) {
    return INVALID_SOCKET_HANDLE;
  }

  sockaddr_in address;
  socklen_t socklen;

  address.sin_family = PF_INET;
  address.sin_port = htons(port);
  address.sin_addr.s_addr = INADDR_ANY;
"""
CREATE_ACCEPTOR_NEW = """\
socket_handle socket_createAcceptor(int port, bool reuse, const char *host) {
  // riskgw: bind to host (a name or a dotted IPv4 address) when one is given, INADDR_ANY when not
  const char *resolved = 0;
  if (host && *host) {
    resolved = socket_hostname(host);
    if (resolved == 0) {
      return INVALID_SOCKET_HANDLE;
    }
  }
  socket_handle socket = ::socket(PF_INET, SOCK_STREAM, 0);
  if (socket == INVALID_SOCKET_HANDLE) {
    return INVALID_SOCKET_HANDLE;
  }

  sockaddr_in address;
  socklen_t socklen;

  address.sin_family = PF_INET;
  address.sin_port = htons(port);
  address.sin_addr.s_addr = resolved ? inet_addr(resolved) : INADDR_ANY;
"""

THREADED_BIND_OLD = (
    "    socket_handle socket = socket_createAcceptor(port, reuseAddress);\n"
    "    if (socket == INVALID_SOCKET_HANDLE) {\n"
    "      SocketException e;\n"
    "      socket_close(socket);\n"
    "      throw RuntimeError(\n"
    '          "Unable to create, bind, or listen to port " + IntConvertor::convert((unsigned short)port)'
    ' + " (" + e.what()\n'
    '          + ")");\n'
    "    }\n"
)
THREADED_BIND_NEW = """\
    // riskgw: SocketAcceptAddress, when set, is the one address the port listens on
    const std::string acceptAddress
        = settings.has(SOCKET_ACCEPT_ADDRESS) ? settings.getString(SOCKET_ACCEPT_ADDRESS) : std::string();

    socket_handle socket = socket_createAcceptor(port, reuseAddress, acceptAddress.c_str());
    if (socket == INVALID_SOCKET_HANDLE) {
      SocketException e;
      socket_close(socket);
      throw RuntimeError(
          "Unable to create, bind, or listen to "
          + (acceptAddress.empty() ? std::string("port ") : "address " + acceptAddress + " port ")
          + IntConvertor::convert((unsigned short)port) + " (" + e.what() + ")");
    }
"""

SETUP_IMPORTS_OLD = """\
import glob
"""
SETUP_IMPORTS_NEW = """\
import glob

# riskgw: compile the extension's sources on every core, longest first (setuptools compiles one
# extension's sources one at a time); the objects are the same, only the order differs.
import os
from concurrent.futures import ThreadPoolExecutor
import distutils.ccompiler


_compile_one_at_a_time = distutils.ccompiler.CCompiler.compile


def _compile_on_every_core(self, sources, output_dir=None, macros=None, include_dirs=None, debug=0,
                           extra_preargs=None, extra_postargs=None, depends=None):
    if not all(hasattr(self, name) for name in ("_setup_compile", "_get_cc_args", "_compile")):
        # a setuptools whose compiler no longer has these: its own way, one at a time
        return _compile_one_at_a_time(self, sources, output_dir, macros, include_dirs, debug,
                                      extra_preargs, extra_postargs, depends)
    macros, objects, extra_postargs, pp_opts, build = self._setup_compile(
        output_dir, macros, include_dirs, sources, depends, extra_postargs)
    cc_args = self._get_cc_args(pp_opts, debug, extra_preargs)

    def one(obj):
        src, ext = build[obj]
        self._compile(obj, src, ext, cc_args, extra_postargs, pp_opts)

    longest_first = sorted(build, key=lambda obj: -os.path.getsize(build[obj][0]))
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        list(pool.map(one, longest_first))
    return objects


distutils.ccompiler.CCompiler.compile = _compile_on_every_core
"""


def replacements(local_version: str) -> tuple[Replacement, ...]:
    return (
        Replacement("setup.cfg", f"\nversion = {UPSTREAM}\n", f"\nversion = {local_version}\n"),
        Replacement("C++/ThreadedSocketConnection.cpp", SET_SESSION_OLD, SET_SESSION_NEW),
        Replacement("C++/SessionSettings.h", ACCEPT_ADDRESS_KEY_OLD, ACCEPT_ADDRESS_KEY_NEW),
        Replacement("C++/Utility.h", CREATE_ACCEPTOR_DECL_OLD, CREATE_ACCEPTOR_DECL_NEW),
        Replacement("C++/Utility.cpp", CREATE_ACCEPTOR_OLD, CREATE_ACCEPTOR_NEW),
        Replacement("C++/ThreadedSocketAcceptor.cpp", THREADED_BIND_OLD, THREADED_BIND_NEW),
        Replacement("setup.py", SETUP_IMPORTS_OLD, SETUP_IMPORTS_NEW),
    )


def check_version(local_version: str) -> None:
    upstream, plus, local = local_version.partition("+")
    if upstream != UPSTREAM or not plus or not local:
        raise PatchError(
            f"version {local_version!r}: these fixes are for QuickFIX {UPSTREAM}, as {UPSTREAM}+LOCAL"
        )


def apply(src: Path, local_version: str) -> list[Path]:
    """Patch the tree at `src`; the files changed. Every file is checked before any is written."""
    check_version(local_version)
    texts: dict[Path, bytes] = {}  # bytes: line endings and any other byte stay as they are
    for r in replacements(local_version):
        path = src / r.path
        if path not in texts:
            try:
                texts[path] = path.read_bytes()
            except OSError as exc:
                raise PatchError(f"{path}: {exc.strerror}: not a QuickFIX {UPSTREAM} source tree") from None
        old, new = r.old.encode(), r.new.encode()
        found = texts[path].count(old)
        if found != 1:
            first = r.old.strip().splitlines()[0]
            raise PatchError(
                f"{path}: expected {first!r} once, found it {found} times: not QuickFIX {UPSTREAM}'s source"
            )
        texts[path] = texts[path].replace(old, new)
    for path, text in texts.items():
        path.write_bytes(text)
    return list(texts)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: patch_quickfix.py SRC LOCAL_VERSION", file=sys.stderr)
        return 2
    try:
        changed = apply(Path(argv[0]), argv[1])
    except PatchError as exc:
        print(f"patch_quickfix: {exc}", file=sys.stderr)
        return 1
    print(f"patch_quickfix: QuickFIX {argv[1]}: {len(changed)} files patched")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
