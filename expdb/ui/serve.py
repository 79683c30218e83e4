"""Starting the server of `expdb ui`: the address, the token when it is not loopback, uvicorn."""

import errno
import ipaddress
import secrets
import socket

from rich.console import Console
from rich.markup import escape

from expdb.db import display_name
from expdb.errors import ExpdbError
from expdb.ui.app import LOOPBACK_HOSTS, create_app


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def serve(location: str, host: str, port: int, console: Console) -> None:
    """Serve the database at `location` until Ctrl-C; a token guards every request off loopback."""
    try:
        import uvicorn
    except ImportError:
        raise ExpdbError("expdb ui needs its web server: pip install 'expdb[ui]'") from None
    if not 0 < port < 65536:
        raise ExpdbError(f"--port {port} is not a port; use one from 1 to 65535, such as 8765")
    if not host.strip():
        raise ExpdbError("--host is empty; give an address of this machine, such as 127.0.0.1 (or 0.0.0.0 for all)")
    shown = f"[{host}]" if ":" in host else host
    listening = _listen(host, port, shown)  # before anything is said: a port in use stops here, with one line
    loopback = is_loopback(host)
    token = None if loopback else secrets.token_urlsafe(24)
    # Off loopback the Host header is whatever name reaches this machine; the token guards it then.
    app = create_app(location, token=token, allowed_hosts=LOOPBACK_HOSTS if loopback else ["*"])
    address = f"http://{shown}:{port}" + (f"/?token={token}" if token else "")
    console.print(escape(f"serving {display_name(location)} at {address} (Ctrl-C to stop)"), soft_wrap=True)
    if token:
        console.print("every request must carry this token: share the address only with those who may read the study")
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    with listening:
        server.run(sockets=[listening])


def _listen(host: str, port: int, shown: str) -> socket.socket:
    """A socket bound to `host`:`port`, or one line saying why not and what to change."""
    try:
        family, kind, protocol, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as error:
        raise ExpdbError(f"cannot listen on {shown}: {error.strerror}; give an address of this machine with --host") from None
    listening = socket.socket(family, kind, protocol)
    try:
        listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listening.bind(address)
    except OSError as error:
        listening.close()
        fix = "choose another --port" if error.errno == errno.EADDRINUSE else "check --host and --port"
        raise ExpdbError(f"cannot listen on {shown}:{port}: {error.strerror or error}; {fix}") from None
    return listening
