"""A private mosquitto for the tests: a free port, a generated config, persistence in its own directory."""

from __future__ import annotations

import getpass
import shutil
import socket
import subprocess
from pathlib import Path

from app.redis_server import free_port
from tests.support import stop, wait_until


def find_mosquitto() -> str:
    """Path of the mosquitto binary (``tests/run`` installs it when missing)."""
    for candidate in (shutil.which("mosquitto"), "/usr/sbin/mosquitto"):
        if candidate and Path(candidate).exists():
            return candidate
    raise RuntimeError("mosquitto not found: tests/run installs it with apt-get")


def make_certificates(directory: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate for 127.0.0.1 signed by it: (ca, cert, key), with openssl."""

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True, timeout=60)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test-ca",
            "-keyout", "ca.key", "-out", "ca.pem")  # fmt: skip
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", "server.key",
            "-out", "server.csr")  # fmt: skip
    (directory / "san.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-days", "2", "-extfile", "san.cnf", "-out", "server.pem")  # fmt: skip
    return directory / "ca.pem", directory / "server.pem", directory / "server.key"


class Mosquitto:
    """One broker process; stop() and start() keep its port and its persisted sessions."""

    def __init__(self, directory: Path, tls: tuple[Path, Path] | None = None, anonymous: bool = True) -> None:
        self.directory = directory
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.config = directory / "mosquitto.conf"
        certificates = f"certfile {tls[0]}\nkeyfile {tls[1]}\n" if tls else ""
        self.config.write_text(
            f"listener {self.port} 127.0.0.1\n"
            f"{certificates}"
            f"user {getpass.getuser()}\n"  # as root, mosquitto switches to a user who cannot read tmp_path
            f"allow_anonymous {'true' if anonymous else 'false'}\n"  # false, no password file: all refused
            "persistence true\n"
            f"persistence_location {directory}/\n"
            "max_inflight_messages 0\n"
            "max_queued_messages 0\n"
            f"log_dest file {directory}/mosquitto.log\n"
        )

    def _accepting(self) -> bool:
        """True once the port accepts a TCP connection."""
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(f"mosquitto exited with {self.process.returncode}; see {self.directory}")
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                return True
        except OSError:
            return False

    def start(self) -> Mosquitto:
        """Start the broker and wait until it accepts connections."""
        self.process = subprocess.Popen(
            [find_mosquitto(), "-c", str(self.config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_until(self._accepting, timeout=10, what="mosquitto to listen")
        return self

    def stop(self) -> None:
        """Stop the broker by pid (SIGTERM: it saves its persistent sessions)."""
        if self.process is not None:
            stop(self.process)
            self.process = None
