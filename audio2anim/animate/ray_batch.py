"""``audio2anim animate … --ray ADDRESS``: the same batch on a Ray cluster.

The files are cut into groups (one Ray task each, `group_size`); a Ray actor per CPU of the
cluster (`RayWorker`, set up by the command's ``_init_worker``) holds an
`audio2anim.animate.api.Animator`, so the models are loaded once per worker and not once per
file, and animates a group with the same function as a local worker (the command's
``animate_job``, passed in): the outputs are written by the worker, under
their temporary names and renamed when complete, so the cluster's nodes need the inputs and
the output folder at the same paths (a shared file system) and audio2anim installed. Each file's
result (seconds of audio, or its one-line error) comes back to this process, which shows the
progress and writes the summary and ``--report`` as a local run does.

A few groups per actor are in flight at a time. The first SIGINT/SIGTERM hands out no more
groups and waits for those in flight; the second cancels them and ends the actors (a file cut
short leaves no output: files are renamed into place only when complete; the temporary files
of the groups cancelled are removed by the caller).

Ray is imported here only, and this module only when ``--ray`` is given.
"""

from __future__ import annotations

import math
from collections.abc import Callable

GROUPS_IN_FLIGHT = 2  # per actor: one running, one queued behind it
CONNECT_TIMEOUT_S = 10.0


def group_size(files: int, actors: int) -> int:
    """Files per task: about eight groups per actor, so the load evens out over the actors,
    and at most 64 files (a cancelled group loses little)."""
    return max(1, min(64, math.ceil(files / (8 * max(1, actors)))))


class RayWorker:
    """One per Ray worker process: ``setup(settings)`` once (the caller's: it loads the method
    graph), then ``work(job, settings)`` for every file of group after group. The two functions
    travel by reference (module and name), so this module imports nothing of the command."""

    def __init__(self, setup: Callable, settings) -> None:
        setup(settings)
        self.settings = settings

    def run(self, work: Callable, jobs) -> list[tuple[str, float, str | None]]:
        return [work(job, self.settings) for job in jobs]


def connect(address: str) -> None:
    """Connect this process to the cluster at ``address`` (``HOST:PORT`` of its head, ``auto``
    or ``ray://HOST:PORT``); a one-line `ConnectionError` when it cannot."""
    import socket

    host, sep, port = address.rpartition(":")
    if sep and port.isdigit() and "://" not in address:  # Ray retries for minutes: look first
        try:
            socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S).close()
        except OSError as e:
            reason = e.strerror or str(e) or type(e).__name__
            raise ConnectionError(
                f"--ray {address}: cannot connect to the Ray cluster ({reason})"
            ) from None
    import ray

    try:
        ray.init(address=address, log_to_driver=False, configure_logging=False)
    except Exception as e:
        msg = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ConnectionError(
            f"--ray {address}: cannot connect to the Ray cluster ({msg})"
        ) from None


def run_on_ray(
    address: str,
    jobs: list,
    settings,
    stops,
    finished: Callable[[tuple[str, float, str | None]], None],
    started: set[str],
    setup: Callable,
    work: Callable,
    actors: int | None = None,
) -> None:
    """Run ``work(job, settings)`` for every job on the cluster at ``address``, in actors that
    ran ``setup(settings)`` first (module-level functions: they are sent by reference);
    ``finished(result)`` per file, in the order they complete; ``started`` gets the inputs
    handed out. ``actors``: default one per CPU of the cluster."""
    import ray

    from audio2anim.graph.stopping import Aborted

    connect(address)
    try:
        n = actors or max(1, int(ray.cluster_resources().get("CPU", 1)))
        n = min(n, len(jobs))
        remote = ray.remote(num_cpus=1)(RayWorker)
        pool = [remote.remote(setup, settings) for _ in range(n)]
        size = group_size(len(jobs), n)
        groups = [jobs[k : k + size] for k in range(0, len(jobs), size)]
        groups.reverse()
        running: dict = {}  # ObjectRef → (actor, group)
        load = dict.fromkeys(range(n), 0)
        try:
            while groups or running:
                while groups and not stops.received:
                    k = min(load, key=load.get)
                    if load[k] >= GROUPS_IN_FLIGHT:
                        break
                    group = groups.pop()
                    started.update(str(j.input) for j in group)
                    running[pool[k].run.remote(work, group)] = (k, group)
                    load[k] += 1
                if stops.received:
                    groups.clear()
                if not running:
                    break
                ready, _ = ray.wait(list(running), num_returns=1, timeout=0.5)
                for ref in ready:
                    k, group = running.pop(ref)
                    load[k] -= 1
                    try:
                        results = ray.get(ref)
                    except Exception as e:  # the actor died (a node lost, out of memory …)
                        msg = (str(e).strip().splitlines() or [type(e).__name__])[0]
                        results = [(str(j.input), 0.0, f"{j.input}: Ray worker failed ({msg})")
                                   for j in group]  # fmt: skip
                    for result in results:
                        finished(result)
        except Aborted:
            for ref in running:
                ray.cancel(ref, force=True)
            raise
        finally:
            for actor in pool:
                ray.kill(actor)
    finally:
        ray.shutdown()  # this process's connection; a cluster started elsewhere keeps running
