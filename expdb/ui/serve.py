"""Starting the server of `expdb ui`: the address, the token when it is not loopback, uvicorn."""

import ipaddress
import secrets

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
    loopback = is_loopback(host)
    token = None if loopback else secrets.token_urlsafe(24)
    # Off loopback the Host header is whatever name reaches this machine; the token guards it then.
    app = create_app(location, token=token, allowed_hosts=LOOPBACK_HOSTS if loopback else ["*"])
    shown = f"[{host}]" if ":" in host else host
    address = f"http://{shown}:{port}" + (f"/?token={token}" if token else "")
    console.print(escape(f"serving {display_name(location)} at {address} (Ctrl-C to stop)"), soft_wrap=True)
    if token:
        console.print("every request must carry this token: share the address only with those who may read the study")
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    try:
        server.run()
    except OSError as error:
        raise ExpdbError(f"cannot listen on {shown}:{port}: {error.strerror or error}; choose another --port") from None
