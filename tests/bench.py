"""``make bench``: how fast idempotify is, side by side with LibCST's own runner. Prints figures; never a timed test.

rewrite: a tree of 2,000 revision files, built from the public-migrations
corpus of ``make corpus`` when its wheels are cached (each file copied until
there are 2,000, every copy a distinct file), else generated. Timed, each as
its own process on all CPUs: LibCST's codemod runner doing nothing
(``python -m libcst.tool codemod noop.NOOPCommand --no-format``), a cold
``idempotify --check`` and a cold rewrite (empty cache), and a warm
``--check`` of the unchanged tree, in rounds (IDEMPOTIFY_BENCH_ROUNDS, 3),
each run's median time reported; peak memory is the largest sum of the
resident memory of the process and its workers, sampled every 50 ms.
verify: chains of 10, 100 and 300 generated revisions (each creates a table
with an index and adds a column to the previous one) on SQLite; the time per
revision should stay flat as the chain grows (linear total cost). Then, per
database, verify of a rewritten 120-revision chain (IDEMPOTIFY_BENCH_REVISIONS)
through its project's env.py, against ``alembic upgrade head`` plus ``alembic
downgrade base`` of the original chain on the same server: the ratio, whose
goal is at most 10 (IDEMPOTIFY_BENCH_DATABASES=sqlite,postgresql: those only).
Name parts to run only those: ``python -m tests.bench rewrite`` (or verify, ratio).
"""

from __future__ import annotations

import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import psutil

from codemod.formatting import Style
from codemod.runner import default_jobs, rewrite_source
from codemod.verify.chain import load_chain
from codemod.verify.database import scratch_server
from codemod.verify.scenarios import ChainVerifier
from tests import corpus

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
        output, _ = rewrite_source(_generated(index).encode(), Style())
        (directory / f"r{index:05d}.py").write_bytes(output)


def bench_verify() -> None:
    print("verify on SQLite (generated chains; 3 ops a revision)")
    print(f"{'revisions':>10} {'seconds':>9} {'ms/revision':>12} {'vs 10':>6}")
    base = None
    for count in (10, 100, 300):
        with tempfile.TemporaryDirectory() as directory:
            versions = Path(directory) / "versions"
            write_chain(versions, count)
            chain = load_chain([versions])
            start = time.perf_counter()
            with scratch_server(None) as server:
                reports = ChainVerifier(server).verify(chain)
            elapsed = time.perf_counter() - start
        assert not any(report.failed for report in reports), "the generated chain should verify"
        per = elapsed / count * 1000
        base = base or per
        print(f"{count:>10} {elapsed:>9.2f} {per:>12.1f} {per / base:>6.2f}")


PROJECT_ENV = """from alembic import context
from sqlalchemy import engine_from_config, pool

config = context.config


def do_run_migrations(connection):
    context.configure(connection=connection)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online():
    if (connection := config.attributes.get("connection")) is not None:
        return do_run_migrations(connection)
    engine = engine_from_config(config.get_section(config.config_ini_section, {}), poolclass=pool.NullPool)
    with engine.connect() as connection:
        do_run_migrations(connection)


run_migrations_online()
"""


def bench_verify_ratio(count: int) -> None:
    """verify of a rewritten ``count``-revision chain against ``alembic upgrade head`` + ``downgrade base`` of
    the original chain, on the same server; the goal is a ratio of at most 10."""
    from tests.databases import DIALECTS, SERVERS, server_unreachable  # noqa: PLC0415 - bench only

    print(f"verify vs alembic upgrade head + downgrade base ({count} generated revisions, 3 ops each; goal <= 10x)")
    print(f"{'database':>10} {'alembic s':>10} {'verify s':>9} {'ratio':>6}")
    for dialect in os.environ.get("IDEMPOTIFY_BENCH_DATABASES", ",".join(DIALECTS)).split(","):
        if dialect != "sqlite" and server_unreachable(dialect):
            print(f"{dialect:>10} skipped: {server_unreachable(dialect)}")
            continue
        with tempfile.TemporaryDirectory() as directory, scratch_server(SERVERS.get(dialect)) as server:
            project = Path(directory) / "project"
            (project / "original").mkdir(parents=True)
            for index in range(count):
                (project / "original" / f"r{index:05d}.py").write_text(_generated(index), encoding="utf-8")
            write_chain(project / "versions", count)
            (project / "env.py").write_text(PROJECT_ENV, encoding="utf-8")
            scratch = server.create()
            url = scratch.database.url.render_as_string(hide_password=False)
            ini = project / "alembic.ini"
            ini.write_text(
                f"[alembic]\nscript_location = %(here)s\nversion_locations = %(here)s/original\n"
                f"sqlalchemy.url = {url.replace('%', '%%')}\n",
                encoding="utf-8",
            )
            alembic = [sys.executable, "-m", "alembic", "-c", str(ini)]
            start = time.perf_counter()
            subprocess.run([*alembic, "upgrade", "head"], check=True, capture_output=True)
            subprocess.run([*alembic, "downgrade", "base"], check=True, capture_output=True)
            plain = time.perf_counter() - start
            ini.write_text(ini.read_text(encoding="utf-8").replace("/original", "/versions"), encoding="utf-8")
            command = [sys.executable, "-m", "codemod", "verify", str(project / "versions")]
            command += ["--baseline", str(project / "original")]
            if dialect != "sqlite":
                command += ["--url", SERVERS[dialect]]
            start = time.perf_counter()
            verified = subprocess.run(command, capture_output=True, text=True, check=False)
            elapsed = time.perf_counter() - start
        assert verified.returncode == 0, verified.stdout[-2000:] + verified.stderr[-2000:]
        print(f"{dialect:>10} {plain:>10.2f} {elapsed:>9.2f} {elapsed / plain:>6.1f}")


TREE_SIZE = 2000


def build_tree(root: Path, size: int = TREE_SIZE) -> str:
    """``size`` revision files under ``root``; says where they came from."""
    wheels = [corpus.cached_wheel(requirement) for requirement in corpus.PACKAGES]
    sources: list[tuple[str, bytes]] = []
    if all(wheels):
        for requirement, wheel in zip(corpus.PACKAGES, wheels, strict=True):
            assert wheel is not None
            sources += [
                (f"{requirement.split('==')[0]}/{Path(member).name}", data) for member, data in corpus.revisions(wheel)
            ]
        origin = f"the public-migrations corpus ({len(sources)} distinct files, copied to {size})"
    else:
        sources = [(f"generated/r{index:05d}.py", _generated(index).encode()) for index in range(size)]
        origin = "generated revisions (run `make corpus` once to bench on real migrations)"
    for index in range(size):
        name, data = sources[index % len(sources)]
        path = root / f"copy{index // len(sources)}" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data + f"\n# copy {index // len(sources)}\n".encode())
    return origin


def _generated(index: int) -> str:
    return REVISION.format(
        index=index,
        down=f'"r{index - 1:05d}"' if index else None,
        add_column=f'op.add_column("t{index - 1}", sa.Column("extra", sa.Integer))' if index else "pass",
        drop_column=f'op.drop_column("t{index - 1}", "extra")' if index else "pass",
    )


def measure(command: list[str], environment: dict[str, str]) -> tuple[float, float, float, int, float]:
    """Seconds, peak megabytes of the process tree (resident; proportional set size), the exit code, and the
    CPU seconds of the process and its workers (user and system; a time the machine took the CPU away for does
    not count, as it does in the seconds).

    Resident sizes count the pages workers share with the process they were
    forked from once per process; the proportional set size (Linux) divides
    them among the sharers, so its sum is the memory the run really holds.
    """
    start = time.perf_counter()
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    process = psutil.Popen(command, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    peak = peak_shared = 0
    done = threading.Event()

    def sample() -> None:
        # Listing the children scans /proc: done every 0.5 s, memory read every 50 ms, so the sampler
        # does not take CPU from what it measures.
        nonlocal peak, peak_shared
        tree: list[psutil.Process] = [process]
        listed = 0.0
        while not done.is_set():
            try:
                if time.perf_counter() - listed > 0.5:
                    tree, listed = [process, *process.children(recursive=True)], time.perf_counter()
                running = [member for member in tree if member.is_running()]
                peak = max(peak, sum(member.memory_info().rss for member in running))
                peak_shared = max(peak_shared, sum(getattr(member.memory_full_info(), "pss", 0) for member in running))
            except psutil.Error:
                listed = 0.0
            done.wait(0.05)

    sampler = threading.Thread(target=sample)
    sampler.start()
    code = process.wait()
    elapsed = time.perf_counter() - start
    done.set()
    sampler.join()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - used.ru_utime - used.ru_stime
    return elapsed, peak / 1e6, peak_shared / 1e6, code, cpu


def bench_rewrite() -> None:
    """Each run timed ``IDEMPOTIFY_BENCH_ROUNDS`` times (3 by default), the runs of a round one after another,
    and the median taken: on a shared machine one run's time varies by a tenth or more, for the no-op runner
    as for idempotify, so a ratio of two single runs says more about the moment than about the code."""
    jobs = default_jobs()
    rounds = max(1, int(os.environ.get("IDEMPOTIFY_BENCH_ROUNDS", "3")))
    idempotify = [sys.executable, "-m", "codemod"]
    noop = [sys.executable, "-m", "libcst.tool", "codemod", "noop.NOOPCommand", "--no-format", "--hide-progress"]
    with tempfile.TemporaryDirectory() as directory:
        base = Path(directory)
        origin = build_tree(base / "tree")
        print(f"rewrite: {TREE_SIZE} files from {origin}; {jobs} jobs; median of {rounds} rounds")
        environment = {**os.environ, "XDG_CACHE_HOME": str(base / "cache")}
        runs: dict[str, list[tuple[float, float, float, int, float]]] = {}

        def timed(label: str, command: list[str], tree: Path, *, cold: bool) -> None:
            if cold:
                shutil.rmtree(base / "cache", ignore_errors=True)
            runs.setdefault(label, []).append(measure([*command, str(tree)], environment))

        copy = base / "copy"
        for _ in range(rounds):
            shutil.rmtree(copy, ignore_errors=True)
            shutil.copytree(base / "tree", copy)
            timed("LibCST no-op runner", [*noop, "--jobs", str(jobs)], copy, cold=True)
            timed("idempotify --check, cold", [*idempotify, "--check", "-q"], base / "tree", cold=True)
            timed("idempotify --check, warm", [*idempotify, "--check", "-q"], base / "tree", cold=False)
            timed("idempotify rewrite, cold", [*idempotify, "-q"], copy, cold=True)
    medians = {label: statistics.median(run[0] for run in each) for label, each in runs.items()}
    cpu = {label: statistics.median(run[4] for run in each) for label, each in runs.items()}
    baseline, cpu_baseline = medians["LibCST no-op runner"], cpu["LibCST no-op runner"]
    cold_check = medians["idempotify --check, cold"]
    heading = f"{'':<28} {'seconds':>8} {'vs no-op':>9} {'vs cold':>8} {'RSS MB':>7} {'PSS MB':>7} {'exit':>5}"
    print(f"{heading} {'CPU s':>7} {'vs no-op':>9}  each run (s)")
    for label, each in runs.items():
        elapsed = medians[label]
        versus_cold = f"{elapsed / cold_check:>8.1%}" if "warm" in label else f"{'':>8}"
        memory = f"{max(run[1] for run in each):>7.0f} {max(run[2] for run in each):>7.0f}"
        codes = {run[3] for run in each}
        code = str(codes.pop()) if len(codes) == 1 else "mixed"
        spread = " ".join(f"{run[0]:.2f}" for run in each)
        work = f"{code:>5} {cpu[label]:>7.2f} {cpu[label] / cpu_baseline:>9.2f}"
        print(f"{label:<28} {elapsed:>8.2f} {elapsed / baseline:>9.2f} {versus_cold} {memory} {work}  {spread}")
    print("targets: cold runs <= 1.00 x the no-op runner; warm check < 5% of the cold one; peak < 250 MB")
    print("(seconds: the median run; RSS and PSS: the largest peak sum over the process and its workers, sampled")
    print("every 50 ms; CPU s: the median of the CPU time of the process and its workers, user and system)")


def main(parts: list[str]) -> None:
    """Every part, or those named (``python -m tests.bench rewrite`` measures the rewrite and its memory only)."""
    benches: dict[str, Callable[[], None]] = {
        "rewrite": bench_rewrite,
        "verify": bench_verify,
        "ratio": lambda: bench_verify_ratio(int(os.environ.get("IDEMPOTIFY_BENCH_REVISIONS", "120"))),
    }
    if unknown := set(parts) - benches.keys():
        raise SystemExit(f"no bench named {', '.join(sorted(unknown))}; choose from {', '.join(benches)}")
    for index, name in enumerate(parts or benches):
        if index:
            print()
        benches[name]()


if __name__ == "__main__":
    main(sys.argv[1:])
