"""The process tree of a launched server, from Linux ``/proc`` (for test-tier launchers).

Owns: which processes a launched leader has under it (descendants by parent link, plus the
members of its process group: helpers that daemonize or ``setsid`` away stay visible as long as
they were seen once), which of them still run (a pid is matched with its start time, so a reused
pid is never taken for ours), and their summed RSS. ``nemo_gym`` uses it to stop a whole NeMo Gym
stack (ng_run, Ray, uvicorn servers) and to measure its memory.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path


def _stat(pid: int) -> tuple[int, int, int] | None:
    """(ppid, pgid, start time) of a live, non-zombie process, else None."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rfind(")") + 2:].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[1]), int(fields[2]), int(fields[19])


def process_tree(root: int) -> dict[int, int]:
    """``{pid: start time}`` of ``root``, its descendants and the members of its process group."""
    table = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (st := _stat(int(entry.name))) is not None:
            table[int(entry.name)] = st
    children: dict[int, list[int]] = {}
    for pid, st in table.items():
        children.setdefault(st[0], []).append(pid)
    found = {pid: st[2] for pid, st in table.items() if st[1] == root or pid == root}
    frontier = list(found)
    while frontier:
        for child in children.get(frontier.pop(), ()):
            if child not in found:
                found[child] = table[child][2]
                frontier.append(child)
    return found


def still_running(snapshot: Mapping[int, int]) -> list[int]:
    """The pids of ``snapshot`` (``{pid: start time}``) still running, zombies excluded."""
    return [pid for pid, start in snapshot.items() if (st := _stat(pid)) is not None and st[2] == start]


def rss_bytes(pids: Iterable[int]) -> int:
    """Summed resident memory of ``pids`` (pages shared between processes count once per process)."""
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except (OSError, ValueError, IndexError):
            pass
    return total
