"""The exit codes of ``collect`` (and what each asks the user to do): one table for the CLI,
the README and docs/engine.md.

0   every rollout succeeded
2   configuration, input or file-system problem found before any request (nothing was sent),
    or a fleet misconfiguration that stopped the run (the fix and the resume command are printed)
3   the run finished but some rollouts failed for good (see the failures file)
4   the fleet is dead: no server answered anything for ``router.dead_fleet_timeout_s``
    (restart the servers, then run the printed resume command)
5   writing an output failed part-way (disk full, read-only file system, I/O error): free space /
    fix the mount, then run the printed resume command (the torn tail is repaired)
6   the input file changed while the run read it: restore it (or start a new output), then resume
130 interrupted (Ctrl-C / SIGTERM), also during start-up; the printed command finishes the run
141 stdout was closed before the summary was printed (the output files are complete)
"""

OK = 0
CONFIG = 2
PARTIAL = 3
FLEET_DEAD = 4
OUTPUT_WRITE = 5
INPUT_CHANGED = 6
INTERRUPTED = 130
BROKEN_PIPE = 141
