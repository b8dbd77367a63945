"""The ``authstore`` command installed by the wheel: the same command line as the Rust binary,
compiled into the extension."""

import os
import shutil
import signal
import sys

from ._native import run_cli


def _own_executable():
    """The console script that runs this command, for the commands that start more processes
    of themselves (the demo's workers): ``sys.executable`` would be the interpreter."""
    script = sys.argv[0] if sys.argv else ""
    if script and os.sep not in script:
        script = shutil.which(script) or script
    if script and os.path.isfile(script) and os.access(script, os.X_OK):
        return os.path.abspath(script)
    return None


def main():
    """Runs the command line with ``sys.argv`` and exits with its code."""
    # The command handles SIGINT itself where it waits (watch, agent, authority); elsewhere it
    # ends the process, as for the binary. Python's handler would raise KeyboardInterrupt
    # after the command had already finished.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    argv = ["authstore", *sys.argv[1:]]
    sys.exit(run_cli(argv, _own_executable()))


if __name__ == "__main__":
    main()
