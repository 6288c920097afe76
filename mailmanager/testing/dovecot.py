"""A private, rootless Dovecot on 127.0.0.1 for tests and benchmarks.

`DovecotServer` writes a config into a temp directory, starts the master in the foreground
(so the process we start *is* the master and can be killed by PID), picks free ports, and
waits for them to answer. Users are free: a static passdb accepts any user name with the
password `PASSWORD`, so a random user name isolates a test (each user gets its own Maildir
under `root/home/<user>`).

The Dovecot 2.3 config is verified on Dovecot 2.3.19. Dovecot 2.4 does not load 2.3
configs, so 2.4 gets its own template, written from the upgrade guide
(https://doc.dovecot.org/2.4.0/installation/upgrade/2.3-to-2.4.html) and not verified on
a 2.4 server: it is validated with `dovecot -n` before starting, so a wrong key fails loudly
instead of hanging.

Run as root, Dovecot refuses to run its login processes as root, so the master runs as
`nobody:nogroup`; as another user it runs as that user.
"""

from __future__ import annotations

import contextlib
import grp
import itertools
import os
import pwd
import re
import secrets
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from pathlib import Path

from imapclient import IMAPClient

PASSWORD = "secret"
# The capability line of the "fallback" instance: what Dovecot 2.3 advertises minus
# CONDSTORE, QRESYNC (and ESEARCH etc.). Set as `imap_capability`, Dovecot 2.3.19 then
# advertises neither CONDSTORE nor QRESYNC (verified).
NO_CONDSTORE_CAPABILITY = (
    "IMAP4rev1 SASL-IR LITERAL+ ID ENABLE IDLE NAMESPACE UIDPLUS UNSELECT MOVE SPECIAL-USE"
)


def dovecot_binary() -> str | None:
    """The path of the `dovecot` master binary, or None when Dovecot is not installed."""
    found = shutil.which("dovecot")
    if found:
        return found
    return "/usr/sbin/dovecot" if os.path.exists("/usr/sbin/dovecot") else None


def dovecot_version() -> tuple[int, int]:
    """(major, minor) of the installed Dovecot. Raises RuntimeError when absent."""
    binary = dovecot_binary()
    if binary is None:
        raise RuntimeError("dovecot is not installed (apt-get install dovecot-imapd dovecot-lmtpd)")
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, check=True)
    match = re.match(r"(\d+)\.(\d+)", out.stdout.strip())
    if match is None:
        raise RuntimeError(f"cannot read the Dovecot version from {out.stdout!r}")
    return int(match.group(1)), int(match.group(2))


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def wait_for_port(port: int, timeout: float = 15.0, host: str = "127.0.0.1") -> None:
    """Wait until something accepts connections on `port`. Raises TimeoutError."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_open(port, host):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout:.0f} s")


def make_self_signed_cert(directory: Path, name: str = "localhost") -> tuple[Path, Path]:
    """Write cert.pem/key.pem (EC P-256, SAN localhost + 127.0.0.1) with the openssl CLI."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
            "-nodes", "-days", "3", "-subj", f"/CN={name}",
            "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


_CONF_23 = """\
base_dir = {root}/run
state_dir = {root}/state
instance_name = mm-test-dovecot-{tag}
protocols = imap lmtp
listen = 127.0.0.1
log_path = {root}/dovecot.log
info_log_path = {root}/dovecot.log
{ssl_block}
auth_mechanisms = plain login
default_internal_user = {user}
default_internal_group = {group}
default_login_user = {user}
first_valid_uid = 0
mail_max_userip_connections = 50
auth_failure_delay = 0
passdb {{
  driver = static
  args = password={password}
}}
userdb {{
  driver = static
  args = uid={user} gid={group} home={root}/home/%n
}}
mail_location = maildir:~/Maildir
namespace inbox {{
  inbox = yes
  separator = /
  mailbox Sent {{
    special_use = \\Sent
    auto = subscribe
  }}
  mailbox Trash {{
    special_use = \\Trash
    auto = subscribe
  }}
  mailbox Archive {{
    special_use = \\Archive
    auto = create
  }}
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {imap_port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {imaps_port}
    ssl = yes
  }}
  chroot =
}}
service pop3-login {{
  inet_listener pop3 {{
    port = 0
  }}
  inet_listener pop3s {{
    port = 0
  }}
}}
service lmtp {{
  inet_listener lmtp {{
    address = 127.0.0.1
    port = {lmtp_port}
  }}
  unix_listener lmtp {{
    mode = 0600
  }}
}}
service anvil {{
  chroot =
}}
service auth {{
  unix_listener auth-userdb {{
    mode = 0600
  }}
}}
service stats {{
  unix_listener stats-reader {{
    mode = 0600
  }}
  unix_listener stats-writer {{
    mode = 0600
  }}
}}
lmtp_save_to_detail_mailbox = no
{capability_block}
"""

# Dovecot 2.4 (NOT verified on a 2.4 server): renamed settings
# (auth_allow_cleartext, mail_driver/mail_path, ssl_server_*_file, listener `listen`) and
# named passdb/userdb blocks, per doc.dovecot.org/2.4.0/installation/upgrade/2.3-to-2.4.html.
_CONF_24 = """\
dovecot_config_version = 2.4.0
dovecot_storage_version = 2.4.0
base_dir = {root}/run
state_dir = {root}/state
instance_name = mm-test-dovecot-{tag}
protocols = imap lmtp
listen = 127.0.0.1
log_path = {root}/dovecot.log
info_log_path = {root}/dovecot.log
{ssl_block}
auth_mechanisms = plain login
default_internal_user = {user}
default_internal_group = {group}
default_login_user = {user}
first_valid_uid = 0
mail_max_userip_connections = 50
auth_failure_delay = 0
passdb static {{
  password = {password}
}}
userdb static {{
  fields {{
    uid = {user}
    gid = {group}
    home = {root}/home/%{{user | username}}
  }}
}}
mail_driver = maildir
mail_path = ~/Maildir
namespace inbox {{
  inbox = yes
  separator = /
  mailbox Sent {{
    special_use = \\Sent
    auto = subscribe
  }}
  mailbox Trash {{
    special_use = \\Trash
    auto = subscribe
  }}
  mailbox Archive {{
    special_use = \\Archive
    auto = create
  }}
}}
service imap-login {{
  inet_listener imap {{
    listen = 127.0.0.1
    port = {imap_port}
  }}
  inet_listener imaps {{
    listen = 127.0.0.1
    port = {imaps_port}
    ssl = yes
  }}
  chroot =
}}
service lmtp {{
  inet_listener lmtp {{
    listen = 127.0.0.1
    port = {lmtp_port}
  }}
}}
service anvil {{
  chroot =
}}
lmtp_save_to_detail_mailbox = no
{capability_block}
"""


class DovecotServer:
    """One private Dovecot instance: start, stop, kill/restart by PID, seed mail.

    `imap_capability` replaces the advertised capability line (e.g.
    `NO_CONDSTORE_CAPABILITY` to hide CONDSTORE/QRESYNC). `tls=True` generates a
    self-signed certificate (`cert_file`), requires TLS for logins, and opens an implicit
    TLS port (`imaps_port`) next to the STARTTLS one (`imap_port`).
    """

    def __init__(
        self,
        root: Path | None = None,
        *,
        imap_capability: str | None = None,
        tls: bool = False,
    ) -> None:
        binary = dovecot_binary()
        if binary is None:
            raise RuntimeError("dovecot is not installed")
        self.binary = binary
        self._own_root = root is None
        self.root = Path(root) if root is not None else Path(tempfile.mkdtemp(prefix="mm-dovecot-"))
        self.imap_capability = imap_capability
        self.tls = tls
        self.imap_port = free_port()
        self.imaps_port = free_port() if tls else 0
        self.lmtp_port = free_port()
        self.cert_file: Path | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self._serial = itertools.count()
        if os.geteuid() == 0:
            self.run_user, self.run_group = "nobody", grp.getgrgid(pwd.getpwnam("nobody").pw_gid)[0]
        else:
            self.run_user = pwd.getpwuid(os.geteuid()).pw_name
            self.run_group = grp.getgrgid(os.getegid())[0]
        self.version = dovecot_version()
        self._write_config()

    # ----------------------------------------------------------------- lifecycle
    @property
    def config_file(self) -> Path:
        return self.root / "dovecot.conf"

    @property
    def master_pid(self) -> int | None:
        """PID of the running master (the process we started), or None."""
        if self.process is None or self.process.poll() is not None:
            return None
        return self.process.pid

    def _write_config(self) -> None:
        for sub in ("run", "state", "home"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        if self.tls:
            self.cert_file, key_file = make_self_signed_cert(self.root)
            if self.version >= (2, 4):
                ssl_block = (
                    f"ssl = required\nssl_server_cert_file = {self.cert_file}\n"
                    f"ssl_server_key_file = {key_file}\nauth_allow_cleartext = no"
                )
            else:
                ssl_block = (
                    f"ssl = required\nssl_cert = <{self.cert_file}\nssl_key = <{key_file}\n"
                    "disable_plaintext_auth = yes"
                )
        else:
            ssl_block = (
                "ssl = no\nauth_allow_cleartext = yes"
                if self.version >= (2, 4)
                else "ssl = no\ndisable_plaintext_auth = no"
            )
        capability_block = (
            f"protocol imap {{\n  imap_capability = {self.imap_capability}\n}}"
            if self.imap_capability
            else ""
        )
        template = _CONF_24 if self.version >= (2, 4) else _CONF_23
        text = template.format(
            root=self.root,
            tag=secrets.token_hex(4),
            user=self.run_user,
            group=self.run_group,
            password=PASSWORD,
            imap_port=self.imap_port,
            imaps_port=self.imaps_port,
            lmtp_port=self.lmtp_port,
            ssl_block=ssl_block,
            capability_block=capability_block,
        )
        self.config_file.write_text(text)
        self._chown_tree(self.root)
        check = subprocess.run(
            [self.binary, "-c", str(self.config_file), "-n"],
            capture_output=True,
            text=True,
            user=self.run_user if self._as_root else None,
            group=self.run_group if self._as_root else None,
            extra_groups=[] if self._as_root else None,
        )
        if check.returncode != 0:
            raise RuntimeError(
                f"dovecot {self.version} rejects the generated config: {check.stderr.strip()}"
            )

    @property
    def _as_root(self) -> bool:
        return os.geteuid() == 0

    def _chown_tree(self, path: Path) -> None:
        owner = self._owner()
        if owner is None:
            return
        uid, gid = owner
        os.chown(path, uid, gid)
        for dirpath, dirnames, filenames in os.walk(path):
            for name in dirnames + filenames:
                os.lchown(os.path.join(dirpath, name), uid, gid)

    def start(self, timeout: float = 15.0) -> None:
        """Start the master and wait for its IMAP and LMTP ports. Raises RuntimeError."""
        if self.master_pid is not None:
            return
        for port in (self.imap_port, self.lmtp_port, self.imaps_port):
            if port:
                self._wait_port_free(port, timeout)
        self.process = subprocess.Popen(
            [self.binary, "-F", "-c", str(self.config_file)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
            user=self.run_user if self._as_root else None,
            group=self.run_group if self._as_root else None,
            extra_groups=[] if self._as_root else None,
        )
        try:
            for port in (self.imap_port, self.lmtp_port, self.imaps_port):
                if port:
                    wait_for_port(port, timeout)
        except TimeoutError as exc:
            err = self._stop_process(signal.SIGKILL)
            raise RuntimeError(f"dovecot did not start: {err}\n{self.log_tail()}") from exc

    def _wait_port_free(self, port: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while port_open(port) and time.monotonic() < deadline:
            time.sleep(0.05)

    def _stop_process(self, sig: signal.Signals) -> str:
        """Signal the master, wait for it, then SIGKILL what is left of its process group.

        The children share the master's session (start_new_session above) and our stderr
        pipe; after a SIGKILLed master they would linger for seconds before noticing.
        """
        proc, self.process = self.process, None
        if proc is None:
            return ""
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        _, err = proc.communicate()
        for port in (self.imap_port, self.lmtp_port, self.imaps_port):
            if port:
                self._wait_port_free(port, 10)
        return (err or b"").decode(errors="replace")

    def stop(self) -> None:
        """Stop the master (SIGTERM) and its children; wait for the ports to close."""
        self._stop_process(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL the master by PID, then its children: a crash, no goodbye to clients."""
        self._stop_process(signal.SIGKILL)

    def restart(self) -> None:
        self.stop()
        self.start()

    def cleanup(self) -> None:
        """Stop the server and remove its directory when we created it."""
        self.stop()
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> DovecotServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()

    def log_tail(self, lines: int = 30) -> str:
        log = self.root / "dovecot.log"
        if not log.exists():
            return ""
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])

    # ------------------------------------------------------------------- clients
    @staticmethod
    def new_user(prefix: str = "u") -> str:
        return f"{prefix}{secrets.token_hex(5)}"

    def home(self, user: str) -> Path:
        return self.root / "home" / user

    def ssl_context(self) -> ssl.SSLContext:
        """A client context trusting this server's self-signed certificate."""
        if self.cert_file is None:
            raise RuntimeError("this server has no TLS")
        return ssl.create_default_context(cafile=str(self.cert_file))

    def client(self, user: str) -> IMAPClient:
        """A logged-in imapclient (over STARTTLS when the server has TLS)."""
        imap = IMAPClient("127.0.0.1", port=self.imap_port, ssl=False, timeout=30)
        if self.tls:
            imap.starttls(self.ssl_context())
        imap.login(user, PASSWORD)
        return imap

    @contextlib.contextmanager
    def session(self, user: str) -> Iterator[IMAPClient]:
        imap = self.client(user)
        try:
            yield imap
        finally:
            with contextlib.suppress(Exception):
                imap.logout()

    def options(self, user: str, **overrides: object) -> dict[str, object]:
        """Connector options reaching this server as `user` (defaults of the connector filled
        by the caller's config layer; here only what differs)."""
        values: dict[str, object] = {
            "host": "127.0.0.1",
            "port": self.imap_port,
            "security": "starttls" if self.tls else "none",
            "username": user,
            "password": PASSWORD,
        }
        if self.tls and self.cert_file is not None:
            values["ssl_ca_file"] = str(self.cert_file)
        values.update(overrides)
        return values

    def append(
        self,
        user: str,
        folder: str,
        messages: Sequence[bytes],
        flags: Sequence[str] = (),
        msg_time: datetime | None = None,
    ) -> list[int]:
        """APPEND `messages` to `folder` (created when missing); return their UIDs."""
        uids: list[int] = []
        with self.session(user) as imap:
            if not imap.folder_exists(folder):
                imap.create_folder(folder)
            for raw in messages:
                resp = imap.append(folder, raw, flags=tuple(flags), msg_time=msg_time)
                match = re.search(rb"APPENDUID \d+ (\d+)", resp or b"")
                if match:
                    uids.append(int(match.group(1)))
        return uids

    def set_uidvalidity(self, user: str, folder: str, value: int) -> None:
        """Give `folder` a new UIDVALIDITY (as a restored or rebuilt mailbox would have)."""
        subprocess.run(
            ["doveadm", "-c", str(self.config_file), "mailbox", "update", "-u", user,
             "--uid-validity", str(value), folder],
            check=True, capture_output=True,
        )  # fmt: skip

    def deliver(self, user: str, raw: bytes, sender: str = "sender@example.org") -> None:
        """Deliver one message to `user`'s INBOX through LMTP (the real delivery path)."""
        with smtplib.LMTP("127.0.0.1", self.lmtp_port) as lmtp:
            lmtp.sendmail(sender, [user], raw)

    def write_maildir(
        self, user: str, messages: Iterable[bytes], folder: str = "INBOX", flags: str = "S"
    ) -> int:
        """Write messages straight into `user`'s Maildir (fast seeding); return the count.

        Dovecot assigns UIDs when it next scans the folder. Files are LF-terminated (Dovecot's
        own Maildir format) and carry S=/W= sizes in their names so Dovecot need not read them
        to answer RFC822.SIZE. `flags` are Maildir info letters ("S" = \\Seen). Works before
        the server starts or while it runs (new files in `cur/` show up on the next SELECT).
        """
        base = self.home(user) / "Maildir"
        if folder != "INBOX":
            base = base / ("." + folder.replace("/", "."))
        owner = self._owner()
        for path in (self.home(user), base.parent, base):
            path.mkdir(parents=True, exist_ok=True)
            if owner:
                os.chown(path, *owner)
        for sub in ("cur", "new", "tmp"):
            (base / sub).mkdir(exist_ok=True)
            if owner:
                os.chown(base / sub, *owner)
        if folder != "INBOX":
            # Maildir++ marks a folder with this file; Dovecot lists it without, too.
            (base / "maildirfolder").touch()
        stamp = int(time.time())  # wall clock: a unique stamp
        count = 0
        for raw in messages:
            data = raw.replace(b"\r\n", b"\n")
            vsize = len(data) + data.count(b"\n")
            name = (
                f"{stamp}.M{next(self._serial)}P{os.getpid()}.mm,S={len(data)},W={vsize}:2,{flags}"
            )
            path = base / "cur" / name
            path.write_bytes(data)
            if owner:
                os.chown(path, *owner)
            count += 1
        return count

    def _owner(self) -> tuple[int, int] | None:
        if os.geteuid() != 0:
            return None
        return pwd.getpwnam(self.run_user).pw_uid, grp.getgrnam(self.run_group).gr_gid
