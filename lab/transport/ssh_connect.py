"""Opening one device's SSH connection: host-key policy, key and passphrase, and errors that say
what to do.

Why apart from the transport (lab/transport/ssh.py): trust is decided once, when the connection
opens; commands and file transfer only use the open connection. The rules:
- Host keys are checked by default (strict = RejectPolicy against the device's known_hosts or
  ~/.ssh/known_hosts). accept-new saves unknown keys but a *changed* key is still refused
  (paramiko checks known keys before asking the policy). insecure accepts anything and says so
  loudly on stderr at every connect.
- No password ever comes from the inventory: key file or agent; a key passphrase only from the
  environment variable named by `key_passphrase_env`.
"""
from __future__ import annotations

import base64
import hashlib
import os
import shlex
import socket
import sys
import threading

import paramiko

from lab.core.errors import DeviceAuthFailed, DeviceUnreachable, HostKeyMismatch

DEFAULT_PORT = 22
# Fastest ciphers first: AES-GCM needs no separate MAC pass (matters for 100 MB pushes).
PREFERRED_CIPHERS = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com", "aes128-ctr", "aes256-ctr")

_known_hosts_lock = threading.Lock()


def fingerprint(key) -> str:
    """OpenSSH-style `SHA256:<base64>` fingerprint, comparable with `ssh-keygen -lf`."""
    return "SHA256:" + base64.b64encode(hashlib.sha256(key.asbytes()).digest()).decode().rstrip("=")


def known_hosts_name(host: str, port: int) -> str:
    """The name a host is filed under in known_hosts (OpenSSH: `[host]:port` unless port 22)."""
    return host if port == DEFAULT_PORT else f"[{host}]:{port}"


def open_client(device, *, port: int, policy: str, known_hosts: str, timeout: float,
                keepalive_s: int) -> paramiko.SSHClient:
    """A connected SSHClient to `device` (its host, user, key_file, key_passphrase_env), or a
    DeviceError that names the device and the fix."""
    where = f"{device.host}:{port}"
    client = _client_with_policy(device.id, where, policy, known_hosts)
    kwargs = dict(hostname=device.host, port=port, username=device.user, timeout=timeout,
                  banner_timeout=timeout, auth_timeout=timeout, allow_agent=True,
                  look_for_keys=not device.key_file, transport_factory=_fast_transport,
                  **_credentials(device))
    try:
        client.connect(**kwargs)
    except paramiko.BadHostKeyException as exc:
        client.close()
        raise HostKeyMismatch(
            device.id, f"host key of {where} CHANGED "
            f"(got {exc.key.get_name()} {fingerprint(exc.key)}, known_hosts "
            f"{known_hosts} has {fingerprint(exc.expected_key)}); refusing to connect. "
            f"If the device was reinstalled, remove the old entry with "
            f"`ssh-keygen -R {shlex.quote(known_hosts_name(device.host, port))} -f "
            f"{shlex.quote(known_hosts)}`") from None
    except _UnknownHostKey as exc:
        client.close()
        raise HostKeyMismatch(
            device.id, f"host key of {where} ({exc.key_type}) is not in "
            f"{known_hosts} and host_key_policy is strict; add it after checking its "
            f"fingerprint (`ssh-keyscan -p {port} {shlex.quote(device.host)} >> "
            f"{shlex.quote(known_hosts)}`) or use host_key_policy: accept-new") from None
    except paramiko.PasswordRequiredException:
        client.close()
        raise DeviceAuthFailed(device.id, "the SSH key is encrypted and no passphrase was given "
                               "(set key_passphrase_env to the name of an environment variable)") from None
    except paramiko.AuthenticationException as exc:
        client.close()
        raise DeviceAuthFailed(device.id, f"SSH authentication as {device.user!r} on "
                               f"{where} failed: {exc} (check key_file / the agent and "
                               "the device's authorized_keys)") from None
    except paramiko.SSHException as exc:
        client.close()
        if "not found in known_hosts" in str(exc):  # RejectPolicy's own wording
            raise HostKeyMismatch(device.id, f"{exc}; add the key to {known_hosts} or use "
                                  "host_key_policy: accept-new") from None
        raise DeviceUnreachable(device.id, f"SSH to {where} failed: {exc}") from None
    except (OSError, EOFError, socket.timeout) as exc:
        client.close()
        raise DeviceUnreachable(device.id, f"cannot connect to {where}: "
                                f"{exc or type(exc).__name__}") from None
    client.get_transport().set_keepalive(keepalive_s)
    return client


def _client_with_policy(device_id: str, where: str, policy: str, known_hosts: str) -> paramiko.SSHClient:
    """An SSHClient that knows the hosts in `known_hosts` and handles an unknown key by `policy`."""
    client = paramiko.SSHClient()
    if policy == "insecure":
        print(f"WARNING: device {device_id!r}: host_key_policy is 'insecure': the SSH host key of "
              f"{where} is NOT checked; anyone on the path can impersonate it",
              file=sys.stderr, flush=True)
        client.set_missing_host_key_policy(_InsecurePolicy())
        return client
    if os.path.exists(known_hosts):
        try:
            client.load_host_keys(known_hosts)
        except (OSError, paramiko.SSHException) as exc:
            raise HostKeyMismatch(device_id, f"cannot read known_hosts {known_hosts}: {exc}") from None
    if policy == "accept-new":
        client.set_missing_host_key_policy(_AcceptNewPolicy(known_hosts, device_id))
    else:
        client.set_missing_host_key_policy(_StrictPolicy())
    return client


def _credentials(device) -> dict:
    """key_filename / passphrase for paramiko from the entry: a key file that exists, a passphrase
    from the named environment variable (never from the inventory itself)."""
    out = {}
    if device.key_file:
        key_path = os.path.expanduser(device.key_file)
        if not os.path.exists(key_path):
            raise DeviceAuthFailed(device.id, f"key_file {key_path} does not exist "
                                   f"(fix key_file in {device.source}:{device.line})")
        out["key_filename"] = key_path
    env_name = device.key_passphrase_env
    if env_name:
        if env_name not in os.environ:
            raise DeviceAuthFailed(device.id, f"key_passphrase_env names ${env_name}, which is not "
                                   "set (export it before running the lab)")
        out["passphrase"] = os.environ[env_name]
    return out


def _fast_transport(sock, **kwargs):
    """A paramiko Transport that offers AES-GCM first (set before key exchange, or it is too late)."""
    t = paramiko.Transport(sock, **kwargs)
    opts = t.get_security_options()
    first = [c for c in PREFERRED_CIPHERS if c in opts.ciphers]
    opts.ciphers = tuple(first + [c for c in opts.ciphers if c not in first])
    return t


class _UnknownHostKey(Exception):
    def __init__(self, key_type: str):
        super().__init__(key_type)
        self.key_type = key_type


class _StrictPolicy(paramiko.MissingHostKeyPolicy):
    def missing_host_key(self, client, hostname, key):
        raise _UnknownHostKey(key.get_name())


class _InsecurePolicy(paramiko.MissingHostKeyPolicy):
    def missing_host_key(self, client, hostname, key):
        return None  # accepted, not saved; the warning is printed at every connect


class _AcceptNewPolicy(paramiko.MissingHostKeyPolicy):
    """Like OpenSSH's StrictHostKeyChecking=accept-new: save unknown keys; changed keys never get here."""

    def __init__(self, path: str, device_id: str):
        self.path, self.device_id = path, device_id

    def missing_host_key(self, client, hostname, key):
        line = f"{hostname} {key.get_name()} {key.get_base64()}\n"
        with _known_hosts_lock:
            os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
            with open(self.path, "a") as fh:
                fh.write(line)
        client.get_host_keys().add(hostname, key.get_name(), key)
        print(f"device {self.device_id!r}: added new host key {key.get_name()} for {hostname} to {self.path}",
              file=sys.stderr, flush=True)
