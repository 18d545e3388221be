"""Deleting an account ends its live sessions."""

from __future__ import annotations

import shutil

from communigate.portal.filesession import IFileSession
from communigate.portal.realm import AccountRealm
from communigate.portal.sessions import LiveSession, SessionRegistry
from communigate.store.files import FileDirectory


def test_sweep_ends_sessions_of_a_deleted_account(directory: FileDirectory) -> None:
    """After the account's folder is gone, the sweep tells every watcher once."""
    realm = AccountRealm(directory)
    _, avatar, logout = realm.requestAvatar(b"info@company.com", None, IFileSession)
    told: list[str] = []
    avatar.watch(told.append)
    assert realm.sessions.sweep() == 0 and told == []
    shutil.rmtree(directory.account_path("company.com", "info"))
    assert realm.sessions.sweep() == 1
    assert told == ["the account was deleted"]
    assert realm.sessions.sweep() == 0
    logout()


def test_logout_forgets_the_session(directory: FileDirectory) -> None:
    """A logged-out avatar is not ended later."""
    registry = SessionRegistry(directory)
    session = LiveSession()
    told: list[str] = []
    session.watch(told.append)
    registry.opened("company.com", "nosuch", session)()
    assert registry.sweep() == 0 and told == []
