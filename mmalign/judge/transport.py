"""One HTTP POST of a JSON body with the standard library, and how to read what comes back.

Redirects are not followed: urllib would resend the ``Authorization`` header to wherever the server points, and a
chat endpoint has no reason to move. A 3xx therefore arrives as an ordinary reply, which the client reports.
"""
from __future__ import annotations

import email.utils
import http.client
import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from email.message import Message


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None  # urllib then raises HTTPError for the 3xx, which post_json turns into a Reply


_OPENER = urllib.request.build_opener(_NoRedirect)


class Unreachable(Exception):
    """No HTTP reply at all: refused or reset connection, DNS failure, timeout."""


@dataclass
class Reply:
    status: int
    headers: Message
    body: bytes

    def error_message(self) -> str:
        """The server's own words: OpenAI's ``{"error": {"message": ...}}`` when present, else the body's start."""
        text = self.body.decode("utf-8", "replace")
        try:
            error = json.loads(text).get("error")
            message = error.get("message") if isinstance(error, dict) else error
            if isinstance(message, str) and message:
                return message
        except (ValueError, AttributeError):
            pass
        return " ".join(text.split())[:500] or "(empty body)"

    def retry_after(self) -> float | None:
        """Seconds the server asked us to wait (``Retry-After`` as seconds or an HTTP date), if it asked."""
        value = self.headers.get("Retry-After")
        if value is None:
            return None
        try:
            return max(0.0, float(value))
        except ValueError:
            pass
        try:
            return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


def post_json(url: str, body: bytes, headers: dict[str, str], timeout: float) -> Reply:
    """POST ``body`` and return the reply, whatever its status; raise ``Unreachable`` when there is none."""
    request = urllib.request.Request(url, data=body, method="POST",
                                     headers={"Content-Type": "application/json", **headers})
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            return Reply(response.status, response.headers, response.read())
    except urllib.error.HTTPError as e:
        with e:
            return Reply(e.code, e.headers, e.read())
    except (OSError, http.client.HTTPException) as e:  # URLError, ConnectionError and TimeoutError are OSErrors
        reason = e.reason if isinstance(e, urllib.error.URLError) else e
        raise Unreachable(f"{type(reason).__name__}: {reason}" if str(reason) else type(reason).__name__) from None
