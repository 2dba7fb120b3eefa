"""A stand-in for `vllm serve MODEL --omni`: a real HTTP server on loopback speaking the endpoints vLLM-Omni's
diffusion benchmark client uses (GET /health; POST /v1/chat/completions, /v1/images/generations,
/v1/images/edits; POST /v1/videos with its job's GET status, GET content and DELETE), started by the
vllm-omni-serve engine exactly as it starts the real server.

Like the real server it starts a child process (vLLM's engine-core workers), so that the engine's stop of the
process group is tested. $STANDIN_MODE picks a behaviour:
  ok            healthy after $STANDIN_HEALTHY_AFTER_S (default 0.3 s), each request takes $STANDIN_REQUEST_S
  never_healthy /health answers 503 forever, and SIGTERM is ignored (the engine must SIGKILL the group)
  oom           prints a CUDA out-of-memory traceback while loading and exits 1
  hccl          prints an HCCL initialisation error and exits 1
  slow          healthy, but every request takes $STANDIN_REQUEST_S (set it long: the benchmark times out)
  nccl_crash    healthy; after $STANDIN_CRASH_AFTER requests (default 3) prints an NCCL error and exits 1
$STANDIN_PIDS: a file where it writes {"server": pid, "child": pid, "argv": [...]}.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PNG_1X1 = base64.b64encode(
    bytes.fromhex(
        "89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489"
        "0000000d49444154789c6360000002000100e221bc330000000049454e44ae426082"
    )
).decode()
MODE = os.environ.get("STANDIN_MODE", "ok")
REQUEST_S = float(os.environ.get("STANDIN_REQUEST_S", "0.02"))
HEALTHY_AFTER_S = float(os.environ.get("STANDIN_HEALTHY_AFTER_S", "0.3"))
STARTED = time.monotonic()
LOCK = threading.Lock()
SERVED = [0]
PEAK_MB = 1234.5
STAGES = {"text_encoder": 0.004, "denoise": 0.012, "vae_decode": 0.003}


class Handler(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # the access log goes to stderr (the server log)
        sys.stderr.write("standin: " + (format % args) + "\n")

    def _send(self, code: int, body: dict) -> None:
        raw = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def do_GET(self) -> None:
        if self.path == "/health":
            healthy = MODE != "never_healthy" and time.monotonic() - STARTED >= HEALTHY_AFTER_S
            self._send(200 if healthy else 503, {"status": "ok" if healthy else "loading"})
        elif self.path == "/v1/models":
            self._send(200, {"data": [{"id": ARGS.model}]})
        elif self.path.startswith("/v1/videos/") and self.path.endswith("/content"):
            raw = base64.b64decode(PNG_1X1)  # stands for the mp4
            self.send_response(200)
            self.send_header("Content-Type", "video/mp4")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)
        elif self.path.startswith("/v1/videos/"):  # the job's status, polled by the client
            job = self.path.rsplit("/", 1)[-1]
            self._send(200, {"id": job, "status": "completed", "peak_memory_mb": PEAK_MB, "stage_durations": STAGES})
        else:
            self._send(404, {"error": "not found"})

    def do_DELETE(self) -> None:
        self._send(200, {"deleted": True})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        time.sleep(REQUEST_S)
        if MODE == "nccl_crash":
            with LOCK:
                SERVED[0] += 1
                if SERVED[0] > int(os.environ.get("STANDIN_CRASH_AFTER", "3")):
                    print(
                        "RuntimeError: NCCL error in: ProcessGroupNCCL.cpp:1970, unhandled cuda error, NCCL version "
                        "2.21.5; ncclUnhandledCudaError: Call to CUDA function failed.",
                        file=sys.stderr,
                        flush=True,
                    )
                    os._exit(1)
        if self.path == "/v1/chat/completions":
            try:
                body = json.loads(raw or b"{}")
            except ValueError:
                self._send(400, {"error": "body is not JSON"})
                return
            if not body.get("messages"):
                self._send(400, {"error": "messages is required"})
                return
            # Where vLLM-Omni puts them: the first content item carries the profiler's numbers.
            item = {
                "type": "image_url",
                "image_url": {"url": f"data:image/png;base64,{PNG_1X1}"},
                "peak_memory_mb": PEAK_MB,
                "stage_durations": STAGES,
            }
            self._send(200, {"choices": [{"message": {"role": "assistant", "content": [item]}}]})
        elif self.path in ("/v1/images/generations", "/v1/images/edits"):  # JSON or multipart form
            self._send(200, {"data": [{"b64_json": PNG_1X1}], "usage": {"peak_memory_mb": PEAK_MB}})
        elif self.path == "/v1/videos":  # multipart form; the job is done when first polled
            self._send(200, {"id": f"video-{time.monotonic_ns()}", "status": "queued"})
        else:
            self._send(404, {"error": "not found"})


def main() -> int:
    global ARGS
    p = argparse.ArgumentParser()
    p.add_argument("model")
    p.add_argument("--omni", action="store_true")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    ARGS, _unknown = p.parse_known_args()  # serve_args: accepted as the real server accepts them
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    if os.environ.get("STANDIN_PIDS"):
        with open(os.environ["STANDIN_PIDS"], "w") as f:
            json.dump({"server": os.getpid(), "child": child.pid, "argv": sys.argv[1:]}, f)
    print(f"INFO standin vllm serve {ARGS.model} --omni on {ARGS.host}:{ARGS.port}", flush=True)
    if MODE == "oom":
        time.sleep(0.2)
        print("Traceback (most recent call last):", file=sys.stderr)
        print(
            "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity "
            "of 79.11 GiB of which 1.02 GiB is free.",
            file=sys.stderr,
            flush=True,
        )
        child.kill()
        return 1
    if MODE == "hccl":
        time.sleep(0.2)
        print(
            "RuntimeError: create:torch_npu/csrc/distributed/ProcessGroupHCCL.cpp: HCCL function error: "
            "HcclGetRootInfo(&hcclID), error code is 7",
            file=sys.stderr,
            flush=True,
        )
        child.kill()
        return 1
    if MODE == "never_healthy":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    server = ThreadingHTTPServer((ARGS.host, ARGS.port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        while True:
            time.sleep(1)
    finally:
        server.shutdown()


if __name__ == "__main__":
    sys.exit(main())
