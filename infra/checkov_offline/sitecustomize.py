"""Keeps the Checkov run offline: loaded by the scanner's own interpreter (PYTHONPATH set by infra/scan.py).

Checkov can reach the network from its banner (a PyPI version check unless
CKV_SKIP_PACKAGE_UPDATE_CHECK is true: checkov/common/util/banner.py,
checkov/common/version_manager.py at 3.3.30) and from its platform integration
(guidelines and policy metadata unless --skip-download: checkov/main.py,
checkov/common/bridgecrew/platform_integration.py `get_platform_run_config`).
infra/scan.py turns both off; this hook proves it: every attempt to resolve a
host name or to open an internet socket in the Checkov process (and the worker
processes it forks) is refused and written to CHECKOV_NETWORK_LOG, and the scan
fails when that file is not empty. Unix-domain sockets (multiprocessing) pass.
"""

import json
import os
import sys

_LOG = os.environ.get("CHECKOV_NETWORK_LOG")
_EVENTS = {"socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyname_ex", "socket.gethostbyaddr",
           "socket.connect", "socket.sendto", "socket.sendmsg", "urllib.Request"}


def _blocked(event, args):
    if event in ("socket.connect", "socket.sendto", "socket.sendmsg"):
        address = args[1] if len(args) > 1 else None
        if isinstance(address, (str, bytes)):  # AF_UNIX path
            return None
        return repr(address)
    if event == "socket.getaddrinfo" and args and args[0] is None:
        return None
    return repr(args[:2])


def _hook(event, args):
    if event not in _EVENTS:
        return
    what = _blocked(event, args)
    if what is None:
        return
    if _LOG:
        with open(_LOG, "a", encoding="utf-8") as f:
            f.write(json.dumps({"pid": os.getpid(), "event": event, "target": what}) + "\n")
    raise PermissionError(f"offline scan: {event} {what} refused (infra/checkov_offline/sitecustomize.py)")


if _LOG is not None:
    sys.addaudithook(_hook)
