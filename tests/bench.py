"""``make bench``: how verify and the rewrite scale. A benchmark that prints figures, never a timed test.

verify: chains of 10, 100 and 300 generated revisions (each creates a table
with an index and adds a column to the previous one) on SQLite; the time per
revision should stay flat as the chain grows (linear total cost).
rewrite: ``--check`` over generated revision files, in files per second.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from codemod.formatting import Style
from codemod.runner import rewrite_source
from codemod.verify.chain import load_chain
from codemod.verify.database import scratch_server
from codemod.verify.scenarios import ChainVerifier

REVISION = '''"""revision {index}"""
from alembic import op
import sqlalchemy as sa

revision = "r{index:05d}"
down_revision = {down}


def upgrade():
    op.create_table("t{index}", sa.Column("id", sa.Integer, primary_key=True), sa.Column("name", sa.String(20)))
    op.create_index("ix_t{index}_name", "t{index}", ["name"])
    {add_column}


def downgrade():
    {drop_column}
    op.drop_index("ix_t{index}_name", table_name="t{index}")
    op.drop_table("t{index}")
'''


def write_chain(directory: Path, count: int) -> None:
    directory.mkdir(parents=True)
    for index in range(count):
        previous = f"t{index - 1}"
        source = REVISION.format(
            index=index,
            down=f'"r{index - 1:05d}"' if index else None,
            add_column=f'op.add_column("{previous}", sa.Column("extra", sa.Integer))' if index else "pass",
            drop_column=f'op.drop_column("{previous}", "extra")' if index else "pass",
        )
        output, _ = rewrite_source(source.encode(), Style())
        (directory / f"r{index:05d}.py").write_bytes(output)


def bench_verify() -> None:
    print("verify on SQLite (generated chains; 3 ops a revision)")
    print(f"{'revisions':>10} {'seconds':>9} {'ms/revision':>12} {'vs 10':>6}")
    base = None
    for count in (10, 100, 300):
        with tempfile.TemporaryDirectory() as directory:
            versions = Path(directory) / "versions"
            write_chain(versions, count)
            chain = load_chain(versions)
            start = time.perf_counter()
            with scratch_server(None) as server:
                reports = ChainVerifier(server).verify(chain)
            elapsed = time.perf_counter() - start
        assert not any(report.failed for report in reports), "the generated chain should verify"
        per = elapsed / count * 1000
        base = base or per
        print(f"{count:>10} {elapsed:>9.2f} {per:>12.1f} {per / base:>6.2f}")


def bench_rewrite(count: int = 500) -> None:
    sources = [
        REVISION.format(index=i, down=None, add_column="pass", drop_column="pass").encode() for i in range(count)
    ]
    start = time.perf_counter()
    for source in sources:
        rewrite_source(source, Style())
    elapsed = time.perf_counter() - start
    print(f"\nrewrite: {count} files in {elapsed:.2f} s ({count / elapsed:.0f} files/s, one process)")


if __name__ == "__main__":
    bench_verify()
    bench_rewrite()
