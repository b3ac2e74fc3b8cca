"""A minimal inetd for the emulated armhf board: accept on 127.0.0.1, run `dropbear -i` per connection.

Why: dropbear 2022.83's standalone listener re-executes itself for each connection through
execveat(fd of /proc/self/exe), a system call qemu-user 7.2 does not implement (the child exits 1
and the client sees "Connection reset"). Started per connection in inetd mode (`-i`), as busybox
inetd or tcpsvd would on a board, the same dropbear binary serves every session for real.

Usage: inetd.py -- COMMAND... ; prints the bound port on its first stdout line.
Runs inside the board's private mount and PID namespaces (tests/boards/boardctl.py starts it).
"""
from __future__ import annotations

import socket
import subprocess
import sys


def main(argv: list[str]) -> int:
    cmd = argv[argv.index("--") + 1:]
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(32)
    print(srv.getsockname()[1], flush=True)
    children: list[subprocess.Popen] = []
    while True:
        conn, _ = srv.accept()
        children.append(subprocess.Popen(cmd, stdin=conn.fileno(), stdout=conn.fileno(),
                                         stderr=subprocess.DEVNULL, close_fds=True))
        conn.close()
        children = [c for c in children if c.poll() is None]  # reap finished sessions


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
