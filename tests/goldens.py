"""Regenerate every golden fixture's expected output (``make goldens``); review with ``git diff``."""

from __future__ import annotations

from codemod.formatting import Style
from codemod.runner import rewrite_source
from tests.fixtures import golden_paths, read_golden, write_golden


def regenerate() -> int:
    changed = 0
    for path in golden_paths():
        golden = read_golden(path)
        output, _ = rewrite_source(golden.input.encode("utf-8"), Style())
        rewritten = output.decode("utf-8")
        if rewritten != golden.output:
            changed += 1
            print(f"updated {path}")
        write_golden(path, golden.input, rewritten)
    print(f"{changed} of {len(golden_paths())} goldens changed")
    return changed


if __name__ == "__main__":
    regenerate()
