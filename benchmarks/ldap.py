"""IMAP logins with the directory in LDAP, side by side with the files
directory and with Dovecot's ``passdb ldap``, all on one slapd.

The script makes a base directory of ``--accounts`` accounts (``user0`` …,
clear password ``secret``, written straight in the store's layout: a
benchmark fixture, not a delivery path), starts a private ``slapd`` (the
tests' configuration: one mdb database, the shipped schema) and moves the
accounts into it with ``communigate directory export``, timed: the time to
import the accounts is the first figure.  Then three servers run at once on
free loopback ports:

* ``communigate``: ``twistd communigate --directory ldap://…`` on the base
  directory (the ratio column compares this one with Dovecot);
* ``communigate-files``: the same server on the files directory;
* ``dovecot``: a private Dovecot whose ``passdb ldap`` reads the same
  entries (``uid``, ``userPassword``) from the same slapd, with its auth
  cache off (Debian's default), when ``dovecot-imapd`` and ``dovecot-ldap``
  are installed and we are root.

The work: IMAP LOGIN+LOGOUT connections per second, ``--clients`` at once,
each login naming a random account among all of them (no server can
answer from a small warm set), ``--logins`` in all or ``--seconds`` at
most, ``--repeats`` interleaved runs, medians and every run listed.

Run as root:  python3 benchmarks/ldap.py [--accounts 100000] [--repeats 3]
Needs Debian's slapd (and dovecot-imapd, dovecot-ldap for the comparison).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.imap import dovecot_folder, login_logout
from benchmarks.servers import (
    DOVECOT_CONF,
    LOOPBACK,
    Base,
    Run,
    Starter,
    Target,
    Work,
    bounded_rate,
    communigate,
    dovecot_binary,
    free_port,
    measure,
    raise_file_limit,
    report,
    running_dovecot,
    server_log_tail,
    step,
)
from tests.integration.ldapserver import ROOT_DN, ROOT_PASSWORD, SUFFIX, LdapServer, make_server

DOVECOT_LDAP = Path("/usr/lib/dovecot/modules/auth/libauthdb_ldap.so")
_PASSWD_FILE = """\
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/passwd
}}
"""
_PASSDB_LDAP = """\
passdb {{
  driver = ldap
  args = {root}/dovecot-ldap.conf.ext
}}
"""
_LDAP_CONF = """\
hosts = 127.0.0.1:{port}
dn = {dn}
dnpass = {password}
base = {base}
scope = subtree
pass_attrs = uid=user,userPassword=password
pass_filter = (&(objectClass=inetOrgPerson)(uid=%n))
default_pass_scheme = PLAIN
"""


def files_base(root: Path, accounts: int) -> Base:
    """A base directory (Main Domain bench.test) with ``accounts`` accounts."""
    base = Base(root)
    base.run("server", "settings", "FailedLoginDelay=0.2s")
    folder = base.path / "Accounts"
    for number in range(accounts):
        account = folder / f"user{number}.macnt"
        account.mkdir()
        (account / "account.settings").write_text("{\n  Password = secret;\n}\n")
    return base


def import_accounts(base: Base, slapd: LdapServer) -> float:
    """Seconds ``communigate directory export`` takes to move the base's
    directory into slapd."""
    started = time.monotonic()
    subprocess.run(
        [
            *base.cli,
            "directory",
            "export",
            "--to",
            slapd.url,
            "--ldap-bind-dn",
            ROOT_DN,
            "--ldap-password-file",
            str(slapd.password_file),
        ],
        check=True,
        capture_output=True,
    )
    return time.monotonic() - started


def logins(target: Target, clients: int, total: int, seconds: float, accounts: int) -> Run:
    """LOGIN+LOGOUT connections per second, each for a random account."""
    chooser = random.Random(7)

    async def one(_index: int, _units: int) -> int:
        user = f"user{chooser.randrange(accounts)}"
        await login_logout(target.host, target.port, user)
        return 1

    done, rate = asyncio.run(bounded_rate(one, clients, total, seconds))
    return Run(rate, f"{done} logins")


def dovecot_ldap_setup(root: Path, slapd: LdapServer, host: str, port: int) -> Starter | None:
    """Dovecot with ``passdb ldap`` on ``slapd``; None unless installed and root."""
    binary = dovecot_binary()
    if binary is None or not DOVECOT_LDAP.exists():
        return None

    @contextmanager
    def start() -> Iterator[Target]:
        folder = dovecot_folder(root)
        (folder / "dovecot-ldap.conf.ext").write_text(
            _LDAP_CONF.format(port=slapd.port, dn=ROOT_DN, password=ROOT_PASSWORD, base=SUFFIX)
        )
        bound = port or free_port(host)
        conf = DOVECOT_CONF.format(root=folder, protocol="imap", host=host, port=bound)
        conf = conf.replace(_PASSWD_FILE.format(root=folder), _PASSDB_LDAP.format(root=folder))
        if "driver = ldap" not in conf:
            raise RuntimeError("the Dovecot configuration has no passdb to replace")
        with running_dovecot(binary, folder, conf, bound, host) as process:
            yield Target("dovecot", host, bound, process.pid)

    return start


def communigate_setup(
    root: Path, base: Base, host: str, port: int, directory: list[str], run: str
) -> Starter:
    """A communigate server on ``base`` (its directory chosen by the
    ``directory`` options), with its own control-socket folder ``run``."""

    @contextmanager
    def start() -> Iterator[Target]:
        folder = root / run
        folder.mkdir(exist_ok=True)
        # The server's log goes to ``folder`` too (the first argument).
        with communigate(
            folder,
            base,
            "imap4",
            host,
            port,
            extra=directory,
            environment={"COMMUNIGATE_RUN": str(folder)},
            # The LDAP copy is read whole before the server listens.
            start_seconds=300,
        ) as (bound, pid):
            yield Target("communigate", host, bound, pid)

    return start


def main() -> None:
    """Import, start the servers, measure, report."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--logins", type=int, default=3000)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--host", default=LOOPBACK)
    args = parser.parse_args()
    if min(args.accounts, args.clients, args.logins, args.repeats) < 1:
        parser.error("every count must be at least 1")
    raise_file_limit()
    with tempfile.TemporaryDirectory(prefix="ldap-bench-") as tmp:
        root = Path(tmp)
        step(f"making {args.accounts} accounts")
        base = files_base(root, args.accounts)
        slapd = make_server(root / "slapd")
        slapd.start()
        try:
            step("importing them into slapd")
            seconds = import_accounts(base, slapd)
            print(
                f"communigate directory export: {args.accounts + 1} accounts in "
                f"{seconds:.1f} s ({(args.accounts + 1) / seconds:.0f} a second)",
                flush=True,
            )
            starters: dict[str, Starter] = {
                "communigate": communigate_setup(
                    root, base, args.host, 0, slapd.options(), "run-ldap"
                ),
                "communigate-files": communigate_setup(root, base, args.host, 0, [], "run-files"),
            }
            dovecot = dovecot_ldap_setup(root, slapd, args.host, 0)
            if dovecot is None:
                print("dovecot: needs dovecot-imapd, dovecot-ldap and root; skipped")
            else:
                starters["dovecot"] = dovecot
            works = [
                Work(
                    f"LOGIN+LOGOUT, {args.clients} clients, random of {args.accounts}",
                    "/s",
                    "higher",
                    lambda target: logins(
                        target, args.clients, args.logins, args.seconds, args.accounts
                    ),
                )
            ]
            measure(works, starters, args.repeats)
        finally:
            slapd.stop()
        tail = server_log_tail(root / "run-ldap")
    names = list(starters)
    reference = "dovecot" if "dovecot" in starters else "communigate-files"
    report(
        f"IMAP logins, directory in LDAP ({args.accounts} accounts)",
        works,
        names,
        reference,
        args.repeats,
    )
    if all(run.value is None for run in works[0].runs.get("communigate", [])):
        print("communigate (LDAP): every run failed; end of its log:")
        print(tail)


if __name__ == "__main__":
    main()
