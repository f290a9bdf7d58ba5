"""``softmask cache list`` and ``cache prune``: softmask's export and engine caches."""

from __future__ import annotations

import argparse
import time


def _cmd_cache(args: argparse.Namespace) -> int:
    from softmask.runtime.cache_admin import cache_entries, cache_folders, parse_size, prune

    folders = cache_folders(args.cache_dir, args.engine_cache)
    where = " and ".join(str(f) for f in folders.values())
    if args.cache_command == "prune":
        removed = prune(parse_size(args.max_size), folders)
        freed = sum(e.size for e in removed)
        print(f"removed {len(removed)} entries ({freed / 2**20:.1f} MiB)")
    entries = cache_entries(folders)
    if args.cache_command == "list":
        for entry in entries:
            print(f"{entry.cache}/{entry.name}  {entry.size / 2**20:.1f} MiB  last used "
                  f"{time.strftime('%Y-%m-%d %H:%M', time.localtime(entry.last_used))}")
    print(f"{len(entries)} entries, {sum(e.size for e in entries) / 2**20:.1f} MiB in {where}")
    return 0


def add_cache(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("cache", help="list or prune softmask's caches (exports, TensorRT engines)")
    cache_sub = p.add_subparsers(dest="cache_command", metavar="CACHE_COMMAND")
    cache_sub.required = True
    for name, text in (("list", "every entry, least recently used first"),
                       ("prune", "delete least recently used entries down to --max-size")):
        c = cache_sub.add_parser(name, help=text)
        c.add_argument("--cache-dir", help="export cache folder (as softmask run takes it; "
                                           "default $SOFTMASK_CACHE/exports or "
                                           "~/.cache/softmask/exports)")
        c.add_argument("--engine-cache", help="TensorRT engine cache folder (as softmask run "
                                              "takes it; default $SOFTMASK_CACHE/engines or "
                                              "~/.cache/softmask/engines)")
        if name == "prune":
            c.add_argument("--max-size", required=True,
                           help="size to keep, e.g. 2G, 500M or bytes")
        c.set_defaults(handler=_cmd_cache)
