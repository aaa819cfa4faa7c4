"""A real webhook receiver on 127.0.0.1 for alert tests: records every request, answers as scripted.

``script`` is consumed one entry per request: ``"ok"`` (204), an int status (500, 403), ``"hang"``
(hold the request past the client's timeout, then drop it unanswered). After the script, "ok".
:meth:`down` closes the port (connection refused) and :meth:`up` reopens it on the same port.
Only answered 2xx requests count as *accepted*: that is what the sender may consider delivered.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Receiver:
    def __init__(self, secret: str | None = None, script: list[Any] | None = None, hang_seconds: float = 1.0) -> None:
        self.secret, self.script, self.hang_seconds = secret, list(script or []), hang_seconds
        self.requests: list[dict[str, Any]] = []
        self.accepted: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self.port = 0
        self._server: ThreadingHTTPServer | None = None
        self.up()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def up(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver._lock:
                    action = receiver.script.pop(0) if receiver.script else "ok"
                    entry = {"headers": dict(self.headers), "body": body, "action": action, "at": time.monotonic()}
                    receiver.requests.append(entry)
                if action == "hang":
                    time.sleep(receiver.hang_seconds)
                    self.close_connection = True
                    return
                status = 200 if action == "ok" else int(action)
                if 200 <= status < 300:  # recorded before answering: a sender that got its 2xx finds it here
                    with receiver._lock:
                        receiver.accepted.append(entry)
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        self.port = server.server_address[1]
        self._server = server
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def down(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def close(self) -> None:
        self.down()

    # --- what arrived ---------------------------------------------------------------------------
    def events(self) -> list[dict[str, Any]]:
        """Accepted bodies as JSON, after verifying each signature when a secret is set."""
        out = []
        for e in self.accepted:
            if self.secret is not None:
                sig = e["headers"].get("X-Plmon-Signature", "")
                want = "sha256=" + hmac.new(self.secret.encode(), e["body"], hashlib.sha256).hexdigest()
                assert hmac.compare_digest(sig, want), "bad signature"
            out.append(json.loads(e["body"]))
        return out

    def counts(self, sent_ids: set[str]) -> dict[str, int]:
        """sent (ids owed), delivered (distinct ids accepted), duplicates (extra acceptances), lost."""
        ids = Counter(ev["id"] for ev in self.events())
        return {"sent": len(sent_ids), "delivered": len(set(ids) & sent_ids),
                "duplicates": sum(n - 1 for n in ids.values()), "lost": len(sent_ids - set(ids)),
                "requests": len(self.requests)}
