"""Live progress from the train pod into the FineTuneJob's status, with nothing but the stdlib.

``kubectl get ftj`` shows how far training is because the trainer itself patches
``status.progress`` (and ``status.checkpoint``) of its FineTuneJob through the status
subresource, authenticated by the pod's service-account token. The image carries no Kubernetes
client for this: one JSON merge patch over ``urllib`` is all it takes. Reporting is best effort:
a failed patch is logged and training goes on, and patches are rate-limited so a fast loop never
floods the API server.

The API server address, token and CA files are injectable (:class:`ApiServer`, or the
``KUBETUNE_API_URL`` / ``KUBETUNE_API_TOKEN_FILE`` / ``KUBETUNE_API_CA_FILE`` variables), so a
run outside a pod, a test for instance, can report to a real API server.
"""

from __future__ import annotations

import json
import logging
import os
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kubetune.api import v1alpha1

log = logging.getLogger(__name__)

#: Where Kubernetes mounts the pod's service-account credentials.
SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
#: Default shortest interval between two progress patches, in seconds.
DEFAULT_MIN_INTERVAL = 10.0


@dataclass(frozen=True)
class ApiServer:
    """How to reach the Kubernetes API server.

    Attributes:
        base_url: e.g. ``https://10.96.0.1:443`` (no trailing slash needed).
        token_path: file holding the bearer token; read on every request because projected
            service-account tokens rotate.
        ca_path: CA bundle that signed the server certificate; ``None`` uses the system store.
    """

    base_url: str
    token_path: str | None = f"{SERVICE_ACCOUNT_DIR}/token"
    ca_path: str | None = f"{SERVICE_ACCOUNT_DIR}/ca.crt"

    @classmethod
    def in_cluster(
        cls, environ: dict[str, str] | None = None, account_dir: str = SERVICE_ACCOUNT_DIR
    ) -> ApiServer | None:
        """The API server as seen from a pod, or ``None`` outside one.

        Args:
            environ: the environment to read ``KUBERNETES_SERVICE_HOST/PORT`` from (default: ``os.environ``).
            account_dir: where the service-account token and CA are mounted.

        Returns:
            The in-cluster address with the service-account token and CA, if the pod has a token.
        """
        env = os.environ if environ is None else environ
        host, port = env.get("KUBERNETES_SERVICE_HOST"), env.get("KUBERNETES_SERVICE_PORT", "443")
        token = Path(account_dir, "token")
        if not host or not token.is_file():
            return None
        return cls(
            base_url=f"https://{_bracket_ipv6(host)}:{port}", token_path=str(token), ca_path=f"{account_dir}/ca.crt"
        )

    @classmethod
    def from_environment(cls, environ: dict[str, str] | None = None) -> ApiServer | None:
        """The API server named by ``KUBETUNE_API_URL``, else the in-cluster one.

        ``KUBETUNE_API_URL`` with ``KUBETUNE_API_TOKEN_FILE`` and ``KUBETUNE_API_CA_FILE`` let a run
        outside a pod (a laptop, a test) report to a cluster.

        Args:
            environ: the environment (default: ``os.environ``).

        Returns:
            The server to report to, or ``None`` when there is none.
        """
        env = os.environ if environ is None else environ
        url = env.get("KUBETUNE_API_URL")
        if not url:
            return cls.in_cluster(dict(env))
        return cls(base_url=url, token_path=env.get("KUBETUNE_API_TOKEN_FILE"), ca_path=env.get("KUBETUNE_API_CA_FILE"))

    def bearer_token(self) -> str | None:
        """The current token, or ``None`` when no token file is configured."""
        if self.token_path is None:
            return None
        return Path(self.token_path).read_text(encoding="utf-8").strip()

    def ssl_context(self) -> ssl.SSLContext | None:
        """TLS settings for an https URL (``None`` for plain http)."""
        if not self.base_url.startswith("https://"):
            return None
        if self.ca_path and Path(self.ca_path).is_file():
            return ssl.create_default_context(cafile=self.ca_path)
        return ssl.create_default_context()


def _bracket_ipv6(host: str | None) -> str:
    host = host or ""
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def format_eta(seconds: float | None) -> str | None:
    """Render a duration the way ``kubectl`` shows ages: ``45s``, ``12m05s``, ``1h02m``, ``2d03h``.

    Args:
        seconds: the remaining time; ``None`` or negative when unknown.

    Returns:
        The short form, or ``None`` when unknown.
    """
    if seconds is None or seconds < 0 or seconds != seconds:  # NaN check
        return None
    total = round(seconds)
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours:02d}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def build_progress(
    *,
    step: int,
    total_steps: int | None,
    epoch: float | None = None,
    loss: float | None = None,
    learning_rate: float | None = None,
    tokens_per_second: float | None = None,
    seconds_per_step: float | None = None,
    now: datetime | None = None,
) -> v1alpha1.Progress:
    """Assemble a ``status.progress`` value from what the training loop knows.

    Args:
        step: optimizer steps done.
        total_steps: optimizer steps planned (``None`` if unknown).
        epoch: fractional epochs done.
        loss: latest training loss.
        learning_rate: current learning rate.
        tokens_per_second: throughput of this attempt.
        seconds_per_step: average step time of this attempt, used for the ETA.
        now: the report time (default: now, UTC).

    Returns:
        The progress, with ``percent``, ``summary`` ("120/500 (24%)") and ``eta`` derived.
    """
    percent = None
    summary = str(step)
    eta = None
    if total_steps:
        percent = max(0, min(100, int(100 * step / total_steps)))
        summary = f"{step}/{total_steps} ({percent}%)"
        if seconds_per_step is not None:
            eta = format_eta(max(0, total_steps - step) * seconds_per_step)
    return v1alpha1.Progress(
        step=step,
        total_steps=total_steps,
        epoch=None if epoch is None else round(max(0.0, epoch), 4),
        loss=_finite_or_none(loss),
        learning_rate=_finite_or_none(learning_rate),
        tokens_per_second=None if tokens_per_second is None else round(tokens_per_second, 1),
        eta=eta,
        percent=percent,
        summary=summary,
        updated=(now or datetime.now(UTC)).replace(microsecond=0),
    )


def _finite_or_none(value: float | None) -> float | None:
    # JSON has no NaN/Infinity, and the API server rejects them.
    if value is None or value != value or value in (float("inf"), float("-inf")):
        return None
    return float(value)


def status_patch(
    progress: v1alpha1.Progress | None = None, checkpoint: v1alpha1.CheckpointStatus | None = None
) -> dict[str, Any]:
    """The JSON merge patch body for the status subresource.

    Args:
        progress: new ``status.progress`` (replaces the fields it sets).
        checkpoint: new ``status.checkpoint``.

    Returns:
        ``{"status": {"progress": {...}, "checkpoint": {...}}}`` with camelCase keys and no nulls.
    """
    status: dict[str, Any] = {}
    if progress is not None:
        status["progress"] = progress.to_k8s()
    if checkpoint is not None:
        status["checkpoint"] = checkpoint.to_k8s()
    return {"status": status}


class RateLimiter:
    """Lets an action through at most once per interval; a forced call always passes."""

    def __init__(self, min_interval: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.min_interval = min_interval
        self._clock = clock
        self._last: float | None = None

    def ready(self, force: bool = False) -> bool:
        """Whether the action may run now; if so, the interval restarts."""
        now = self._clock()
        if not force and self._last is not None and now - self._last < self.min_interval:
            return False
        self._last = now
        return True


class StatusReporter:
    """Patches a FineTuneJob's status with progress and checkpoints, best effort and rate-limited."""

    def __init__(
        self,
        target: v1alpha1.StatusTarget,
        server: ApiServer,
        *,
        min_interval: float = DEFAULT_MIN_INTERVAL,
        timeout: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.target = target
        self.server = server
        self.timeout = timeout
        self._limiter = RateLimiter(min_interval, clock)
        self.failures = 0

    @property
    def url(self) -> str:
        """The status subresource of the target FineTuneJob."""
        ns, name = self.target.namespace, self.target.name
        base = self.server.base_url.rstrip("/")
        return f"{base}/apis/{v1alpha1.GROUP}/{v1alpha1.VERSION}/namespaces/{ns}/finetunejobs/{name}/status"

    def report_progress(self, progress: v1alpha1.Progress, *, force: bool = False) -> bool:
        """Send progress unless the last report was too recent.

        Args:
            progress: the progress to show.
            force: send regardless of the rate limit (the final report of a run).

        Returns:
            Whether the API server accepted a patch.
        """
        if not self._limiter.ready(force):
            return False
        return self.send(status_patch(progress=progress))

    def report_checkpoint(self, checkpoint: v1alpha1.CheckpointStatus) -> bool:
        """Record the latest complete checkpoint (not rate-limited: checkpoints are rare)."""
        return self.send(status_patch(checkpoint=checkpoint))

    def send(self, body: dict[str, Any]) -> bool:
        """PATCH ``body`` as a JSON merge patch; log and swallow any failure.

        Returns:
            True on a 2xx answer.
        """
        try:
            request = self._request(body)
            with urllib.request.urlopen(request, timeout=self.timeout, context=self.server.ssl_context()) as answer:
                return 200 <= answer.status < 300
        except urllib.error.HTTPError as err:
            detail = err.read(500).decode("utf-8", "replace")
            self._failed(f"HTTP {err.code} {err.reason}: {detail}")
        except (OSError, ValueError) as err:  # URLError, timeouts, unreadable token or CA
            self._failed(str(err))
        return False

    def _request(self, body: dict[str, Any]) -> urllib.request.Request:
        headers = {"Content-Type": "application/merge-patch+json", "Accept": "application/json"}
        token = self.server.bearer_token()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        data = json.dumps(body).encode("utf-8")
        return urllib.request.Request(self.url, data=data, headers=headers, method="PATCH")

    def _failed(self, why: str) -> None:
        self.failures += 1
        log.warning("could not report status to %s/%s: %s", self.target.namespace, self.target.name, why)


def make_reporter(
    config: v1alpha1.TrainerConfig, server: ApiServer | None = None, *, min_interval: float = DEFAULT_MIN_INTERVAL
) -> StatusReporter | None:
    """The reporter for a run, or ``None`` when there is nothing to report to.

    Args:
        config: the run's config; reporting needs ``status_target``.
        server: the API server (default: :meth:`ApiServer.from_environment`).
        min_interval: shortest interval between two progress patches, in seconds.

    Returns:
        A reporter, or ``None`` outside a cluster or without a target.
    """
    if config.status_target is None:
        return None
    server = server or ApiServer.from_environment()
    if server is None:
        log.info("status target set but no service-account token found; progress goes to the log only")
        return None
    return StatusReporter(config.status_target, server, min_interval=min_interval)
