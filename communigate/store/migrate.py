"""Copying a whole directory into another: files to LDAP and back.

``communigate directory export`` and ``import`` move domains, their
settings and access rights, accounts with their settings and passwords (as
stored: hashes stay hashes), aliases, groups, forwarders, server settings
and the Router table.  Mail, File Storage, certificates, Kerberos keys and
trusted CAs are files of the base directory, which both sides share: they
stay where they are.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

from communigate.store import settingsformat
from communigate.store.atomic import write_atomic
from communigate.store.directory import DirectoryError, ObjectKind
from communigate.store.files import FileDirectory
from communigate.store.settingsformat import Value

#: Seconds between two progress lines.
PROGRESS_EVERY = 2.0
#: Accounts added to an LDAP directory at once.
IMPORT_THREADS = 4


class _Progress:
    """Reports ``done/total`` at most every :data:`PROGRESS_EVERY` seconds."""

    def __init__(self, report: Callable[[str], None], total: int) -> None:
        self.report = report
        self.total = total
        self.done = 0
        self.started = self.last = time.monotonic()

    def step(self) -> None:
        self.done += 1
        now = time.monotonic()
        if now - self.last >= PROGRESS_EVERY:
            self.last = now
            rate = self.done / max(now - self.started, 1e-9)
            self.report(f"{self.done}/{self.total} accounts ({rate:.0f} a second)")


def _create_account(
    target: FileDirectory, domain: str, name: str, settings: dict[str, Value]
) -> None:
    """Create the account; in a files directory whose account folder (its
    mail) is already there, write only its settings file."""
    folder = target.account_path(domain, name)
    if type(target) is FileDirectory and folder.is_dir():
        text = settingsformat.dumps_dictionary(settings)
        write_atomic(folder / "account.settings", text.encode("utf-8"))
        return
    target.create_account(domain, name, settings)


def _import_accounts(
    source: FileDirectory,
    importer: Callable[[str, str, dict[str, Value]], None],
    domain: str,
    names: list[str],
    progress: _Progress,
) -> None:
    """Add a domain's accounts to an LDAP directory, :data:`IMPORT_THREADS`
    at once (each add waits for the server's write; a few in flight keep it
    busy), at most a window of them read ahead from the source."""
    with ThreadPoolExecutor(IMPORT_THREADS, thread_name_prefix="import") as workers:
        pending: set[Future[None]] = set()
        for name in names:
            settings = source.raw_account_settings(domain, name)
            pending.add(workers.submit(importer, domain, name, settings))
            if len(pending) >= 4 * IMPORT_THREADS:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for finished in done:
                    finished.result()
                    progress.step()
        for finished in pending:
            finished.result()
            progress.step()


def _replacing(rights: Value) -> Callable[[list[str]], list[str]]:
    """A change of one holder's rights that sets them to ``rights``."""
    held = settingsformat.as_string_list(rights)
    return lambda _old: list(held)


def copy_directory(
    source: FileDirectory,
    target: FileDirectory,
    report: Callable[[str], None],
    hold_refresh: Callable[[bool], None] | None = None,
) -> int:
    """Copy everything ``source`` holds into ``target`` (which must not be
    initialised yet); return how many accounts were copied.  ``report``
    gets progress lines; ``hold_refresh(True)`` (and ``False`` when done)
    lets a target skip re-reading itself after each account."""
    if target.is_initialised():
        raise DirectoryError("the target directory is already initialised")
    main = source.main_domain()
    domains = list(source.domain_names())
    total = sum(len(source.account_names(domain)) for domain in domains)
    report(f"copying {len(domains)} domains and {total} accounts")
    target.initialise(main)
    server = {
        key: value for key, value in source.server_settings().items() if key != "MainDomainName"
    }
    target.update_server_settings(server)
    target.set_router_table(source.router_table())
    for name in domains:
        record = source.domain(name)
        settings = dict(record.settings) if record else {}
        if name == main:
            target.update_domain_settings(name, settings)
        else:
            target.create_domain(name, settings)
        for holder, rights in source.access_rights(name).items():
            target.update_access_rights(name, holder, _replacing(rights))
    progress = _Progress(report, total)
    if hold_refresh is not None:
        hold_refresh(True)
    importer = getattr(target, "import_account", None)
    try:
        for domain in domains:
            names = source.account_names(domain)
            if importer is None:
                for name in names:
                    _create_account(target, domain, name, source.raw_account_settings(domain, name))
                    progress.step()
            else:
                _import_accounts(source, importer, domain, names, progress)
            for kind in (ObjectKind.ALIAS, ObjectKind.GROUP, ObjectKind.FORWARDER):
                for name, value in source.objects(domain, kind).items():
                    target.add_object(kind, domain, name, value)
    finally:
        if hold_refresh is not None:
            hold_refresh(False)
    report(f"copied {progress.done} accounts in {time.monotonic() - progress.started:.1f} s")
    return progress.done
