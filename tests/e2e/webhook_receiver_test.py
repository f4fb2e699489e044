#!/usr/bin/env python3
"""Checks tests/e2e/webhook_receiver.py, the receiver the end-to-end tests
deliver webhooks to: its self-test, the control API, every mode's answer,
the log's verdicts on signatures signed here (with the standard library,
not with the receiver's code), a hanging path that holds up nobody else,
TLS, and a clean stop on SIGTERM.

    webhook_receiver_test.py [RECEIVER]   (default: webhook_receiver.py beside this file)

Every wait polls until a deadline; nothing sleeps a fixed time.
"""

import base64
import hashlib
import hmac
import http.client
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
RECEIVER = os.path.abspath(sys.argv[1]) if len(sys.argv) > 1 else os.path.join(HERE, "webhook_receiver.py")

SECRET_A = "whsec_" + base64.b64encode(bytes(range(32))).decode()
SECRET_B = "whsec_" + base64.b64encode(bytes(range(100, 132))).decode()

failures = []


def check(condition, what):
    print(("ok    " if condition else "FAIL  ") + what, flush=True)
    if not condition:
        failures.append(what)


def wait_for(predicate, what, timeout=10.0):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %.0f s waiting for %s" % (timeout, what))
        time.sleep(0.02)  # poll interval, bounded by the deadline above


def sign(secret, msg_id, timestamp, body):
    key = base64.b64decode(secret[len("whsec_"):])
    mac = hmac.new(key, ("%s.%s." % (msg_id, timestamp)).encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


class Receiver:
    def __init__(self, workdir, tls=None):
        self.port_file = os.path.join(workdir, "port-tls" if tls else "port")
        args = [RECEIVER, "--port-file", self.port_file]
        if tls:
            args += ["--tls-cert", tls[0], "--tls-key", tls[1]]
        self.tls = tls
        self.process = subprocess.Popen(args)

        def port():
            if self.process.poll() is not None:
                raise AssertionError("the receiver exited with %s before listening" % self.process.returncode)
            try:
                with open(self.port_file) as f:
                    return int(f.read())
            except (FileNotFoundError, ValueError):
                return None
        self.port = wait_for(port, "the port file")

    def connection(self, timeout=10):
        if self.tls:
            context = ssl.create_default_context(cafile=self.tls[0])
            return http.client.HTTPSConnection("127.0.0.1", self.port, timeout=timeout, context=context)
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def request(self, method, path, body=b"", headers=None, timeout=10):
        c = self.connection(timeout)
        try:
            c.request(method, path, body=body, headers=headers or {})
            r = c.getresponse()
            return r.status, dict((k.lower(), v) for k, v in r.getheaders()), r.read()
        finally:
            c.close()

    def control(self, method, path, doc=None):
        body = json.dumps(doc).encode() if doc is not None else b""
        status, _, answer = self.request(method, "/_control/" + path, body, {"Content-Type": "application/json"})
        return status, (json.loads(answer) if answer else None)

    def configure(self, **doc):
        status, answer = self.control("POST", "paths", doc)
        assert status == 200, (status, answer)
        return answer

    def log(self, path=None):
        status, entries = self.control("GET", "log" + ("?path=" + path if path else ""))
        assert status == 200, status
        return entries

    def deliver(self, path, body=b'{"type": "order.paid"}', secrets=(SECRET_A,), timestamp=None,
                msg_id="evt_test", timeout=10):
        timestamp = str(int(time.time()) if timestamp is None else timestamp)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "receiver-test/1",
            "webhook-id": msg_id,
            "webhook-timestamp": timestamp,
            "webhook-signature": " ".join(sign(s, msg_id, timestamp, body) for s in secrets),
        }
        return self.request("POST", path, body, headers, timeout)

    def stop(self, timeout=10):
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            return None


def modes_and_log(r):
    r.configure(path="/ok", mode="ok", secrets=[SECRET_A, SECRET_B])

    status, _, _ = r.deliver("/ok", secrets=[SECRET_A], msg_id="evt_1")
    check(status == 204, "ok: 204")
    r.deliver("/ok", secrets=[SECRET_B, SECRET_A], msg_id="evt_2")
    r.deliver("/ok", secrets=["whsec_" + base64.b64encode(b"x" * 32).decode()], msg_id="evt_3")
    r.deliver("/ok", secrets=[SECRET_A], timestamp=int(time.time()) - 301, msg_id="evt_4")
    r.deliver("/ok", body=b"not json", secrets=[SECRET_A], msg_id="evt_5")
    # Signed for another body than the one sent.
    ts = str(int(time.time()))
    r.request("POST", "/ok", b'{"amount": 2}', {"webhook-id": "evt_6", "webhook-timestamp": ts,
                                                 "webhook-signature": sign(SECRET_A, "evt_6", ts, b'{"amount": 1}')})
    status, _, _ = r.request("GET", "/ok")
    check(status == 204, "ok: a request without any webhook header is answered too")

    log = r.log("/ok")
    check([e["headers"]["webhook-id"] for e in log] == ["evt_1", "evt_2", "evt_3", "evt_4", "evt_5", "evt_6", None],
          "log: every request, in arrival order")
    e1, e2, e3, e4, e5, e6, e7 = log
    check(e1["verified"] == [True, False] and e1["signatures"] == 1, "log: signed with secret A verifies A only")
    check(e2["verified"] == [True, True] and e2["signatures"] == 2, "log: two signatures verify both secrets")
    check(e3["verified"] == [False, False], "log: a signature with another secret verifies nothing")
    check(e4["verified"] == [True, False] and not e4["timestamp_ok"], "log: an old timestamp is not timestamp_ok")
    check(e1["timestamp_ok"] and e1["json_ok"], "log: a fresh timestamp and a JSON body are ok")
    check(not e5["json_ok"] and e5["body"] == "not json", "log: a body that is not JSON is not json_ok")
    check(e6["verified"] == [False, False], "log: a body other than the one signed does not verify")
    check(e7["signatures"] == 0 and e7["verified"] == [False, False] and e7["method"] == "GET",
          "log: no signature header: 0 signatures, nothing verified")
    check(e1["headers"]["content-type"] == "application/json" and e1["headers"]["user-agent"] == "receiver-test/1",
          "log: content-type and user-agent recorded")
    check(e1["answered"] == 204 and e1["method"] == "POST" and abs(e1["at"] - time.time()) < 60,
          "log: answered, method and arrival time")
    check(e1["body"] == '{"type": "order.paid"}', "log: the body as sent")

    # A rotation: the receiver's secrets replaced.
    status, _ = r.control("POST", "secrets", {"path": "/ok", "secrets": [SECRET_B]})
    check(status == 200, "secrets: replaced")
    r.deliver("/ok", secrets=[SECRET_B, SECRET_A], msg_id="evt_8")
    r.deliver("/ok", secrets=[SECRET_A], msg_id="evt_9")
    log = r.log("/ok")
    check(log[-2]["verified"] == [True] and log[-1]["verified"] == [False],
          "secrets: verification uses the replaced secrets")

    r.configure(path="/fail", mode="fail", failures=2)
    check([r.deliver("/fail")[0] for _ in range(3)] == [500, 500, 204], "fail, failures 2: 500, 500, then 204")
    r.configure(path="/fail1", mode="fail")
    check([r.deliver("/fail1")[0] for _ in range(2)] == [500, 204], "fail without failures: fails once")
    r.configure(path="/failall", mode="fail", failures=-1)
    check([r.deliver("/failall")[0] for _ in range(3)] == [500, 500, 500], "fail, failures -1: always 500")
    check([e["answered"] for e in r.log("/fail")] == [500, 500, 204], "fail: the log has each answer")

    r.configure(path="/gone", mode="gone")
    check(r.deliver("/gone")[0] == 410, "gone: 410")

    r.configure(path="/ok200", mode="ok", status=200)
    check(r.deliver("/ok200")[0] == 200, "ok with status 200: 200")

    r.configure(path="/retry", mode="retry_after", retry_after="7", failures=1)
    status, headers, _ = r.deliver("/retry")
    check(status == 503 and headers.get("retry-after") == "7", "retry_after: 503 with Retry-After: 7")
    check(r.deliver("/retry")[0] == 204, "retry_after: then 204")

    r.configure(path="/moved", mode="redirect")
    status, headers, _ = r.deliver("/moved")
    scheme = "https" if r.tls else "http"
    check(status == 302 and headers.get("location") == "%s://127.0.0.1:%d/redirected" % (scheme, r.port),
          "redirect: 302 to /redirected on this server")
    check(r.log("/redirected") == [], "redirect: /redirected not reached until followed")
    check(r.deliver("/redirected")[0] == 204 and len(r.log("/redirected")) == 1, "redirect: /redirected records")

    status, _, _ = r.deliver("/nowhere")
    check(status == 404 and r.log("/nowhere")[0]["answered"] == 404, "an unconfigured path: 404, logged")

    everything = r.log()
    check(len(everything) == sum(len(r.log(p)) for p in {e["path"] for e in everything})
          and [e["at"] for e in everything] == sorted(e["at"] for e in everything),
          "log without a path: every path's entries, in arrival order")

    status, answer = r.control("POST", "paths", {"path": "/x", "mode": "sometimes"})
    check(status == 400 and "mode" in answer["error"], "control: an unknown mode is 400")
    status, _ = r.control("POST", "paths", {"path": "/x", "secrets": ["whsec_not base64!"]})
    check(status == 400, "control: a secret that is not base64 is 400")
    status, _ = r.control("POST", "paths", {"path": "/_control/x"})
    check(status == 400, "control: a path under /_control/ is 400")
    status, _ = r.control("POST", "secrets", {"path": "/unknown", "secrets": []})
    check(status == 404, "control: secrets of an unconfigured path is 404")
    status, _, _ = r.request("POST", "/_control/paths", b"{", {"Content-Type": "application/json"})
    check(status == 400, "control: bad JSON is 400")

    status, _ = r.control("DELETE", "log?path=/gone")
    check(status == 204 and r.log("/gone") == [] and r.log("/ok") != [], "control: one path's log forgotten")


def hang(r):
    r.configure(path="/hang", mode="hang")
    before = len(r.log("/hang"))

    # One connection held on a hanging request, without any timeout...
    held = r.connection(timeout=30)
    held.putrequest("POST", "/hang")
    held.putheader("Content-Length", "2")
    held.putheader("webhook-id", "evt_held")
    held.endheaders(b"{}")
    wait_for(lambda: len(r.log("/hang")) == before + 1, "the held request to arrive")
    # ... does not stop another from being answered.
    check(r.deliver("/ok", secrets=[SECRET_B])[0] == 204, "hang: another request is answered while one hangs")
    entry = r.log("/hang")[-1]
    check(entry["answered"] is None and entry["closed_at"] is None and entry["headers"]["webhook-id"] == "evt_held",
          "hang: the hanging request is logged, unanswered and still open")

    # A client with a 1 s timeout times out, and the log notes when it left.
    started = time.monotonic()
    try:
        r.deliver("/hang", msg_id="evt_hang", timeout=1)
        outcome = "answered"
    except (socket.timeout, TimeoutError):
        outcome = time.monotonic() - started
    check(isinstance(outcome, float) and outcome >= 0.9, "hang: a client with a 1 s timeout times out (%r)" % outcome)
    wait_for(lambda: [e for e in r.log("/hang") if e["headers"]["webhook-id"] == "evt_hang" and e["closed_at"]],
             "the timed-out client's departure in the log")
    check(r.log("/hang")[-2]["closed_at"] is None, "hang: the held request is still open meanwhile")
    held.close()
    wait_for(lambda: r.log("/hang")[-2]["closed_at"], "the held request's departure in the log")
    check(all(e["answered"] is None for e in r.log("/hang")), "hang: nothing was answered")


def refuses_to_start_when_the_self_test_fails(workdir):
    port_file = os.path.join(workdir, "port-broken")
    code = ("import sys; sys.path.insert(0, %r); import webhook_receiver as w; "
            "w.VECTOR['signature'] = 'v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OA='; "
            "sys.exit(w.main(['--port-file', %r]))") % (os.path.dirname(RECEIVER), port_file)
    # -B: no __pycache__ left in the source tree by the import.
    p = subprocess.run([sys.executable, "-B", "-c", code], capture_output=True, text=True, timeout=30)
    check(p.returncode == 1 and not os.path.exists(port_file) and "self-test failed" in p.stderr,
          "a receiver whose verification disagrees with the published example does not start")


def make_certificate(workdir):
    openssl = shutil.which("openssl")
    if not openssl:
        check(False, "openssl is needed for the TLS case (Debian: openssl)")
        return None
    cert, key = os.path.join(workdir, "cert.pem"), os.path.join(workdir, "key.pem")
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", key, "-out", cert],
                   check=True, capture_output=True, timeout=60)
    return cert, key


def main():
    p = subprocess.run([RECEIVER, "--self-test"], capture_output=True, text=True, timeout=30)
    print(p.stdout, end="")
    check(p.returncode == 0 and "self-test: passed" in p.stdout, "--self-test passes")

    workdir = tempfile.mkdtemp(prefix="webhook-receiver-test.")
    receivers = []
    try:
        refuses_to_start_when_the_self_test_fails(workdir)

        r = Receiver(workdir)
        receivers.append(r)
        check(os.listdir(workdir).count("port") == 1 and not [f for f in os.listdir(workdir) if ".tmp." in f],
              "the port file is written whole (no temporary left)")
        modes_and_log(r)
        hang(r)

        tls = make_certificate(workdir)
        if tls:
            t = Receiver(workdir, tls)
            receivers.append(t)
            t.configure(path="/ok", mode="ok", secrets=[SECRET_A])
            status, _, _ = t.deliver("/ok", msg_id="evt_tls")
            log = t.log("/ok")
            check(status == 204 and log[0]["verified"] == [True], "TLS: a delivery over HTTPS verifies")
            t.configure(path="/moved", mode="redirect")
            check(t.deliver("/moved")[1].get("location", "").startswith("https://"), "TLS: redirects to https")
            # A client that connects and never starts TLS holds up nobody.
            with socket.create_connection(("127.0.0.1", t.port)):
                check(t.deliver("/ok")[0] == 204, "TLS: served while another connection has not shaken hands")
            # A client that does not trust the certificate: counted, and the receiver serves on.
            # (The connection above, closed before any handshake, may count too: wait for it first.)
            before = wait_for(lambda: t.control("GET", "health")[1]["tls_handshake_failures"],
                              "the connection closed unshaken to be counted")
            try:
                plain = ssl.create_default_context()  # the system's CAs: the self-signed certificate fails
                with socket.create_connection(("127.0.0.1", t.port)) as s:
                    plain.wrap_socket(s, server_hostname="127.0.0.1")
                check(False, "TLS: a client that does not trust the certificate fails the handshake")
            except ssl.SSLError:
                pass
            wait_for(lambda: t.control("GET", "health")[1]["tls_handshake_failures"] == before + 1,
                     "the failed handshake to be counted")
            check(t.deliver("/ok")[0] == 204, "TLS: a failed handshake is counted and the receiver serves on")
            t.configure(path="/hang", mode="hang")
            hang(t)

        # SIGTERM with a request hanging: the receiver still stops at once.
        r.configure(path="/hang", mode="hang")
        before = len(r.log("/hang"))
        held = socket.create_connection(("127.0.0.1", r.port))
        held.sendall(b"POST /hang HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")
        wait_for(lambda: len(r.log("/hang")) == before + 1, "the last hanging request to arrive")
        started = time.monotonic()
        code = r.stop()
        check(code == 0 and time.monotonic() - started < 5,
              "SIGTERM stops it with 0 while a request hangs (exit %s)" % code)
        check(held.recv(100) == b"", "the hanging connection is closed unanswered at the stop")
        held.close()
    except AssertionError as e:
        check(False, str(e))
    finally:
        for r in receivers:
            if r.process.poll() is None:
                r.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    if failures:
        print("\n%d check(s) failed:\n  %s" % (len(failures), "\n  ".join(failures)))
        return 1
    print("\nall checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
