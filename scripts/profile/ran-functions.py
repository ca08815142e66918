#!/usr/bin/env python3
"""ran-functions.py PID EXE: prints the functions of EXE that ran in process PID.

Reads the pages trace-text.c gave execute permission back to (r-xp mappings of
EXE in /proc/PID/maps), converts their file offsets to addresses through the
executable LOAD segments, and prints each function symbol (nm) with a byte on
such a page, one per line, sorted. Run by scripts/profile-hot-code.sh.
"""
import re
import subprocess
import sys


def main():
    pid, exe = int(sys.argv[1]), sys.argv[2]
    loads = []
    for line in subprocess.run(["readelf", "-lW", exe], capture_output=True, text=True, check=True).stdout.splitlines():
        f = line.split()
        if f and f[0] == "LOAD" and "E" in f[6:-1]:
            loads.append((int(f[1], 16), int(f[2], 16), int(f[4], 16)))  # offset, vaddr, filesz
    pages = set()
    with open(f"/proc/{pid}/maps") as maps:
        for line in maps:
            f = line.split()
            if len(f) > 5 and f[5] == exe and f[1] == "r-xp":
                start, end = (int(x, 16) for x in f[0].split("-"))
                offset = int(f[2], 16)
                for o in range(offset, offset + end - start, 4096):
                    for lo, va, size in loads:
                        if lo <= o < lo + size:
                            pages.add((o - lo + va) // 4096)
    ran = set()
    nm = subprocess.run(["nm", "-S", exe], capture_output=True, text=True, check=True).stdout
    for line in nm.splitlines():
        m = re.match(r"^([0-9a-f]+) ([0-9a-f]+) [tTW] (\S+)$", line)
        if not m:
            continue
        addr, size = int(m.group(1), 16), max(int(m.group(2), 16), 1)
        if any(p in pages for p in range(addr // 4096, (addr + size - 1) // 4096 + 1)):
            ran.add(m.group(3))
    print(f"{len(pages) * 4} KB of code ran: {len(ran)} functions", file=sys.stderr)
    for name in sorted(ran):
        print(name)


if __name__ == "__main__":
    main()
