"""The access lists (control.allow, devices.allow) as the config gives
them, and read again from the config file on SIGHUP."""

from __future__ import annotations

import signal
from typing import TYPE_CHECKING, Any, Callable

from twisted.application.service import Service

from recsvc.admission import AccessPolicy, Connections, policy_of
from recsvc.config import Config, ConfigError, config_of_file, gives_key, read_config_file
from recsvc.logs import Logger

if TYPE_CHECKING:
    from recsvc.service import RecorderService


class ReloadOnHangup(Service):
    """From the tree's start, SIGHUP calls ``reload`` in the reactor thread
    (queued until the reactor runs). The handler stays through the
    shutdown, while the recordings are finished (SIGHUP's default would end
    the process then), and the one before it is put back once the reactor
    has shut down."""

    def __init__(self, reload: Callable[[], object], reactor: Any) -> None:
        self.reload, self.reactor = reload, reactor
        self._installed = False

    def startService(self) -> None:
        Service.startService(self)
        if not self._installed:
            self._installed = True
            previous = signal.signal(signal.SIGHUP, self._hangup)
            # (None: a handler not set from Python, which cannot be put back.)
            self.reactor.addSystemEventTrigger(
                "after", "shutdown", signal.signal, signal.SIGHUP,
                signal.SIG_DFL if previous is None else previous)

    def _hangup(self, signum: int, frame: Any) -> None:
        self.reactor.callFromThread(self.reload)


class AccessReload:
    """Reads control.allow and devices.allow from the config file again
    (on SIGHUP) and applies them to new connections and Starts; a file
    that does not parse changes nothing (logged). Nor does one that would
    open a closed list without saying so (an empty file, or one without
    the list's key): a list opens only as ``allow: []``."""

    log = Logger()

    def __init__(self, path: str | None, recorder: RecorderService,
                 connections: Connections) -> None:
        self.path, self.recorder, self.connections = path, recorder, connections

    def __call__(self) -> bool:
        if self.path is None:
            return False
        try:
            data = read_config_file(self.path)
            policy = access_policy(config_of_file(data, self.path))
            self._check_openings(data, policy)
        except ConfigError as error:
            self.log.error("Reloading {path} failed, the access lists are as they were: "
                           "{reason}", path=self.path, reason=str(error))
            return False
        self.recorder.access = self.connections.policy = policy
        self.log.info("Reloaded {path}: {networks} networks in control.allow, {devices} "
                      "devices in devices.allow (other settings take effect at a restart)",
                      path=self.path,
                      networks=len(policy.networks) or "all", devices=len(policy.devices) or "all")
        return True

    def _check_openings(self, data: Any, policy: AccessPolicy) -> None:
        """Raises ConfigError naming the list that ``policy`` would open
        (let anyone in) when the one in force is closed, unless the file
        gives that list's key itself."""
        if data is None:
            raise ConfigError("", "the file is empty: control.allow and devices.allow were not "
                                  "read (a list opens only when the file says allow: [])")
        now = self.recorder.access
        for key, closed, opens in (
                ("control.allow", now.networks, not policy.networks),
                ("devices.allow", now.devices, not policy.devices)):
            if closed and opens and not gives_key(data, key):
                raise ConfigError(key, "not in the file, which would let anyone in; write "
                                       "allow: [] in its section to mean that")


def access_policy(config: Config) -> AccessPolicy:
    """control.allow and devices.allow, as the factory and recorder check them."""
    return policy_of(config.control.allow, config.devices.allow)
