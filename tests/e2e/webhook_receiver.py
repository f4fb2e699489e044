#!/usr/bin/env python3
"""A webhook receiver for the end-to-end tests: the tests' own, independent
implementation of Standard Webhooks verification (python3 standard library
only), so that what orderpayd signs is checked by code that shares nothing
with it.

    webhook_receiver.py --port-file FILE [--port 0] [--tls-cert PEM --tls-key PEM] [--verbose]
    webhook_receiver.py --self-test

Listens on 127.0.0.1 (port 0: any free port), writes the port to FILE
(atomically, once listening) and serves until SIGTERM or SIGINT. Before
listening it checks its verification code against the Standard Webhooks
published test vector and refuses to start (exit 1) if that fails;
--self-test does only that check and prints the result.

Control API, JSON over HTTP on the same port:

  POST /_control/paths    {"path": "/a", "mode": "ok"|"fail"|"gone"|"hang"|"redirect"|"retry_after",
                           "failures": n, "retry_after": "1", "secrets": ["whsec_...", ...],
                           "status": 204, "location": "/redirected"}
      Configures (or reconfigures, resetting its failure count) a receiving path:
        ok           answers `status` (default 204)
        fail         answers 500 to the first `failures` requests (default 1; -1: all), then `status`
        gone         answers 410
        hang         reads the request and never answers, until the client disconnects or the
                     receiver stops (other requests are served meanwhile)
        redirect     answers 302 with Location: this server's `location` (default /redirected,
                     always configured "ok", so a followed redirect shows in its log)
        retry_after  answers 503 with Retry-After: `retry_after` (default "1") to the first
                     `failures` requests (default 1; -1: all), then `status`
      -> 200 {"path": ..., "mode": ..., ...}; 400 {"error": ...} for a bad configuration.
  POST /_control/secrets  {"path": "/a", "secrets": [...]}   replaces a path's secrets (a rotation).
  GET  /_control/log?path=/a   -> 200 [entry, ...] what that path received, in arrival order.
  GET  /_control/log           -> 200 [entry, ...] every path's, in arrival order.
  DELETE /_control/log[?path=/a]  forgets the log (of one path).
  GET  /_control/health   -> 200 {"ok": true, "tls_handshake_failures": n}
      (n: TLS connections whose handshake failed, e.g. a client that refused the certificate)

A log entry:
  {"path", "at": unix seconds (float) of arrival, "method",
   "headers": {"webhook-id", "webhook-timestamp", "webhook-signature", "content-type",
               "user-agent": value or null},
   "body": text, "answered": status code or null (hang, or not yet answered),
   "closed_at": for hang, when the connection ended (float) or null while it lasts,
   "signatures": number of v1 signatures in webhook-signature,
   "verified": [for each secret configured at arrival: one v1 signature matches it],
   "timestamp_ok": |arrival - webhook-timestamp| <= 300 s,
   "json_ok": the body parses as JSON}
The entry is recorded on arrival and its "answered" set before the answer is
sent: once a client has its answer, the log shows it.

Any other path (not configured, not under /_control/) answers 404 and is logged.
"""

import argparse
import base64
import binascii
import hashlib
import hmac
import http.server
import json
import os
import select
import signal
import socket
import ssl
import sys
import threading
import time
import urllib.parse

TOLERANCE_S = 300
MODES = ("ok", "fail", "gone", "hang", "redirect", "retry_after")
LOGGED_HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature", "content-type", "user-agent")
REDIRECT_TARGET = "/redirected"


# --- Standard Webhooks verification (the part the tests rely on) ----------------------------

def secret_key(secret):
    """The HMAC key of a secret: the base64 after "whsec_" (prefix optional), decoded."""
    if secret.startswith("whsec_"):
        secret = secret[len("whsec_"):]
    return base64.b64decode(secret, validate=True)


def v1_signatures(header):
    """The base64 signatures of the header's v1 entries (space separated "v1,<base64>")."""
    result = []
    for entry in (header or "").split(" "):
        version, sep, value = entry.partition(",")
        if sep and version == "v1" and value:
            result.append(value)
    return result


def signature_matches(secret, msg_id, timestamp, body, header):
    """True if one of header's v1 signatures is HMAC-SHA256(key, "id.timestamp.body")."""
    try:
        key = secret_key(secret)
    except (binascii.Error, ValueError):
        return False
    signed = msg_id.encode() + b"." + timestamp.encode() + b"." + body
    expected = hmac.new(key, signed, hashlib.sha256).digest()
    for value in v1_signatures(header):
        try:
            given = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            continue
        if hmac.compare_digest(expected, given):
            return True
    return False


def timestamp_within(timestamp, now, tolerance=TOLERANCE_S):
    try:
        return abs(now - int(timestamp)) <= tolerance
    except (TypeError, ValueError):
        return False


# The Standard Webhooks test vector, as its reference libraries' tests publish
# it (standard-webhooks/standard-webhooks, libraries/python/tests/test_webhooks.py
# test_sign_function and libraries/go/webhook_test.go TestWebhookSign).
VECTOR = {
    "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    "id": "msg_p5jXN8AQM9LWM0D4loKWxJek",
    "timestamp": "1614265330",
    "body": b'{"test": 2432232314}',
    "signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
}


def self_test():
    """(ok, lines): the vector must verify and every tampered copy must not."""
    v = VECTOR
    other_secret = "whsec_" + base64.b64encode(b"\x01" * 32).decode()
    cases = [
        ("published example verifies", True,
         signature_matches(v["secret"], v["id"], v["timestamp"], v["body"], v["signature"])),
        ("published example verifies among other signatures", True,
         signature_matches(v["secret"], v["id"], v["timestamp"], v["body"],
                           "v1a,AAAA v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc= " + v["signature"])),
        ("secret without whsec_ prefix verifies", True,
         signature_matches(v["secret"][6:], v["id"], v["timestamp"], v["body"], v["signature"])),
        ("tampered body fails", False,
         signature_matches(v["secret"], v["id"], v["timestamp"], b'{"test": 2432232315}', v["signature"])),
        ("tampered id fails", False,
         signature_matches(v["secret"], "msg_p5jXN8AQM9LWM0D4loKWxJel", v["timestamp"], v["body"], v["signature"])),
        ("tampered timestamp fails", False,
         signature_matches(v["secret"], v["id"], "1614265331", v["body"], v["signature"])),
        ("tampered signature fails", False,
         signature_matches(v["secret"], v["id"], v["timestamp"], v["body"],
                           "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OA=")),
        ("other secret fails", False,
         signature_matches(other_secret, v["id"], v["timestamp"], v["body"], v["signature"])),
        ("v1a entry with the right value is not a v1 signature", False,
         signature_matches(v["secret"], v["id"], v["timestamp"], v["body"], "v1a," + v["signature"][3:])),
        ("timestamp at the tolerance is accepted", True, timestamp_within(v["timestamp"], 1614265330 + 300)),
        ("timestamp past the tolerance is refused", False, timestamp_within(v["timestamp"], 1614265330 + 301)),
        ("timestamp in the future past the tolerance is refused", False,
         timestamp_within(v["timestamp"], 1614265330 - 301)),
        ("non-numeric timestamp is refused", False, timestamp_within("soon", 1614265330)),
    ]
    lines, ok = [], True
    for name, want, got in cases:
        good = want == got
        ok = ok and good
        lines.append(("ok    " if good else "FAIL  ") + name)
    return ok, lines


# --- the server -----------------------------------------------------------------------------

class State:
    def __init__(self):
        self.lock = threading.Lock()
        self.paths = {REDIRECT_TARGET: self._config({"path": REDIRECT_TARGET, "mode": "ok"})}
        self.log = []  # entries of every path, in arrival order
        self.tls_handshake_failures = 0  # a client that refused our certificate, say
        self.stopping = threading.Event()

    @staticmethod
    def _config(doc):
        """A path's configuration from a control request; ValueError if it is wrong."""
        if not isinstance(doc, dict):
            raise ValueError("the body must be a JSON object")
        path = doc.get("path")
        if not isinstance(path, str) or not path.startswith("/") or path.startswith("/_control/"):
            raise ValueError('"path" must be a string starting with / and not under /_control/')
        mode = doc.get("mode", "ok")
        if mode not in MODES:
            raise ValueError('"mode" must be one of ' + ", ".join(MODES))
        failures = doc.get("failures", 1)
        if not isinstance(failures, int) or isinstance(failures, bool) or failures < -1:
            raise ValueError('"failures" must be an integer >= 0, or -1 for every request')
        status = doc.get("status", 204)
        if not isinstance(status, int) or isinstance(status, bool) or not 200 <= status <= 299:
            raise ValueError('"status" must be a 2xx status code')
        retry_after = doc.get("retry_after", "1")
        if isinstance(retry_after, int) and not isinstance(retry_after, bool):
            retry_after = str(retry_after)
        if not isinstance(retry_after, str) or not retry_after:
            raise ValueError('"retry_after" must be a non-empty string (seconds or an HTTP date)')
        location = doc.get("location", REDIRECT_TARGET)
        if not isinstance(location, str) or not location.startswith("/"):
            raise ValueError('"location" must be a path on this server')
        secrets = State._secrets(doc.get("secrets", []))
        return {"path": path, "mode": mode, "failures": failures, "status": status,
                "retry_after": retry_after, "location": location, "secrets": secrets, "seen": 0}

    @staticmethod
    def _secrets(secrets):
        if not isinstance(secrets, list) or not all(isinstance(s, str) for s in secrets):
            raise ValueError('"secrets" must be an array of strings')
        for s in secrets:
            try:
                secret_key(s)
            except (binascii.Error, ValueError):
                raise ValueError("secret %r is not whsec_ followed by base64" % s) from None
        return list(secrets)

    def configure(self, doc):
        config = self._config(doc)
        with self.lock:
            self.paths[config["path"]] = config
        return self.public(config)

    def set_secrets(self, doc):
        if not isinstance(doc, dict) or not isinstance(doc.get("path"), str):
            raise ValueError('the body must be {"path": ..., "secrets": [...]}')
        secrets = self._secrets(doc.get("secrets"))
        with self.lock:
            config = self.paths.get(doc["path"])
            if config is None:
                raise LookupError("path %s is not configured" % doc["path"])
            config["secrets"] = secrets
            return self.public(config)

    @staticmethod
    def public(config):
        return {k: v for k, v in config.items() if k != "seen"}


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as a real receiver
    server_version = "webhook-receiver"
    sys_version = ""

    # TLS: the handshake runs here, in the connection's own thread, so a
    # client that never completes it holds up nobody else.
    def setup(self):
        if isinstance(self.request, ssl.SSLSocket):
            self.request.settimeout(10)
            try:
                self.request.do_handshake()
            except (ssl.SSLError, OSError):
                with self.state.lock:
                    self.state.tls_handshake_failures += 1
                raise
            self.request.settimeout(None)
        super().setup()

    def log_message(self, fmt, *args):
        if self.server.verbose:
            sys.stderr.write("webhook_receiver: %s %s\n" % (self.address_string(), fmt % args))

    @property
    def state(self):
        return self.server.state

    def _read_body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _send(self, status, body=b"", headers=()):
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        if body:
            self.send_header("Content-Type", "application/json")
        if status != 204:  # a 204 has no body and must not say a length (RFC 9110)
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)

    def _send_json(self, status, doc):
        self._send(status, json.dumps(doc).encode() + b"\n")

    def _handle(self):
        try:
            body = self._read_body()
        except (ValueError, OSError):
            self.close_connection = True
            return
        url = urllib.parse.urlsplit(self.path)
        if url.path.startswith("/_control/"):
            self._control(url, body)
        else:
            self._webhook(url.path, body)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _handle

    # --- the control API

    def _control(self, url, body):
        query = urllib.parse.parse_qs(url.query)
        route = (self.command, url.path)
        try:
            if route == ("GET", "/_control/health"):
                with self.state.lock:
                    failed = self.state.tls_handshake_failures
                return self._send_json(200, {"ok": True, "tls_handshake_failures": failed})
            if route == ("POST", "/_control/paths"):
                return self._send_json(200, self.state.configure(self._json(body)))
            if route == ("POST", "/_control/secrets"):
                return self._send_json(200, self.state.set_secrets(self._json(body)))
            if route == ("GET", "/_control/log"):
                path = query.get("path", [None])[0]
                with self.state.lock:
                    entries = [dict(e) for e in self.state.log if path is None or e["path"] == path]
                return self._send_json(200, entries)
            if route == ("DELETE", "/_control/log"):
                path = query.get("path", [None])[0]
                with self.state.lock:
                    self.state.log = [e for e in self.state.log if path is not None and e["path"] != path]
                return self._send(204)
            return self._send_json(404, {"error": "no control route %s %s" % route})
        except ValueError as e:
            return self._send_json(400, {"error": str(e)})
        except LookupError as e:
            return self._send_json(404, {"error": str(e)})

    @staticmethod
    def _json(body):
        try:
            return json.loads(body)
        except ValueError:
            raise ValueError("the body is not JSON") from None

    # --- the receiving paths

    def _webhook(self, path, body):
        now = time.time()
        header = {name: self.headers.get(name) for name in LOGGED_HEADERS}
        with self.state.lock:
            config = self.state.paths.get(path)
            secrets = list(config["secrets"]) if config else []
            seen = 0
            if config:
                seen = config["seen"]
                config["seen"] += 1
        msg_id = header["webhook-id"] or ""
        timestamp = header["webhook-timestamp"] or ""
        signature = header["webhook-signature"] or ""
        try:
            json.loads(body)
            json_ok = True
        except ValueError:
            json_ok = False
        entry = {
            "path": path,
            "at": now,
            "method": self.command,
            "headers": header,
            "body": body.decode("utf-8", errors="replace"),
            "answered": None,
            "closed_at": None,
            "signatures": len(v1_signatures(signature)),
            "verified": [signature_matches(s, msg_id, timestamp, body, signature) for s in secrets],
            "timestamp_ok": timestamp_within(timestamp, now),
            "json_ok": json_ok,
        }
        with self.state.lock:
            self.state.log.append(entry)

        if config is None:
            return self._answer(entry, 404, json.dumps({"error": "no such path"}).encode())
        mode = config["mode"]
        failing = config["failures"] == -1 or seen < config["failures"]
        if mode == "ok":
            return self._answer(entry, config["status"])
        if mode == "fail":
            return self._answer(entry, 500 if failing else config["status"])
        if mode == "gone":
            return self._answer(entry, 410)
        if mode == "retry_after":
            if failing:
                return self._answer(entry, 503, headers=[("Retry-After", config["retry_after"])])
            return self._answer(entry, config["status"])
        if mode == "redirect":
            host, port = self.server.server_address[:2]
            scheme = "https" if self.server.tls else "http"
            location = "%s://%s:%d%s" % (scheme, host, port, config["location"])
            return self._answer(entry, 302, headers=[("Location", location)])
        return self._hang(entry)

    def _answer(self, entry, status, body=b"", headers=()):
        with self.state.lock:
            entry["answered"] = status
        self._send(status, body, headers)

    def _hang(self, entry):
        """No answer: wait until the client goes away or the receiver stops."""
        sock = self.connection
        sock.settimeout(0.2)
        while not self.state.stopping.is_set():
            readable, _, _ = select.select([sock], [], [], 0.2)
            if not readable:
                continue
            try:
                if not sock.recv(4096):  # EOF: the client closed
                    break
            except (socket.timeout, ssl.SSLWantReadError):
                continue
            except OSError:
                break
        with self.state.lock:
            entry["closed_at"] = time.time()
        self.close_connection = True


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 256

    def handle_error(self, request, client_address):
        # A client that goes away or fails the TLS handshake is part of the
        # tests, not an error of the receiver's.
        if isinstance(sys.exc_info()[1], OSError) and not self.verbose:
            return
        super().handle_error(request, client_address)


def write_port_file(path, port):
    tmp = "%s.tmp.%d" % (path, os.getpid())
    with open(tmp, "w") as f:
        f.write("%d\n" % port)
    os.replace(tmp, path)


def main(argv):
    parser = argparse.ArgumentParser(description="Standard Webhooks receiver for the orderpay tests.")
    parser.add_argument("--port-file", help="where to write the port once listening")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: any free one)")
    parser.add_argument("--tls-cert", help="PEM certificate (chain): serve HTTPS")
    parser.add_argument("--tls-key", help="PEM private key of --tls-cert")
    parser.add_argument("--self-test", action="store_true",
                        help="check the verification against the Standard Webhooks test vector and exit")
    parser.add_argument("--verbose", action="store_true", help="log each request on stderr")
    args = parser.parse_args(argv)

    ok, lines = self_test()
    if args.self_test:
        print("\n".join(lines))
        print("self-test: " + ("passed" if ok else "FAILED"))
        return 0 if ok else 1
    if not ok:
        sys.stderr.write("webhook_receiver: self-test failed, not starting:\n  " + "\n  ".join(lines) + "\n")
        return 1
    if not args.port_file:
        parser.error("--port-file is required (or --self-test)")
    if bool(args.tls_cert) != bool(args.tls_key):
        parser.error("--tls-cert and --tls-key go together")

    server = Server(("127.0.0.1", args.port), Handler)
    server.state = State()
    server.verbose = args.verbose
    server.tls = bool(args.tls_cert)
    if server.tls:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(args.tls_cert, args.tls_key)
        server.socket = context.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=False)

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    serving = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    serving.start()
    write_port_file(args.port_file, server.server_address[1])
    if args.verbose:
        sys.stderr.write("webhook_receiver: listening on 127.0.0.1:%d%s\n"
                         % (server.server_address[1], " (TLS)" if server.tls else ""))
    while not stop.wait(1):
        pass
    server.state.stopping.set()  # ends the hanging requests
    server.shutdown()
    server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
