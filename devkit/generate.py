"""Regenerate every file made from the running host, in dependency order, with one server:

    python -m devkit.generate [--only workflows nodes pngs screenshots]

workflows    workflows/<name>.json, the UI twins of workflows/api/ (with /object_info)
nodes        docs/nodes.md, from the node schemas
pngs         workflows/png/<name>.png, images ComfyUI saves carrying each workflow (runs them)
screenshots  docs/screenshots/<name>.png, each workflow in the real frontend (headless Chromium)

Tests fail when any of them is stale.
"""
import argparse

from . import browser, node_docs, paths, workflow_pngs, workflows

GENERATORS = {"workflows": workflows.generate, "nodes": node_docs.generate, "pngs": workflow_pngs.generate,
              "screenshots": browser.generate}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", nargs="+", choices=list(GENERATORS), help="regenerate only these")
    return p.parse_args(argv)


def main(args) -> None:
    from .server import ComfyServer
    with ComfyServer(paths.base_dir()) as server:
        for name in args.only or GENERATORS:
            for path in GENERATORS[name](server):
                print(f"wrote {path.relative_to(paths.REPO_ROOT)}")


if __name__ == "__main__":
    main(parse_args())
