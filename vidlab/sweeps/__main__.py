"""`python -m vidlab.sweeps sweep|rerun ...`: the same commands as `vidlab sweep|rerun`."""
import sys

from .commands import rerun_main, sweep_main

COMMANDS = {"sweep": sweep_main, "rerun": rerun_main}

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        sys.exit(f"usage: python -m vidlab.sweeps {{{'|'.join(COMMANDS)}}} ...")
    sys.exit(COMMANDS[sys.argv[1]](sys.argv[2:]))
