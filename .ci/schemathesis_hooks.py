"""Schemathesis hooks for flashguard's CI: authenticate each generated request
as the operation's `security` asks (a user's login token, or the admin token).

The login token comes from POST /api/login on the server under test; the admin
token and the provider's signing secret from the environment variables the CI
started the server with (ADMIN_TOKEN, PSP_SECRET). Callbacks are signed, so
the fuzzer reaches the callback's own checks instead of stopping at 401.
"""
import hashlib
import hmac
import json
import os
import time
import urllib.request

import schemathesis

BASE_URL = os.environ["FLASHGUARD_URL"]
ADMIN_TOKEN = os.environ["ADMIN_TOKEN"]
PSP_SECRET = os.environ["PSP_SECRET"]
CALLBACK_PATH = "/api/payments/callback"


def _login(username: str) -> str:
    request = urllib.request.Request(
        f"{BASE_URL}/api/login",
        data=json.dumps({"username": username}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.load(response)["token"]


def _schemes(case) -> set:
    security = case.operation.definition.raw.get("security") or []
    return {name for requirement in security for name in requirement}


@schemathesis.auth()
class FlashguardAuth:
    def get(self, case, context):
        return {"user": _login("schemathesis"), "admin": ADMIN_TOKEN}

    def set(self, case, data, context):
        schemes = _schemes(case)
        token = data["admin"] if "admin" in schemes else data["user"] if "login" in schemes else None
        if token is not None:
            case.headers = case.headers or {}
            case.headers["Authorization"] = f"Bearer {token}"
        _no_stalls(case)
        _small_simulations(case)
        if case.operation.path == CALLBACK_PATH and isinstance(case.body, (dict, list)):
            case.headers = case.headers or {}
            case.headers["PSP-Signature"] = _provider_signature(case.body)


def _no_stalls(case) -> None:
    """The fault that freezes orders after the stock gate (up to 60 s each)
    would make every later order of the run wait out the request timeout:
    a generated stall within the allowed range becomes 0 (out-of-range and
    ill-typed values still go as generated, to be refused)."""
    body = case.body
    if case.operation.path != "/api/admin/faults" or not isinstance(body, dict):
        return
    stall = body.get("orders_stall_after_gate_ms")
    if isinstance(stall, int) and not isinstance(stall, bool) and 0 < stall <= 60000:
        body["orders_stall_after_gate_ms"] = 0


def _small_simulations(case) -> None:
    """A generated simulation that the server would accept runs thousands of
    buyers for up to a minute while the fuzzer goes on: within the allowed
    ranges, it becomes a small one with no race window (out-of-range and
    ill-typed values still go as generated, to be refused)."""
    body = case.body
    if case.operation.path != "/api/lab/simulations" or case.method.upper() != "POST":
        return
    if not isinstance(body, dict):
        return
    for name, low, small in [("users", 1, 20), ("stock", 1, 10), ("concurrency", 1, 4)]:
        value = body.get(name, small + 1)
        if isinstance(value, int) and not isinstance(value, bool) and value >= low:
            body[name] = min(value, small)
    window = body.get("race_window_ms")
    if isinstance(window, int) and not isinstance(window, bool) and 0 < window <= 2000:
        body["race_window_ms"] = 0


def _provider_signature(body) -> str:
    """Signs the body as the provider does, over the bytes requests will send
    (json.dumps with its defaults), so that the fuzzer reaches past the signature."""
    timestamp = int(time.time())
    raw = json.dumps(body, allow_nan=False)
    digest = hmac.new(PSP_SECRET.encode(), f"{timestamp}.{raw}".encode(), hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"
