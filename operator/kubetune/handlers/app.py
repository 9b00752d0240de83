"""``kubetune operator``: the process that runs the controllers.

Start-up order matters for safety. The HTTP server (``/healthz``, ``/readyz``, ``/metrics``)
comes first so probes answer while the replica waits. Then, unless ``--standalone``, the replica
waits for the leader Lease: kopf, the watches and the workers start only in the leader, so two
replicas never both act. If the Lease cannot be renewed in time the process stops (exit code 1)
and Kubernetes restarts it as a follower; on SIGTERM it stops kopf, lets the workers finish and
releases the Lease so the next leader starts at once.

kopf runs with ``standalone=True`` (its own peering is not needed under the Lease) and gets the
same credentials as the operator's client through a login handler.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import importlib.util
import logging
from typing import Any

import kopf
from aiohttp import web

from kubetune import metrics
from kubetune import settings as settings_mod
from kubetune.handlers import finetunejob
from kubetune.handlers.workqueue import worker
from kubetune.kube import client as kube_client
from kubetune.kube import config as kube_config
from kubetune.kube import leader

log = logging.getLogger("kubetune.operator")

#: Handler modules of other controllers, imported when present (registration is by decorator).
OPTIONAL_HANDLER_MODULES = ("kubetune.handlers.modeldeployment",)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``kubetune operator``; each overrides the ``KUBETUNE_*`` environment variable."""
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument(
        "--namespace",
        "-n",
        action="append",
        dest="namespaces",
        metavar="NS",
        help="watch this namespace (repeatable; default: all namespaces) [KUBETUNE_NAMESPACES]",
    )
    scope.add_argument("--all-namespaces", "-A", action="store_true", help="watch every namespace (the default)")
    parser.add_argument("--metrics-port", type=int, help="port of /metrics, /healthz, /readyz; 0: off (default 8080)")
    parser.add_argument(
        "--standalone", action="store_true", default=None, help="no leader election: run only one replica"
    )
    parser.add_argument("--trainer-image", help="default trainer image [KUBETUNE_TRAINER_IMAGE]")
    parser.add_argument("--workers", type=int, help="FineTuneJobs reconciled concurrently (default 16)")
    parser.add_argument("--lease-name", help="leader-election Lease name (default kubetune-operator)")
    parser.add_argument("--lease-namespace", help="leader-election Lease namespace (default $POD_NAMESPACE)")
    parser.add_argument("--lease-duration", type=float, help="seconds a silent leader keeps the Lease (default 15)")
    parser.add_argument("--renew-deadline", type=float, help="seconds the leader may fail to renew (default 10)")
    parser.add_argument("--retry-period", type=float, help="seconds between election attempts (default 2)")
    parser.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, in-cluster, ~/.kube/config)")
    parser.add_argument("--context", help="kubeconfig context")
    parser.add_argument("--log-level", help="DEBUG, INFO, WARNING (default INFO)")


def settings_from(args: argparse.Namespace, environ: dict[str, str] | None = None) -> settings_mod.Settings:
    """The environment's settings with the command-line flags applied."""
    base = settings_mod.from_env(environ)
    namespaces = () if args.all_namespaces else (tuple(args.namespaces) if args.namespaces else None)
    return base.replace(
        namespaces=namespaces,
        metrics_port=args.metrics_port,
        standalone=args.standalone,
        trainer_image=args.trainer_image,
        workers=args.workers,
        lease_name=args.lease_name,
        lease_namespace=args.lease_namespace,
        lease_duration=args.lease_duration,
        renew_deadline=args.renew_deadline,
        retry_period=args.retry_period,
        log_level=args.log_level.upper() if args.log_level else None,
    )


def run(args: argparse.Namespace) -> int:
    """Entry point of ``kubetune operator``.

    Returns:
        0 after a clean shutdown, 1 when leadership was lost.
    """
    settings = settings_from(args)
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    if settings.log_level != "DEBUG":
        # kopf logs every handled watch event at INFO; the reconciles log what they change.
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    connection = kube_config.load(args.kubeconfig, args.context)
    return asyncio.run(operate(settings, connection))


def import_handler_modules() -> list[str]:
    """Import the optional handler modules that exist; return their names."""
    loaded = []
    for name in OPTIONAL_HANDLER_MODULES:
        if importlib.util.find_spec(name) is not None:
            importlib.import_module(name)
            loaded.append(name)
    return loaded


def _register_login(connection: kube_config.ConnectionConfig) -> None:
    @kopf.on.login()
    def login(**_: Any) -> kopf.ConnectionInfo:
        """Give kopf the operator's own credentials (re-read on 401, so rotated tokens work)."""
        return kopf.ConnectionInfo(
            server=connection.server,
            ca_data=connection.ca_data,
            insecure=connection.insecure,
            token=connection.bearer_token(),
            certificate_data=connection.client_cert_data,
            private_key_data=connection.client_key_data,
            default_namespace=connection.namespace,
        )


def _configure_kopf(settings: kopf.OperatorSettings) -> None:
    settings.posting.enabled = False  # our own events only: kopf's would be extra API writes
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330


class Health:
    """What the probes report: the process serves, and (as leader) it holds the Lease."""

    def __init__(self) -> None:
        self.elector: leader.LeaderElector | None = None
        self.acting = False

    def healthy(self) -> bool:
        """Liveness: a leader that lost the Lease is unhealthy (it is about to exit anyway)."""
        return not (self.acting and self.elector is not None and not self.elector.is_leader)


async def serve_http(port: int, health: Health) -> web.AppRunner | None:
    """Serve ``/healthz``, ``/readyz`` and ``/metrics`` on ``port`` (0: not at all)."""
    if not port:
        return None

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok") if health.healthy() else web.Response(status=503, text="lost the lease")

    async def readyz(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def metrics_page(_: web.Request) -> web.Response:
        payload, content_type = metrics.exposition()
        return web.Response(body=payload, headers={"Content-Type": content_type})

    app = web.Application()
    app.add_routes([web.get("/healthz", healthz), web.get("/readyz", readyz), web.get("/metrics", metrics_page)])
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host="0.0.0.0", port=port).start()
    log.info("serving /metrics, /healthz and /readyz on :%d", port)
    return runner


async def operate(settings: settings_mod.Settings, connection: kube_config.ConnectionConfig) -> int:
    """Run the operator until SIGTERM/SIGINT or until leadership is lost.

    Args:
        settings: the operator settings.
        connection: where the API server is and how to authenticate.

    Returns:
        The process exit code.
    """
    _register_login(connection)
    loaded = import_handler_modules()
    health = Health()
    http = await serve_http(settings.metrics_port, health)
    exit_code = 0
    async with kube_client.Client(connection, observer=metrics.observe_request) as api:
        if not settings.standalone:
            timing = leader.LeaseSettings(settings.lease_duration, settings.renew_deadline, settings.retry_period)
            health.elector = leader.LeaderElector(
                api, settings.lease_name, settings.lease_namespace, settings.identity, timing
            )
            await health.elector.acquire()
        health.acting = True
        metrics.LEADER.set(1)
        log.info(
            "acting on %s with %d workers (extra handlers: %s)",
            ", ".join(settings.namespaces) or "all namespaces",
            settings.workers,
            ", ".join(loaded) or "none",
        )
        controller = finetunejob.FineTuneJobController(api, settings)
        if health.elector is not None:
            controller.may_act = lambda: health.elector is not None and health.elector.is_leader
        try:
            exit_code = await _run_controllers(settings, api, controller, health.elector)
        finally:
            metrics.LEADER.set(0)
            if health.elector is not None and exit_code == 0:
                await health.elector.release()
    if http is not None:
        await http.cleanup()
    return exit_code


async def _run_controllers(
    settings: settings_mod.Settings,
    api: kube_client.Client,
    controller: finetunejob.FineTuneJobController,
    elector: leader.LeaderElector | None,
) -> int:
    kopf_settings = kopf.OperatorSettings()
    _configure_kopf(kopf_settings)
    # Other controllers find the client, the settings and the leadership check in the memo.
    memo = kopf.Memo(finetunejobs=controller, api=api, settings=settings, may_act=controller.may_act)
    operator = asyncio.create_task(
        kopf.operator(
            standalone=True,
            clusterwide=settings.all_namespaces,
            namespaces=list(settings.namespaces),
            memo=memo,
            settings=kopf_settings,
        ),
        name="kopf",
    )
    workers = [asyncio.create_task(worker(controller.queue, controller.reconcile)) for _ in range(settings.workers)]
    watched: set[asyncio.Task[Any]] = {operator}
    holder = asyncio.create_task(elector.hold(), name="lease") if elector is not None else None
    if holder is not None:
        watched.add(holder)
    exit_code = 0
    try:
        done, _ = await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
        if holder is not None and holder in done:
            log.error("stopping: %s", holder.exception() or "the Lease holder ended")
            exit_code = 1
    finally:
        # kopf stops by itself on SIGTERM/SIGINT; otherwise (leadership lost) it is cancelled.
        # (A stop flag would leave kopf waiting on it for 5 s at every shutdown.)
        operator.cancel()
        controller.queue.shut_down()
        if holder is not None:
            holder.cancel()
        for task in workers:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await asyncio.wait_for(operator, timeout=30)
        await asyncio.gather(*workers, return_exceptions=True)
    return exit_code
